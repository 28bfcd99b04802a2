#!/usr/bin/env python3
"""Checks that a student written by `tinyrank distill` loads in transformers
(BertForSequenceClassification) and scores like tinyrank: the scores of a `tinyrank rerank` run
are recomputed in torch for the same (query, passage) pairs.

    tinyrank rerank --model runs/distill/student --queries ../shared/data/trec-dl-2019/queries.tsv \
        --collection ../shared/data/trec-dl-2019/collection.tsv --run ../shared/data/trec-dl-2019/bm25.run \
        --top-k 5 --max-len 128 --output student.run
    python scripts/parity/check_student.py runs/distill/student student.run --max-len 128

Prints the largest score difference; exits 1 when it exceeds 1e-3.
"""
import argparse
import os
import pathlib
import sys

import torch
from transformers import AutoTokenizer, BertForSequenceClassification

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("TINYRANK_SHARED", REPO.parent / "shared"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("student")
    parser.add_argument("run")
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--data", default=str(SHARED / "data" / "trec-dl-2019"))
    args = parser.parse_args()
    data = pathlib.Path(args.data)
    queries = dict(l.rstrip("\n").split("\t", 1) for l in open(data / "queries.tsv", encoding="utf-8"))
    passages = dict(l.rstrip("\n").split("\t", 1) for l in open(data / "collection.tsv", encoding="utf-8"))
    rows = [line.split() for line in open(args.run)]
    pairs = [(queries[r[0]], passages[r[2]]) for r in rows]
    ours = torch.tensor([float(r[4]) for r in rows])

    tok = AutoTokenizer.from_pretrained(args.student)
    model = BertForSequenceClassification.from_pretrained(args.student, torch_dtype=torch.float32).eval()
    scores = []
    with torch.no_grad():
        for i in range(0, len(pairs), 32):
            chunk = pairs[i:i + 32]
            enc = tok([q for q, _ in chunk], [p for _, p in chunk], truncation="longest_first",
                      max_length=args.max_len, padding=True, return_tensors="pt")
            logits = model(**enc).logits
            scores.append(logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0])
    theirs = torch.cat(scores)
    diff = (ours - theirs).abs().max().item()
    print(f"{len(pairs)} pairs: max |tinyrank - transformers| = {diff:.2e}")
    return 0 if diff <= 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
