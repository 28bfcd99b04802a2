// tinyrank in JavaScript: load a Hugging Face cross-encoder checkpoint and rerank passages with
// it, on WebGPU when the browser has it and on the CPU (WebAssembly, several threads) otherwise.
// The model, tokenizer, scoring and device policy are tinyrank-core compiled to wasm32; this
// file only fetches files (files.js), reports what WebGPU adapter the page has, starts CPU
// threads (threads.js) and sorts.
import init, {
  Bm25 as WasmBm25,
  Reranker as WasmReranker,
  checkDevice,
  checkPrecision,
  chooseBackend,
} from "./pkg/tinyrank_wasm.js";
import { clearModelCache, fetchCheckpoint } from "./files.js";
import { ThreadPool, threadCount } from "./threads.js";

export { clearModelCache };

let wasmReady;

/** Compiles the WebAssembly module once (workers instantiate the same compiled module) and
 * instantiates it in this thread. */
function loadWasm() {
  wasmReady ??= (async () => {
    const url = new URL("./pkg/tinyrank_wasm_bg.wasm", import.meta.url);
    let module;
    if (url.protocol === "file:") {
      // Node's fetch cannot read file: URLs.
      const fs = await import("node:fs/promises");
      module = await WebAssembly.compile(await fs.readFile(url));
    } else {
      const response = await fetch(url);
      if (!response.ok) throw new Error(`tinyrank: GET ${url} failed: ${response.status}`);
      // compileStreaming needs the application/wasm type, which not every server sends.
      module = response.headers.get("content-type")?.startsWith("application/wasm")
        ? await WebAssembly.compileStreaming(response)
        : await WebAssembly.compile(await response.arrayBuffer());
    }
    await init({ module_or_path: module });
    return module;
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

function bytes(value, what) {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (typeof value === "string" && what !== "weights") return new TextEncoder().encode(value);
  throw new TypeError(`tinyrank: ${what} must be an ArrayBuffer or Uint8Array`);
}

/** The checkpoint's files, fetched (`owned`: the bytes are the package's) or the caller's. */
async function checkpointFiles(source, options) {
  if (typeof source === "string" || source instanceof URL) {
    return { ...(await fetchCheckpoint(source, options)), owned: true };
  }
  if (source && typeof source === "object") {
    const tokenizer = source.tokenizer
      ? { name: "tokenizer.json", bytes: bytes(source.tokenizer, "tokenizer") }
      : { name: "vocab.txt", bytes: bytes(source.vocab, "vocab") };
    return {
      config: bytes(source.config, "config"),
      weights: bytes(source.weights, "weights"),
      tokenizer,
      tokenizerConfig: source.tokenizerConfig && bytes(source.tokenizerConfig, "tokenizerConfig"),
      origin: "in-memory checkpoint",
      owned: false,
    };
  }
  throw new TypeError("tinyrank: load() needs a checkpoint URL or { config, weights, tokenizer }");
}

export class Reranker {
  #inner;
  #backend;

  constructor(inner, backend) {
    this.#inner = inner;
    this.#backend = backend;
  }

  /**
   * Loads a checkpoint directory (URL, or path in Node) or in-memory files
   * `{ config, weights, tokenizer }` (tokenizer.json) or `{ config, weights, vocab }`.
   * - `device`: "auto" (WebGPU on a hardware adapter, else the CPU), "webgpu" (any adapter,
   *   software ones included) or "cpu".
   * - `precision`: "f32", or "int8" (8-bit projections, CPU only: faster, scores move slightly).
   * - `threads`: CPU threads (Web Workers), "auto" (the cores, at most 4) or a count; 1 scores
   *   in this thread.
   * - `cache`: keep downloaded files in Cache Storage for the next visit (default true).
   * - `onProgress({ file, loaded, total, cached })`: called as files arrive.
   */
  static async load(
    source,
    { device = "auto", precision = "f32", threads = "auto", cache = true, onProgress } = {},
  ) {
    const module = await loadWasm();
    checkDevice(device);
    checkPrecision(precision);
    const count = threadCount(threads);
    const files = await checkpointFiles(source, { cache, onProgress });
    // The page reports what it has; tinyrank-core's device policy decides.
    const adapter = device === "cpu" ? null : await webGpuAdapter();
    const facts = !adapter ? "none" : isFallbackAdapter(adapter) ? "software" : "hardware";
    if (count > 1 && chooseBackend(device, facts) === "cpu") {
      const pool = await ThreadPool.start(count, module, files, precision, files.owned);
      return new Reranker(pool, "cpu-threads");
    }
    const inner = await WasmReranker.fromFiles(
      new TextDecoder().decode(files.config),
      files.weights,
      files.tokenizer.name,
      files.tokenizer.bytes,
      files.tokenizerConfig,
      device,
      facts,
      files.origin,
      precision,
    );
    return new Reranker(inner, inner.backend);
  }

  /** "webgpu", "cpu-threads" (Web Workers) or "cpu" (this thread). */
  get backend() {
    return this.#backend;
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
