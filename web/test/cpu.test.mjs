// The CPU path in a real browser (Debian Chromium, headless): the fused engine in WebAssembly on
// Web Worker threads, f32 and int8 against the native binary, int8's DL19 quality, the model
// kept in Cache Storage with download progress, and pages with and without cross-origin
// isolation.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { chromium } from "playwright-core";

import {
  assertInt8Close,
  dl19Lists,
  goldenPairs,
  maxAbsDiff,
  nativeScores,
  ndcg10,
  repo,
  serve,
  teacherDir,
} from "./fixtures.mjs";

const headless = ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking"];
const weightsPath = "/models/teacher/model.safetensors";
let isolated;
let plain;
let browser;
let pairs;

before(async () => {
  const mounts = { "/": join(repo, "web"), "/models/teacher/": teacherDir };
  isolated = await serve(mounts, { isolated: true });
  plain = await serve(mounts);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: headless,
  });
  pairs = goldenPairs();
});

after(async () => {
  await browser?.close();
  isolated?.close();
  plain?.close();
});

/** A fresh page (own cache) on `server`'s test page; it must raise no error. */
async function openPage(server, context) {
  const page = await (context ?? (await browser.newContext())).newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${server.url}/test/page.html`);
  await page.waitForFunction(() => window.tinyrank, null, { timeout: 60_000 });
  return { page, errors };
}

/** In the page: loads the teacher with `options`, scores `lists` (one call per list). */
function scoreLists(page, lists, options, maxLength = 256) {
  return page.evaluate(
    async ({ lists, options, maxLength }) => {
      const progress = [];
      const reranker = await window.tinyrank.Reranker.load("/models/teacher/", {
        ...options,
        onProgress: (p) => progress.push(p),
      });
      const scores = [];
      for (const { query, passages } of lists) {
        scores.push(Array.from(await reranker.score(query, passages, { maxLength })));
      }
      const backend = reranker.backend;
      reranker.free();
      return { backend, scores, progress, isolated: crossOriginIsolated };
    },
    { lists, options, maxLength },
  );
}

/** The golden pairs grouped by query, as lists. */
function goldenLists() {
  const queries = [...new Set(pairs.map((p) => p.query))];
  return queries.map((query) => {
    const group = pairs.filter((p) => p.query === query);
    return { query, passages: group.map((p) => p.passage), order: group.map((p) => pairs.indexOf(p)) };
  });
}

function inPairOrder(lists, scores) {
  const out = new Array(pairs.length);
  lists.forEach((list, i) => list.order.forEach((at, k) => (out[at] = scores[i][k])));
  return out;
}

test("isolated page: threads, f32 and int8 equal native, the model downloaded once", { timeout: 600_000 }, async () => {
  const { page, errors } = await openPage(isolated);
  const lists = goldenLists();
  const downloads = () => isolated.requests.get(weightsPath) ?? 0;

  const f32 = await scoreLists(page, lists, { device: "cpu", threads: 2 });
  assert.equal(f32.backend, "cpu-threads");
  assert.equal(f32.isolated, true);
  const f32Diff = maxAbsDiff(inPairOrder(lists, f32.scores), nativeScores(pairs, teacherDir));
  console.log(`fused f32, 2 workers: max |browser - native| = ${f32Diff.toExponential(2)}`);
  assert.ok(f32Diff < 1e-4, `f32 differs from native by ${f32Diff}`);
  const weights = f32.progress.filter((p) => p.file === "model.safetensors");
  assert.ok(weights.length > 1 && weights.every((p) => !p.cached), "progress while downloading");
  assert.equal(weights.at(-1).loaded, weights.at(-1).total);
  assert.equal(downloads(), 1);

  // Second load: the weights come from Cache Storage (a HEAD request checks the version).
  const int8 = await scoreLists(page, lists, { device: "cpu", precision: "int8", threads: 2 });
  assert.equal(downloads(), 1, "the second load must not download the weights again");
  assert.ok(int8.progress.some((p) => p.file === "model.safetensors" && p.cached));
  const native8 = nativeScores(pairs, teacherDir, 256, { int8: true });
  const int8Diff = assertInt8Close(inPairOrder(lists, int8.scores), native8);
  console.log(`fused int8, 2 workers: |browser - native int8| max ${int8Diff.max.toFixed(3)}, mean ${int8Diff.mean.toFixed(3)}`);

  // A new page of the same browser profile is a second visit; cache: false downloads again.
  const second = await openPage(isolated, page.context());
  await scoreLists(second.page, lists.slice(0, 1), { device: "cpu", threads: 1 });
  assert.equal(downloads(), 1);
  await scoreLists(second.page, lists.slice(0, 1), { device: "cpu", threads: 1, cache: false });
  assert.equal(downloads(), 2);
  assert.deepEqual([...errors, ...second.errors], []);
  await page.context().close();
});

test("a page without isolation gets worker threads too; threads: 1 scores in the page", { timeout: 300_000 }, async () => {
  const { page, errors } = await openPage(plain);
  const lists = goldenLists().slice(0, 2);
  const threaded = await scoreLists(page, lists, { device: "cpu" });
  const single = await scoreLists(page, lists, { device: "cpu", threads: 1 });
  assert.equal(threaded.isolated, false);
  assert.equal(threaded.backend, "cpu-threads", "threads: \"auto\" on a 2-core machine");
  assert.equal(single.backend, "cpu");
  // Worker slices and one call score the same pairs the same way.
  assert.deepEqual(threaded.scores, single.scores);
  const rejected = await page.evaluate(() =>
    window.tinyrank.Reranker.load("/models/teacher/", { precision: "fp16" }).then(
      () => "loaded",
      (e) => e.message,
    ),
  );
  assert.match(rejected, /precision/);
  assert.deepEqual(errors, []);
  await page.context().close();
});

test("int8 keeps DL19 nDCG@10 within 0.005 of f32 in the browser", { timeout: 900_000 }, async () => {
  // Every judged DL19 query, BM25's top 30 (the top 100 would take minutes more on 2 cores).
  const lists = dl19Lists(43, 30);
  const { page, errors } = await openPage(isolated);
  const f32 = await scoreLists(page, lists, { device: "cpu" });
  const int8 = await scoreLists(page, lists, { device: "cpu", precision: "int8" });
  const [a, b] = [ndcg10(lists, f32.scores), ndcg10(lists, int8.scores)];
  assert.equal(a.queries, 43);
  const [f, i] = [a.means["nDCG@10"], b.means["nDCG@10"]];
  console.log(`DL19 (43 queries, BM25 top 30) nDCG@10 in Chromium: f32 ${f.toFixed(4)}, int8 ${i.toFixed(4)}`);
  assert.ok(Math.abs(f - i) <= 0.005, `int8 ${i} vs f32 ${f}`);
  assert.ok(f > 0.5, `f32 nDCG@10 ${f}: the teacher reranks far better than that`);
  assert.deepEqual(errors, []);
  await page.context().close();
});
