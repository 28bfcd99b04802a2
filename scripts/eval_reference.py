#!/usr/bin/env python3
"""Compare `tinyrank eval` with trec_eval (through pytrec_eval) and ir_measures on real runs.

trec_eval orders each query's documents by score, ties by document id descending, ignoring the
rank column; tinyrank does the same. RR@10 is trec_eval's recip_rank over the first 10 documents
in that order (`trec_eval -M 10`). ir_measures applies its @10 cutoff in file order instead, so on
runs with tied scores its RR@10 can differ: the table shows it for information, the check is
against trec_eval.

    pip install ir_measures pytrec_eval-terrier
    python scripts/eval_reference.py [--tinyrank target/release/tinyrank] [extra qrels:run ...]

Prints a Markdown table (kept in docs/eval-parity.md) and exits non-zero if any metric differs
by 0.00005 or more (i.e. disagrees at 4 decimals).
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys

import collections

import ir_measures
import pytrec_eval
from ir_measures import AP, P, R, RR, nDCG

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("TINYRANK_SHARED", REPO.parent / "shared"))
MIN_REL = 2
PAIRS = {  # tinyrank name -> ir_measures measure
    "nDCG@10": nDCG @ 10,
    "RR@10": RR(rel=MIN_REL) @ 10,
    "MAP": AP(rel=MIN_REL),
    "R@100": R(rel=MIN_REL) @ 100,
    "P@10": P(rel=MIN_REL) @ 10,
}


def tinyrank_eval(binary, qrels, run):
    out = subprocess.run([binary, "eval", "--qrels", qrels, "--run", run, "--json", "--min-rel", str(MIN_REL),
                          "--metrics", "ndcg@10,rr@10,map,r@100,p@10"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["means"]


TREC_EVAL = {"nDCG@10": "ndcg_cut_10", "MAP": "map", "R@100": "recall_100", "P@10": "P_10"}


def read_trec(qrels_path, run_path):
    qrels = collections.defaultdict(dict)
    for line in open(qrels_path):
        q, _, d, g = line.split()
        qrels[q][d] = int(g)
    run = collections.defaultdict(dict)
    for line in open(run_path):
        q, _, d, _, s, _ = line.split()
        run[q][d] = float(s)
    return qrels, run


def trec_eval_means(qrels, run):
    """Means over the judged queries, missing ones as 0 (trec_eval -c)."""
    ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "map", "recall.100", "P.10"}, relevance_level=MIN_REL)
    per_query = ev.evaluate(run)
    means = {m: sum(per_query.get(q, {}).get(k, 0.0) for q in qrels) / len(qrels) for m, k in TREC_EVAL.items()}
    top10 = {}
    for q, docs in run.items():  # trec_eval's order: score desc, then docno desc; then -M 10
        ranked = sorted(sorted(docs.items(), key=lambda x: x[0], reverse=True), key=lambda x: -x[1])[:10]
        top10[q] = dict(ranked)
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}, relevance_level=MIN_REL).evaluate(top10)
    means["RR@10"] = sum(rr.get(q, {}).get("recip_rank", 0.0) for q in qrels) / len(qrels)
    return means


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tinyrank", default=str(REPO / "target" / "release" / "tinyrank"))
    parser.add_argument("extra", nargs="*", help="qrels:run pairs to compare too")
    args = parser.parse_args()
    cases = [(f"{y} BM25", SHARED / f"data/{y}/qrels.txt", SHARED / f"data/{y}/bm25.run")
             for y in ("trec-dl-2019", "trec-dl-2020", "trec-dl-2021")]
    for extra in args.extra:
        qrels, run = extra.split(":", 1)
        cases.append((pathlib.Path(run).name, pathlib.Path(qrels), pathlib.Path(run)))

    worst = 0.0
    print(f"| run | metric (grade >= {MIN_REL} for binary) | tinyrank | trec_eval | diff | ir_measures |")
    print("|---|---|---|---|---|---|")
    for name, qrels, run in cases:
        ours = tinyrank_eval(args.tinyrank, str(qrels), str(run))
        ref = trec_eval_means(*read_trec(qrels, run))
        other = ir_measures.calc_aggregate(list(PAIRS.values()), ir_measures.read_trec_qrels(str(qrels)),
                                           ir_measures.read_trec_run(str(run)))
        for metric, measure in PAIRS.items():
            diff = abs(ours[metric] - ref[metric])
            worst = max(worst, diff)
            print(f"| {name} | {metric} | {ours[metric]:.4f} | {ref[metric]:.4f} | {diff:.1e} | {other[measure]:.4f} |")
    print(f"\nlargest difference: {worst:.2e}")
    sys.exit(0 if worst < 5e-5 else 1)


if __name__ == "__main__":
    main()
