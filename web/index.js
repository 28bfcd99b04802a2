// tinyrank in JavaScript: load a Hugging Face cross-encoder checkpoint and rerank passages with
// it, on WebGPU when the browser has it and on the CPU (WebAssembly) otherwise. The model,
// tokenizer, scoring and device policy are tinyrank-core compiled to wasm32; this file only
// fetches files, reports what WebGPU adapter the page has and sorts.
import init, {
  Bm25 as WasmBm25,
  Reranker as WasmReranker,
  checkDevice,
} from "./pkg/tinyrank_wasm.js";

const isNode = typeof process !== "undefined" && !!process.versions?.node;
let wasmReady;

function loadWasm() {
  wasmReady ??= (async () => {
    const url = new URL("./pkg/tinyrank_wasm_bg.wasm", import.meta.url);
    // Node's fetch cannot read file: URLs.
    const module_or_path =
      url.protocol === "file:" ? await (await import("node:fs/promises")).readFile(url) : url;
    await init({ module_or_path });
  })();
  return wasmReady;
}

/** The page's WebGPU adapter, or null when the browser gives none. */
async function webGpuAdapter() {
  if (!globalThis.navigator?.gpu) return null;
  try {
    return await navigator.gpu.requestAdapter();
  } catch {
    return null;
  }
}

/** A software adapter (Chromium's SwiftShader): a CPU emulation of a GPU, far slower than
 * the CPU backend, which tinyrank-core's device policy tells "auto" to skip. */
function isFallbackAdapter(adapter) {
  return Boolean(adapter.info?.isFallbackAdapter ?? adapter.isFallbackAdapter);
}

/** Reads `name` from a checkpoint location: an http(s) URL, or a directory path in Node. */
async function readFile(base, name, { optional = false } = {}) {
  const url = new URL(name, base);
  if (url.protocol === "file:") {
    const fs = await import("node:fs/promises");
    try {
      return new Uint8Array(await fs.readFile(url));
    } catch (e) {
      if (optional && e.code === "ENOENT") return null;
      throw new Error(`tinyrank: cannot read ${url.pathname}: ${e.message}`);
    }
  }
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`tinyrank: cannot fetch ${url}: ${e.message}`);
  }
  if (!response.ok) {
    if (optional && response.status === 404) return null;
    throw new Error(`tinyrank: GET ${url} failed: ${response.status} ${response.statusText}`);
  }
  return new Uint8Array(await response.arrayBuffer());
}

function checkpointBase(source) {
  const text = String(source);
  const dir = text.endsWith("/") ? text : `${text}/`;
  if (/^[a-z][a-z0-9+.-]*:/i.test(dir)) return new URL(dir);
  if (globalThis.location) return new URL(dir, globalThis.location.href);
  if (isNode) return new URL(dir, `file://${process.cwd()}/`);
  throw new Error(`tinyrank: cannot resolve the model location ${text}`);
}

/** Fetches config.json, model.safetensors and tokenizer.json (or vocab.txt) from `source`. */
async function fetchCheckpoint(source) {
  const base = checkpointBase(source);
  const [config, weights, tokenizerJson] = await Promise.all([
    readFile(base, "config.json"),
    readFile(base, "model.safetensors"),
    readFile(base, "tokenizer.json", { optional: true }),
  ]);
  const tokenizer = tokenizerJson
    ? { name: "tokenizer.json", bytes: tokenizerJson }
    : { name: "vocab.txt", bytes: await readFile(base, "vocab.txt") };
  const tokenizerConfig = tokenizerJson
    ? undefined
    : ((await readFile(base, "tokenizer_config.json", { optional: true })) ?? undefined);
  return { config, weights, tokenizer, tokenizerConfig, origin: base.href };
}

function bytes(value, what) {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (typeof value === "string" && what !== "weights") return new TextEncoder().encode(value);
  throw new TypeError(`tinyrank: ${what} must be an ArrayBuffer or Uint8Array`);
}

export class Reranker {
  #inner;

  constructor(inner) {
    this.#inner = inner;
  }

  /**
   * Loads a checkpoint directory (URL, or path in Node) or in-memory files
   * `{ config, weights, tokenizer }` (tokenizer.json) or `{ config, weights, vocab }`.
   * `device`: "auto" (WebGPU on a hardware adapter, else the CPU), "webgpu" (any adapter,
   * software ones included) or "cpu".
   */
  static async load(source, { device = "auto" } = {}) {
    await loadWasm();
    checkDevice(device);
    let files;
    if (typeof source === "string" || source instanceof URL) {
      files = await fetchCheckpoint(source);
    } else if (source && typeof source === "object") {
      const tokenizer = source.tokenizer
        ? { name: "tokenizer.json", bytes: bytes(source.tokenizer, "tokenizer") }
        : { name: "vocab.txt", bytes: bytes(source.vocab, "vocab") };
      files = {
        config: bytes(source.config, "config"),
        weights: bytes(source.weights, "weights"),
        tokenizer,
        tokenizerConfig: source.tokenizerConfig && bytes(source.tokenizerConfig, "tokenizerConfig"),
        origin: "in-memory checkpoint",
      };
    } else {
      throw new TypeError("tinyrank: load() needs a checkpoint URL or { config, weights, tokenizer }");
    }
    // The page reports what it has; tinyrank-core's device policy decides.
    const adapter = device === "cpu" ? null : await webGpuAdapter();
    const facts = !adapter ? "none" : isFallbackAdapter(adapter) ? "software" : "hardware";
    const config = new TextDecoder().decode(files.config);
    const inner = await WasmReranker.fromFiles(
      config,
      files.weights,
      files.tokenizer.name,
      files.tokenizer.bytes,
      files.tokenizerConfig,
      device,
      facts,
      files.origin,
    );
    return new Reranker(inner);
  }

  /** "webgpu" or "cpu". */
  get backend() {
    return this.#inner.backend;
  }

  /** Scores of `passages` for `query`, in input order (higher is more relevant). */
  async score(query, passages, { maxLength = 256 } = {}) {
    if (typeof query !== "string") throw new TypeError("tinyrank: the query must be a string");
    if (!Array.isArray(passages) || passages.some((p) => typeof p !== "string")) {
      throw new TypeError("tinyrank: passages must be an array of strings");
    }
    if (!Number.isInteger(maxLength) || maxLength < 4) {
      throw new RangeError(`tinyrank: maxLength must be an integer >= 4, not ${maxLength}`);
    }
    if (passages.length === 0) return new Float32Array(0);
    return await this.#inner.score(query, passages, maxLength);
  }

  /** The `topK` best passages as `{ index, score }`, best first. */
  async rerank(query, passages, { maxLength = 256, topK = passages.length } = {}) {
    const scores = await this.score(query, passages, { maxLength });
    return Array.from(scores, (score, index) => ({ index, score }))
      .sort((a, b) => b.score - a.score || a.index - b.index)
      .slice(0, topK);
  }

  /** Frees the model's memory now instead of at garbage collection. */
  free() {
    this.#inner.free();
  }
}

/** BM25 over documents held in the page: a first stage for the reranker. */
export class Bm25 {
  #inner;

  constructor(inner) {
    this.#inner = inner;
  }

  /** Indexes `documents` (English stemming and stop words). */
  static async create(documents) {
    if (!Array.isArray(documents) || documents.some((d) => typeof d !== "string")) {
      throw new TypeError("tinyrank: Bm25.create needs an array of strings");
    }
    await loadWasm();
    return new Bm25(new WasmBm25(documents));
  }

  get size() {
    return this.#inner.size;
  }

  /** The `limit` best documents as `{ index, score }`, best first. */
  search(query, limit = 10) {
    return this.#inner.search(String(query), limit);
  }

  free() {
    this.#inner.free();
  }
}
