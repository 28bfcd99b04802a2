// Latency to rerank one TREC DL 2019 query's BM25 top-100 in headless Chromium, on WebGPU and on
// the CPU (WebAssembly), median of repeated runs; plus the package and model download sizes.
//   node bench/browser.mjs [--model DIR] [--repeats N] [--webgpu-repeats N] [--max-length N]
// SwiftShader's WebGPU is a CPU emulation that takes seconds per pair: give it fewer repeats.
import { readFileSync, statSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";

import { chromium } from "playwright-core";

import { dl19Lists, repo, serve, teacherDir } from "../test/fixtures.mjs";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: teacherDir },
    repeats: { type: "string", default: "5" },
    "webgpu-repeats": { type: "string", default: "1" },
    "max-length": { type: "string", default: "256" },
  },
});
const repeats = Number(values.repeats);
const maxLength = Number(values["max-length"]);

// The first judged DL19 query's BM25 top 100 (query 264014).
const [{ qid, query, passages }] = dl19Lists(1, 100);

const server = await serve({ "/": join(repo, "web"), "/model/": values.model });
const headless = ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"];
const webgpu = ["--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-vulkan=swiftshader",
  "--use-angle=swiftshader"];

const rows = [];
let browserVersion = "";
const plan = [
  ["webgpu", webgpu, "webgpu", Number(values["webgpu-repeats"])],
  ["cpu", [], "cpu", repeats],
];
for (const [label, flags, device, repeats] of plan) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [...headless, ...flags],
  });
  browserVersion = browser.version();
  const page = await browser.newPage();
  await page.goto(`${server.url}/test/page.html`);
  await page.waitForFunction(() => window.tinyrank);
  const result = await page.evaluate(
    async ({ query, passages, device, repeats, maxLength }) => {
      const t0 = performance.now();
      const reranker = await window.tinyrank.Reranker.load("/model/", { device });
      const loadMs = performance.now() - t0;
      await reranker.rerank(query, passages.slice(0, 8), { maxLength }); // warm-up: shaders, caches
      const times = [];
      for (let i = 0; i < repeats; i++) {
        const start = performance.now();
        await reranker.rerank(query, passages, { maxLength });
        times.push(performance.now() - start);
      }
      times.sort((a, b) => a - b);
      return { backend: reranker.backend, loadMs, median: times[Math.floor(times.length / 2)], times };
    },
    { query, passages, device, repeats, maxLength },
  );
  rows.push({ label, ...result });
  await browser.close();
}
server.close();

const wasm = readFileSync(join(repo, "web/pkg/tinyrank_wasm_bg.wasm"));
const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;
console.log(`Chromium ${browserVersion}, headless, ${cpus().length} x ${cpus()[0].model}; ` +
  `WebGPU is SwiftShader (a CPU emulation): a floor, not a GPU figure.`);
console.log(`model ${values.model}: model.safetensors ${mb(statSync(join(values.model, "model.safetensors")).size)}; ` +
  `package wasm ${mb(wasm.length)} (${mb(gzipSync(wasm, { level: 9 }).length)} gzip)`);
console.log(`query ${qid}, ${passages.length} passages, max length ${maxLength}, median after a warm-up on 8 passages\n`);
console.log("| backend | load (s) | rerank 100 (ms, median) | pairs/s | runs (ms) |");
console.log("|---|---|---|---|---|");
for (const r of rows) {
  console.log(`| ${r.backend} | ${(r.loadMs / 1000).toFixed(1)} | ${r.median.toFixed(0)} | ` +
    `${(passages.length / (r.median / 1000)).toFixed(1)} | ${r.times.map((t) => t.toFixed(0)).join(", ")} |`);
}
