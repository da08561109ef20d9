"""Barista from Python: coarse-to-fine retrieval over 2D Matryoshka embeddings.

A 2D Matryoshka encoder's early layers *and* leading dimensions are usable embeddings, on a
ladder of rungs ``(layer, dim)``. Barista stores every rung of every document and searches
coarse to fine: a cheap small-rung vector finds a shortlist, deeper layers of the same query
encoding rescore it.

>>> import barista
>>> engine = barista.Engine.create("scifact.idx", model="../shared/models/minilm-l6-2d")
>>> engine.add([{"id": "d1", "text": "Vitamin D deficiency is linked to depression."}])
>>> [hit.id for hit in engine.search("vitamin D and mood", k=3)]
['d1']

Every call that encodes, searches or writes runs in Rust with the GIL released. Errors are
:class:`InvalidRequestError` (a ``ValueError``: the input is refused as it is, nothing changed)
or :class:`BaristaError` (a ``RuntimeError``: the engine, its files or the model failed), with
the engine's own message.
"""

from __future__ import annotations

import os
from collections import abc
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _barista
from ._barista import BaristaError, Hit, InvalidRequestError
from .client import Client

__all__ = ["Engine", "Encoder", "Client", "Hit", "BaristaError", "InvalidRequestError", "Rung"]

Rung = Tuple[int, int]
"""A rung of the ladder: ``(layer, dim)``: the transformer block pooled (1 is the first; 0 the
embedding output) and the leading dimensions kept."""

PathLike = Union[str, "os.PathLike[str]"]


def _vectors(raw: List[Tuple[int, int, int, bytes]]) -> Dict[Rung, np.ndarray]:
    """``(layer, dim, n, bytes)`` entries as float32 arrays of shape ``(n, dim)``, by rung."""
    return {
        (layer, dim): np.frombuffer(data, dtype="<f4").reshape(n, dim)
        for layer, dim, n, data in raw
    }


def _texts(texts: Union[str, Sequence[str]]) -> List[str]:
    if isinstance(texts, str):
        return [texts]
    return list(texts)


def _query_vectors(vectors: Mapping[Rung, Any]) -> List[Dict[str, Any]]:
    """``{(layer, dim): vector}`` as ``POST /search``'s ``vectors``; refuses other shapes."""
    if not isinstance(vectors, abc.Mapping):
        raise InvalidRequestError(
            f"vectors must be a dict {{(layer, dim): 1-D float array}}, not {type(vectors).__name__}"
        )
    out = []
    for key, values in vectors.items():
        if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(v, (int, np.integer)) for v in key)):
            raise InvalidRequestError(f"the key {key!r} of vectors is not a rung: use (layer, dim) tuples of ints")
        array = np.asarray(values)
        if array.ndim == 2 and array.shape[0] == 1:
            array = array[0]
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.floating):
            raise InvalidRequestError(
                f"vectors[{key}] must be a 1-D float array (one query), not {array.dtype} of shape {array.shape}"
            )
        out.append({"layer": int(key[0]), "dim": int(key[1]), "vector": array.astype("<f4").tolist()})
    return out


def _rungs(rungs: Optional[Iterable[Rung]]) -> Optional[List[Rung]]:
    return None if rungs is None else [(int(layer), int(dim)) for layer, dim in rungs]


class Encoder:
    """A 2D Matryoshka encoder on its own, without an index.

    ``model`` is a model folder or a Hugging Face id (downloaded into the Hugging Face cache
    when online). ``threads`` bounds the worker threads (default: every core).
    """

    def __init__(self, model: str, *, threads: Optional[int] = None) -> None:
        self._native = _barista.Encoder(str(model), threads=threads)

    @property
    def rungs(self) -> List[Rung]:
        """The model's ladder, small to large: ``[(layer, dim), ...]``."""
        return self._native.rungs

    @property
    def model(self) -> str:
        """The model's name (its folder or Hub id)."""
        return self._native.model

    def embed(
        self,
        texts: Union[str, Sequence[str]],
        kind: str = "passage",
        rungs: Optional[Iterable[Rung]] = None,
    ) -> Dict[Rung, np.ndarray]:
        """Vectors of ``texts`` at each rung: ``{(layer, dim): float32 array (len(texts), dim)}``.

        One forward pass up to the deepest rung asked for serves every rung. ``kind`` is
        ``"passage"`` (the passage maximum length) or ``"query"``; ``rungs`` defaults to the
        whole ladder and may hold any ``(layer, dim)`` the model can produce. Vectors are what
        the index stores (L2-normalised after truncation for cosine models).
        """
        return _vectors(self._native.embed_raw(_texts(texts), kind, _rungs(rungs)))

    def embed_documents(self, documents: Iterable[Mapping[str, Any]]) -> Dict[Rung, np.ndarray]:
        """Every rung's vectors of documents (``[{"id", "text", "title"?, ...}, ...]``) as an
        index stores them: each document's passage is its title (if any), a space, its text.

        The other half of :meth:`Engine.add_embedded`: encode on one machine or worker, write
        on another (a distributed indexing pipeline's encoder and shard writers).
        """
        return _vectors(self._native.embed_documents_raw(list(documents)))

    def tokenize(self, texts: Union[str, Sequence[str]], kind: str = "passage") -> List[List[int]]:
        """Token ids of each text as the encoder sees them (``[CLS]`` … ``[SEP]``, cut at the
        maximum length of ``kind``)."""
        return self._native.tokenize(_texts(texts), kind)


class Engine:
    """An index directory and the model that fills it, searched coarse to fine.

    Create one with :meth:`create` or open one with :meth:`open`. Safe to share between
    threads: searches run in parallel, writes are serialised by the index's writer. The first
    write takes the index's writer (one process at a time); :meth:`close`, or leaving a ``with``
    block, gives it back at once.
    """

    def __init__(self, native: "_barista.Engine") -> None:
        self._native = native

    @classmethod
    def create(
        cls,
        path: PathLike,
        model: str,
        *,
        store: str = "f16",
        store_coarse: str = "i8",
        graph_rungs: Optional[Iterable[Rung]] = None,
        threads: Optional[int] = None,
    ) -> "Engine":
        """Creates an empty index at ``path`` for ``model`` (a folder or a Hugging Face id).

        ``store`` is the element type of the largest rung (``f32``, ``f16``, ``i8``),
        ``store_coarse`` that of the smaller rungs; ``graph_rungs`` the rungs HNSW graphs are
        built on (default: the largest rung). Raises if ``path`` already holds an index.
        """
        native = _barista.Engine.create(
            os.fspath(path),
            str(model),
            store=store,
            store_coarse=store_coarse,
            graph_rungs=_rungs(graph_rungs),
            threads=threads,
        )
        return cls(native)

    @classmethod
    def open(
        cls, path: PathLike, *, model: Optional[str] = None, threads: Optional[int] = None, write: bool = False
    ) -> "Engine":
        """Opens the index at ``path`` (built by ``barista index``, the server or Python).

        ``model`` loads the index's model from another place (it must be the same model).
        ``write`` takes the index's writer now rather than at the first write (raising
        :class:`BaristaError` at once if another process holds it).
        """
        return cls(_barista.Engine.open(os.fspath(path), model=model, threads=threads, write=write))

    @property
    def rungs(self) -> List[Rung]:
        """The index's ladder, small to large: ``[(layer, dim), ...]``."""
        return self._native.rungs

    @property
    def model(self) -> str:
        """The model's name (its folder or Hub id)."""
        return self._native.model

    @property
    def similarity(self) -> str:
        """How vectors compare: ``"cosine"`` or ``"dot"`` (the model's profile)."""
        return self._native.similarity

    def __len__(self) -> int:
        """Live documents."""
        return len(self._native)

    def close(self) -> None:
        """Gives the index back now (the writer's lock included); later calls raise
        :class:`BaristaError`. Acknowledged writes are already durable."""
        self._native.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def add(self, documents: Iterable[Mapping[str, Any]]) -> Dict[str, int]:
        """Adds or replaces documents: ``[{"id", "text", "title"?, "metadata"?}, ...]``.

        Embedded at every rung; durable (in the write-ahead log) and searchable when this
        returns. All or nothing: one invalid document refuses the batch. Returns the write
        report ``{"added", "deleted", "live", "sequence"}``.
        """
        return self._native.add(list(documents))

    def add_embedded(
        self, documents: Iterable[Mapping[str, Any]], vectors: Mapping[Rung, np.ndarray]
    ) -> Dict[str, int]:
        """:meth:`add` with the vectors embedded elsewhere, by the same model:
        ``vectors[(layer, dim)]`` is a ``(len(documents), dim)`` float array for every rung the
        index stores (as :meth:`Encoder.embed_documents` returns them; other rungs are ignored;
        float64 or float16 are converted to float32). Nothing can check that the vectors come
        from the index's model: that is the caller's promise. Refused as a whole
        (:class:`InvalidRequestError`, nothing written) when a key is not a ``(layer, dim)``
        tuple, a stored rung is missing, an array is not floats or has the wrong shape, a value
        is not finite, or — for a cosine model — a vector is not of unit length.
        """
        documents = list(documents)
        if not isinstance(vectors, abc.Mapping):
            raise InvalidRequestError(
                "vectors must be a dict {(layer, dim): float array (len(documents), dim)}, "
                f"as Encoder.embed_documents returns, not {type(vectors).__name__}"
            )
        raw = []
        for key, array in vectors.items():
            if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(v, (int, np.integer)) for v in key)):
                raise InvalidRequestError(f"the key {key!r} of vectors is not a rung: use (layer, dim) tuples of ints")
            layer, dim = key
            array = np.asarray(array)
            if not np.issubdtype(array.dtype, np.floating):
                raise InvalidRequestError(
                    f"vectors[({layer}, {dim})] holds {array.dtype} values: give floats (float32 as embedded; "
                    "other float widths are converted)"
                )
            rows = np.ascontiguousarray(array, dtype="<f4")
            if rows.ndim != 2 or rows.shape != (len(documents), int(dim)):
                raise InvalidRequestError(
                    f"vectors[({layer}, {dim})] has shape {tuple(rows.shape)}, "
                    f"not ({len(documents)}, {dim}): one row per document"
                )
            raw.append((int(layer), int(dim), len(documents), rows.tobytes()))
        return self._native.add_embedded(documents, raw)

    def delete(self, ids: Union[str, Sequence[str]]) -> Dict[str, int]:
        """Deletes documents by id; ``deleted`` in the report counts those that existed."""
        return self._native.delete(_texts(ids))

    def get(self, id: str) -> Optional[Dict[str, Any]]:
        """The stored document ``{"id", "text", "title", "metadata"}``, or None."""
        return self._native.get(id)

    def search(
        self,
        query: Optional[str] = None,
        k: int = 10,
        *,
        vectors: Optional[Mapping[Rung, Any]] = None,
        profile: Optional[str] = None,
        filter: Optional[Mapping[str, Any]] = None,
        stages: Optional[List[Mapping[str, Any]]] = None,
        adaptive: Optional[bool] = None,
        include_text: bool = True,
        include_metadata: bool = True,
    ) -> List[Hit]:
        """The ``k`` best documents for ``query``, best first, as :class:`Hit` objects.

        ``profile`` is ``"fast"``, ``"balanced"`` (the default) or ``"exact"``; ``stages`` an
        explicit plan as in ``POST /search`` (``[{"rung": [4, 128], "keep": 1500}, ...]``);
        ``filter`` keeps documents whose metadata matches (``{"lang": "en", "year": [2019,
        2020]}``). Each hit has ``id``, ``score`` (the final rung's similarity), ``rung``,
        ``title``, ``text`` and ``metadata``.

        ``vectors`` replaces ``query`` with the query's vectors encoded elsewhere by the same
        model, ``{(layer, dim): 1-D float array of length dim}`` for the rungs the plan visits
        (as :meth:`Encoder.embed` gives them for ``kind="query"``, one row each): a router that
        encodes a query once and searches several shards with it.
        """
        request: Dict[str, Any] = {
            "k": k,
            "include_text": include_text,
            "include_metadata": include_metadata,
        }
        if query is not None:
            request["query"] = query
        if vectors is not None:
            request["vectors"] = _query_vectors(vectors)
        if profile is not None:
            request["profile"] = profile
        if filter is not None:
            request["filter"] = dict(filter)
        if stages is not None:
            request["stages"] = list(stages)
        if adaptive is not None:
            request["adaptive"] = adaptive
        return self._native.search(request)[0]

    def embed(
        self,
        texts: Union[str, Sequence[str]],
        kind: str = "passage",
        rungs: Optional[Iterable[Rung]] = None,
    ) -> Dict[Rung, np.ndarray]:
        """The index's encoder: see :meth:`Encoder.embed`."""
        return _vectors(self._native.embed_raw(_texts(texts), kind, _rungs(rungs)))

    def reload(self) -> bool:
        """Picks up what another process (the index's writer) committed since this engine
        opened the index or last reloaded; returns whether anything changed. Cheap when nothing
        did. A reader beside a writer in another process calls it before searching to see the
        writer's acknowledged writes; an engine that writes sees its own without it."""
        return self._native.reload()

    def contains(self, ids: Union[str, Sequence[str]]) -> List[bool]:
        """Whether each id is a live document, in order."""
        return self._native.contains(_texts(ids))

    def stats(self) -> Dict[str, Any]:
        """Documents, segments, the write-ahead log, flushes and merges (as ``GET /stats``)."""
        return self._native.stats()

    def flush(self) -> Dict[str, int]:
        """Writes the in-memory segment out as an immutable segment now."""
        return self._native.flush()

    def compact(self) -> Dict[str, int]:
        """Merges every segment into one (a full merge; segments of at most a million documents
        past that size), committed when it returns."""
        return self._native.compact()
