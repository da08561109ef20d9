"""ANN peers for `barista-bench peers`: FAISS (IndexFlatIP, IndexHNSWFlat, IndexHNSWSQ with
8-bit scalar quantisation: the like-for-like peer of Barista's i8 rows) and hnswlib on the
vectors Barista's HNSW graph searches (dequantised), one search thread, with an ef sweep.

Reads base/query vectors (.fvecs) and the true top-k (.ivecs: f64 inner products on the
dequantised vectors, computed independently of every engine's scorer), builds each index with
the same graph parameters as Barista (M links, efConstruction) on every core, and prints one
JSON object: per library, build seconds and a sweep of (ef, recall@k, queries/s).
"""

import argparse
import json
import sys
import time

import numpy as np


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    if raw.size == 0:
        sys.exit(f"{path}: empty")
    dim = int(raw[0])
    rows = raw.reshape(-1, dim + 1)
    if not (rows[:, 0] == dim).all():
        sys.exit(f"{path}: rows of differing dimensions; not an .fvecs/.ivecs file")
    return np.ascontiguousarray(rows[:, 1:]).view(dtype)


def recall(found, truth, k):
    hits = 0
    for f, t in zip(found, truth):
        hits += len(set(f[:k].tolist()) & set(t[:k].tolist()))
    return hits / (len(truth) * k)


def timed_search(search, queries, min_seconds):
    """Runs search(queries) until min_seconds passed; returns (result of the first call, qps)."""
    first = None
    done = 0
    start = time.perf_counter()
    while True:
        out = search(queries)
        if first is None:
            first = out
        done += len(queries)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return first, done / elapsed


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--queries", required=True)
    p.add_argument("--truth", required=True)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--m", type=int, default=24)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--efs", default="10,16,24,32,48,64,96,128,192,256,384,512")
    p.add_argument("--min-seconds", type=float, default=0.5)
    args = p.parse_args()

    import faiss
    import hnswlib

    base = read_vecs(args.base, np.float32)
    queries = read_vecs(args.queries, np.float32)
    truth = read_vecs(args.truth, np.int32)
    k = args.k
    efs = [int(e) for e in args.efs.split(",")]
    dim = base.shape[1]
    # Build with every core (as users would), search with one thread. Read the core count once,
    # before anything sets FAISS's thread count to 1.
    cores = max(1, faiss.omp_get_max_threads())
    out = {"n": int(base.shape[0]), "dim": int(dim), "queries": int(queries.shape[0]), "k": k,
           "faiss_version": faiss.__version__, "hnswlib_version": getattr(hnswlib, "__version__", "0.8.0"),
           "build_threads": cores}

    faiss.omp_set_num_threads(cores)
    flat = faiss.IndexFlatIP(dim)
    flat.add(base)
    faiss.omp_set_num_threads(1)
    (_, ids), qps = timed_search(lambda q: flat.search(q, k), queries, args.min_seconds)
    out["faiss_flat"] = {"sweep": [{"ef": None, "recall": recall(ids, truth, k), "qps": qps}]}

    def faiss_hnsw(index):
        index.hnsw.efConstruction = args.ef_construction
        faiss.omp_set_num_threads(cores)
        start = time.perf_counter()
        if not index.is_trained:
            index.train(base)
        index.add(base)
        build = time.perf_counter() - start
        faiss.omp_set_num_threads(1)
        sweep = []
        for ef in efs:
            index.hnsw.efSearch = ef
            (_, ids), qps = timed_search(lambda q: index.search(q, k), queries, args.min_seconds)
            sweep.append({"ef": ef, "recall": recall(ids, truth, k), "qps": qps})
        return {"build_seconds": build, "sweep": sweep}

    out["faiss_hnsw"] = faiss_hnsw(faiss.IndexHNSWFlat(dim, args.m, faiss.METRIC_INNER_PRODUCT))
    out["faiss_hnsw_sq8"] = faiss_hnsw(
        faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, args.m, faiss.METRIC_INNER_PRODUCT)
    )

    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=base.shape[0], M=args.m, ef_construction=args.ef_construction, random_seed=7)
    start = time.perf_counter()
    index.add_items(base, np.arange(base.shape[0]), num_threads=cores)
    build = time.perf_counter() - start
    index.set_num_threads(1)
    sweep = []
    for ef in efs:
        index.set_ef(max(ef, k))
        (ids, _), qps = timed_search(lambda q: index.knn_query(q, k=k), queries, args.min_seconds)
        sweep.append({"ef": ef, "recall": recall(ids, truth, k), "qps": qps})
    out["hnswlib"] = {"build_seconds": build, "sweep": sweep}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
