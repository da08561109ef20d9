"""Distributed indexing on Ray Data: read → encode on worker actors → write to shard indexes.

::

    read_text (JSONL) / read_parquet          one task per file block, no CPU reserved
      → map_batches(_EncodeAndWrite)          `workers` actors, `threads_per_worker` CPUs each:
                                              parse, ask the owning shards which ids they hold,
                                              embed the rest (every rung, one pass), send each
                                              shard its rows and wait for its acknowledgement
      → _ShardWriter actors, one per shard    an ordinary Barista index each (Engine.add_embedded:
                                              durable in the shard's write-ahead log on return)

A batch's documents are acknowledged only after every shard they went to has committed them, so
a crash (of a worker, a writer, the driver or the cluster) loses nothing acknowledged, and
re-running the same command resumes: ids a shard already holds are skipped before encoding.
"""

from __future__ import annotations

import os
import pathlib
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from .. import Encoder, Engine
from .._barista import BaristaError, InvalidRequestError
from . import documents as docs_mod
from .layout import ShardLayout, shard_of

PathLike = Union[str, "os.PathLike[str]"]


def require_ray():
    """The ``ray`` module, or an error that says how to install it."""
    try:
        import ray  # noqa: PLC0415 (optional dependency)
    except ImportError:
        raise ImportError(
            "barista.distributed needs Ray: pip install 'barista-search[ray]' (or 'ray[data,serve]')"
        ) from None
    return ray


def absolute_model(model: str) -> str:
    """A local model folder as an absolute path (Ray workers do not share the driver's working
    directory); a Hugging Face id as it is."""
    return os.path.abspath(model) if os.path.isdir(model) else str(model)


@dataclass
class IndexingReport:
    """What a run of :func:`index` did.

    ``read`` documents came in; ``added`` were encoded and written; ``skipped`` were already in
    their shard (a resumed run); ``repeated`` ids appeared more than once in one input batch
    (the last was kept). ``seconds`` is the wall time of the pipeline (writers' final flush
    included) and ``documents_per_second`` is ``added / seconds``.
    """

    root: str
    shards: List[Dict[str, Any]] = field(default_factory=list)
    read: int = 0
    added: int = 0
    skipped: int = 0
    repeated: int = 0
    seconds: float = 0.0
    workers: int = 1
    threads_per_worker: int = 1

    @property
    def documents_per_second(self) -> float:
        return self.added / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> Dict[str, Any]:
        """The report as plain JSON values (what ``--json`` prints)."""
        out = dict(self.__dict__)
        out["documents_per_second"] = round(self.documents_per_second, 2)
        return out


LOCK_WAIT_S = 60.0
"""How long a shard writer waits for the index's writer lock that a previous, crashed run's
writer may still hold while Ray takes its process down."""


def open_writer(path: str, model: str, threads: int, create: Optional[Dict[str, Any]] = None) -> Engine:
    """A shard's index with its writer taken: created with ``create`` (the options of
    :meth:`Engine.create`) when the folder is new and ``create`` is given. Waits up to
    :data:`LOCK_WAIT_S` for another process's writer to go; then raises its error."""
    folder = pathlib.Path(path)
    if create is not None and not (folder.exists() and any(folder.iterdir())):
        Engine.create(folder, model, threads=threads, **create).close()
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            return Engine.open(folder, model=model, threads=threads, write=True)
        except BaristaError as e:
            if "locked by another writer" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class _ShardWriter:
    """One shard's index, written by one process (the index's writer lock makes sure of it)."""

    def __init__(self, path: str, model: str, create: Dict[str, Any], threads: int) -> None:
        self.engine = open_writer(path, model, threads, create)
        self.path = path

    def contains(self, ids: List[str]) -> List[bool]:
        """Whether each id is already in this shard."""
        return self.engine.contains(ids)

    def add_embedded(self, documents: List[Dict[str, Any]], vectors: Dict[Tuple[int, int], np.ndarray]) -> int:
        """Writes documents with their vectors; durable when it returns. Returns how many."""
        self.engine.add_embedded(documents, vectors)
        return len(documents)

    def finish(self) -> Dict[str, Any]:
        """Writes the in-memory segment out (graphs are built here for large shards) and gives
        the index back."""
        self.engine.flush()
        documents = len(self.engine)
        self.engine.close()
        return {"path": self.path, "documents": documents}


class _EncodeAndWrite:
    """A Ray Data actor: parses a batch, skips what its shards hold, embeds the rest, writes."""

    def __init__(self, model: str, threads: int, writers: list, shards: int) -> None:
        self.encoder = Encoder(model, threads=threads)
        self.writers = writers
        self.shards = shards

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        try:
            return self._write(batch)
        except InvalidRequestError as e:
            # Returned, not raised: Ray Data would hand the driver a wrapper that lost the type.
            return {
                "shard": np.array([-1], dtype=np.int64),
                "read": np.zeros(1, dtype=np.int64),
                "added": np.zeros(1, dtype=np.int64),
                "repeated": np.zeros(1, dtype=np.int64),
                "error": np.array([str(e)], dtype=object),
            }

    def _write(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        ray = require_ray()
        parsed: Dict[int, List[Dict[str, Any]]] = {}
        for doc in _parse(batch):
            parsed.setdefault(shard_of(doc["id"], self.shards), []).append(doc)
        shards = sorted(parsed)
        by_shard = {s: docs_mod.last_wins(parsed[s]) for s in shards}
        held = ray.get([self.writers[s].contains.remote([d["id"] for d in by_shard[s]]) for s in shards])
        todo = {s: [d for d, h in zip(by_shard[s], held[i]) if not h] for i, s in enumerate(shards)}
        flat = [d for s in shards for d in todo[s]]
        acks = []
        if flat:
            vectors = self.encoder.embed_documents(flat)
            start = 0
            for s in shards:
                n = len(todo[s])
                if n:
                    rows = {rung: v[start : start + n] for rung, v in vectors.items()}
                    acks.append(self.writers[s].add_embedded.remote(todo[s], rows))
                start += n
        ray.get(acks)
        return {
            "shard": np.array(shards, dtype=np.int64),
            "read": np.array([len(parsed[s]) for s in shards], dtype=np.int64),
            "added": np.array([len(todo[s]) for s in shards], dtype=np.int64),
            "repeated": np.array([len(parsed[s]) - len(by_shard[s]) for s in shards], dtype=np.int64),
            "error": np.array([""] * len(shards), dtype=object),
        }


def _parse(batch: Dict[str, np.ndarray]) -> List[Dict[str, Any]]:
    """The documents of a batch from `read_text` (``text`` lines and their ``path``) or
    `read_parquet` (document columns)."""
    if "path" in batch and set(batch) <= {"text", "path"}:
        out = []
        for line, path in zip(batch["text"], batch["path"]):
            doc = docs_mod.from_json_line(str(line), str(path))
            if doc is not None:
                out.append(doc)
        return out
    columns = list(batch)
    n = len(batch[columns[0]]) if columns else 0
    where = str(batch["path"][0]) if "path" in batch and n else "parquet input"
    rows = []
    for i in range(n):
        row = {c: _plain(batch[c][i]) for c in columns}
        rows.append(docs_mod.from_row(row, str(row.get("path", where))))
    return rows


def _plain(value: Any) -> Any:
    """numpy scalars and arrays from a batch as plain Python values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _read(ray, inputs: Sequence[str], input_format: Optional[str]):
    formats = {_format_of(p, input_format) for p in inputs}
    if len(formats) != 1:
        raise InvalidRequestError(f"the inputs mix formats ({sorted(formats)}): index JSONL and Parquet separately")
    (fmt,) = formats
    # Reading is light next to encoding: no CPU is reserved for it, so that the encoder actors
    # can hold every core without starving the reads that feed them.
    args = {"num_cpus": 0, "include_paths": True}
    if fmt == "jsonl":
        return ray.data.read_text(list(inputs), **args)
    return ray.data.read_parquet(list(inputs), **args)


def _writer_failure(shard: int, layout: ShardLayout, error: BaseException) -> str:
    """What went wrong when a shard's writer could not start, for humans."""
    text = str(error)
    where = layout.shard_dir(shard)
    if "locked by another writer" in text:
        return (
            f"shard {shard} ({where}) is being written by another process, for {LOCK_WAIT_S:g} s: a running "
            "`python -m barista.distributed serve` or `barista serve` on it? Stop it first, or send the documents "
            "through its POST /documents"
        )
    lines = [line for line in text.splitlines() if line.strip()]
    return f"shard {shard}'s writer could not open {where}: {lines[-1] if lines else type(error).__name__}"


def _format_of(path: str, given: Optional[str]) -> str:
    if given is not None:
        if given not in ("jsonl", "parquet"):
            raise InvalidRequestError(f"the input format must be jsonl or parquet, not {given!r}")
        return given
    name = path.lower().rstrip("/")
    if name.endswith((".jsonl", ".json", ".jsonl.gz", ".ndjson")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    raise InvalidRequestError(
        f"cannot tell the format of {path!r} from its name (.jsonl or .parquet; a folder has none): give "
        "--format jsonl|parquet (input_format= in Python)"
    )


def index(
    inputs: Union[PathLike, Iterable[PathLike]],
    root: PathLike,
    *,
    model: str,
    shards: int,
    workers: int = 1,
    threads_per_worker: int = 1,
    batch_size: int = 64,
    input_format: Optional[str] = None,
    store: str = "f16",
    store_coarse: str = "i8",
    graph_rungs: Optional[Iterable[Tuple[int, int]]] = None,
    progress: bool = True,
) -> IndexingReport:
    """Indexes ``inputs`` (JSONL or Parquet files or folders, on storage every node reads) into
    ``shards`` shard indexes under ``root`` (shared storage), on the Ray cluster this process is
    connected to (``ray.init()`` is called if it is not: ``RAY_ADDRESS`` or a local cluster).

    ``workers`` encoder actors run at once, each with ``threads_per_worker`` CPUs (Ray resources
    and encoder threads alike); ``batch_size`` documents go through an actor at a time. One
    writer actor per shard (no CPU reserved) owns that shard's index. Documents are
    ``{"id" (or "_id"), "text", "title"?, "metadata"?}``; each goes to shard
    ``crc32(id) mod shards`` (:mod:`barista.distributed.layout`). ``store``, ``store_coarse`` and
    ``graph_rungs`` are those of :meth:`barista.Engine.create`, for new shards.

    Re-running with the same ``root`` resumes: documents whose id their shard already holds are
    neither encoded nor written again (to replace changed documents, write them through the
    serving application's ``POST /documents``). A different number of shards or model is
    refused. Raises :class:`InvalidRequestError` for bad input (what was acknowledged before it
    stays written).
    """
    ray = require_ray()
    for name, value in (("workers", workers), ("threads_per_worker", threads_per_worker), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidRequestError(f"{name} must be a whole number of at least 1, not {value!r}")
    paths = [os.fspath(inputs)] if isinstance(inputs, (str, os.PathLike)) else [os.fspath(p) for p in inputs]
    if not paths:
        raise InvalidRequestError("no inputs given")
    for p in paths:
        if not os.path.exists(p):
            raise InvalidRequestError(f"the input {p} does not exist")
    paths = [os.path.abspath(p) for p in paths]
    model = absolute_model(model)
    root = pathlib.Path(os.path.abspath(os.fspath(root)))
    formats = {_format_of(p, input_format) for p in paths}
    if len(formats) != 1:
        raise InvalidRequestError(f"the inputs mix formats ({sorted(formats)}): index JSONL and Parquet separately")
    if not ray.is_initialized():
        ray.init()
    cpus = ray.cluster_resources().get("CPU", 0)
    if formats == {"parquet"} and cpus - workers * threads_per_worker < 1:
        raise InvalidRequestError(
            f"{workers} workers x {threads_per_worker} threads take every CPU of the cluster ({cpus:g}); "
            "Ray Data lists Parquet files with a task that needs one CPU: use fewer workers or threads, or add a node"
        )
    # Checked before anything is written: bad input leaves the folder as it was.
    layout = ShardLayout.create_or_check(root, shards, model)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    create = {"store": store, "store_coarse": store_coarse, "graph_rungs": graph_rungs}
    writer_class = ray.remote(_ShardWriter)
    start = time.perf_counter()
    writers = [
        writer_class.options(num_cpus=0, max_concurrency=4).remote(str(layout.shard_dir(s)), model, create, 1)
        for s in range(shards)
    ]
    report = IndexingReport(root=str(root), workers=workers, threads_per_worker=threads_per_worker)
    try:
        # Opening (or creating) every shard first: a damaged or busy shard fails here, before any
        # encoding.
        for s, w in enumerate(writers):
            try:
                ray.get(w.contains.remote([]))
            except ray.exceptions.RayError as e:
                raise BaristaError(_writer_failure(s, layout, e)) from None

        dataset = _read(ray, paths, input_format).map_batches(
            _EncodeAndWrite,
            fn_constructor_kwargs={
                "model": model,
                "threads": threads_per_worker,
                "writers": writers,
                "shards": shards,
            },
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=threads_per_worker,
        )
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            errors = [str(e) for e in batch["error"] if e]
            if errors:
                raise InvalidRequestError(
                    f"{errors[0]} (the batches written before this one stay written: fix the input and "
                    "run again, it resumes)"
                )
            report.read += int(batch["read"].sum())
            report.added += int(batch["added"].sum())
            report.repeated += int(batch["repeated"].sum())
        report.shards = ray.get([w.finish.remote() for w in writers])
    finally:
        for w in writers:
            ray.kill(w, no_restart=True)
    report.skipped = report.read - report.repeated - report.added
    report.seconds = time.perf_counter() - start
    return report
