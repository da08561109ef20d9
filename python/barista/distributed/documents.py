"""Input rows (JSONL lines, Parquet rows) as Barista documents, checked once at the edge."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional

from .._barista import InvalidRequestError


def from_row(row: Mapping[str, Any], where: str) -> Dict[str, Any]:
    """A Barista document ``{"id", "text", "title"?, "metadata"?}`` from an input row.

    The id is ``id`` or BEIR's ``_id`` (a string, or a whole number written as one); ``text``
    is required, ``title`` optional; ``metadata`` is an object (or absent / null). Other fields
    are ignored. ``where`` names the input in the error.
    """
    id = row.get("id", row.get("_id"))
    if isinstance(id, bool) or id is None:
        raise InvalidRequestError(f"{where}: a document needs an `id` (or BEIR's `_id`): {_preview(row)}")
    if isinstance(id, int):
        id = str(id)
    if not isinstance(id, str) or not id:
        raise InvalidRequestError(f"{where}: the id must be a non-empty string, not {id!r}")
    text = row.get("text")
    if not isinstance(text, str):
        raise InvalidRequestError(f"{where}: document {id!r} has no `text` string")
    doc: Dict[str, Any] = {"id": id, "text": text}
    title = row.get("title")
    if title is not None:
        if not isinstance(title, str):
            raise InvalidRequestError(f"{where}: the title of document {id!r} is not a string")
        doc["title"] = title
    metadata = row.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise InvalidRequestError(f"{where}: the metadata of document {id!r} is not an object")
        doc["metadata"] = dict(metadata)
    return doc


def from_json_line(line: str, where: str) -> Optional[Dict[str, Any]]:
    """A document from one JSONL line (None for a blank line)."""
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except ValueError as e:
        raise InvalidRequestError(f"{where}: a line is not JSON ({e}): {line[:80]!r}") from None
    if not isinstance(row, dict):
        raise InvalidRequestError(f"{where}: a line is not a JSON object: {line[:80]!r}")
    return from_row(row, where)


def last_wins(docs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The documents with a repeated id reduced to the last one, in first-seen order."""
    by_id: Dict[str, Dict[str, Any]] = {}
    for doc in docs:
        by_id[doc["id"]] = doc
    return list(by_id.values())


def _preview(row: Mapping[str, Any]) -> str:
    text = json.dumps(dict(row), default=str, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."
