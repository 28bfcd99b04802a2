#!/usr/bin/env python3
"""Golden outputs from the reference implementation (transformers) for tinyrank's parity tests.

Writes tests/golden/model_parity.json and the small randomly initialised 2-logit checkpoint
tests/golden/tiny-2logit/ (vocab.txt only, f16 weights: it also exercises those load paths).

    pip install torch transformers safetensors
    python scripts/parity/make_goldens.py            # assets from ../shared, or $TINYRANK_SHARED
"""
import json
import os
import pathlib

import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel, BertTokenizer

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("TINYRANK_SHARED", REPO.parent / "shared"))
OUT = REPO / "tests" / "golden"
MAX_LEN = 256
torch.manual_seed(0)


def read_tsv(path):
    with open(path, encoding="utf-8") as f:
        return dict(line.rstrip("\n").split("\t", 1) for line in f)


def pick_pairs():
    """20 real DL19 pairs: the top-3 BM25 candidates of the first queries, plus the longest
    passage of the collection (over 256 tokens once paired)."""
    data = SHARED / "data" / "trec-dl-2019"
    queries, passages = read_tsv(data / "queries.tsv"), read_tsv(data / "collection.tsv")
    by_query = {}
    for line in open(data / "bm25.run"):
        qid, _, pid, rank, _, _ = line.split()
        by_query.setdefault(qid, []).append(pid)
    pairs = []
    for qid in list(by_query)[:7]:
        pairs += [(qid, pid) for pid in by_query[qid][:3]]
    pairs = pairs[:19]
    longest = max(passages, key=lambda pid: len(passages[pid]))
    pairs.append((pairs[0][0], longest))
    return [{"qid": q, "pid": p, "query": queries[q], "passage": passages[p]} for q, p in pairs]


def ids_only(pairs):
    """The goldens name pairs by id: the texts stay in ../shared, never in the repo."""
    return [{"qid": p["qid"], "pid": p["pid"]} for p in pairs]


def encode(tokenizer, pairs, max_len):
    return [tokenizer(p["query"], p["passage"], truncation="longest_first", max_length=max_len) for p in pairs]


def batch(tokenizer, pairs, max_len):
    return tokenizer([p["query"] for p in pairs], [p["passage"] for p in pairs], truncation="longest_first",
                     max_length=max_len, padding=True, return_tensors="pt")


def logits_one_by_one(model, tokenizer, pairs, max_len):
    out = []
    with torch.no_grad():
        for p in pairs:
            enc = tokenizer(p["query"], p["passage"], truncation="longest_first", max_length=max_len,
                            return_tensors="pt")
            out.append(model(**enc).logits[0].tolist())
    return out


def tiny_checkpoint():
    """A 2-layer, 2-logit BERT with a synthetic character-level WordPiece vocabulary (so the
    checkpoint stays small and owes nothing to a shared file), saved in f16 with vocab.txt and
    no tokenizer.json."""
    chars = [chr(c) for c in range(33, 127) if not chr(c).isupper()]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars]
    out = OUT / "tiny-2logit"
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}), encoding="utf-8")
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, hidden_act="gelu_new", max_position_embeddings=512, num_labels=2,
                        initializer_range=0.3)  # wide enough that outputs differ between inputs
    model = BertForSequenceClassification(config).eval()
    model.half()
    model.save_pretrained(out, safe_serialization=True)
    model.float()
    tokenizer = BertTokenizer(str(out / "vocab.txt"), do_lower_case=True)
    return model, tokenizer


def main():
    pairs = pick_pairs()
    golden = {"max_len": MAX_LEN, "pairs": ids_only(pairs)}

    teacher_dir = SHARED / "models" / "teacher-minilm-l6"
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    teacher = BertForSequenceClassification.from_pretrained(teacher_dir).eval()
    encs = encode(tok, pairs, MAX_LEN)
    golden["teacher"] = {
        "input_ids": [e["input_ids"] for e in encs],
        "token_type_ids": [e["token_type_ids"] for e in encs],
        "logits": logits_one_by_one(teacher, tok, pairs, MAX_LEN),
    }
    padded = pairs[:8]
    with torch.no_grad():
        golden["teacher"]["padded_batch_logits"] = teacher(**batch(tok, padded, MAX_LEN)).logits.tolist()
    golden["teacher"]["input_ids_128"] = [e["input_ids"] for e in encode(tok, pairs, 128)]

    encoder_dir = SHARED / "models" / "all-MiniLM-L6-v2"
    enc_tok = AutoTokenizer.from_pretrained(encoder_dir)
    encoder = BertModel.from_pretrained(encoder_dir).eval()
    rows = []
    with torch.no_grad():
        for p in pairs[:5]:
            e = enc_tok(p["query"], p["passage"], truncation="longest_first", max_length=MAX_LEN,
                        return_tensors="pt")
            hidden = encoder(**e).last_hidden_state[0]
            n = hidden.shape[0]
            positions = sorted({0, 1, n // 2, n - 1})
            rows.append({"input_ids": e["input_ids"][0].tolist(), "positions": positions,
                         "hidden": [hidden[i].tolist() for i in positions]})
    golden["encoder"] = rows

    tiny, tiny_tok = tiny_checkpoint()
    tiny_encs = encode(tiny_tok, pairs, MAX_LEN)
    golden["tiny"] = {
        "input_ids": [e["input_ids"] for e in tiny_encs],
        "logits": logits_one_by_one(tiny, tiny_tok, pairs, MAX_LEN),
    }
    with torch.no_grad():
        golden["tiny"]["padded_batch_logits"] = tiny(**batch(tiny_tok, padded, MAX_LEN)).logits.tolist()

    (OUT / "model_parity.json").write_text(json.dumps(golden), encoding="utf-8")
    print(f"wrote {OUT / 'model_parity.json'} and {OUT / 'tiny-2logit'}")


if __name__ == "__main__":
    main()
