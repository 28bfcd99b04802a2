#!/usr/bin/env python3
"""Distillation speed side by side: `tinyrank distill` against the same step in PyTorch.

The step (Simplified TinyBERT, what `tinyrank distill` runs by default): the teacher's forward
without gradients, giving its pre-softmax attention scores and hidden states; the student's
(3/384, the teacher's layers 1, 3 and 5) forward and backward on attention-score MSE + hidden-state
MSE through fit_dense (embeddings included) + soft cross-entropy + hard cross-entropy over groups
of 8 candidates; gradient clipping at norm 1; AdamW. `--method standard` times Standard KD
instead (soft + hard on the logits only). PyTorch runs it with transformers' BERT and an attention
function that keeps the pre-softmax scores, in fp32 and (`--bf16`) under bf16 autocast.

Both sides train on the same pairs: the BM25 top 8 of the DL 2020 and 2021 queries, tokenised
with truncation at --max-len and each batch padded to its longest pair. For each batch size the
engines alternate over --rounds; a tinyrank figure is the pairs of its steps after the first
over the time from the first step's end to the last's (from its log.jsonl), a PyTorch figure the
median over --steps timed steps after one warm-up step; each is the median over the rounds. Prints one Markdown table.

    pip install torch transformers
    python scripts/train_compare.py --tinyrank target/release/tinyrank --batches 16,64 --steps 3
    python scripts/train_compare.py --device cuda --tinyrank-device gpu --bf16 --batches 16,64,256
    python scripts/train_compare.py --tinyrank wgpu=bin/tinyrank \
        --tinyrank "fusion=bin/tinyrank-fusion --pad-to 32" ...   # two builds side by side

On the CPU, threads are --threads for both (RAYON_NUM_THREADS and torch.set_num_threads).
"""
import argparse
import json
import os
import pathlib
import platform
import shlex
import statistics
import subprocess
import tempfile
import time

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

GROUP = 8
STUDENT_LAYERS = [1, 3, 5]
SCORES = []  # pre-softmax attention scores of the forward in progress, layer by layer


def scores_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **_):
    """Eager attention that also keeps its pre-softmax scores (TinyBERT's attention target)."""
    scores = torch.matmul(query, key.transpose(2, 3)) * (scaling or query.size(-1) ** -0.5)
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : key.shape[-2]]
    SCORES.append(scores)
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


AttentionInterface.register("scores", scores_attention)


def read_table(path):
    with open(path, encoding="utf-8") as f:
        return dict(line.rstrip("\n").split("\t", 1) for line in f if "\t" in line)


def training_pairs(shared):
    """(query, passage) texts: the BM25 top GROUP of every DL 2020 and 2021 query, in groups."""
    pairs = []
    for year in (2020, 2021):
        data = pathlib.Path(shared) / f"data/trec-dl-{year}"
        queries, collection = read_table(data / "queries.tsv"), read_table(data / "collection.tsv")
        lists = {}
        for line in open(data / "bm25.run", encoding="utf-8"):
            qid, _, pid, *_ = line.split()
            lists.setdefault(qid, [])
            if len(lists[qid]) < GROUP:
                lists[qid].append(pid)
        for qid, pids in lists.items():
            if len(pids) == GROUP and qid in queries:
                pairs += [(queries[qid], collection[pid]) for pid in pids]
    return pairs


def make_student(teacher_dir, device):
    student = AutoModelForSequenceClassification.from_pretrained(teacher_dir, attn_implementation="scores")
    student.bert.encoder.layer = torch.nn.ModuleList(student.bert.encoder.layer[i] for i in STUDENT_LAYERS)
    student.config.num_hidden_layers = len(STUDENT_LAYERS)
    return student.to(device).train()


class TorchStep:
    """One optimiser step of the chosen method on a batch, as tinyrank's trainer does it."""

    def __init__(self, args, device):
        self.args, self.device = args, device
        self.teacher = AutoModelForSequenceClassification.from_pretrained(
            args.teacher, attn_implementation="scores").to(device).eval()
        self.student = make_student(args.teacher, device)
        hidden = self.student.config.hidden_size
        self.fit_dense = torch.nn.Linear(hidden, hidden).to(device)
        params = list(self.student.parameters()) + list(self.fit_dense.parameters())
        self.params = params
        self.optim = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)

    def forward(self, model, batch, grad):
        SCORES.clear()
        with torch.set_grad_enabled(grad), torch.autocast(self.device.type, torch.bfloat16, enabled=self.args.bf16_now):
            out = model(**batch, output_hidden_states=self.args.method == "simplified")
        return out, list(SCORES)

    def __call__(self, batch):
        simplified = self.args.method == "simplified"
        teacher, t_scores = self.forward(self.teacher, batch, grad=False)
        student, s_scores = self.forward(self.student, batch, grad=True)
        s_logits = student.logits.float().view(-1, GROUP)
        t_probs = torch.softmax(teacher.logits.float().view(-1, GROUP), dim=-1)
        log_probs = torch.log_softmax(s_logits, dim=-1)
        soft = -(t_probs * log_probs).sum(-1).mean()
        hard = -log_probs[:, 0].mean()  # timing only: the first candidate stands in for the label
        if simplified:
            keep = batch["attention_mask"][:, None, None, :].bool()
            attention = sum(
                F.mse_loss(torch.where(keep, s, 0.0).float(), torch.where(keep, t_scores[2 * i + 1], 0.0).float())
                for i, s in enumerate(s_scores))
            hidden = sum(
                F.mse_loss(self.fit_dense(s.float()), teacher.hidden_states[2 * i].float())
                for i, s in enumerate(student.hidden_states))
            loss = attention + hidden + soft + hard
        else:
            loss = 0.5 * soft + 0.5 * hard
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optim.step()
        return loss


def torch_rate(step, tokenizer, pairs, batch_size, args, device):
    def batch_at(i):
        chunk = [pairs[(i * batch_size + j) % len(pairs)] for j in range(batch_size)]
        encoded = tokenizer([q for q, _ in chunk], [p for _, p in chunk], truncation="longest_first",
                            max_length=args.max_len, padding=True, return_tensors="pt")
        return {k: v.to(device) for k, v in encoded.items()}

    rates = []
    for i in range(args.steps + 1):
        batch = batch_at(i)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step(batch).item()  # the loss read back, as tinyrank's log line does
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i > 0:
            rates.append(batch_size / (time.perf_counter() - start))
    return statistics.median(rates)


def tinyrank_rate(args, engine, batch_size):
    binary, extra = engine
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), TINYRANK_SHARED=args.shared)
        subprocess.run(
            [binary, "distill", "--method", args.method, "--steps", str(args.steps + 1),
             "--batch-size", str(batch_size), "--max-len", str(args.max_len), "--no-eval",
             "--out", out] + extra + ([] if "--device" in extra else ["--device", args.tinyrank_device]),
            check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        steps = [json.loads(line) for line in open(pathlib.Path(out) / "log.jsonl", encoding="utf-8")]
    # The first step (kernel compilation on a GPU) is read back alone; the rest are timed from
    # its end to the end of the last (steps' values may be read back in batches).
    timed = steps[-1]["elapsed_s"] - steps[0]["elapsed_s"]
    return batch_size * (len(steps) - 1) / timed


def tinyrank_engines(specs):
    """`[LABEL=]BINARY [DISTILL FLAGS...]` per --tinyrank: engine name -> (binary, flags); a
    --device among the flags replaces --tinyrank-device for that engine."""
    engines = {}
    for spec in specs or ["target/release/tinyrank"]:
        first = spec.split()[0]
        label, _, rest = spec.partition("=") if "=" in first else ("tinyrank", "", spec)
        binary, *extra = shlex.split(rest)
        engines[label] = (binary, extra)
    return engines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tinyrank", action="append",
                        help="[LABEL=]BINARY [DISTILL FLAGS...], repeatable: each is an engine "
                             "(default: target/release/tinyrank)")
    parser.add_argument("--shared", default=os.environ.get("TINYRANK_SHARED", "../shared"))
    parser.add_argument("--teacher", help="default: <shared>/models/teacher-minilm-l6")
    parser.add_argument("--method", choices=["simplified", "standard"], default="simplified")
    parser.add_argument("--batches", default="16,64,256")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--device", default="cpu", help="PyTorch's device: cpu or cuda")
    parser.add_argument("--tinyrank-device", default="cpu", help="tinyrank's --device: cpu or gpu")
    parser.add_argument("--bf16", action="store_true", help="also PyTorch under bf16 autocast")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    hf_logging.disable_progress_bar()
    args.teacher = args.teacher or str(pathlib.Path(args.shared) / "models/teacher-minilm-l6")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    tokenizer = AutoTokenizer.from_pretrained(args.teacher)
    pairs = training_pairs(args.shared)
    ours = tinyrank_engines(args.tinyrank)
    engines = list(ours) + ["pytorch fp32"] + (["pytorch bf16 autocast"] if args.bf16 else [])
    machine = torch.cuda.get_device_name() if device.type == "cuda" else f"{args.threads} threads, {platform.processor() or platform.machine()}"
    print(f"{args.method} step, max length {args.max_len}, {machine}, PyTorch {torch.__version__}; "
          f"pairs/s, medians over {args.rounds} rounds\n")
    ratios = [f"{e} / pytorch fp32" for e in ours]
    print("| batch | " + " | ".join(engines + ratios) + " |")
    print("|---" * (len(engines) + len(ratios) + 1) + "|", flush=True)
    # Each row as soon as it is measured, so that a run cut short keeps what it has.
    for batch_size in map(int, args.batches.split(",")):
        rates = {engine: [] for engine in engines}
        for _ in range(args.rounds):
            for engine in engines:
                if engine in ours:
                    rates[engine].append(tinyrank_rate(args, ours[engine], batch_size))
                    continue
                args.bf16_now = "bf16" in engine
                step = TorchStep(args, device)
                rates[engine].append(torch_rate(step, tokenizer, pairs, batch_size, args, device))
                del step
        rate = {e: statistics.median(r) for e, r in rates.items()}
        cells = [f"{rate[e]:,.1f}" for e in engines]
        cells += [f"{rate[e] / rate['pytorch fp32']:.2f}x" for e in ours]
        print(f"| {batch_size} | " + " | ".join(cells) + " |", flush=True)

if __name__ == "__main__":
    main()
