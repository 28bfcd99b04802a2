//! The CPU scoring path: the cross-encoder's forward pass, fused by hand and without padding.
//!
//! burn's flex backend runs the model op by op on padded batches and keeps most element-wise
//! work on one thread. Scoring needs none of that generality, so this path packs a batch's pairs
//! end to end (no padding at all), runs each projection as one multithreaded product over every
//! token (Q, K and V as one) against weights laid out once at load (`packed.rs`; the `gemm`
//! crate, which flex uses too, on CPUs without AVX2 + FMA and for attention), fuses bias + GELU
//! and bias + residual + LayerNorm into one pass per row, and computes attention per (pair, head)
//! in parallel. The burn model stays the definition: weights are read from it once, and the tests
//! hold these scores to the burn model's within 1e-4. [`Precision::Int8`] runs the projections
//! in 8-bit integers instead (`int8.rs`). A teacher in CPU distillation needs no gradient
//! either, so it runs here too, on padded rows that attend to real keys only, handing back the
//! burn model's hidden states and attention scores (`trace.rs`).
//!
//! Files: `layout.rs` reads the weights out of the burn model once and lays them out;
//! `forward.rs` is the forward pass; `gemm.rs` the matrix products and the tiled driver;
//! `kernels.rs` the element-wise kernels (the code that differs per target); `packed.rs` and
//! `int8.rs` the f32 and 8-bit projection micro-kernels; `trace.rs` the padded forward that
//! hands back every hidden state and attention score, for a teacher in CPU training.

#[macro_use]
mod kernels;
mod forward;
mod gemm;
mod int8;
mod layout;
mod packed;
mod trace;

pub use forward::FastCrossEncoder;
