#!/usr/bin/env python3
"""Rerank a TREC run with an ONNX cross-encoder the way a Python user would: the baseline
process of `bench_compare.py --text`.

HF tokenizers (the checkpoint's tokenizer.json, longest-first truncation to --max-len), each
query's candidates sorted by length into batches of --batch padded to their longest pair,
ONNX Runtime on the CPU with --threads intra-op threads. Writes the reranked run and prints one
JSON line: seconds spent tokenising, in the model, and scoring (both, as `tinyrank rerank`'s
scoring time counts them).

    python scripts/ort_rerank.py --onnx model.onnx --tokenizer DIR --queries Q --collection C \\
        --run R --output OUT
"""
import argparse
import json
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def read_tsv(path):
    with open(path, encoding="utf-8") as f:
        return dict(line.rstrip("\n").split("\t", 1) for line in f if line.strip())


def read_run(path, top_k):
    lists = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            qid, _, pid, rank, *_ = line.split()
            lists.setdefault(qid, []).append((int(rank), pid))
    return {qid: [pid for _, pid in sorted(c)[:top_k]] for qid, c in lists.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ["--onnx", "--tokenizer", "--queries", "--collection", "--run", "--output"]:
        parser.add_argument(name, required=True)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top-k", type=int, default=100)
    args = parser.parse_args()

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.onnx, options, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(f"{args.tokenizer}/tokenizer.json")
    tokenizer.no_padding()
    tokenizer.enable_truncation(args.max_len, strategy="longest_first")
    queries, collection = read_tsv(args.queries), read_tsv(args.collection)
    candidates = read_run(args.run, args.top_k)

    tokenise_s = model_s = 0.0
    lines = []
    for qid, pids in candidates.items():
        started = time.perf_counter()
        encoded = tokenizer.encode_batch([(queries[qid], collection[pid]) for pid in pids])
        tokenise_s += time.perf_counter() - started
        started = time.perf_counter()
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].ids))
        scores = [0.0] * len(encoded)
        for at in range(0, len(order), args.batch):
            rows = order[at:at + args.batch]
            width = max(len(encoded[i].ids) for i in rows)
            feeds = {name: np.zeros((len(rows), width), dtype=np.int64)
                     for name in ["input_ids", "attention_mask", "token_type_ids"]}
            for r, i in enumerate(rows):
                e = encoded[i]
                n = len(e.ids)
                feeds["input_ids"][r, :n] = e.ids
                feeds["attention_mask"][r, :n] = 1
                feeds["token_type_ids"][r, :n] = e.type_ids
            logits = session.run(None, feeds)[0]
            for r, i in enumerate(rows):
                scores[i] = float(logits[r, 0])
        model_s += time.perf_counter() - started
        ranked = sorted(zip(pids, scores), key=lambda p: -p[1])
        lines += [f"{qid} Q0 {pid} {rank} {score:.6f} ort\n" for rank, (pid, score) in enumerate(ranked, 1)]
    with open(args.output, "w", encoding="utf-8") as f:
        f.writelines(lines)
    print(json.dumps({"pairs": len(lines), "tokenise_s": tokenise_s, "model_s": model_s,
                      "scoring_s": tokenise_s + model_s}))


if __name__ == "__main__":
    main()
