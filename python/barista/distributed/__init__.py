"""Barista past one machine, on Ray: distributed indexing (Ray Data) and sharded serving (Ray
Serve). Needs Ray: ``pip install 'barista-search[ray]'``.

- :func:`index` reads JSONL or Parquet, encodes on ``workers`` actors and writes ``shards``
  ordinary Barista indexes under one root on shared storage (:mod:`.layout`); re-running resumes.
- :func:`build` is the Serve application: a router that encodes each query once and merges the
  shards' top k by final-rung score, behind the ``POST /search`` contract of ``barista serve``.
- ``python -m barista.distributed index|serve ...`` runs either from the command line.

Ray itself is imported only when one of these runs.
"""

from .indexing import IndexingReport, index
from .layout import LAYOUT_FILE, ShardLayout, shard_of


def build(root, **options):
    """The Ray Serve application for a sharded collection: see :func:`.serving.build`."""
    from .serving import build as _build  # noqa: PLC0415 (imports Serve only when used)

    return _build(root, **options)


__all__ = ["index", "IndexingReport", "build", "ShardLayout", "shard_of", "LAYOUT_FILE"]
