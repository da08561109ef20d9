#!/usr/bin/env python3
"""The onnxruntime anchor for `barista-bench encoder`.

Reads token ids prepared by the Rust benchmark (so both engines see the same inputs), runs the
ONNX export of the same model with onnxruntime on the CPU, and prints one JSON object:
single-query latency percentiles and documents per second.

Documents are encoded the way a careful onnxruntime user would: sorted by length and run in
batches padded to the longest text of each batch, with an attention mask.

It also reports what it ran with (onnxruntime's intra-op threads: 0 means its default, one per
physical core; the machine's logical cores) and, for the query and the first documents, the
mean-pooled last hidden state, so that the benchmark can check both engines compute the same
thing.
"""
import os
import argparse
import json
import sys
import time

import numpy as np
import onnxruntime as ort


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--onnx", required=True)
    p.add_argument("--inputs", required=True, help="JSON with 'query' (ids) and 'documents' (list of ids)")
    p.add_argument("--query-runs", type=int, default=1000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = onnxruntime's default)")
    p.add_argument("--check", type=int, default=5, help="documents whose pooled output is returned")
    args = p.parse_args()

    with open(args.inputs) as f:
        inputs = json.load(f)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if args.threads:
        so.intra_op_num_threads = args.threads
    session = ort.InferenceSession(args.onnx, so, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}

    def feed(batch):
        longest = max(len(ids) for ids in batch)
        ids = np.zeros((len(batch), longest), dtype=np.int64)
        mask = np.zeros((len(batch), longest), dtype=np.int64)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        f = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in names:
            f["token_type_ids"] = np.zeros_like(ids)
        return f

    def pooled(seq):
        """Mean over tokens of the last hidden state (the model's pooling)."""
        hidden = session.run(None, feed([seq]))[0][0]
        return hidden.mean(axis=0).tolist()

    check = [pooled(inputs["query"])] + [pooled(d) for d in inputs["documents"][: args.check]]

    query = feed([inputs["query"]])
    for _ in range(50):
        session.run(None, query)
    times = []
    for _ in range(args.query_runs):
        t = time.perf_counter()
        session.run(None, query)
        times.append(time.perf_counter() - t)
    times.sort()

    docs = sorted(inputs["documents"], key=len, reverse=True)
    batches = [docs[i : i + args.batch] for i in range(0, len(docs), args.batch)]
    session.run(None, feed(batches[-1]))  # warm-up
    t = time.perf_counter()
    for batch in batches:
        session.run(None, feed(batch))
    elapsed = time.perf_counter() - t

    json.dump(
        {
            "onnxruntime": ort.__version__,
            "query_tokens": len(inputs["query"]),
            "query_p50_ms": percentile(times, 0.50) * 1e3,
            "query_p99_ms": percentile(times, 0.99) * 1e3,
            "documents": len(docs),
            "document_tokens": sum(len(d) for d in docs),
            "documents_seconds": elapsed,
            "documents_per_second": len(docs) / elapsed,
            "batch": args.batch,
            "intra_op_threads": so.intra_op_num_threads,
            "logical_cores": os.cpu_count(),
            "check_vectors": check,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
