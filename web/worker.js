// A CPU scoring thread of the package (see threads.js): its own WebAssembly instance of the
// shared compiled module and its own copy of the model, scoring the slices it is sent.
import init, { Reranker } from "./pkg/tinyrank_wasm.js";

let reranker;

async function handle(message) {
  if (message.type === "init") {
    await init({ module_or_path: message.module });
    const f = message.files;
    reranker = await Reranker.fromFiles(
      new TextDecoder().decode(f.config),
      f.weights,
      f.tokenizer.name,
      f.tokenizer.bytes,
      f.tokenizerConfig,
      "cpu",
      "none",
      f.origin,
      message.precision,
    );
    return {};
  }
  if (message.type === "score") {
    return { scores: await reranker.score(message.query, message.passages, message.maxLength) };
  }
  throw new Error(`tinyrank worker: unknown message ${message.type}`);
}

self.onmessage = async ({ data }) => {
  try {
    const reply = await handle(data);
    self.postMessage({ id: data.id, ok: true, ...reply }, reply.scores ? [reply.scores.buffer] : []);
  } catch (e) {
    self.postMessage({ id: data.id, ok: false, error: String(e?.message ?? e) });
  }
};
