"""The layout of a sharded collection on shared storage: which shard owns a document, and where
each shard's index lives.

::

    ROOT/
      barista-shards.json          # {"format": 1, "shards": N, "partition": "crc32", "model": ...}
      shard-00000-of-00004/        # an ordinary Barista index (index/FORMAT.md)
      shard-00001-of-00004/
      ...

A document belongs to shard ``crc32(utf-8 bytes of its id) mod N`` (zlib's CRC-32, the same in
every language and process), so the indexing pipeline, the serving router and any other writer
agree on the owner without asking each other. ``N`` is fixed when the collection is created:
re-running with another number of shards is refused.
"""

from __future__ import annotations

import json
import os
import pathlib
import zlib
from dataclasses import dataclass
from typing import Any, Dict, Union

from .._barista import InvalidRequestError

LAYOUT_FILE = "barista-shards.json"
"""The file at the root of a sharded collection that names its shards."""

FORMAT = 1
MAX_SHARDS = 4096

PathLike = Union[str, "os.PathLike[str]"]


def shard_of(id: str, shards: int) -> int:
    """The shard that owns document ``id`` among ``shards``: CRC-32 (zlib) of its UTF-8 bytes,
    modulo ``shards``."""
    return zlib.crc32(id.encode("utf-8")) % shards


@dataclass(frozen=True)
class ShardLayout:
    """A sharded collection's root folder, its number of shards and its model."""

    root: pathlib.Path
    shards: int
    model: str

    def shard_of(self, id: str) -> int:
        """The shard that owns document ``id`` (see :func:`shard_of`)."""
        return shard_of(id, self.shards)

    def shard_dir(self, shard: int) -> pathlib.Path:
        """The index folder of ``shard`` (0-based)."""
        return self.root / f"shard-{shard:05d}-of-{self.shards:05d}"

    def to_json(self) -> Dict[str, Any]:
        """The content of ``barista-shards.json``."""
        return {"format": FORMAT, "shards": self.shards, "partition": "crc32", "model": self.model}

    @classmethod
    def open(cls, root: PathLike) -> "ShardLayout":
        """Reads the layout at ``root``; raises :class:`InvalidRequestError` saying what is
        wrong when ``root`` holds no sharded collection or its layout file is damaged."""
        root = pathlib.Path(root)
        path = root / LAYOUT_FILE
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
        except FileNotFoundError:
            raise InvalidRequestError(
                f"{root} holds no sharded collection (no {LAYOUT_FILE}): build one with "
                "`python -m barista.distributed index`"
            ) from None
        except (OSError, ValueError) as e:
            raise InvalidRequestError(f"{path} cannot be read as a shard layout: {e}") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT or raw.get("partition") != "crc32":
            raise InvalidRequestError(
                f"{path} is not a shard layout this Barista reads (format {FORMAT}, partition crc32): {raw!r}"
            )
        shards, model = raw.get("shards"), raw.get("model")
        if not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS or not isinstance(model, str):
            raise InvalidRequestError(f"{path} is damaged: shards must be 1..{MAX_SHARDS} and model a string: {raw!r}")
        return cls(root=root, shards=shards, model=model)

    @classmethod
    def create_or_check(cls, root: PathLike, shards: int, model: str) -> "ShardLayout":
        """The layout at ``root`` with ``shards`` shards of ``model``: written if ``root`` holds
        none yet (``root`` is created; it must then be empty), checked against what is there
        otherwise (a resumed run). Raises :class:`InvalidRequestError` on any mismatch."""
        if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
            raise InvalidRequestError(f"shards must be a whole number from 1 to {MAX_SHARDS}, not {shards!r}")
        root = pathlib.Path(root)
        if (root / LAYOUT_FILE).exists():
            layout = cls.open(root)
            if layout.shards != shards:
                raise InvalidRequestError(
                    f"{root} holds {layout.shards} shards, not {shards}: documents are placed by "
                    f"crc32(id) mod {layout.shards}; re-run with {layout.shards} shards, or choose another folder"
                )
            if layout.model != model:
                raise InvalidRequestError(
                    f"{root} was indexed with the model {layout.model!r}, not {model!r}: vectors of two models "
                    "do not mix; give the same model, or choose another folder"
                )
            return layout
        if root.exists() and any(root.iterdir()):
            raise InvalidRequestError(
                f"{root} is not empty and holds no {LAYOUT_FILE}: a sharded collection needs a folder of its own"
            )
        root.mkdir(parents=True, exist_ok=True)
        layout = cls(root=root, shards=shards, model=model)
        tmp = root / (LAYOUT_FILE + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(layout.to_json(), f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, root / LAYOUT_FILE)
        fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return layout
