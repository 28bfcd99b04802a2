/** "auto": WebGPU on a hardware adapter, else the CPU (WebAssembly); "webgpu": any adapter,
 * software (SwiftShader) included; "cpu". */
export type Device = "auto" | "webgpu" | "cpu";

/** A checkpoint already in memory: config.json, model.safetensors and tokenizer.json or vocab.txt. */
export interface CheckpointFiles {
  config: ArrayBuffer | Uint8Array | string;
  weights: ArrayBuffer | Uint8Array;
  tokenizer?: ArrayBuffer | Uint8Array | string;
  vocab?: ArrayBuffer | Uint8Array | string;
  /** tokenizer_config.json, read with vocab.txt (do_lower_case and friends). */
  tokenizerConfig?: ArrayBuffer | Uint8Array | string;
}

/** "f32", or "int8": 8-bit projections on the CPU (faster; scores move by a few hundredths). */
export type Precision = "f32" | "int8";

/** A download report: `loaded` of `total` bytes (total unknown without Content-Length). */
export interface Progress {
  file: string;
  loaded: number;
  total?: number;
  /** Read from Cache Storage instead of the network. */
  cached: boolean;
}

export interface LoadOptions {
  device?: Device;
  precision?: Precision;
  /** CPU threads (Web Workers, each with a model copy): "auto" (the cores, at most 4) or a
   * count; 1 scores in the calling thread. Node always uses 1. */
  threads?: "auto" | number;
  /** Keep downloaded files in Cache Storage for the next visit (default true). */
  cache?: boolean;
  onProgress?: (progress: Progress) => void;
}

export interface Ranked {
  /** Position of the passage in the input array. */
  index: number;
  score: number;
}

export class Reranker {
  /** Loads a Hugging Face cross-encoder directory (URL, or a path in Node) or in-memory files. */
  static load(source: string | URL | CheckpointFiles, options?: LoadOptions): Promise<Reranker>;
  /** The backend in use: WebGPU, the CPU on Web Workers, or the CPU in the calling thread. */
  readonly backend: "webgpu" | "cpu-threads" | "cpu";
  /** Scores in input order; pairs longer than maxLength tokens (default 256) are truncated. */
  score(query: string, passages: string[], options?: { maxLength?: number }): Promise<Float32Array>;
  /** The topK best passages, best first. */
  rerank(
    query: string,
    passages: string[],
    options?: { maxLength?: number; topK?: number },
  ): Promise<Ranked[]>;
  free(): void;
}

/** BM25 over documents held in the page (the `bm25` crate, in WebAssembly). */
export class Bm25 {
  static create(documents: string[]): Promise<Bm25>;
  readonly size: number;
  search(query: string, limit?: number): Ranked[];
  free(): void;
}

/** Deletes the models kept in Cache Storage. */
export function clearModelCache(): Promise<void>;
