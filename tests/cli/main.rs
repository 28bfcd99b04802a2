//! The `tinyrank` binary on real data, and its handling of bad input: one line naming the file
//! and what is wrong, exit code 2, and no good output replaced.
#![allow(clippy::unwrap_used)] // test helpers unwrap, as #[test] functions may

#[path = "../common/mod.rs"]
mod common;
mod harness;

mod bench;
mod distill;
mod documents;
mod eval;
mod rerank;
mod retrieve;
mod training_data;
