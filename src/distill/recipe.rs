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
    /// The full top-100 pools (18,300 pairs, 1,144 steps), the acceptance run's settings:
    /// about 5 minutes on an H200.
    const GPU: Recipe = Recipe {
        name: "gpu",
        train_top_k: 100,
        learning_rate: 1e-4,
        augment: 0,
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
