"""A client for ``barista serve``'s REST API, with :meth:`barista.Engine.search`'s signature.

Only the standard library: one persistent HTTP/1.1 connection per client (not shared between
threads: give each thread its own client). Errors answered by the server are raised as
:class:`barista.InvalidRequestError` (4xx: the request was refused, nothing changed) or
:class:`barista.BaristaError` (5xx, or the server cannot be reached), with the server's message.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from ._barista import BaristaError, InvalidRequestError

__all__ = ["Client", "RemoteHit"]


class _DocumentNotFound(InvalidRequestError):
    """The server has no document with that id (its 404 ``not_found``, not a missing route)."""


class RemoteHit:
    """A hit from the server, with the same attributes as :class:`barista.Hit`."""

    __slots__ = ("id", "score", "rung", "title", "text", "metadata")

    def __init__(self, hit: Mapping[str, Any]) -> None:
        self.id: str = hit["id"]
        self.score: float = hit["score"]
        self.rung = tuple(hit["rung"])
        self.title: Optional[str] = hit.get("title")
        self.text: Optional[str] = hit.get("text")
        self.metadata: Optional[Dict[str, Any]] = hit.get("metadata")

    def __repr__(self) -> str:
        return f"RemoteHit(id={self.id!r}, score={self.score})"


class Client:
    """``barista serve`` at ``url`` (``http://host:port``), with an optional API key.

    ``timeout`` is in seconds, per request.
    """

    def __init__(self, url: str, *, api_key: Optional[str] = None, timeout: float = 60.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise InvalidRequestError(f"url must look like http://host:port, not {url!r}")
        self._scheme = parsed.scheme
        self._host = parsed.hostname
        self._port = parsed.port
        self._prefix = parsed.path.rstrip("/")
        self._timeout = timeout
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._connection: Optional[http.client.HTTPConnection] = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            kind = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            self._connection = kind(self._host, self._port, timeout=self._timeout)
        return self._connection

    def _call(self, method: str, path: str, body: Optional[Any] = None) -> Any:
        payload = None if body is None else json.dumps(body).encode("utf-8")
        # One retry on a connection the server closed while idle (keep-alive timeout).
        for attempt in (0, 1):
            connection = self._connect()
            try:
                connection.request(method, self._prefix + path, body=payload, headers=self._headers)
                response = connection.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self.close()
                if attempt == 1:
                    raise BaristaError(f"the server at {self._host}:{self._port} closed the connection: {e}") from e
            except OSError as e:
                self.close()
                raise BaristaError(f"cannot reach the server at {self._host}:{self._port}: {e}") from e
        try:
            answer = json.loads(data) if data else None
        except ValueError:
            answer = None
        if response.status >= 400:
            message = data.decode("utf-8", "replace")
            if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
                message = answer["error"].get("message", message)
            code = answer["error"].get("code") if isinstance(answer, dict) and isinstance(answer.get("error"), dict) else None
            if response.status == 404 and code == "not_found" and path.startswith("/documents/"):
                raise _DocumentNotFound(message)
            error = InvalidRequestError if response.status < 500 else BaristaError
            raise error(f"{method} {path} answered {response.status}: {message}")
        return answer

    def close(self) -> None:
        """Closes the connection (a later call opens a new one)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        profile: Optional[str] = None,
        filter: Optional[Mapping[str, Any]] = None,
        stages: Optional[List[Mapping[str, Any]]] = None,
        adaptive: Optional[bool] = None,
        include_text: bool = True,
        include_metadata: bool = True,
    ) -> List[RemoteHit]:
        """As :meth:`barista.Engine.search`, over ``POST /search``."""
        request: Dict[str, Any] = {
            "query": query,
            "k": k,
            "include_text": include_text,
            "include_metadata": include_metadata,
        }
        if profile is not None:
            request["profile"] = profile
        if filter is not None:
            request["filter"] = dict(filter)
        if stages is not None:
            request["stages"] = list(stages)
        if adaptive is not None:
            request["adaptive"] = adaptive
        return [RemoteHit(h) for h in self._call("POST", "/search", request)["hits"]]

    def add(self, documents: Iterable[Mapping[str, Any]]) -> Dict[str, int]:
        """As :meth:`barista.Engine.add`, over ``POST /documents`` (needs the write key)."""
        return self._call("POST", "/documents", {"documents": list(documents)})

    def get(self, id: str) -> Optional[Dict[str, Any]]:
        """As :meth:`barista.Engine.get`, over ``GET /documents/{id}``."""
        try:
            return self._call("GET", "/documents/" + urllib.parse.quote(id, safe=""))
        except _DocumentNotFound:
            return None

    def delete(self, ids: Union[str, Sequence[str]]) -> Dict[str, int]:
        """As :meth:`barista.Engine.delete` (one request per id): ``{"deleted", "live"}``."""
        deleted, live = 0, None
        for id in [ids] if isinstance(ids, str) else ids:
            try:
                live = self._call("DELETE", "/documents/" + urllib.parse.quote(id, safe=""))["live"]
                deleted += 1
            except _DocumentNotFound:
                pass
        if live is None:
            live = self.stats()["documents"]
        return {"deleted": deleted, "live": live}

    def stats(self) -> Dict[str, Any]:
        """As :meth:`barista.Engine.stats`, over ``GET /stats``."""
        return self._call("GET", "/stats")

