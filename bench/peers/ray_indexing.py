"""Distributed indexing throughput: barista.distributed.index with 1 and 2 Ray workers against
the same documents written in one process by barista.Engine.add (the anchor), in one run.

A local cluster of two `ray start` processes (a head and a worker node, one CPU each) stands in
for two machines; every configuration indexes the same SciFact abstracts into a fresh folder,
`--repeats` times, and the median wall time is reported (documents/s = documents / median).

    python bench/peers/ray_indexing.py --model ../shared/models/minilm-l6-2d \
        --corpus ../shared/datasets/scifact/corpus.jsonl --documents 1000 \
        --out bench/results/ray-indexing.json
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(temp_dir):
    """A head and a worker node (one CPU each), each `ray start` in its own process group;
    returns the address and the groups."""
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    port = free_port()
    common = ["--disable-usage-stats", f"--temp-dir={temp_dir}", "--node-ip-address=127.0.0.1", "--num-cpus=1"]

    def start(extra):
        ports = [f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}"]
        node = subprocess.Popen([ray_bin, "start"] + common + ports + extra, stdout=subprocess.DEVNULL, start_new_session=True)
        if node.wait(timeout=120) != 0:
            raise SystemExit("ray start failed")
        return node.pid

    head = start(["--head", f"--port={port}", "--include-dashboard=false", f"--ray-client-server-port={free_port()}"])
    address = f"127.0.0.1:{port}"
    return address, [head, start([f"--address={address}"])]


def stop_cluster(groups):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for group in groups:
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                pass
        time.sleep(5)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--corpus", required=True, help="a BEIR corpus.jsonl")
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a loopback cluster, whatever ~/.ray/auth_token says
    import ray

    import barista
    from barista import distributed

    work = tempfile.mkdtemp(prefix="rbench-", dir="/tmp")
    source = os.path.join(work, "corpus.jsonl")
    with open(args.corpus, encoding="utf-8") as f, open(source, "w", encoding="utf-8") as out:
        for i, line in enumerate(f):
            if i == args.documents:
                break
            out.write(line)
    docs = [distributed.documents.from_json_line(line, source) for line in open(source, encoding="utf-8")]
    address, nodes = start_cluster(os.path.join(work, "ray"))
    ray.init(address=address, log_to_driver=False)
    while sum(1 for n in ray.nodes() if n["Alive"]) < 2:
        time.sleep(0.5)

    def anchor(threads):
        folder = os.path.join(work, f"single-{threads}-{time.monotonic_ns()}")
        engine = barista.Engine.create(folder, args.model, threads=threads)
        t = time.perf_counter()
        for i in range(0, len(docs), args.batch_size):
            engine.add(docs[i : i + args.batch_size])
        engine.flush()
        seconds = time.perf_counter() - t
        engine.close()
        shutil.rmtree(folder)
        return seconds

    def sharded(workers, threads):
        root = os.path.join(work, f"shards-{workers}-{threads}-{time.monotonic_ns()}")
        report = distributed.index(
            source, root, model=args.model, shards=2, workers=workers, threads_per_worker=threads,
            batch_size=args.batch_size, progress=False,
        )
        assert report.added == len(docs), report
        shutil.rmtree(root)
        return report.seconds

    configs = [
        ("Engine.add, one process, 1 thread (anchor)", lambda: anchor(1)),
        ("Engine.add, one process, 2 threads (anchor)", lambda: anchor(2)),
        ("distributed.index, 1 worker x 1 thread", lambda: sharded(1, 1)),
        ("distributed.index, 2 workers x 1 thread (two nodes)", lambda: sharded(2, 1)),
    ]
    rows = []
    try:
        for name, run in configs:
            times = [run() for _ in range(args.repeats)]
            median = statistics.median(times)
            rows.append({"config": name, "seconds": [round(t, 3) for t in times], "median_s": round(median, 3),
                         "documents_per_s": round(len(docs) / median, 1)})
            print(f"{name}: median {median:.2f} s, {len(docs) / median:.1f} documents/s", flush=True)
    finally:
        ray.shutdown()
        stop_cluster(nodes)
    by = {r["config"]: r for r in rows}
    one = by["distributed.index, 1 worker x 1 thread"]["documents_per_s"]
    two = by["distributed.index, 2 workers x 1 thread (two nodes)"]["documents_per_s"]
    result = {
        "benchmark": "ray-indexing",
        "documents": len(docs),
        "batch_size": args.batch_size,
        "shards": 2,
        "repeats": args.repeats,
        "model": os.path.basename(os.path.abspath(args.model)),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "ray": ray.__version__},
        "rows": rows,
        "speedup_2_workers_over_1": round(two / one, 3),
        "ray_1_worker_over_anchor_1_thread": round(
            one / by["Engine.add, one process, 1 thread (anchor)"]["documents_per_s"], 3
        ),
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
