"""LlamaIndex integration: a retriever over a Barista index.

Needs ``llama-index-core`` (``pip install "barista-search[llama-index]"``).

>>> from barista.llama_index import BaristaRetriever
>>> retriever = BaristaRetriever(barista.Engine.open("scifact.idx"), similarity_top_k=5)
>>> retriever.retrieve("vitamin D and depression")          # [NodeWithScore, ...]
>>> RetrieverQueryEngine.from_args(retriever, llm=...)       # a RAG pipeline

Barista encodes the query itself, progressively (a small rung finds the shortlist, deeper
layers rescore it), so no LlamaIndex embedding model is involved.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from llama_index.core.callbacks import CallbackManager
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from . import Engine

__all__ = ["BaristaRetriever"]


class BaristaRetriever(BaseRetriever):
    """Retrieves the ``similarity_top_k`` best documents of a :class:`barista.Engine` as
    ``TextNode``s (id, text, metadata; the title, when stored, in ``metadata["title"]``), scored
    by the final rung's similarity. ``profile`` and ``filter`` are as in
    :meth:`barista.Engine.search`.
    """

    def __init__(
        self,
        engine: Engine,
        similarity_top_k: int = 10,
        *,
        profile: Optional[str] = None,
        filter: Optional[Dict[str, Any]] = None,
        callback_manager: Optional[CallbackManager] = None,
    ) -> None:
        super().__init__(callback_manager=callback_manager)
        self.engine = engine
        self.similarity_top_k = similarity_top_k
        self.profile = profile
        self.filter = filter

    def _retrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        hits = self.engine.search(
            query_bundle.query_str, k=self.similarity_top_k, profile=self.profile, filter=self.filter
        )
        nodes = []
        for hit in hits:
            metadata = dict(hit.metadata or {})
            if hit.title:
                metadata.setdefault("title", hit.title)
            nodes.append(NodeWithScore(node=TextNode(id_=hit.id, text=hit.text or "", metadata=metadata), score=hit.score))
        return nodes
