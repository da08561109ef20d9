#!/usr/bin/env python3
"""The Python package's costs, in one run on one machine (BENCHMARKS.md, "From Python").

1. Search overhead: for each query, the wall time of ``barista.Engine.search`` in Python minus
   the engine's own ``timings.total_ms`` for that very call (request dict to serde, GIL
   release, hits to Python objects); medians and p99 over every query, repeated.
2. Passage embedding throughput, the same texts three ways: ``barista.Encoder.embed`` (every
   rung, one call per batch of 1,024 as ``barista index`` batches them), the ``barista embed``
   CLI reading them on standard input (its model load, timed with one text, subtracted), and
   onnxruntime on the same model's ONNX export, fed the token ids Barista produces, sorted by
   length and batched by 32 with an attention mask, as ``ort_encoder.py`` does.

Prints one JSON object. Needs ``barista`` (pip install ./python), numpy and onnxruntime
(bench/peers/requirements.txt).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import barista


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def search_overhead(index, queries, repeat, profile):
    engine = barista.Engine.open(index)
    native = engine._native
    for q in queries[:20]:  # warm the maps and the encoder's workspaces
        engine.search(q, k=10, profile=profile)
    wall, inside, overhead = [], [], []
    for _ in range(repeat):
        for q in queries:
            start = time.perf_counter()
            request = {"query": q, "k": 10, "include_text": True, "include_metadata": True, "profile": profile}
            hits, total_ms = native.search(request)
            elapsed = (time.perf_counter() - start) * 1e3
            assert hits
            wall.append(elapsed)
            inside.append(total_ms)
            overhead.append((elapsed - total_ms) * 1e3)
    return {
        "profile": profile,
        "queries": len(queries),
        "repeat": repeat,
        "python_search_p50_ms": statistics.median(wall),
        "rust_search_p50_ms": statistics.median(inside),
        "overhead_p50_us": statistics.median(overhead),
        "overhead_p99_us": percentile(overhead, 0.99),
    }


def embed_python(model, texts, threads):
    encoder = barista.Encoder(model, threads=threads)
    encoder.embed(texts[:64])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(texts), 1024):
        encoder.embed(texts[i : i + 1024])
    return len(texts) / (time.perf_counter() - start), encoder


def embed_cli(barista_bin, model, texts, threads):
    def run(lines):
        args = [barista_bin, "embed", "--model", model, "--passage"]
        if threads:
            args += ["--threads", str(threads)]
        start = time.perf_counter()
        subprocess.run(args, input="\n".join(lines) + "\n", text=True, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start

    load = min(run(texts[:1]) for _ in range(3))
    total = run(texts)
    return len(texts) / (total - load), load


def embed_ort(onnx, token_ids, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
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

    ordered = sorted(token_ids, key=len)
    session.run(None, feed(ordered[:32]))  # warm-up
    start = time.perf_counter()
    for i in range(0, len(ordered), 32):
        session.run(None, feed(ordered[i : i + 32]))
    return len(token_ids) / (time.perf_counter() - start), ort.__version__


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", required=True, help="an index of SciFact (barista index … --format beir)")
    p.add_argument("--queries", required=True, help="BEIR queries.jsonl")
    p.add_argument("--corpus", required=True, help="BEIR corpus.jsonl (passages to embed)")
    p.add_argument("--model", required=True)
    p.add_argument("--onnx", required=True)
    p.add_argument("--barista", required=True, help="the barista binary (release)")
    p.add_argument("--passages", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="0: every core")
    args = p.parse_args()

    with open(args.queries, encoding="utf-8") as f:
        queries = [json.loads(line)["text"] for line in f][:300]
    with open(args.corpus, encoding="utf-8") as f:
        texts = []
        for line in f:
            d = json.loads(line)
            # One line per passage for the CLI: the title and the text, newlines as spaces.
            texts.append(" ".join(f"{d['title']} {d['text']}".split()))
            if len(texts) == args.passages:
                break
    threads = args.threads or None
    result = {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    result["search"] = [search_overhead(args.index, queries, args.repeat, p) for p in ("balanced", "exact")]
    python_rate, encoder = embed_python(args.model, texts, threads)
    cli_rate, cli_load = embed_cli(args.barista, args.model, texts, args.threads)
    ort_rate, ort_version = embed_ort(args.onnx, encoder.tokenize(texts), args.threads)
    result["embed"] = {
        "passages": len(texts),
        "python_docs_per_s": python_rate,
        "cli_docs_per_s": cli_rate,
        "cli_model_load_s": cli_load,
        "onnxruntime_docs_per_s": ort_rate,
        "onnxruntime": ort_version,
        "python_over_cli": python_rate / cli_rate,
        "python_over_onnxruntime": python_rate / ort_rate,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
