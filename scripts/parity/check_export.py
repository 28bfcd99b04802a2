#!/usr/bin/env python3
"""Checks that a checkpoint written by `tinyrank export` loads in transformers and scores like the
checkpoint it came from.

    tinyrank export --model ../shared/models/teacher-minilm-l6 --out exported [--dtype f16]
    python scripts/parity/check_export.py ../shared/models/teacher-minilm-l6 exported
"""
import os
import pathlib
import sys

import torch
from transformers import AutoTokenizer, BertForSequenceClassification

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("TINYRANK_SHARED", REPO.parent / "shared"))


def main(original, exported):
    data = SHARED / "data" / "trec-dl-2019"
    queries = dict(line.rstrip("\n").split("\t", 1) for line in open(data / "queries.tsv", encoding="utf-8"))
    passages = dict(line.rstrip("\n").split("\t", 1) for line in open(data / "collection.tsv", encoding="utf-8"))
    pairs = []
    for line in list(open(data / "bm25.run"))[:16]:
        qid, _, pid, *_ = line.split()
        pairs.append((queries[qid], passages[pid]))
    tok = AutoTokenizer.from_pretrained(exported)
    enc = tok([q for q, _ in pairs], [p for _, p in pairs], truncation="longest_first", max_length=256,
              padding=True, return_tensors="pt")
    logits = []
    for path in (original, exported):
        model = BertForSequenceClassification.from_pretrained(path, torch_dtype=torch.float32).eval()
        with torch.no_grad():
            logits.append(model(**enc).logits)
    diff = (logits[0] - logits[1]).abs().max().item()
    print(f"transformers loaded {exported}: max |logit difference| to {original} = {diff:.2e} over {len(pairs)} pairs")
    return diff


if __name__ == "__main__":
    diff = main(sys.argv[1], sys.argv[2])
    sys.exit(0 if diff < float(os.environ.get("TOLERANCE", "1e-2")) else 1)
