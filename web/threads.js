// CPU scoring on several threads: Web Workers, each with its own instance of the compiled
// WebAssembly module and its own copy of the model, each scoring a slice of the passages. Plain
// workers need no SharedArrayBuffer, so this works on any page, cross-origin isolated or not;
// the price is one copy of the model per thread.

/** Threads for `requested` ("auto" or a count): "auto" is the cores, at most 4 (each thread
 * holds a model copy), and 1 where there are no Web Workers (Node). */
export function threadCount(requested) {
  if (requested !== "auto" && !(Number.isInteger(requested) && requested >= 1)) {
    throw new RangeError(`tinyrank: threads must be "auto" or an integer >= 1, not ${requested}`);
  }
  if (typeof Worker === "undefined") return 1;
  if (requested === "auto") return Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 4));
  return requested;
}

/** Splits `passages` into at most `parts` contiguous slices of about equal text length (the
 * work grows with the tokens), as [start, end) index ranges. */
function slices(passages, parts) {
  const total = passages.reduce((sum, p) => sum + p.length + 1, 0);
  const ranges = [];
  let start = 0;
  let seen = 0;
  for (let i = 0; i < passages.length; i++) {
    seen += passages[i].length + 1;
    if (seen >= (total * (ranges.length + 1)) / parts || i === passages.length - 1) {
      ranges.push([start, i + 1]);
      start = i + 1;
    }
  }
  return ranges;
}

class Thread {
  #worker;
  #pending = new Map();
  #next = 0;

  constructor() {
    this.#worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
    this.#worker.onmessage = ({ data }) => {
      const pending = this.#pending.get(data.id);
      this.#pending.delete(data.id);
      if (data.ok) pending?.resolve(data);
      else pending?.reject(new Error(data.error));
    };
    this.#worker.onerror = (event) => {
      event.preventDefault?.();
      const error = new Error(`tinyrank: a scoring worker failed: ${event.message ?? "could not start"}`);
      for (const { reject } of this.#pending.values()) reject(error);
      this.#pending.clear();
    };
  }

  call(message, transfer = []) {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ ...message, id }, transfer);
    });
  }

  terminate() {
    this.#worker.terminate();
  }
}

/** Workers that score together; `score` has the in-page reranker's signature. */
export class ThreadPool {
  #threads;

  constructor(threads) {
    this.#threads = threads;
  }

  /** Starts `count` workers on the compiled `module`, each building the model from `files`;
   * `owned`: the weight bytes are the package's own (fetched), so the last worker may take them
   * instead of a copy. */
  static async start(count, module, files, precision, owned) {
    const threads = Array.from({ length: count }, () => new Thread());
    try {
      await Promise.all(
        threads.map((thread, i) => {
          // The last worker takes the fetched weights; the others get copies.
          const transfer = owned && i === count - 1 ? [files.weights.buffer] : [];
          return thread.call({ type: "init", module, files, precision }, transfer);
        }),
      );
    } catch (e) {
      for (const thread of threads) thread.terminate();
      throw e;
    }
    return new ThreadPool(threads);
  }

  get size() {
    return this.#threads.length;
  }

  async score(query, passages, maxLength) {
    const ranges = slices(passages, this.#threads.length);
    const parts = await Promise.all(
      ranges.map(([start, end], i) =>
        this.#threads[i].call({ type: "score", query, passages: passages.slice(start, end), maxLength }),
      ),
    );
    const scores = new Float32Array(passages.length);
    parts.forEach((part, i) => scores.set(part.scores, ranges[i][0]));
    return scores;
  }

  free() {
    for (const thread of this.#threads) thread.terminate();
  }
}
