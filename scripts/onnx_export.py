#!/usr/bin/env python3
"""A BERT cross-encoder as ONNX, fp32 and dynamically quantised int8: what ONNX Runtime,
onnxruntime-web and transformers.js users run. One definition for scripts/bench_compare.py and
the browser side by side (web/bench/compare.mjs).

    python scripts/onnx_export.py --model runs/distill/student --out /tmp/student-onnx

writes the transformers.js layout: the checkpoint's config and tokenizer files, onnx/model.onnx
(fp32, what transformers.js loads for dtype "fp32") and onnx/model_quantized.onnx (int8 weights,
dtype "q8").
"""
import argparse
import pathlib
import shutil

import torch

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


def export(model, fp32_path, int8_path=None):
    """Exports a transformers BERT classifier (batch and length dynamic), and an int8 copy."""
    ids = torch.randint(1000, 2000, (2, 16))
    example = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    torch.onnx.export(
        model.eval(), example, str(fp32_path), dynamo=False,
        input_names=INPUTS, output_names=["logits"],
        dynamic_axes={n: {0: "batch", 1: "len"} for n in INPUTS},
        opset_version=17,
    )
    if int8_path is not None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="Hugging Face cross-encoder directory")
    parser.add_argument("--out", required=True, help="output directory (transformers.js layout)")
    args = parser.parse_args()
    from transformers import AutoModelForSequenceClassification

    source, out = pathlib.Path(args.model), pathlib.Path(args.out)
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    model = AutoModelForSequenceClassification.from_pretrained(source, torch_dtype=torch.float32)
    export(model, out / "onnx/model.onnx", out / "onnx/model_quantized.onnx")
    for name in ["config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json"]:
        if (source / name).is_file():
            shutil.copy(source / name, out / name)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
