"""LangChain integration: a ``VectorStore`` backed by a Barista index, and ``Embeddings`` at any
rung of a 2D Matryoshka ladder.

Needs ``langchain-core`` (``pip install "barista-search[langchain]"``).

>>> from barista.langchain import BaristaVectorStore
>>> store = BaristaVectorStore.from_texts(["Tea grows at high altitude."], path="tea.idx",
...                                       model="../shared/models/minilm-l6-2d")
>>> store.as_retriever(search_kwargs={"k": 1}).invoke("where does tea grow")

Barista embeds texts itself (every rung, in one pass), so the store takes no ``embedding``
object; :attr:`BaristaVectorStore.embeddings` gives the index's encoder as LangChain
``Embeddings`` for code that wants one.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from . import Encoder, Engine, Rung

__all__ = ["BaristaVectorStore", "BaristaEmbeddings"]


class BaristaEmbeddings(Embeddings):
    """A Barista encoder as LangChain ``Embeddings``, at one rung ``(layer, dim)``.

    ``encoder`` is a :class:`barista.Encoder` or :class:`barista.Engine`; ``rung`` defaults to
    the largest rung of its ladder. Documents are encoded as passages, queries as queries.
    """

    def __init__(self, encoder: "Encoder | Engine", rung: Optional[Rung] = None) -> None:
        self._encoder = encoder
        self._rung: Rung = tuple(rung) if rung is not None else encoder.rungs[-1]  # type: ignore[assignment]

    def embed_documents(self, texts: List[str]) -> List[List[float]]:
        return self._encoder.embed(texts, "passage", [self._rung])[self._rung].tolist()

    def embed_query(self, text: str) -> List[float]:
        return self._encoder.embed([text], "query", [self._rung])[self._rung][0].tolist()


class BaristaVectorStore(VectorStore):
    """A LangChain vector store over a :class:`barista.Engine`.

    ``profile`` is the search profile (``fast``, ``balanced``, ``exact``); metadata filters
    (``filter={"lang": "en"}``) are Barista's: equality, a list meaning any of its values.
    Scores are the final rung's similarity (cosine or dot product, larger is closer).
    """

    def __init__(self, engine: Engine, *, profile: Optional[str] = None) -> None:
        self.engine = engine
        self.profile = profile

    @property
    def embeddings(self) -> Optional[Embeddings]:
        return BaristaEmbeddings(self.engine)

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: Optional[List[dict]] = None,
        *,
        ids: Optional[List[str]] = None,
        **kwargs: Any,
    ) -> List[str]:
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValueError(f"{len(metadatas)} metadatas for {len(texts)} texts")
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        ids = [i if i else uuid.uuid4().hex for i in ids] if ids is not None else [uuid.uuid4().hex for _ in texts]
        documents = []
        for i, text in enumerate(texts):
            document: dict = {"id": ids[i], "text": text}
            if metadatas is not None and metadatas[i]:
                document["metadata"] = metadatas[i]
            documents.append(document)
        if documents:
            self.engine.add(documents)
        return ids

    def add_documents(self, documents: List[Document], **kwargs: Any) -> List[str]:
        ids = kwargs.pop("ids", None) or [d.id for d in documents]
        return self.add_texts(
            [d.page_content for d in documents], [d.metadata for d in documents], ids=ids, **kwargs
        )

    def delete(self, ids: Optional[List[str]] = None, **kwargs: Any) -> Optional[bool]:
        if ids is None:
            raise ValueError("delete needs the ids to delete")
        if ids:
            self.engine.delete(list(ids))
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> List[Document]:
        found = []
        for id in ids:
            stored = self.engine.get(id)
            if stored is not None:
                found.append(Document(id=stored["id"], page_content=stored["text"], metadata=stored.get("metadata") or {}))
        return found

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Optional[dict] = None, **kwargs: Any
    ) -> List[Tuple[Document, float]]:
        hits = self.engine.search(query, k=k, profile=kwargs.get("profile", self.profile), filter=filter)
        return [
            (Document(id=h.id, page_content=h.text or "", metadata=h.metadata or {}), float(h.score)) for h in hits
        ]

    def similarity_search(
        self, query: str, k: int = 4, filter: Optional[dict] = None, **kwargs: Any
    ) -> List[Document]:
        return [d for d, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        if self.engine.similarity == "cosine":
            # Cosine similarity in [-1, 1] to a relevance in [0, 1].
            return lambda score: (score + 1.0) / 2.0
        raise NotImplementedError(
            "relevance scores in [0, 1] need a bounded similarity; this model's is a raw dot product: "
            "use similarity_search_with_score"
        )

    @classmethod
    def from_texts(
        cls,
        texts: List[str],
        embedding: Optional[Embeddings] = None,
        metadatas: Optional[List[dict]] = None,
        *,
        ids: Optional[List[str]] = None,
        path: Optional[str] = None,
        model: Optional[str] = None,
        profile: Optional[str] = None,
        **kwargs: Any,
    ) -> "BaristaVectorStore":
        """A new index at ``path`` for ``model`` holding ``texts`` (``embedding`` is ignored:
        Barista embeds with the index's own model)."""
        if path is None or model is None:
            raise ValueError("BaristaVectorStore.from_texts needs path= (the new index) and model= (folder or id)")
        store = cls(Engine.create(path, model), profile=profile)
        store.add_texts(texts, metadatas, ids=ids)
        return store
