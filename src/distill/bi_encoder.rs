//! The bi-encoder of `--bi-encoder`: hard negatives mined over the training collections, every
//! pair's prior score, and its own ranking as a row of the evaluation table.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use tinyrank_core::bi_encoder::{BI_ENCODER_MAX_LEN, dot};
use tinyrank_core::{BiEncoder, Reranker};
use tinyrank_distill::augment::Pool;
use tinyrank_distill::mining::{
    DenseIndex, blend_priors, merge_by_query, mined_examples, set_priors,
};
use tinyrank_distill::rerank::EvalSet;
use tinyrank_distill::train::Method;

use super::data::TrainingData;
use super::report::Row;
use super::{DistillArgs, Paths};
use crate::assets;

/// The bi-encoder with its index of the training collections.
pub(super) struct BiEncoderData {
    dir: PathBuf,
    model: BiEncoder,
    pool: Pool,
    index: DenseIndex,
}

impl BiEncoderData {
    /// Loaded when fine-tune or --mine-top-k needs it, or --bi-encoder names one; the pool is
    /// the --train collections without the evaluation set's passages.
    pub fn load(args: &DistillArgs, paths: &Paths) -> Result<Option<Self>> {
        let wanted = args.config.method == Method::FineTune || args.mine_top_k > 0;
        let Some(dir) = args
            .bi_encoder
            .clone()
            .or_else(|| wanted.then(|| assets::bi_encoder(&paths.assets)))
        else {
            return Ok(None);
        };
        let model = BiEncoder::load(&dir, BI_ENCODER_MAX_LEN)
            .with_context(|| format!("loading the bi-encoder {}", dir.display()))?;
        let pool = Pool::read(&paths.train, std::slice::from_ref(&paths.eval))?;
        let started = Instant::now();
        let index = DenseIndex::of_pool(&model, &pool)?;
        eprintln!(
            "bi-encoder {}: {} passages embedded in {:.1} s ({} held out by {})",
            dir.display(),
            index.len(),
            started.elapsed().as_secs_f64(),
            pool.excluded,
            paths.eval.display()
        );
        Ok(Some(Self {
            dir,
            model,
            pool,
            index,
        }))
    }

    /// Merges into `data` each training query's --mine-top-k mined passages, then gives every
    /// pair its prior score.
    pub fn apply(&self, data: &mut TrainingData, args: &DistillArgs, paths: &Paths) -> Result<()> {
        if args.mine_top_k > 0 {
            for dir in &paths.train {
                let mined = mined_examples(
                    dir,
                    &self.pool,
                    &self.index,
                    &self.model,
                    args.mine_top_k,
                    args.min_rel,
                )?;
                let before = data.examples.len();
                data.examples = merge_by_query(std::mem::take(&mut data.examples), mined);
                eprintln!(
                    "mined: {} passages new to the BM25 candidates of {}",
                    data.examples.len() - before,
                    dir.display()
                );
            }
        }
        set_priors(
            &mut data.examples,
            &self.model,
            &self.index,
            args.bi_encoder_scale,
        )?;
        data.sources.push(format!(
            "bi-encoder {}: mined top-{}, priors x {}",
            self.dir.display(),
            args.mine_top_k,
            args.bi_encoder_scale
        ));
        Ok(())
    }

    /// The bi-encoder's own ranking of the evaluation set's top-k, as a baseline.
    pub fn eval_row(&self, set: &EvalSet) -> Result<Row> {
        let run = set.rerank_by(|c| {
            let query = self.model.embed(&[c.query])?.remove(0);
            let passages = self.model.embed(&c.passages)?;
            Ok(passages.iter().map(|p| dot(&query, p)).collect())
        })?;
        let (ndcg10, rr10) = set.ndcg10_rr10(&run);
        Ok(Row {
            name: "bi-encoder".into(),
            ndcg10,
            rr10,
            pairs_per_sec: None,
        })
    }
}

/// --prior-teacher: mixes the teacher's scores of every training pair into the bi-encoder's
/// priors (after [`BiEncoderData::apply`]).
pub(super) fn blend_teacher(
    data: &mut TrainingData,
    teacher: &Reranker,
    weight: f64,
    dir: &Path,
) -> Result<()> {
    let started = Instant::now();
    blend_priors(&mut data.examples, teacher, weight)?;
    eprintln!(
        "priors: the teacher {} scored {} pairs in {:.1} s, mixed in at {weight}",
        dir.display(),
        data.examples.len(),
        started.elapsed().as_secs_f64()
    );
    data.sources
        .push(format!("priors mixed with {} at {weight}", dir.display()));
    Ok(())
}
