// The package in a real browser (Debian Chromium, headless, driven by playwright-core): WebGPU
// through SwiftShader, the CPU fallback when the browser gives WebGPU no adapter, and bad input.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { chromium } from "playwright-core";

import { goldenPairs, maxAbsDiff, nativeScores, repo, serve, teacherDir, tinyDir } from "./fixtures.mjs";

const headless = [
  "--no-sandbox",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
// SwiftShader's Vulkan gives Chromium a (software) WebGPU adapter on machines without a GPU.
const webgpu = [
  "--enable-unsafe-webgpu",
  "--enable-features=Vulkan",
  "--use-vulkan=swiftshader",
  "--use-angle=swiftshader",
];

let server;
let pairs;
let native;

// SwiftShader runs WebGPU on the CPU at a few hundred MFLOP/s (about 30 s for one teacher pair
// at 256 tokens), so the WebGPU check scores all 20 pairs with the tiny test checkpoint and a few
// with the real teacher at 64 tokens; the CPU fallback scores all 20 with the teacher.
const teacherShort = { pairs: 3, maxLength: 64 };

before(async () => {
  // A checkpoint whose weights stop half-way.
  const broken = mkdtempSync(join(tmpdir(), "tinyrank-broken-"));
  for (const f of ["config.json", "vocab.txt", "tokenizer_config.json"]) {
    copyFileSync(join(tinyDir, f), join(broken, f));
  }
  const weights = readFileSync(join(tinyDir, "model.safetensors"));
  writeFileSync(join(broken, "model.safetensors"), weights.subarray(0, weights.length / 2));
  server = await serve({
    "/": join(repo, "web"),
    "/models/teacher/": teacherDir,
    "/models/tiny/": tinyDir,
    "/models/broken/": broken,
  });
  pairs = goldenPairs();
  native = {
    teacher: nativeScores(pairs, teacherDir),
    tiny: nativeScores(pairs, tinyDir),
    teacherShort: nativeScores(pairs.slice(0, teacherShort.pairs), teacherDir, teacherShort.maxLength),
  };
});

after(() => server?.close());

/** Runs `body(page)` on the test page in a fresh browser; the page must raise no error. */
async function inBrowser(flags, body) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [...headless, ...flags],
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${server.url}/test/page.html`);
    await page.waitForFunction(() => window.tinyrank, null, { timeout: 60_000 });
    await body(page);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
}

/** Scores in the page: each query's pairs in one call (a padded batch), in `pairs` order. */
function scoreInPage(page, { model, device, pairs, maxLength = 256 }) {
  return page.evaluate(
    async ({ model, device, pairs, maxLength }) => {
      const reranker = await window.tinyrank.Reranker.load(model, { device });
      const scores = new Array(pairs.length);
      for (const q of [...new Set(pairs.map((p) => p.query))]) {
        const at = pairs.flatMap((p, i) => (p.query === q ? [i] : []));
        const group = await reranker.score(q, at.map((i) => pairs[i].passage), { maxLength });
        at.forEach((i, k) => (scores[i] = group[k]));
      }
      const backend = reranker.backend;
      reranker.free();
      return { backend, scores };
    },
    { model, device, pairs, maxLength },
  );
}

function assertClose(label, scores, expected) {
  const diff = maxAbsDiff(scores, expected);
  console.log(`${label}: max |browser - native| = ${diff.toExponential(2)}`);
  assert.ok(diff < 1e-3, `${label} differs from native CPU by ${diff}`);
}

test("WebGPU: scores equal native CPU scores", { timeout: 900_000 }, () =>
  inBrowser(webgpu, async (page) => {
    const tiny = await scoreInPage(page, { model: "/models/tiny/", device: "webgpu", pairs });
    assert.equal(tiny.backend, "webgpu");
    // SwiftShader is a software adapter, tens of times slower than the CPU path: auto skips it.
    const auto = await page.evaluate(async () => {
      const reranker = await window.tinyrank.Reranker.load("/models/tiny/");
      const fallback = (await navigator.gpu.requestAdapter()).info.isFallbackAdapter;
      return { backend: reranker.backend, fallback };
    });
    assert.deepEqual(auto, { backend: "cpu-threads", fallback: true });
    assertClose("webgpu, tiny checkpoint, 20 pairs", tiny.scores, native.tiny);
    const teacher = await scoreInPage(page, {
      model: "/models/teacher/",
      device: "webgpu",
      pairs: pairs.slice(0, teacherShort.pairs),
      maxLength: teacherShort.maxLength,
    });
    assertClose("webgpu, teacher, 64 tokens", teacher.scores, native.teacherShort);
  }));

test("no WebGPU: the CPU fallback gives the same scores", { timeout: 600_000 }, () =>
  inBrowser([], async (page) => {
    const teacher = await scoreInPage(page, { model: "/models/teacher/", device: "auto", pairs });
    assert.equal(teacher.backend, "cpu-threads");
    assertClose("cpu-wasm, teacher, 20 pairs", teacher.scores, native.teacher);
    const tiny = await scoreInPage(page, { model: "/models/tiny/", device: "auto", pairs });
    assertClose("cpu-wasm, tiny checkpoint, 20 pairs", tiny.scores, native.tiny);
    await assert.rejects(
      page.evaluate(() => window.tinyrank.Reranker.load("/models/teacher/", { device: "webgpu" })),
      /WebGPU/,
    );
  }));

test("bad input gives rejected promises, not a dead page", { timeout: 600_000 }, () =>
  inBrowser([], async (page) => {
    const outcome = await page.evaluate(async () => {
      const { Reranker } = window.tinyrank;
      const message = (p) => p.then(() => "resolved", (e) => String(e.message ?? e));
      const tiny = await Reranker.load("/models/tiny/", { device: "cpu" });
      const many = Array.from({ length: 10_000 }, (_, i) => `passage ${i} ${"long ".repeat(i % 100 ? 1 : 5000)}`);
      const started = performance.now();
      const scores = await tiny.score("query", many, { maxLength: 64 });
      return {
        missing: await message(Reranker.load("/models/nothing-here/")),
        truncated: await message(Reranker.load("/models/broken/")),
        emptyQuery: await message(tiny.score("", ["passage"])),
        many: scores.length,
        finite: scores.every(Number.isFinite),
        seconds: (performance.now() - started) / 1000,
        after: (await tiny.score("query", ["still alive"])).length,
      };
    });
    assert.match(outcome.missing, /404/);
    assert.match(outcome.truncated, /safetensors/);
    assert.match(outcome.emptyQuery, /query is empty/);
    assert.equal(outcome.many, 10_000);
    assert.ok(outcome.finite);
    assert.equal(outcome.after, 1);
  }));

// The demo on the CPU fallback: the teacher on SwiftShader's WebGPU would take minutes per query.
test("demo: a typed query shows BM25 and the model's reranking of it", { timeout: 600_000 }, async () => {
  const { spawn } = await import("node:child_process");
  const { mkdirSync } = await import("node:fs");
  const dl19 = join(process.env.TINYRANK_SHARED ?? join(repo, "../shared"), "data/trec-dl-2019");
  const demo = spawn(process.env.TINYRANK_BIN, [
    "demo", "--model", teacherDir, "--data", dl19, "--port", "0", "--root", repo,
  ], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const url = await new Promise((ok, fail) => {
      demo.stdout.on("data", (chunk) => {
        const found = String(chunk).match(/http:\/\/127\.0\.0\.1:\d+\//);
        if (found) ok(found[0]);
      });
      demo.on("exit", (code) => fail(new Error(`tinyrank demo exited with ${code}`)));
    });
    const browser = await chromium.launch({
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      args: headless,
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
      const errors = [];
      page.on("pageerror", (e) => errors.push(e.message));
      await page.goto(url);
      await page.waitForSelector("body[data-ready=true]", { timeout: 300_000 });
      // `tinyrank demo` serves the page cross-origin isolated; the CPU path runs on workers.
      assert.equal(await page.getAttribute("body", "data-backend"), "cpu-threads");
      assert.equal(await page.evaluate(() => crossOriginIsolated), true);
      const query = pairs[0].query;
      await page.fill("#depth", "10");
      await page.fill("#query", query);
      await page.click("#go");
      await page.waitForSelector("body[data-searched]", { timeout: 300_000 });
      const ids = (list) => page.$$eval(`#${list} li`, (items) => items.map((li) => li.dataset.id));
      const [bm25, reranked] = [await ids("bm25"), await ids("reranked")];
      assert.equal(bm25.length, 10);
      assert.deepEqual([...reranked].sort(), [...bm25].sort(), "the reranked list reorders BM25's");
      // The order the model gives natively, for the same candidates.
      const collection = new Map(
        readFileSync(join(dl19, "collection.tsv"), "utf8").split("\n").filter(Boolean)
          .map((l) => [l.slice(0, l.indexOf("\t")), l.slice(l.indexOf("\t") + 1)]),
      );
      const candidates = bm25.map((pid) => ({ qid: "q", pid, query, passage: collection.get(pid) }));
      const scores = nativeScores(candidates, teacherDir);
      const expected = candidates
        .map((c, i) => ({ pid: c.pid, score: scores[i] }))
        .sort((a, b) => b.score - a.score)
        .map((c) => c.pid);
      assert.deepEqual(reranked, expected);
      assert.match(await page.textContent("#timing"), /BM25 .* ms · rerank 10 passages .* ms on cpu-threads/);
      const artifacts = process.env.TINYRANK_ARTIFACTS ?? join(repo, "artifacts");
      mkdirSync(artifacts, { recursive: true });
      await page.screenshot({ path: join(artifacts, "demo.png"), fullPage: true });
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  } finally {
    demo.kill();
  }
});
