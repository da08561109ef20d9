"""Sharded serving on Ray Serve: one router, a search deployment and a writer per shard.

::

    client ──HTTP──▶ router (ingress)        encodes the query once, every rung in one pass;
                       │                       sends the rung vectors to every shard at once;
                       │                       merges the shards' top k by final-rung score
                       ├──▶ shard-i            `replicas` read-only replicas of shard i's index,
                       │                       each reloading the writer's commits before a search
                       └──▶ shard-i-writer     one replica: shard i's index writer

The router answers the same routes and JSON as ``barista serve``: ``POST /search``,
``POST /documents``, ``GET`` / ``DELETE /documents/{id}``, ``GET /stats``, ``/health``, ``/ready``;
errors are ``{"error": {"code", "message"}}``. A write is embedded by the router (which checks
the batch as an index would: a bad batch is refused before any shard writes) and sent to the
shards that own its documents; the answer comes when each of them has it durable.

A shard call that fails because its replica died or is unreachable is retried (``retries``
times, backing off from 50 ms) on the shard's other replicas, or on the one Serve starts in its
place; when a shard still cannot answer, the request fails with 503 ``shard_unavailable`` —
never an answer merged from fewer shards than the collection has.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .. import Encoder, Engine
from .._barista import InvalidRequestError
from .indexing import absolute_model, open_writer, require_ray
from .layout import ShardLayout

logger = logging.getLogger("ray.serve")

MAX_BATCH = 1000
"""Documents in one ``POST /documents`` (``barista serve``'s default ``max_batch``)."""

MAX_K = 1000
"""The largest ``k`` (``barista serve``'s default ``max_k``)."""

MAX_QUERY_BYTES = 16 << 10
"""The longest query in UTF-8 bytes (``barista serve``'s default)."""


REFUSED = "__barista_refused__"
"""The key of a shard's answer that carries a refusal (InvalidRequestError's message): returned
as a value, since an exception's type does not survive Serve's wrappers."""


def _refusals_as_values(method):
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except InvalidRequestError as e:
            return {REFUSED: str(e)}

    wrapper.__name__, wrapper.__doc__ = method.__name__, method.__doc__
    return wrapper


class ShardSearcher:
    """A read-only replica of one shard's index (a Serve deployment; any number of replicas)."""

    def __init__(self, path: str, model: str, threads: int) -> None:
        self.engine = Engine.open(path, model=model, threads=threads)

    @_refusals_as_values
    def search(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """``POST /search``'s answer for this shard (the request as its body, with ``vectors``),
        after picking up the writer's latest commits."""
        self.engine.reload()
        return self.engine._native.search_response(request)

    @_refusals_as_values
    def get(self, id: str) -> Optional[Dict[str, Any]]:
        """The stored document ``id``, or None."""
        self.engine.reload()
        return self.engine.get(id)

    def stats(self) -> Dict[str, Any]:
        """This shard's ``GET /stats``."""
        self.engine.reload()
        return self.engine.stats()

    def pid(self) -> int:
        """This replica's process id (for operators and the failure tests)."""
        return os.getpid()


class ShardWriter:
    """The one writer of a shard's index (a Serve deployment with exactly one replica)."""

    def __init__(self, path: str, model: str, threads: int) -> None:
        self.engine = open_writer(path, model, threads)

    @_refusals_as_values
    def add_embedded(self, documents: List[Dict[str, Any]], vectors: Dict[Tuple[int, int], np.ndarray]) -> Dict[str, int]:
        """:meth:`barista.Engine.add_embedded` on this shard: durable when it returns."""
        return self.engine.add_embedded(documents, vectors)

    @_refusals_as_values
    def delete(self, ids: List[str]) -> Dict[str, int]:
        """Deletes ``ids`` from this shard; the write report."""
        return self.engine.delete(ids)

    def live(self) -> int:
        """Live documents in this shard."""
        return len(self.engine)


class HttpError(Exception):
    """An answer other than 200: status, code and a message for humans."""

    def __init__(self, status: int, code: str, message: str, retry_after: Optional[int] = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


class Router:
    """The ingress: parses requests, encodes queries and documents, fans out, merges."""

    def __init__(
        self,
        root: str,
        model: str,
        searchers: list,
        writers: list,
        threads: int,
        retries: int = 4,
        shard_timeout_s: float = 30.0,
    ) -> None:
        self.layout = ShardLayout.open(root)
        self.encoder = Encoder(model, threads=threads)
        self.searchers = searchers
        self.writers = writers
        self.retries = retries
        self.timeout = shard_timeout_s
        self.rungs = self.encoder.rungs
        self.retried = 0
        """Shard calls retried since this router replica started (shown in ``GET /stats``)."""

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import JSONResponse  # noqa: PLC0415 (installed with Ray Serve)

        try:
            answer = await self._route(request)
            return JSONResponse(answer)
        except HttpError as e:
            headers = {"Retry-After": str(e.retry_after)} if e.retry_after else None
            return JSONResponse({"error": {"code": e.code, "message": e.message}}, status_code=e.status, headers=headers)
        except Exception as e:  # noqa: BLE001 (a bug or an unforeseen failure: still answered in JSON)
            logger.exception("the router failed on %s %s", request.method, request.url.path)
            message = f"the router failed ({type(e).__name__}: {e}); see the router replica's log"
            return JSONResponse({"error": {"code": "internal", "message": message}}, status_code=500)

    async def _route(self, request: Any) -> Any:
        path, method = request.url.path.rstrip("/") or "/", request.method
        if path == "/search":
            _allow(method, "POST")
            return await self.search(await _json(request))
        if path == "/documents":
            _allow(method, "POST")
            return await self.upsert(await _json(request))
        if path.startswith("/documents/"):
            id = path[len("/documents/") :]  # the server has percent-decoded the path once
            if method == "GET":
                return await self.get(id)
            _allow(method, "DELETE", also="GET")
            return await self.delete(id)
        if path == "/stats":
            _allow(method, "GET")
            return await self.stats()
        if path == "/health":
            _allow(method, "GET")
            return {"status": "ok"}
        if path == "/ready":
            _allow(method, "GET")
            stats = await self.stats()
            return {"status": "ready", "documents": stats["documents"]}
        raise HttpError(
            404,
            "not_found",
            f"no route {method} {path}: the sharded router answers POST /search, POST /documents, "
            "GET and DELETE /documents/{id}, GET /stats, /health and /ready",
        )

    async def search(self, body: Any) -> Dict[str, Any]:
        """``POST /search``: encode once, ask every shard, merge their top ``k`` by score."""
        start = time.perf_counter()
        if not isinstance(body, dict):
            raise HttpError(400, "invalid_request", "the body must be a JSON object shaped as POST /search's")
        k = body.get("k", 10)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise HttpError(400, "invalid_request", f"k must be between 1 and {MAX_K}, not {k!r}")
        query = body.get("query")
        if isinstance(query, str) and len(query.encode("utf-8")) > MAX_QUERY_BYTES:
            raise HttpError(
                400,
                "invalid_request",
                f"the query is {len(query.encode('utf-8'))} bytes; the limit is {MAX_QUERY_BYTES} "
                "(only the first tokens are encoded anyway)",
            )
        request = dict(body)
        if request.get("adaptive") is True:
            raise HttpError(
                400,
                "invalid_request",
                "adaptive stopping is not offered by the sharded router: shards would stop at different "
                "rungs, whose scores do not compare; leave `adaptive` out (the plan runs to its last stage)",
            )
        # Every shard runs the plan to its last stage, so that every hit is scored at one rung.
        request["adaptive"] = False
        encode_ms = 0.0
        query = request.pop("query", None)
        if query is not None:
            if "vectors" in request:
                raise HttpError(400, "invalid_request", "give either `query` or `vectors`, not both")
            if not isinstance(query, str) or not query.strip():
                raise HttpError(400, "invalid_request", "the query is empty" if isinstance(query, str) else "`query` must be a string")
            t = time.perf_counter()
            vectors = await asyncio.to_thread(self.encoder.embed, query, "query", self.rungs)
            encode_ms = (time.perf_counter() - t) * 1e3
            request["vectors"] = [
                {"layer": layer, "dim": dim, "vector": v[0].tolist()} for (layer, dim), v in vectors.items()
            ]
        elif "vectors" not in request:
            raise HttpError(400, "invalid_request", "a search needs `query` (text) or `vectors`")
        answers = await asyncio.gather(
            *(self._call(s, self.searchers[s], "search", request) for s in range(self.layout.shards))
        )
        t = time.perf_counter()
        hits = [hit for answer in answers for hit in answer["hits"]]
        rungs = {tuple(hit["rung"]) for hit in hits}
        if len(rungs) > 1:
            raise HttpError(500, "internal", f"shards scored their hits at different rungs {sorted(rungs)}: a bug")
        # Each shard's scores are the final rung's similarity on the same query vectors, so they
        # compare across shards; ties go to the smaller id, so the order is the same every time.
        hits.sort(key=lambda h: (-h["score"], h["id"]))
        slowest = max(range(len(answers)), key=lambda s: answers[s]["timings"]["total_ms"])
        timings = {key: max(a["timings"].get(key, 0.0) for a in answers) for key in answers[slowest]["timings"]}
        timings["encode_ms"] = encode_ms + timings.get("encode_ms", 0.0)
        timings["merge_ms"] = (time.perf_counter() - t) * 1e3
        timings["total_ms"] = (time.perf_counter() - start) * 1e3
        return {
            "hits": hits[:k],
            "stages": answers[slowest]["stages"],
            "stopped_early": any(a["stopped_early"] for a in answers),
            "timings": timings,
            "shards": [
                {"shard": s, "hits": len(a["hits"]), "stopped_early": a["stopped_early"], "timings": a["timings"]}
                for s, a in enumerate(answers)
            ],
        }

    async def upsert(self, body: Any) -> Dict[str, Any]:
        """``POST /documents``: check and embed the batch here, write each part to its shard."""
        if not isinstance(body, dict) or set(body) != {"documents"} or not isinstance(body["documents"], list):
            raise HttpError(400, "invalid_request", 'the body must be {"documents": [{"id", "text", "title"?, "metadata"?}, ...]}')
        docs = body["documents"]
        if not docs:
            raise HttpError(400, "invalid_request", "`documents` is empty")
        if len(docs) > MAX_BATCH:
            raise HttpError(413, "batch_too_large", f"{len(docs)} documents in one request; the limit is {MAX_BATCH}: split the batch")
        try:
            # The index's rules (ids, metadata, no id twice) are checked while embedding: a bad
            # batch is refused here, before any shard has written anything.
            vectors = await asyncio.to_thread(self.encoder.embed_documents, docs)
        except InvalidRequestError as e:
            raise HttpError(400, "invalid_request", str(e)) from None
        owners: Dict[int, List[int]] = {}
        for i, doc in enumerate(docs):
            owners.setdefault(self.layout.shard_of(doc["id"]), []).append(i)
        shards = sorted(owners)
        reports = await asyncio.gather(
            *(
                self._call(
                    s,
                    self.writers[s],
                    "add_embedded",
                    [docs[i] for i in owners[s]],
                    {rung: v[owners[s]] for rung, v in vectors.items()},
                )
                for s in shards
            ),
            return_exceptions=True,
        )
        failed = [(s, r) for s, r in zip(shards, reports) if isinstance(r, BaseException)]
        if failed:
            written = [s for s, r in zip(shards, reports) if not isinstance(r, BaseException)]
            first = failed[0][1]
            status, code = (first.status, first.code) if isinstance(first, HttpError) else (500, "internal")
            raise HttpError(
                status,
                code,
                f"shards {written} wrote their documents; {[s for s, _ in failed]} did not: "
                f"{first}. Writes replace by id: send the same request again",
                retry_after=1 if status == 503 else None,
            )
        live = await self._live()
        return {
            "added": sum(r["added"] for r in reports),
            "deleted": sum(r["deleted"] for r in reports),
            "live": live,
            "sequences": {str(s): r["sequence"] for s, r in zip(shards, reports)},
        }

    async def get(self, id: str) -> Dict[str, Any]:
        """``GET /documents/{id}`` from the owning shard (404 if absent)."""
        s = self.layout.shard_of(id)
        doc = await self._call(s, self.searchers[s], "get", id)
        if doc is None:
            raise HttpError(404, "not_found", f"no document with id {id!r}")
        return doc

    async def delete(self, id: str) -> Dict[str, Any]:
        """``DELETE /documents/{id}`` on the owning shard (404 if absent)."""
        s = self.layout.shard_of(id)
        report = await self._call(s, self.writers[s], "delete", [id])
        if report["deleted"] == 0:
            raise HttpError(404, "not_found", f"no document with id {id!r}")
        return {"id": id, "live": await self._live()}

    async def stats(self) -> Dict[str, Any]:
        """``GET /stats``: the sum of documents, each shard's stats, the router's retries."""
        shards = await asyncio.gather(*(self._call(s, self.searchers[s], "stats") for s in range(self.layout.shards)))
        return {
            "documents": sum(s["documents"] for s in shards),
            "router": {"shard_calls_retried": self.retried},
            "shards": [{"shard": i, "path": str(self.layout.shard_dir(i)), **s} for i, s in enumerate(shards)],
        }

    async def _live(self) -> int:
        counts = await asyncio.gather(*(self._call(s, self.writers[s], "live") for s in range(self.layout.shards)))
        return int(sum(counts))

    async def _call(self, shard: int, handle: Any, method: str, *args: Any) -> Any:
        """``handle.method(*args)`` on a replica of ``shard``, retried when the replica died or
        cannot be reached; refusals of the request itself are not retried."""
        ray = require_ray()
        from ray.serve import exceptions as serve_errors  # noqa: PLC0415

        # The replica died, is restarting or cannot take the request: another one (or the one
        # Serve starts in its place) can.
        lost = (
            ray.exceptions.RayActorError,
            serve_errors.ReplicaUnavailableError,
            serve_errors.DeploymentUnavailableError,
            serve_errors.BackPressureError,
            asyncio.TimeoutError,
        )
        delay = 0.05
        for attempt in range(self.retries + 1):
            try:
                answer = await asyncio.wait_for(getattr(handle, method).remote(*args), timeout=self.timeout)
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", None)
                if not isinstance(cause, lost):
                    raise HttpError(500, "internal", f"shard {shard} failed: {cause or e}") from None
                failure: BaseException = cause
            except lost as e:
                failure = e
            else:
                if isinstance(answer, dict) and REFUSED in answer:
                    raise HttpError(400, "invalid_request", answer[REFUSED])
                return answer
            if attempt == self.retries:
                raise HttpError(
                    503,
                    "shard_unavailable",
                    f"shard {shard} did not answer after {self.retries + 1} tries ({type(failure).__name__}); "
                    "no partial answer is given: retry later",
                    retry_after=1,
                )
            self.retried += 1
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")


def _allow(method: str, allowed: str, also: Optional[str] = None) -> None:
    if method != allowed:
        methods = allowed if also is None else f"{also} or {allowed}"
        raise HttpError(405, "method_not_allowed", f"this route answers {methods}, not {method}")


async def _json(request: Any) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError as e:
        raise HttpError(400, "invalid_json", f"the body is not JSON: {e}") from None


def build(
    root: str,
    *,
    replicas: int = 1,
    threads: int = 1,
    searcher_cpus: float = 1.0,
    writer_cpus: float = 0.5,
    router_cpus: float = 1.0,
    router_replicas: int = 1,
    retries: int = 4,
) -> Any:
    """The Serve application for the sharded collection at ``root`` (see
    :mod:`barista.distributed.layout`): ``replicas`` search replicas per shard with ``threads``
    search threads and ``searcher_cpus`` Ray CPUs each, one writer per shard, and
    ``router_replicas`` routers. Run it with ``serve.run(build(root), route_prefix="/")``."""
    require_ray()
    from ray import serve  # noqa: PLC0415

    root = os.path.abspath(root)
    layout = ShardLayout.open(root)
    model = absolute_model(layout.model)
    searchers, writers = [], []
    for s in range(layout.shards):
        path = str(layout.shard_dir(s))
        if not os.path.isdir(path):
            raise InvalidRequestError(f"shard {s} is missing: {path} (index the collection first)")
        searchers.append(
            serve.deployment(ShardSearcher)
            .options(name=f"shard-{s}", num_replicas=replicas, ray_actor_options={"num_cpus": searcher_cpus})
            .bind(path, model, threads)
        )
        writers.append(
            serve.deployment(ShardWriter)
            .options(name=f"shard-{s}-writer", num_replicas=1, ray_actor_options={"num_cpus": writer_cpus})
            .bind(path, model, 1)
        )
    router = serve.deployment(Router).options(
        name="router", num_replicas=router_replicas, ray_actor_options={"num_cpus": router_cpus}
    )
    return router.bind(root, model, searchers, writers, threads, retries)


def app_builder(args: Dict[str, Any]) -> Any:
    """For ``serve run`` and Serve config files (``import_path:
    barista.distributed.serving:app_builder``, ``args: {root: ..., replicas: 2, ...}``): the
    arguments of :func:`build`."""
    args = dict(args)
    if "root" not in args:
        raise InvalidRequestError("the Serve application needs args.root: the sharded collection's folder")
    return build(args.pop("root"), **args)


__all__ = ["build", "app_builder", "ShardSearcher", "ShardWriter", "Router"]
