// What the package tests share: where the assets are, the 20 TREC DL 2019 pairs of the parity
// goldens with their texts, native CPU scores for them from the `tinyrank` binary, and a static
// server for browser pages.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const repo = resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const shared = process.env.TINYRANK_SHARED ?? resolve(repo, "../shared");
export const teacherDir = join(shared, "models/teacher-minilm-l6");
export const tinyDir = join(repo, "tests/golden/tiny-2logit");
const dl19 = join(shared, "data/trec-dl-2019");

function readTable(path) {
  const table = new Map();
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const tab = line.indexOf("\t");
    if (tab > 0) table.set(line.slice(0, tab), line.slice(tab + 1));
  }
  return table;
}

/** The golden pairs as { qid, pid, query, passage }, max length 256 (long passages are cut). */
export function goldenPairs() {
  const golden = JSON.parse(readFileSync(join(repo, "tests/golden/model_parity.json"), "utf8"));
  const queries = readTable(join(dl19, "queries.tsv"));
  const collection = readTable(join(dl19, "collection.tsv"));
  return golden.pairs.map(({ qid, pid }) => ({
    qid,
    pid,
    query: queries.get(qid),
    passage: collection.get(pid),
  }));
}

/** Scores of `pairs` by the native binary on the CPU ($TINYRANK_BIN, built by scripts/test.sh),
 * in f32 or (`int8`) with 8-bit projections. */
export function nativeScores(pairs, modelDir, maxLength = 256, { int8 = false } = {}) {
  const bin = process.env.TINYRANK_BIN;
  if (!bin) throw new Error("set TINYRANK_BIN to the native tinyrank binary");
  const dir = mkdtempSync(join(tmpdir(), "tinyrank-native-"));
  const qids = [...new Set(pairs.map((p) => p.qid))];
  writeFileSync(
    join(dir, "queries.tsv"),
    qids.map((q) => `${q}\t${pairs.find((p) => p.qid === q).query}\n`).join(""),
  );
  writeFileSync(join(dir, "collection.tsv"), pairs.map((p) => `${p.pid}\t${p.passage}\n`).join(""));
  writeFileSync(join(dir, "in.run"), pairs.map((p, i) => `${p.qid} Q0 ${p.pid} ${i + 1} 0 x\n`).join(""));
  execFileSync(bin, [
    "rerank", "--model", modelDir, "--queries", join(dir, "queries.tsv"),
    "--collection", join(dir, "collection.tsv"), "--run", join(dir, "in.run"),
    "--max-len", String(maxLength), "--device", "cpu", "--output", join(dir, "out.run"),
    ...(int8 ? ["--int8"] : []),
  ], { stdio: ["ignore", "ignore", "inherit"] });
  const byPair = new Map();
  for (const line of readFileSync(join(dir, "out.run"), "utf8").trim().split("\n")) {
    const [qid, , pid, , score] = line.split(" ");
    byPair.set(`${qid}/${pid}`, Number(score));
  }
  return pairs.map((p) => byPair.get(`${p.qid}/${p.pid}`));
}

/** The BM25 top-`depth` lists of the first `count` judged TREC DL 2019 queries, with texts. */
export function dl19Lists(count, depth = 100) {
  const queries = readTable(join(dl19, "queries.tsv"));
  const collection = readTable(join(dl19, "collection.tsv"));
  const judged = new Set(readFileSync(join(dl19, "qrels.txt"), "utf8").split("\n").map((l) => l.split(/\s+/)[0]));
  const lists = new Map();
  for (const line of readFileSync(join(dl19, "bm25.run"), "utf8").trim().split("\n")) {
    const [qid, , pid] = line.split(/\s+/);
    if (!judged.has(qid)) continue;
    if (!lists.has(qid)) {
      if (lists.size === count) continue;
      lists.set(qid, { qid, query: queries.get(qid), pids: [], passages: [] });
    }
    const list = lists.get(qid);
    if (list.pids.length < depth) {
      list.pids.push(pid);
      list.passages.push(collection.get(pid));
    }
  }
  return [...lists.values()];
}

/** nDCG@10 of `lists` ranked by `scores` (one array per list), by `tinyrank eval` on the DL19
 * qrels, averaged over these queries only. */
export function ndcg10(lists, scores) {
  const dir = mkdtempSync(join(tmpdir(), "tinyrank-eval-"));
  const run = lists.flatMap((list, i) =>
    list.pids.map((pid, k) => `${list.qid} Q0 ${pid} ${k + 1} ${scores[i][k]} browser\n`),
  );
  writeFileSync(join(dir, "browser.run"), run.join(""));
  const out = execFileSync(process.env.TINYRANK_BIN, [
    "eval", "--qrels", join(dl19, "qrels.txt"), "--run", join(dir, "browser.run"),
    "--metrics", "ndcg@10", "--judged-in-run-only", "--json",
  ], { encoding: "utf8" });
  return JSON.parse(out);
}

/** How far int8 scores in WebAssembly may be from native int8 ones. The integer products are
 * exact on both, but f32 steps between them (attention, LayerNorm) round differently (no FMA
 * in wasm, other summation orders); a 1e-6 change that moves an activation across a rounding
 * step of its 8-bit quantisation moves a score by up to a few hundredths (measured: 0.041 at
 * most and 0.013 on average over the 20 golden pairs; int8 vs f32 is 0.21 at most). A misplaced
 * byte or a wrong scale gives errors of the score's own size. */
export const int8Tolerance = { max: 0.1, mean: 0.03 };

export function assertInt8Close(scores, native) {
  const diffs = Array.from(scores, (x, i) => Math.abs(x - native[i]));
  const max = Math.max(...diffs);
  const mean = diffs.reduce((s, d) => s + d, 0) / diffs.length;
  if (max >= int8Tolerance.max || mean >= int8Tolerance.mean) {
    throw new Error(`int8 scores differ from native int8: max ${max}, mean ${mean}`);
  }
  return { max, mean };
}

export function maxAbsDiff(a, b) {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  return Math.max(...Array.from(a, (x, i) => Math.abs(x - b[i])));
}

const types = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".css": "text/css",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".txt": "text/plain; charset=utf-8",
  ".tsv": "text/plain; charset=utf-8",
  ".png": "image/png",
};

/** A static server on 127.0.0.1: `mounts` maps URL prefixes to directories. `isolated`: send
 * COOP + COEP, making pages cross-origin isolated (as `tinyrank demo` does). Every file gets an
 * ETag, which the package compares with its Cache Storage copy; `requests` counts GETs by path. */
export async function serve(mounts, { isolated = false } = {}) {
  const requests = new Map();
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const prefix = Object.keys(mounts)
      .filter((p) => path.startsWith(p))
      .sort((a, b) => b.length - a.length)[0];
    const root = prefix && mounts[prefix];
    const file = root && normalize(join(root, path.slice(prefix.length)));
    try {
      const stat = file && file.startsWith(normalize(root)) && statSync(file);
      if (!stat?.isFile()) throw 0;
      const headers = {
        "content-type": types[extname(file)] ?? "application/octet-stream",
        "content-length": stat.size,
        etag: `"${stat.size.toString(16)}-${stat.mtimeMs.toString(16)}"`,
        ...(isolated && {
          "cross-origin-opener-policy": "same-origin",
          "cross-origin-embedder-policy": "require-corp",
        }),
      };
      res.writeHead(200, headers);
      if (req.method === "HEAD") return res.end();
      requests.set(path, (requests.get(path) ?? 0) + 1);
      res.end(readFileSync(file));
    } catch {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
    }
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => server.close(), requests };
}
