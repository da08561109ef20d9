"""``python -m barista.distributed index|serve``: the distributed pipeline and the sharded server
from the command line, on the Ray cluster at ``--address`` (or ``RAY_ADDRESS``; a local one
when neither is given)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import List, Optional

from .._barista import BaristaError, InvalidRequestError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m barista.distributed", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    idx = sub.add_parser("index", help="encode JSONL/Parquet on Ray workers into N shard indexes (resumable)")
    idx.add_argument("--input", action="append", required=True, help="a .jsonl or .parquet file or folder (repeatable)")
    idx.add_argument("--out", required=True, help="the collection's root folder on shared storage")
    idx.add_argument("--model", required=True, help="model folder (the same path on every node) or Hugging Face id")
    idx.add_argument("--shards", type=int, required=True, help="number of shards (fixed for the collection)")
    idx.add_argument("--workers", type=int, default=1, help="encoder actors at once (default 1)")
    idx.add_argument("--threads-per-worker", type=int, default=1, help="CPUs and encoder threads per worker")
    idx.add_argument("--batch-size", type=int, default=64, help="documents per encoder call (default 64)")
    idx.add_argument("--format", choices=["jsonl", "parquet"], help="input format (default: from the file names; required for a folder)")
    idx.add_argument("--store", default="f16", help="element type of the largest rung (f32, f16, i8)")
    idx.add_argument("--store-coarse", default="i8", help="element type of the smaller rungs")
    idx.add_argument("--address", help="Ray cluster address; `local` starts a cluster of this process's own (default: RAY_ADDRESS, else the latest cluster `ray start` made on this machine, else a local one)")
    idx.add_argument("--json", action="store_true", help="print the report as JSON")
    srv = sub.add_parser("serve", help="serve a sharded collection with Ray Serve behind POST /search")
    srv.add_argument("--root", required=True, help="the collection's root folder")
    srv.add_argument("--replicas", type=int, default=1, help="search replicas per shard (default 1)")
    srv.add_argument("--threads", type=int, default=1, help="search threads per replica (default 1)")
    srv.add_argument("--searcher-cpus", type=float, default=1.0, help="Ray CPUs per search replica")
    srv.add_argument("--writer-cpus", type=float, default=0.5, help="Ray CPUs per shard writer")
    srv.add_argument("--router-cpus", type=float, default=1.0, help="Ray CPUs per router replica")
    srv.add_argument("--router-replicas", type=int, default=1, help="router replicas (default 1)")
    srv.add_argument("--host", default="127.0.0.1", help="HTTP host (default 127.0.0.1; 0.0.0.0 for every interface)")
    srv.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    srv.add_argument("--address", help="Ray cluster address; `local` starts a cluster of this process's own (default: RAY_ADDRESS, else the latest cluster `ray start` made on this machine, else a local one)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        import ray  # noqa: PLC0415
    except ImportError:
        print("error: barista.distributed needs Ray: pip install 'barista-search[ray]'", file=sys.stderr)
        return 2
    try:
        if args.command == "index":
            from .indexing import index  # noqa: PLC0415

            ray.init(address=args.address, log_to_driver=False)
            report = index(
                args.input,
                args.out,
                model=args.model,
                shards=args.shards,
                workers=args.workers,
                threads_per_worker=args.threads_per_worker,
                batch_size=args.batch_size,
                input_format=args.format,
                store=args.store,
                store_coarse=args.store_coarse,
                progress=not args.json,
            )
            if args.json:
                print(json.dumps(report.to_json(), indent=2))
            else:
                print(
                    f"indexed {report.added} documents into {len(report.shards)} shards under {report.root} in "
                    f"{report.seconds:.1f} s ({report.documents_per_second:.1f} documents/s); "
                    f"{report.skipped} already there, {report.repeated} repeated ids"
                )
            return 0
        from ray import serve  # noqa: PLC0415

        from .serving import build  # noqa: PLC0415

        app = build(
            args.root,
            replicas=args.replicas,
            threads=args.threads,
            searcher_cpus=args.searcher_cpus,
            writer_cpus=args.writer_cpus,
            router_cpus=args.router_cpus,
            router_replicas=args.router_replicas,
        )
        ray.init(address=args.address)
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(app, name="barista", route_prefix="/")
        print(f"serving {args.root} on http://{args.host}:{args.port} (Ctrl-C stops)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            serve.shutdown()
        return 0
    except (InvalidRequestError, BaristaError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
