//! What the main job trains on when `--train-top-k`, `--lr` and `--augment` are not given.

use tinyrank_core::{BackendKind, SelectedDevice};

/// A training recipe sized so that `tinyrank distill` with no flags ends within 10 minutes
/// wherever it runs (docs/results.md has the measurements behind each).
#[derive(Debug, Clone, Copy)]
pub(super) struct Recipe {
    pub name: &'static str,
    pub train_top_k: usize,
    pub learning_rate: f64,
    /// Pseudo-queries added to the default training sets.
    pub augment: u64,
}

impl Recipe {
    /// 2,928 pairs of DL 2020-2022 (BM25 top 16) and 1,024 augmented ones, 247 steps: about
    /// 7-9 minutes on 2 CPU cores. The short schedule wants a larger rate than the paper's
    /// (1e-4 gives a student below BM25).
    const CPU: Recipe = Recipe {
        name: "cpu",
        train_top_k: 16,
        learning_rate: 5e-4,
        augment: 64,
    };
    /// The CPU recipe's data with ten times its pseudo-queries (13,168 pairs, 823 steps): on
    /// DL19 it beats the full top-100 pools at 1e-4 (18,300 pairs, the acceptance settings) by
    /// 0.035 nDCG@10 over two seeds. 32 minutes on 2 CPU cores; on an H200, at the 186 pairs/s
    /// issue 14 measured for these steps, about a minute and a half of training.
    const GPU: Recipe = Recipe {
        name: "gpu",
        train_top_k: 16,
        learning_rate: 5e-4,
        augment: 640,
    };

    /// The recipe for the device that will train: a software GPU adapter counts as a CPU.
    pub fn for_device(device: &SelectedDevice) -> Self {
        if device.kind == BackendKind::Gpu && !device.software {
            Self::GPU
        } else {
            Self::CPU
        }
    }
}
