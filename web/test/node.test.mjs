// The package from Node (CPU backend): the same scores as native tinyrank, and bad input
// rejected with a message instead of a crash.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { Reranker } from "../index.js";
import { assertInt8Close, goldenPairs, maxAbsDiff, nativeScores, teacherDir, tinyDir } from "./fixtures.mjs";

test("the teacher scores 20 DL19 pairs as native tinyrank does", async () => {
  const reranker = await Reranker.load(teacherDir);
  assert.equal(reranker.backend, "cpu", "Node has no WebGPU: auto picks the CPU");
  const pairs = goldenPairs();
  const scores = [];
  for (const p of pairs) scores.push(...(await reranker.score(p.query, [p.passage])));
  const native = nativeScores(pairs, teacherDir);
  const diff = maxAbsDiff(scores, native);
  assert.ok(diff < 1e-4, `max |wasm - native| = ${diff}`);
  // rerank sorts by score and keeps the top k.
  const q = pairs[0].query;
  const passages = pairs.filter((p) => p.query === q).map((p) => p.passage);
  const ranked = await reranker.rerank(q, passages, { topK: 3 });
  assert.equal(ranked.length, Math.min(3, passages.length));
  assert.ok(ranked.every((r, i) => i === 0 || ranked[i - 1].score >= r.score));
  reranker.free();
});

test("int8 in WebAssembly gives native int8's scores", async () => {
  const reranker = await Reranker.load(teacherDir, { precision: "int8" });
  const pairs = goldenPairs();
  const scores = [];
  for (const p of pairs) scores.push(...(await reranker.score(p.query, [p.passage])));
  assertInt8Close(scores, nativeScores(pairs, teacherDir, 256, { int8: true }));
  reranker.free();
});

test("in-memory files, long passages and many passages", async () => {
  const file = (name) => readFileSync(join(tinyDir, name));
  const reranker = await Reranker.load(
    {
      config: file("config.json"),
      weights: file("model.safetensors"),
      vocab: file("vocab.txt"),
      tokenizerConfig: file("tokenizer_config.json"),
    },
    { device: "cpu" },
  );
  const long = "word ".repeat(5_000);
  const many = Array.from({ length: 10_000 }, (_, i) => `passage number ${i} ${i % 100 ? "" : long}`);
  const scores = await reranker.score("a query", many, { maxLength: 64 });
  assert.equal(scores.length, 10_000);
  assert.ok(scores.every(Number.isFinite));
  assert.equal((await reranker.score("a query", [])).length, 0);
});

test("bad input is rejected with a message", async () => {
  await assert.rejects(Reranker.load("/nonexistent/model"), /config\.json/);
  const config = readFileSync(join(tinyDir, "config.json"));
  const weights = readFileSync(join(tinyDir, "model.safetensors"));
  const vocab = readFileSync(join(tinyDir, "vocab.txt"));
  await assert.rejects(
    Reranker.load({ config, weights: weights.subarray(0, weights.length / 2), vocab }),
    /safetensors/,
  );
  const wrong = JSON.parse(config);
  wrong.intermediate_size += 32;
  await assert.rejects(
    Reranker.load({ config: JSON.stringify(wrong), weights, vocab }),
    /intermediate/,
  );
  await assert.rejects(Reranker.load({ config, weights, vocab }, { device: "tpu" }), /device/);
  await assert.rejects(Reranker.load({ config, weights, vocab }, { precision: "fp16" }), /precision/);
  await assert.rejects(Reranker.load({ config, weights, vocab }, { threads: 0 }), /threads/);
  const reranker = await Reranker.load({ config, weights, vocab });
  await assert.rejects(reranker.score("   ", ["a passage"]), /query is empty/);
  await assert.rejects(reranker.score("q", ["p"], { maxLength: 100_000 }), /position/);
  await assert.rejects(reranker.score("q", "not an array"), TypeError);
  // The instance survives its errors.
  assert.equal((await reranker.score("q", ["p"])).length, 1);
});
