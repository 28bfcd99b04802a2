#!/usr/bin/env python3
"""Golden values of the Simplified TinyBERT loss terms and one gradient, computed with torch.

Teacher: tests/golden/tiny-2logit (2 layers, 2 logits). Student: a 1-layer, 1-logit BERT whose
layer is the teacher's layer 1, with a fresh classifier and a fit_dense projection, saved to
tests/golden/tiny-student/ (fit_dense stored next to the BERT tensors, as tinyrank does).
Batch: 4 (query, other query) pairs from TREC DL 2019 at max length 96 (padded), labels
[1, 0, -, 0] (the third unlabelled), temperature 2. Writes tests/golden/loss_parity.json.

    python scripts/parity/make_loss_goldens.py
"""
import json
import math
import os
import pathlib

import torch
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("TINYRANK_SHARED", REPO.parent / "shared"))
GOLDEN = REPO / "tests" / "golden"
MAX_LEN, TEMPERATURE = 96, 2.0
LABELS, LABELLED = [1, 0, 0, 0], [1.0, 1.0, 0.0, 1.0]
ATT_MAP, HID_MAP = [1], [0, 2]  # uniform map, k = 2 teacher layers / 1 student layer
torch.manual_seed(1)


def scores_per_layer(model, hidden_states, mask):
    """Pre-softmax attention scores of each layer, from that layer's input hidden state."""
    out = []
    for layer, h in zip(model.bert.encoder.layer, hidden_states):
        att = layer.attention.self
        b, n, _ = h.shape
        heads = model.config.num_attention_heads
        d = model.config.hidden_size // heads
        q = att.query(h).view(b, n, heads, d).transpose(1, 2)
        k = att.key(h).view(b, n, heads, d).transpose(1, 2)
        out.append(q @ k.transpose(-1, -2) / math.sqrt(d))
    return out


def main():
    teacher_dir = GOLDEN / "tiny-2logit"
    tok = BertTokenizer(str(teacher_dir / "vocab.txt"), do_lower_case=True)
    teacher = BertForSequenceClassification.from_pretrained(teacher_dir, torch_dtype=torch.float32).eval()

    cfg = BertConfig.from_pretrained(teacher_dir)
    cfg.num_hidden_layers, cfg.num_labels = 1, 1
    cfg.id2label, cfg.label2id = {0: "LABEL_0"}, {"LABEL_0": 0}
    student = BertForSequenceClassification(cfg).eval()
    state = teacher.state_dict()
    own = student.state_dict()
    for name in own:
        src = name.replace("encoder.layer.0.", "encoder.layer.1.")
        if not name.startswith("classifier."):
            own[name] = state[src].clone()
    student.load_state_dict(own)
    fit_dense = torch.nn.Linear(32, 32)
    out = GOLDEN / "tiny-student"
    out.mkdir(exist_ok=True)
    student.save_pretrained(out, safe_serialization=True)
    tensors = load_file(out / "model.safetensors")
    tensors["fit_dense.weight"] = fit_dense.weight.detach().contiguous()
    tensors["fit_dense.bias"] = fit_dense.bias.detach().contiguous()
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    for name in ("vocab.txt", "tokenizer_config.json"):
        (out / name).write_bytes((teacher_dir / name).read_bytes())

    queries = [line.rstrip("\n").split("\t", 1) for line in open(SHARED / "data/trec-dl-2019/queries.tsv", encoding="utf-8")]
    pairs = [(queries[i][1], queries[i + 1][1]) for i in range(4)]
    enc = tok([a for a, _ in pairs], [b for _, b in pairs], truncation="longest_first", max_length=MAX_LEN,
              padding=True, return_tensors="pt")
    mask = enc["attention_mask"].float()

    with torch.no_grad():
        t_out = teacher(**enc, output_hidden_states=True)
        t_scores = scores_per_layer(teacher, t_out.hidden_states, mask)
    s_out = student(**enc, output_hidden_states=True)
    s_scores = scores_per_layer(student, s_out.hidden_states, mask)

    keys = mask[:, None, None, :]
    attention = sum(((s_scores[i] * keys - t_scores[t] * keys) ** 2).mean() for i, t in enumerate(ATT_MAP))
    hidden = sum(((fit_dense(s_out.hidden_states[i]) - t_out.hidden_states[t]) ** 2).mean()
                 for i, t in enumerate(HID_MAP))
    two = lambda z: torch.cat([torch.zeros_like(z), z], 1) if z.shape[1] == 1 else z
    s_logits, t_logits = two(s_out.logits), two(t_out.logits)
    soft = -(torch.softmax(t_logits / TEMPERATURE, 1) * torch.log_softmax(s_logits / TEMPERATURE, 1)).sum(1).mean()
    labelled = torch.tensor(LABELLED)
    picked = torch.log_softmax(s_logits, 1).gather(1, torch.tensor(LABELS)[:, None])[:, 0]
    hard = -(picked * labelled).sum() / labelled.sum().clamp(min=1)
    total = attention + hidden + soft + hard
    total.backward()
    grad_query = student.bert.encoder.layer[0].attention.self.query.weight.grad.clone()

    # Beyond the paper: margin-MSE over groups (0, 1), (2, 3) and listwise KL over the 4 pairs as
    # one group, on ranking scores (a 1-logit score; logit1 - logit0 for 2 logits).
    rank = lambda z: z[:, 0] if z.shape[1] == 1 else z[:, 1] - z[:, 0]
    query_weight = student.bert.encoder.layer[0].attention.self.query.weight
    grads = {}
    for name in ("margin_mse", "listwise"):
        student.zero_grad()
        s_rank, t_rank = rank(student(**enc).logits), rank(t_out.logits)
        if name == "margin_mse":
            s_g, t_g = s_rank.view(2, 2), t_rank.view(2, 2)
            margins = lambda g: g[:, :, None] - g[:, None, :]
            loss = ((margins(s_g) - margins(t_g)) ** 2).mean()
        else:
            t_log = torch.log_softmax(t_rank.view(1, 4) / TEMPERATURE, 1)
            s_log = torch.log_softmax(s_rank.view(1, 4) / TEMPERATURE, 1)
            loss = (t_log.exp() * (t_log - s_log)).sum(1).mean()
        loss.backward()
        grads[name] = (loss.item(), query_weight.grad.tolist())

    golden = {
        "margin_mse": grads["margin_mse"][0], "grad_query_weight_margin_mse": grads["margin_mse"][1],
        "listwise": grads["listwise"][0], "grad_query_weight_listwise": grads["listwise"][1],
        "max_len": MAX_LEN, "temperature": TEMPERATURE, "labels": LABELS, "labelled": LABELLED,
        "pairs": [[queries[i][0], queries[i + 1][0]] for i in range(4)],
        "input_ids": enc["input_ids"].tolist(),
        "attention": attention.item(), "hidden": hidden.item(), "soft": soft.item(), "hard": hard.item(),
        "total": total.item(),
        # HF layout [out, in].
        "grad_query_weight": grad_query.tolist(),
        "grad_fit_dense_weight": fit_dense.weight.grad.tolist(),
    }
    (GOLDEN / "loss_parity.json").write_text(json.dumps(golden), encoding="utf-8")
    print({k: golden[k] for k in ("attention", "hidden", "soft", "hard", "total", "margin_mse", "listwise")})


if __name__ == "__main__":
    main()
