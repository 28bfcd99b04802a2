// Reading a checkpoint's files: from a directory in Node, over HTTP in browsers, kept in Cache
// Storage between visits (revalidated with a HEAD request, so an updated model is fetched again)
// and streamed with progress reports.

const CACHE_NAME = "tinyrank-models-v1";
const isNode = typeof process !== "undefined" && !!process.versions?.node;

/** What identifies a file's version on the server: the first validator it sends. */
function version(headers) {
  return headers.get("etag") ?? headers.get("last-modified") ?? headers.get("content-length");
}

/** Response bytes, reporting `{ file, loaded, total, cached: false }` as they arrive. */
async function download(response, file, onProgress) {
  const total = Number(response.headers.get("content-length")) || undefined;
  if (!onProgress || !response.body) return new Uint8Array(await response.arrayBuffer());
  const chunks = [];
  let loaded = 0;
  const reader = response.body.getReader();
  onProgress({ file, loaded, total, cached: false });
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    onProgress({ file, loaded, total, cached: false });
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return bytes;
}

async function get(url, init) {
  try {
    return await fetch(url, init);
  } catch (e) {
    throw new Error(`tinyrank: cannot fetch ${url}: ${e.message}`);
  }
}

/** The cached copy of `url` if the server still has that version (or cannot be asked). */
async function fromCache(cache, url) {
  const cached = await cache.match(url);
  if (!cached) return null;
  try {
    const head = await fetch(url, { method: "HEAD", cache: "no-store" });
    if (head.status === 404) return null;
    if (head.ok && version(head.headers) !== version(cached.headers)) return null;
  } catch {
    // Offline: the cached copy is the best there is.
  }
  return cached;
}

async function readUrl(url, { optional, cache, onProgress }) {
  const file = url.pathname.split("/").pop();
  const store = cache && globalThis.caches ? await caches.open(CACHE_NAME).catch(() => null) : null;
  const cached = store && (await fromCache(store, url));
  if (cached) {
    const bytes = new Uint8Array(await cached.arrayBuffer());
    onProgress?.({ file, loaded: bytes.length, total: bytes.length, cached: true });
    return bytes;
  }
  const response = await get(url, { cache: store ? "no-store" : "default" });
  if (!response.ok) {
    if (optional && response.status === 404) return null;
    throw new Error(`tinyrank: GET ${url} failed: ${response.status} ${response.statusText}`);
  }
  const bytes = await download(response, file, onProgress);
  if (store) {
    const headers = new Headers(response.headers);
    headers.set("content-length", String(bytes.length));
    // A full disk or a private window refuses; the model still loads.
    await store.put(url, new Response(bytes, { headers })).catch(() => {});
  }
  return bytes;
}

async function readPath(url, { optional }) {
  const fs = await import("node:fs/promises");
  try {
    return new Uint8Array(await fs.readFile(url));
  } catch (e) {
    if (optional && e.code === "ENOENT") return null;
    throw new Error(`tinyrank: cannot read ${url.pathname}: ${e.message}`);
  }
}

/** Reads `name` below `base`: an http(s) URL, or a file: URL in Node. */
export function readFile(base, name, options = {}) {
  const url = new URL(name, base);
  return url.protocol === "file:" ? readPath(url, options) : readUrl(url, options);
}

function checkpointBase(source) {
  const text = String(source);
  const dir = text.endsWith("/") ? text : `${text}/`;
  if (/^[a-z][a-z0-9+.-]*:/i.test(dir)) return new URL(dir);
  if (globalThis.location) return new URL(dir, globalThis.location.href);
  if (isNode) return new URL(dir, `file://${process.cwd()}/`);
  throw new Error(`tinyrank: cannot resolve the model location ${text}`);
}

/**
 * Awaits the reads in list order, so that with a wrong location (every file
 * fails) the error always names the first, config.json, not whichever read
 * lost the race; and a failing config.json is reported at once, without
 * waiting for the weights to download.
 */
async function inListOrder(reads) {
  // The first failure in order is the one reported; later ones must not go unhandled.
  for (const read of reads) read.catch(() => {});
  const values = [];
  for (const read of reads) values.push(await read);
  return values;
}

/** Fetches config.json, model.safetensors and tokenizer.json (or vocab.txt) from `source`. */
export async function fetchCheckpoint(source, options) {
  const base = checkpointBase(source);
  const [config, weights, tokenizerJson] = await inListOrder([
    readFile(base, "config.json", options),
    readFile(base, "model.safetensors", options),
    readFile(base, "tokenizer.json", { ...options, optional: true }),
  ]);
  const tokenizer = tokenizerJson
    ? { name: "tokenizer.json", bytes: tokenizerJson }
    : { name: "vocab.txt", bytes: await readFile(base, "vocab.txt", options) };
  const tokenizerConfig = tokenizerJson
    ? undefined
    : ((await readFile(base, "tokenizer_config.json", { ...options, optional: true })) ?? undefined);
  return { config, weights, tokenizer, tokenizerConfig, origin: base.href };
}

/** Forgets every cached model (Cache Storage), e.g. to free the space. */
export async function clearModelCache() {
  if (globalThis.caches) await caches.delete(CACHE_NAME);
}
