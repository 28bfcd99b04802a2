//! The shared assets' layout (models/, data/): where the commands' defaults point, in one place.

use std::path::{Path, PathBuf};

/// The assets' root: the flag, else $TINYRANK_SHARED, else ../shared.
pub fn root(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("TINYRANK_SHARED").map(PathBuf::from))
        .unwrap_or_else(|| Path::new("..").join("shared"))
}

/// The teacher cross-encoder.
pub fn teacher(assets: &Path) -> PathBuf {
    assets.join("models/teacher-minilm-l6")
}

/// The bi-encoder that mines negatives and scores priors.
pub fn bi_encoder(assets: &Path) -> PathBuf {
    assets.join("models/all-MiniLM-L6-v2")
}

/// The training sets: TREC DL 2020-2022 (never 2019, the evaluation set).
pub fn train_dirs(assets: &Path) -> Vec<PathBuf> {
    ["2020", "2021", "2022"]
        .map(|y| assets.join(format!("data/trec-dl-{y}")))
        .to_vec()
}

/// The evaluation set: TREC DL 2019.
pub fn eval_dir(assets: &Path) -> PathBuf {
    assets.join("data/trec-dl-2019")
}
