// tinyrank against transformers.js (onnxruntime-web) in the same headless Chromium, on the CPU:
// the same cross-encoder reranking one TREC DL 2019 query's 100 BM25 passages.
//
//   (cd bench && npm ci --ignore-scripts)          # transformers.js, only for this bench
//   python ../scripts/onnx_export.py --model STUDENT --out /tmp/student-onnx
//   node bench/compare.mjs --model STUDENT --onnx /tmp/student-onnx [--rounds 3] [--repeats 3]
//
// STUDENT is a Hugging Face checkpoint (f16 is fine: tinyrank reads it as f32); --onnx is the same
// model in transformers.js's layout (onnx/model.onnx = fp32, onnx/model_quantized.onnx = q8).
// For each thread setting (2 and 1: tinyrank's `threads`, onnxruntime-web's `numThreads`, which
// is fixed once per page, so each setting gets its own fresh browser context) the page is cross-
// origin isolated (onnxruntime-web's threads need SharedArrayBuffer). Round 0 is cold: nothing
// cached. Each round then, per engine in turn: load (model from Cache Storage after round 0),
// the first rerank (time to first result), `repeats` more reranks (throughput), free. Medians
// over rounds 1.. ; bytes are what the cold round downloaded, per engine.
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { chromium } from "playwright-core";

import { dl19Lists, repo, serve } from "../test/fixtures.mjs";

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    onnx: { type: "string" },
    rounds: { type: "string", default: "3" },
    repeats: { type: "string", default: "3" },
    "max-length": { type: "string", default: "256" },
    threads: { type: "string", default: "2,1" },
  },
});
if (!values.model || !values.onnx) throw new Error("usage: compare.mjs --model DIR --onnx DIR");
const rounds = Number(values.rounds);
const repeats = Number(values.repeats);
const maxLength = Number(values["max-length"]);

const ENGINES = [
  { name: "tinyrank f32", kind: "tinyrank", precision: "f32" },
  { name: "transformers.js fp32", kind: "tjs", dtype: "fp32" },
  { name: "tinyrank int8", kind: "tinyrank", precision: "int8" },
  { name: "transformers.js q8", kind: "tjs", dtype: "q8" },
];

/** Runs in the page: load, first rerank, `repeats` more, free; times in ms and the scores. */
async function measure({ engine, threads, query, passages, maxLength, repeats }) {
  const t0 = performance.now();
  let score;
  let free;
  let backend;
  if (engine.kind === "tinyrank") {
    const reranker = await window.tinyrank.Reranker.load("/models/tinyrank/", {
      device: "cpu",
      precision: engine.precision,
      threads,
    });
    score = (ps) => reranker.score(query, ps, { maxLength });
    free = () => reranker.free();
    backend = reranker.backend;
  } else {
    const { AutoTokenizer, AutoModelForSequenceClassification, env } = await window.transformersReady;
    env.allowRemoteModels = false;
    env.allowLocalModels = true;
    env.localModelPath = "/models/";
    env.backends.onnx.wasm.wasmPaths = "/ort/";
    env.backends.onnx.wasm.numThreads = threads;
    const tokenizer = await AutoTokenizer.from_pretrained("onnx");
    const model = await AutoModelForSequenceClassification.from_pretrained("onnx", {
      dtype: engine.dtype,
      device: "wasm",
    });
    // As scripts/ort_rerank.py does: length-sorted batches of 32, padded to their longest pair.
    score = async (ps) => {
      const order = ps.map((_, i) => i).sort((a, b) => ps[a].length - ps[b].length);
      const scores = new Float32Array(ps.length);
      for (let at = 0; at < order.length; at += 32) {
        const batch = order.slice(at, at + 32);
        const inputs = tokenizer(batch.map(() => query), {
          text_pair: batch.map((i) => ps[i]),
          padding: true,
          truncation: true,
          max_length: maxLength,
        });
        const { logits } = await model(inputs);
        batch.forEach((i, k) => (scores[i] = logits.data[k]));
      }
      return scores;
    };
    free = () => model.dispose();
    backend = `onnxruntime-web wasm, ${threads} thread(s)`;
  }
  const loadMs = performance.now() - t0;
  const scores = Array.from(await score(passages));
  const firstMs = performance.now() - t0;
  const times = [];
  for (let i = 0; i < repeats; i++) {
    const start = performance.now();
    await score(passages);
    times.push(performance.now() - start);
  }
  await free();
  return { backend, loadMs, firstMs, times, scores, isolated: crossOriginIsolated };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
  // The first judged DL19 query's BM25 top 100 (query 264014).
  const [{ qid, query, passages }] = dl19Lists(1, 100);
  const tjs = join(repo, "web/bench/node_modules/@huggingface/transformers/dist");
  const server = await serve(
    {
      "/": join(repo, "web"),
      "/tjs/": tjs,
      "/ort/": join(repo, "web/bench/node_modules/onnxruntime-web/dist"),
      "/models/tinyrank/": values.model,
      "/models/onnx/": values.onnx,
    },
    { isolated: true },
  );
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking"],
  });
  const results = [];
  const downloads = [];
  for (const threads of values.threads.split(",").map(Number)) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const bytes = new Map();
    page.on("response", async (response) => {
      if (response.request().method() !== "GET") return;
      const length = Number((await response.allHeaders())["content-length"] ?? 0);
      const path = new URL(response.url()).pathname;
      bytes.set(path, (bytes.get(path) ?? 0) + length);
    });
    await page.goto(`${server.url}/bench/page.html`);
    await page.waitForFunction(() => window.tinyrank && window.transformers, null, { timeout: 120_000 });
    for (let round = 0; round <= rounds; round++) {
      for (const engine of ENGINES) {
        const r = await page.evaluate(measure, { engine, threads, query, passages, maxLength, repeats });
        results.push({ threads, round, engine: engine.name, ...r });
        console.error(`threads ${threads} round ${round} ${engine.name}: load ${r.loadMs.toFixed(0)} ms, ` +
          `first ${r.firstMs.toFixed(0)} ms, reranks ${r.times.map((t) => t.toFixed(0)).join(", ")} ms`);
      }
    }
    downloads.push(bytes);
    await context.close();
  }
  const version = browser.version();
  await browser.close();
  server.close();
  report(results, { qid, passages, version });
  reportBytes(downloads[0]);
}

function report(results, { qid, passages, version }) {
  console.log(`Chromium ${version}, headless, ${cpus().length} x ${cpus()[0].model}, ` +
    `cross-origin isolated page; DL19 query ${qid}, ${passages.length} BM25 passages, max length ` +
    `${maxLength}; medians over rounds 1-${rounds} (${rounds * repeats} reranks) after a cold round 0\n`);
  console.log("| engine | threads | rerank 100 (ms) | pairs/s | vs transformers.js | first result, cold (s) | first result, cached (s) |");
  console.log("|---|---|---|---|---|---|---|");
  const warm = (name, threads) => results.filter((r) => r.engine === name && r.threads === threads && r.round > 0);
  for (const threads of [...new Set(results.map((r) => r.threads))]) {
    for (const { name } of ENGINES) {
      const runs = warm(name, threads);
      const ms = median(runs.flatMap((r) => r.times));
      const rival = name.startsWith("tinyrank")
        ? name.endsWith("int8") ? "transformers.js q8" : "transformers.js fp32"
        : null;
      const ratio = rival ? `${(median(warm(rival, threads).flatMap((r) => r.times)) / ms).toFixed(2)}x` : "";
      const cold = results.find((r) => r.engine === name && r.threads === threads && r.round === 0);
      console.log(`| ${name} | ${threads} | ${ms.toFixed(0)} | ${(passages.length / (ms / 1000)).toFixed(1)} | ` +
        `${ratio} | ${(cold.firstMs / 1000).toFixed(2)} | ${(median(runs.map((r) => r.firstMs)) / 1000).toFixed(2)} |`);
    }
  }
  const pick = (name) => results.find((r) => r.engine === name && r.round === 0).scores;
  const diff = (a, b) => Math.max(...a.map((x, i) => Math.abs(x - b[i])));
  console.log(`\nmax |score difference|: tinyrank f32 vs transformers.js fp32 ` +
    `${diff(pick("tinyrank f32"), pick("transformers.js fp32")).toExponential(1)}; ` +
    `tinyrank int8 vs f32 ${diff(pick("tinyrank int8"), pick("tinyrank f32")).toExponential(1)}; ` +
    `transformers.js q8 vs fp32 ${diff(pick("transformers.js q8"), pick("transformers.js fp32")).toExponential(1)}`);
  console.log(`backends: ${[...new Set(results.map((r) => `${r.engine}: ${r.backend}`))].join("; ")}`);
}

/** What the cold page downloaded (the first thread setting's context), by engine and kind. */
function reportBytes(bytes) {
  const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;
  const sum = (test) => [...bytes].filter(([path]) => test(path)).reduce((s, [, n]) => s + n, 0);
  const tinyrankCode = sum((p) => /^\/(index|files|threads|worker)\.js$|^\/pkg\//.test(p));
  const tjsCode = sum((p) => p.startsWith("/tjs/") || p.startsWith("/ort/"));
  const onnx = (file) => sum((p) => p === `/models/onnx/onnx/${file}`);
  const tjsTokenizer = sum((p) => p.startsWith("/models/onnx/") && !p.startsWith("/models/onnx/onnx/"));
  console.log(`\ndownloads (cold, uncompressed): tinyrank package ${mb(tinyrankCode)} + model ` +
    `${mb(sum((p) => p.startsWith("/models/tinyrank/")))} (one file for f32 and int8); transformers.js + ` +
    `onnxruntime-web ${mb(tjsCode)} + config/tokenizer ${mb(tjsTokenizer)} + fp32 model ${mb(onnx("model.onnx"))}, ` +
    `q8 model ${mb(onnx("model_quantized.onnx"))}`);
}

await main();
