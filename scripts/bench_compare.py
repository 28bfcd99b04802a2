#!/usr/bin/env python3
"""tinyrank against PyTorch and ONNX Runtime on the same shapes, the same machine, the same moment.

For each shape (layers/hidden) and length it builds transformers' BertForSequenceClassification
with random weights (1 logit, FFN 4x hidden, 12 heads, 2 for 128 hidden: the shapes of
`tinyrank bench`), exports it to ONNX, quantises a copy to int8 (dynamic quantisation), and
times, in rounds that interleave the engines so that a noisy neighbour hits them all alike:

    tinyrank (its `bench` command, one process per measurement), PyTorch fp32,
    ONNX Runtime fp32, ONNX Runtime int8                         (--device cpu)
    tinyrank on wgpu, PyTorch fp32 and fp16                      (--device cuda)

Every engine gets the same batch (synthetic ids, every pair exactly the length) and, on the CPU,
the same number of threads. Each figure is the median pairs/s over all its timed batches. A GEMM
(PyTorch, fp32, the same threads) measures the machine's reachable peak for the last column.

    pip install torch transformers onnx onnxruntime
    python scripts/bench_compare.py --tinyrank target/release/tinyrank --threads 2

Prints one Markdown table (docs/performance.md keeps one, with its date and machine).

With `--text DIR` (a dataset: queries.tsv, collection.tsv, bm25.run) it instead reranks that
dataset's BM25 lists as users do, real lengths and all, each engine a whole process: `tinyrank
rerank` (f32, and --int8) against this script's own ONNX Runtime reranker (`--ort-rerank`: Python,
HF tokenizers with the same truncation, each query's candidates sorted by length into batches of
--batch padded to their longest pair, fp32 and dynamic int8), on one random --shapes model saved as
a Hugging Face checkpoint with the shared teacher's tokenizer. It reports whole-process seconds
and scoring seconds (tokenisation + model, what each process times itself, process start, model
load and file I/O excluded), interleaved rounds, medians, and the largest score difference
between tinyrank f32 and ONNX Runtime fp32:

    python scripts/bench_compare.py --text ../shared/data/trec-dl-2019 --shapes 3/384 --max-len 256
"""
import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from transformers import BertConfig, BertForSequenceClassification

import onnx_export

VOCAB = 30522


def heads_for(hidden):
    return 12 if hidden >= 384 and hidden % 12 == 0 else max(1, hidden // 64)


def flops_per_pair(layers, hidden, length):
    """Same count as tinyrank's bench: a multiply-add is two operations."""
    h, l = float(hidden), float(length)
    per_layer = 2 * l * (4 * h * h + 2 * h * 4 * h) + 4 * l * l * h
    return layers * per_layer + 2 * h * h


def synthetic_batch(batch, length):
    """tinyrank bench's synthetic pairs: ids spread over the vocabulary, query in the first 1/8."""
    query_len = max(1, length // 8)
    ids = [[1000 + (row * 7919 + j * 104729) % (VOCAB - 1000) for j in range(length)] for row in range(batch)]
    types = [[int(j > query_len) for j in range(length)] for _ in range(batch)]
    ids = torch.tensor(ids, dtype=torch.long)
    types = torch.tensor(types, dtype=torch.long)
    return ids, torch.ones_like(ids), types


def bert(layers, hidden):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads_for(hidden),
        intermediate_size=4 * hidden,
        num_labels=1,
        attn_implementation="sdpa",
    )
    return BertForSequenceClassification(config).eval()


def time_batches(run, batches, warmup):
    for _ in range(warmup):
        run()
    times = []
    for _ in range(batches):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return times


def gemm_peak(device, threads):
    """The best fp32 GEMM rate over a few square sizes (one size alone can land on a slow path)."""
    sizes = [1024, 2048, 3072, 4096] if device == "cpu" else [4096, 8192]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)

        def run():
            torch.mm(a, b)
            sync()

        times = time_batches(run, 5, 2)
        best = max(best, 2 * n**3 / statistics.median(times) / 1e9)
    return best


def tinyrank_rates(binary, shape, length, batch, device, threads, repeats):
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "m.jsonl"
        cmd = [binary, "bench", "--shapes", shape, "--lengths", str(length), "--batch-size", str(batch),
               "--devices", "cpu" if device == "cpu" else "gpu", "--repeats", str(repeats),
               "--warmup", "1", "--json", str(out)]
        if device == "cpu":
            cmd += ["--threads", str(threads)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # On the CPU: the fused path in f32 and int8, and the burn model op by op (the before).
        measured = [json.loads(line) for line in out.read_text().splitlines()]
        return {f"tinyrank, {m['backend']}": [batch / r for r in m["rates"]] for m in measured}


def read_scores(path):
    with open(path, encoding="utf-8") as f:
        return {(q, d): float(score) for q, _, d, _, score, *_ in (line.split() for line in f)}


def text_side_by_side(args):
    """Whole processes reranking a dataset's BM25 lists: tinyrank rerank against ort_rerank.py."""
    import shutil

    data = pathlib.Path(args.text)
    teacher = pathlib.Path(args.assets) / "models/teacher-minilm-l6"
    shape = args.shapes.split(",")[0]
    layers, hidden = map(int, shape.split("/")[:2])
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        model = bert(layers, hidden)
        model.save_pretrained(tmp / "model")
        for name in ["tokenizer.json", "tokenizer_config.json", "vocab.txt"]:
            shutil.copy(teacher / name, tmp / "model" / name)
        onnx_export.export(model, tmp / "model.onnx", tmp / "model.int8.onnx")
        files = ["--queries", data / "queries.tsv", "--collection", data / "collection.tsv",
                 "--run", data / "bm25.run"]
        common = [*map(str, files), "--max-len", str(args.max_len)]

        def tinyrank(int8):
            out = tmp / f"tinyrank{'.int8' if int8 else ''}.run"
            cmd = [args.tinyrank, "rerank", "--model", str(tmp / "model"), "--output", str(out), *common,
                   "--batch-size", str(args.batch), "--device", "cpu", *(["--int8"] if int8 else [])]
            started = time.perf_counter()
            done = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
            total = time.perf_counter() - started
            # "reranked N queries, P pairs in Xs (...)": tokenising and scoring, as it times them.
            summary = next(line for line in done.stderr.splitlines() if line.startswith("reranked"))
            scoring = float(summary.split(" pairs in ")[1].split("s")[0])
            return total, scoring, out

        def onnxruntime(int8):
            out = tmp / f"ort{'.int8' if int8 else ''}.run"
            onnx = tmp / ("model.int8.onnx" if int8 else "model.onnx")
            script = pathlib.Path(__file__).with_name("ort_rerank.py")
            cmd = [sys.executable, str(script), "--onnx", str(onnx), "--tokenizer", str(tmp / "model"),
                   "--output", str(out), *common, "--batch", str(args.batch), "--threads", str(args.threads)]
            started = time.perf_counter()
            done = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
            total = time.perf_counter() - started
            return total, json.loads(done.stdout.splitlines()[-1])["scoring_s"], out

        engines = {
            "tinyrank f32": lambda: tinyrank(False),
            "tinyrank int8": lambda: tinyrank(True),
            "onnxruntime fp32": lambda: onnxruntime(False),
            "onnxruntime int8": lambda: onnxruntime(True),
        }
        wanted = set(filter(None, args.engines.split(",")))
        times, outputs = {}, {}
        for round_ in range(args.rounds):
            for name, run in engines.items():
                if wanted and name not in wanted:
                    continue
                total, scoring, outputs[name] = run()
                times.setdefault(name, []).append((total, scoring))
                print(f"round {round_ + 1}: {name}: {total:.1f} s whole process, {scoring:.1f} s scoring",
                      file=sys.stderr)
        pairs = len(read_scores(next(iter(outputs.values()))))
        differences = {}
        for ours, theirs in [("tinyrank f32", "onnxruntime fp32"), ("tinyrank int8", "onnxruntime int8")]:
            if ours in outputs and theirs in outputs:
                a, b = read_scores(outputs[ours]), read_scores(outputs[theirs])
                differences[ours] = max(abs(a[k] - b[k]) for k in a)

    rows = []
    for name, ts in times.items():
        total, scoring = (statistics.median(t[i] for t in ts) for i in (0, 1))
        baseline = "onnxruntime int8" if "int8" in name else "onnxruntime fp32"
        base = times.get(baseline)
        ratio = statistics.median(t[0] for t in base) / total if base else None
        scoring_ratio = statistics.median(t[1] for t in base) / scoring if base else None
        rows.append({"engine": name, "whole_s": total, "scoring_s": scoring, "pairs_per_s": pairs / total,
                     "vs_ort_same_precision": ratio, "scoring_vs_ort": scoring_ratio,
                     "max_score_difference_vs_ort": differences.get(name), "runs": len(ts)})
    print(f"{shape}, {data.name} BM25 lists ({pairs} pairs, max length {args.max_len}), {args.threads} threads, "
          f"batches of {args.batch}, medians of {args.rounds} interleaved rounds")
    print("| engine | whole process s | pairs/s | vs ORT same precision | scoring s | scoring vs ORT | max score diff vs ORT |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        fmt = lambda v, f: f.format(v) if v is not None else "-"
        print(f"| {r['engine']} | {r['whole_s']:.1f} | {r['pairs_per_s']:.1f} | {fmt(r['vs_ort_same_precision'], '{:.2f}x')} | "
              f"{r['scoring_s']:.1f} | {fmt(r['scoring_vs_ort'], '{:.2f}x')} | {fmt(r['max_score_difference_vs_ort'], '{:.1e}')} |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"rows": rows}, indent=1))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tinyrank", default=os.environ.get("TINYRANK_BIN", "target/release/tinyrank"))
    parser.add_argument("--shapes", default="12/768,6/768,6/384,3/384,2/128")
    parser.add_argument("--lengths", default="128,256")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per engine")
    parser.add_argument("--repeats", type=int, default=3, help="timed batches per engine per round")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--engines", default="", help="comma-separated subset of the engines")
    parser.add_argument("--json", help="also write every figure here")
    parser.add_argument("--text", help="a dataset directory: rerank its BM25 lists, whole processes (see above)")
    parser.add_argument("--max-len", type=int, default=256, help="with --text")
    parser.add_argument("--assets", default=os.environ.get("TINYRANK_SHARED", "../shared"),
                        help="with --text: the shared assets (the teacher's tokenizer)")
    args = parser.parse_args()
    if args.text:
        torch.set_num_threads(args.threads)
        return text_side_by_side(args)

    torch.set_num_threads(args.threads)
    device = args.device
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    peak = gemm_peak(device, args.threads)
    cpu_name = platform.processor() or platform.machine()
    try:
        cpu_name = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu_name = torch.cuda.get_device_name() if device == "cuda" else None
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} | {gpu_name or cpu_name} | threads {args.threads} | "
          f"batch {args.batch} | torch {torch.__version__} | measured fp32 GEMM peak {peak:.0f} GFLOP/s",
          file=sys.stderr)

    rows = []
    for shape in args.shapes.split(","):
        layers, hidden = map(int, shape.split("/")[:2])
        for length in map(int, args.lengths.split(",")):
            ids, mask, types = synthetic_batch(args.batch, length)
            model = bert(layers, hidden)
            engines = {}
            with tempfile.TemporaryDirectory() as tmp:
                if device == "cpu":
                    import onnxruntime as ort

                    fp32_path = os.path.join(tmp, "model.onnx")
                    int8_path = os.path.join(tmp, "model.int8.onnx")
                    onnx_export.export(model, fp32_path, int8_path)
                    options = ort.SessionOptions()
                    options.intra_op_num_threads = args.threads
                    options.inter_op_num_threads = 1
                    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()}
                    for name, path in [("onnxruntime fp32", fp32_path), ("onnxruntime int8", int8_path)]:
                        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
                        engines[name] = (lambda s=session: s.run(None, feeds))

                    def torch_run():
                        with torch.inference_mode():
                            model(input_ids=ids, attention_mask=mask, token_type_ids=types)

                    engines["pytorch fp32"] = torch_run
                else:
                    gpu_model = model.to("cuda")
                    half_model = bert(layers, hidden).to("cuda").half()
                    gids, gmask, gtypes = ids.cuda(), mask.cuda(), types.cuda()

                    def run_on(m):
                        def run():
                            with torch.inference_mode():
                                m(input_ids=gids, attention_mask=gmask, token_type_ids=gtypes)
                            sync()
                        return run

                    engines["pytorch fp32"] = run_on(gpu_model)
                    engines["pytorch fp16"] = run_on(half_model)
                wanted = set(filter(None, args.engines.split(",")))
                order = [name for name in ["tinyrank", *engines] if not wanted or name in wanted]
                times = {}
                for _ in range(args.rounds):
                    for name in order:
                        if name == "tinyrank":
                            for backend, ts in tinyrank_rates(args.tinyrank, shape, length, args.batch, device,
                                                              args.threads, args.repeats).items():
                                times.setdefault(backend, []).extend(ts)
                        else:
                            times.setdefault(name, []).extend(time_batches(engines[name], args.repeats, 1))
            reference = statistics.median(times["onnxruntime fp32"]) if "onnxruntime fp32" in times else None
            for name, ts in times.items():
                rate = args.batch / statistics.median(ts)
                gflops = rate * flops_per_pair(layers, hidden, length) / 1e9
                rows.append({
                    "shape": shape, "len": length, "engine": name,
                    "pairs_per_s": rate, "vs_ort_fp32": rate * reference / args.batch if reference else None,
                    "gflops": gflops, "of_peak": gflops / peak, "batches": len(ts),
                })
                print(f"{shape} @ {length}: {rows[-1]['engine']}: {rate:.1f} pairs/s", file=sys.stderr)

    print(f"| shape | tokens | engine | pairs/s (median) | vs ONNX Runtime fp32 | GFLOP/s | of measured peak ({peak:.0f}) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['vs_ort_fp32']:.2f}x" if r["vs_ort_fp32"] else "-"
        print(f"| {r['shape']} | {r['len']} | {r['engine']} | {r['pairs_per_s']:.1f} | {ratio} | "
              f"{r['gflops']:.0f} | {100 * r['of_peak']:.0f}% |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"peak_gflops": peak, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
