// The demo page: BM25 over the served corpus (in WebAssembly), the top-k reranked by the served
// cross-encoder, both lists side by side with each stage's latency. Served by `tinyrank demo`:
// /tinyrank/ is the npm package, /model/ the checkpoint, /data/ the dataset directory.
import { Bm25, Reranker } from "/tinyrank/index.js";

const $ = (id) => document.getElementById(id);
const status = (text, error = false) => {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
};

function parseTable(text) {
  const rows = [];
  for (const line of text.split("\n")) {
    const tab = line.indexOf("\t");
    if (tab > 0) rows.push([line.slice(0, tab).trim(), line.slice(tab + 1)]);
  }
  return rows;
}

function parseQrels(text) {
  const grades = new Map();
  for (const line of text.split("\n")) {
    const [qid, , docid, grade] = line.trim().split(/\s+/);
    if (grade === undefined) continue;
    if (!grades.has(qid)) grades.set(qid, new Map());
    grades.get(qid).set(docid, Number(grade));
  }
  return grades;
}

async function fetchText(path, optional = false) {
  const response = await fetch(path);
  if (!response.ok) {
    if (optional && response.status === 404) return null;
    throw new Error(`GET ${path}: ${response.status} ${response.statusText}`);
  }
  return response.text();
}

/** nDCG@10 with trec_eval's gains (the grade) and ideal ranking (every judged document). */
function ndcg10(ids, judged) {
  const dcg = (grades) => grades.slice(0, 10).reduce((s, g, i) => s + (g > 0 ? g / Math.log2(i + 2) : 0), 0);
  const ideal = dcg([...judged.values()].sort((a, b) => b - a));
  return ideal > 0 ? dcg(ids.map((id) => judged.get(id) ?? 0)) / ideal : 0;
}

let state;

/** The model download, file by file ("from cache" on a later visit). */
const progress = new Map();
function showProgress({ file, loaded, total, cached }) {
  progress.set(file, { loaded, total, cached });
  const mb = (n) => (n / 1e6).toFixed(1);
  const parts = [...progress].map(([name, p]) =>
    p.cached ? `${name} from cache` : `${name} ${mb(p.loaded)}${p.total ? ` / ${mb(p.total)}` : ""} MB`,
  );
  status(`Loading the model: ${parts.join(", ")}…`);
}

const BACKENDS = {
  webgpu: "WebGPU",
  "cpu-threads": "the CPU (WebAssembly, Web Workers)",
  cpu: "the CPU (WebAssembly, one thread)",
};

async function start() {
  const started = performance.now();
  const [collection, queries, qrels, reranker] = await Promise.all([
    fetchText("/data/collection.tsv"),
    fetchText("/data/queries.tsv", true),
    fetchText("/data/qrels.txt", true),
    Reranker.load("/model/", { onProgress: showProgress }),
  ]);
  const docs = parseTable(collection);
  const indexStarted = performance.now();
  const bm25 = await Bm25.create(docs.map(([, text]) => text));
  const indexMs = performance.now() - indexStarted;
  const examples = queries ? parseTable(queries) : [];
  for (const [qid, text] of examples) {
    const option = document.createElement("option");
    option.value = qid;
    option.textContent = text;
    $("examples").append(option);
  }
  state = { docs, bm25, reranker, examples, qrels: qrels ? parseQrels(qrels) : new Map() };
  $("query").disabled = $("go").disabled = false;
  status(
    `Ready: ${docs.length.toLocaleString()} passages indexed in ${indexMs.toFixed(0)} ms; ` +
      `model on ${BACKENDS[reranker.backend]}; ` +
      `loaded in ${((performance.now() - started) / 1000).toFixed(1)} s.`,
  );
  document.body.dataset.backend = reranker.backend;
  document.body.dataset.ready = "true";
}

function render(list, hits, judged) {
  list.replaceChildren(
    ...hits.map(({ index, score }) => {
      const [id, text] = state.docs[index];
      const li = document.createElement("li");
      li.dataset.id = id;
      const meta = document.createElement("div");
      meta.className = "meta";
      if (judged) {
        const grade = judged.get(id);
        const badge = document.createElement("span");
        badge.className = `grade g${grade ?? "x"}`;
        badge.textContent = grade ?? "?";
        badge.title = grade === undefined ? "not judged" : `judged ${grade}`;
        meta.append(badge);
      }
      meta.append(`${id} · score ${score.toFixed(3)}`);
      const body = document.createElement("div");
      body.textContent = text.length > 320 ? `${text.slice(0, 320)}…` : text;
      li.append(body, meta);
      return li;
    }),
  );
}

async function search(query, qid) {
  if (!state || !query.trim()) return;
  const depth = Math.max(1, Math.min(100, Number($("depth").value) || 20));
  status("Searching…");
  const t0 = performance.now();
  const candidates = state.bm25.search(query, depth);
  const t1 = performance.now();
  const ranked = await state.reranker.rerank(
    query,
    candidates.map(({ index }) => state.docs[index][1]),
    { maxLength: 256 },
  );
  const t2 = performance.now();
  const reranked = ranked.map(({ index, score }) => ({ index: candidates[index].index, score }));
  const judged = qid ? state.qrels.get(qid) : undefined;
  render($("bm25"), candidates, judged);
  render($("reranked"), reranked, judged);
  const ids = (hits) => hits.map(({ index }) => state.docs[index][0]);
  $("bm25-ndcg").textContent = judged ? `nDCG@10 ${ndcg10(ids(candidates), judged).toFixed(3)}` : "";
  $("rerank-ndcg").textContent = judged ? `nDCG@10 ${ndcg10(ids(reranked), judged).toFixed(3)}` : "";
  $("timing").textContent =
    `BM25 ${(t1 - t0).toFixed(1)} ms · rerank ${candidates.length} passages ` +
    `${(t2 - t1).toFixed(0)} ms on ${state.reranker.backend}`;
  status(candidates.length ? "Done." : "BM25 found nothing for this query.");
  document.body.dataset.searched = String(Number(document.body.dataset.searched ?? 0) + 1);
}

$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const query = $("query").value;
  const example = state?.examples.find(([, text]) => text === query);
  search(query, example?.[0]).catch((e) => status(`Search failed: ${e.message}`, true));
});
$("examples").addEventListener("change", () => {
  const example = state.examples.find(([qid]) => qid === $("examples").value);
  if (!example) return;
  $("query").value = example[1];
  search(example[1], example[0]).catch((e) => status(`Search failed: ${e.message}`, true));
});

start().catch((e) => status(`Could not start: ${e.message}`, true));
