"""nDCG@10, MRR@10, Recall@100 and Recall@1000 of a TREC run file, computed by pytrec_eval.

The independent reference for `barista bench`'s metrics (engine/src/metrics.rs): the tests run
`barista bench` on the shared data sets and compare every row's run file with this script's
numbers (to 4 decimals). Conventions: nDCG@10 with graded gains (trec_eval's ndcg_cut_10);
MRR@10 is trec_eval's recip_rank over each query's top 10 (trec_eval's order: score, then
document id, descending); recall counts grades >= --min-grade as relevant (trec_eval -l);
every query of the qrels counts, one missing from the run scores 0 (trec_eval -c).

Needs pytrec_eval: `pip install pytrec-eval-terrier` (a maintained build of pytrec_eval with
wheels; the original `pytrec_eval` package downloads trec_eval's sources while it installs).

Usage: python3 trec_metrics.py --run FILE --qrels FILE [--min-grade N]
Qrels: BEIR TSV (query-id, corpus-id, score; header optional) or TREC (qid 0 docid grade).
Prints one JSON object.
"""

import argparse
import json
import sys

try:
    import pytrec_eval
except ImportError:
    sys.exit("pytrec_eval is not installed: pip install pytrec-eval-terrier")


def read_qrels(path):
    qrels = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if not fields or fields[0] == "query-id":
                continue
            if len(fields) == 3:
                query, doc, grade = fields
            elif len(fields) == 4:
                query, _, doc, grade = fields
            else:
                sys.exit(f"{path}: not a qrels line: {line!r}")
            qrels.setdefault(query, {})[doc] = int(grade)
    return qrels


def read_run(path):
    run = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            query, _, doc, _, score, _ = line.split()
            run.setdefault(query, {})[doc] = float(score)
    return run


def top(run, k):
    """Each query's first k documents in trec_eval's order (score, then id, descending)."""
    return {
        q: dict(sorted(docs.items(), key=lambda d: (d[1], d[0]), reverse=True)[:k])
        for q, docs in run.items()
    }


def mean(qrels, results, measure):
    return sum(results.get(q, {}).get(measure, 0.0) for q in qrels) / len(qrels)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", required=True)
    parser.add_argument("--qrels", required=True)
    parser.add_argument("--min-grade", type=int, default=1)
    args = parser.parse_args()
    qrels = read_qrels(args.qrels)
    run = read_run(args.run)
    graded = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"}).evaluate(run)
    binary = pytrec_eval.RelevanceEvaluator(
        qrels, {"recall_100", "recall_1000"}, relevance_level=args.min_grade
    ).evaluate(run)
    rank = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}, relevance_level=args.min_grade).evaluate(
        top(run, 10)
    )
    print(
        json.dumps(
            {
                "ndcg@10": mean(qrels, graded, "ndcg_cut_10"),
                "mrr@10": mean(qrels, rank, "recip_rank"),
                "recall@100": mean(qrels, binary, "recall_100"),
                "recall@1000": mean(qrels, binary, "recall_1000"),
                "queries": len(qrels),
            }
        )
    )


if __name__ == "__main__":
    main()
