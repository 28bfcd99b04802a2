//! tinyrank-distill: IR data formats, ranking metrics and reranking of TREC runs (the pieces
//! distillation trains and evaluates with).

pub mod augment;
pub mod data;
pub mod examples;
pub mod fusion;
pub mod losses;
pub mod metrics;
pub mod mining;
pub mod optim;
pub mod rerank;
pub mod student;
pub mod train;

pub use tinyrank_core as core;
