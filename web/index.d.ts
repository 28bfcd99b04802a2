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

export interface Ranked {
  /** Position of the passage in the input array. */
  index: number;
  score: number;
}

export class Reranker {
  /** Loads a Hugging Face cross-encoder directory (URL, or a path in Node) or in-memory files. */
  static load(source: string | URL | CheckpointFiles, options?: { device?: Device }): Promise<Reranker>;
  /** The backend in use. */
  readonly backend: "webgpu" | "cpu";
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
