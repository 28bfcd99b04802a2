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

/** Scores of `pairs` by the native binary on the CPU ($TINYRANK_BIN, built by scripts/test.sh). */
export function nativeScores(pairs, modelDir, maxLength = 256) {
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
  ], { stdio: ["ignore", "ignore", "inherit"] });
  const byPair = new Map();
  for (const line of readFileSync(join(dir, "out.run"), "utf8").trim().split("\n")) {
    const [qid, , pid, , score] = line.split(" ");
    byPair.set(`${qid}/${pid}`, Number(score));
  }
  return pairs.map((p) => byPair.get(`${p.qid}/${p.pid}`));
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

/** A static server on 127.0.0.1: `mounts` maps URL prefixes to directories. */
export async function serve(mounts) {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const prefix = Object.keys(mounts)
      .filter((p) => path.startsWith(p))
      .sort((a, b) => b.length - a.length)[0];
    const root = prefix && mounts[prefix];
    const file = root && normalize(join(root, path.slice(prefix.length)));
    try {
      if (!file || !file.startsWith(normalize(root)) || !statSync(file).isFile()) throw 0;
      res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" });
      res.end(readFileSync(file));
    } catch {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
    }
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}
