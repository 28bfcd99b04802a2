//! The comparison `tinyrank distill` prints at the end: the first stage, the bi-encoder, the
//! teacher and the student on the evaluation set, with their speed against the teacher's.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use tinyrank_core::{Precision, Reranker, SelectedDevice};
use tinyrank_distill::rerank::EvalSet;

use super::bi_encoder::BiEncoderData;

pub(super) struct Row {
    pub name: String,
    pub ndcg10: f64,
    pub rr10: f64,
    pub pairs_per_sec: Option<f64>,
}

/// What the table compares the student with.
pub(super) struct Baselines<'a> {
    pub bi_encoder: Option<&'a BiEncoderData>,
    /// None when --no-teacher-eval (or no teacher was loaded).
    pub teacher: Option<Reranker>,
}

/// Evaluates the baselines and the student in `student_dir`, prints the table and writes it
/// to `out`.
pub(super) fn compare(
    set: &EvalSet,
    baselines: Baselines<'_>,
    student_dir: &Path,
    student_name: &str,
    device: &SelectedDevice,
    max_len: usize,
    out: &Path,
) -> Result<()> {
    let mut rows = vec![first_stage_row(set)];
    if let Some(bi) = baselines.bi_encoder {
        rows.push(bi.eval_row(set)?);
    }
    if let Some(mut teacher) = baselines.teacher {
        rows.push(reranked_row(set, "teacher", &mut teacher, max_len)?);
    }
    let mut student = Reranker::load(student_dir, device, Precision::F32)?;
    rows.push(reranked_row(set, student_name, &mut student, max_len)?);
    let table = table(set, &rows);
    println!("{table}");
    tinyrank_distill::data::write_atomically(out, table.as_bytes())?;
    Ok(())
}

fn first_stage_row(set: &EvalSet) -> Row {
    let (ndcg10, rr10) = set.ndcg10_rr10(set.run());
    Row {
        name: "BM25".into(),
        ndcg10,
        rr10,
        pairs_per_sec: None,
    }
}

/// Reranks the set's top-k with `reranker` at `max_len`, timing the scoring.
fn reranked_row(set: &EvalSet, name: &str, reranker: &mut Reranker, max_len: usize) -> Result<Row> {
    reranker.set_max_len(max_len)?;
    let pairs = set.pairs();
    let bar = ProgressBar::new(pairs as u64).with_style(
        ProgressStyle::with_template(&format!(
            "{name}: {{bar:30}} {{pos}}/{{len}} pairs  {{per_sec}}  eta {{eta}}"
        ))
        .expect("valid template"),
    );
    let started = Instant::now();
    let run = set.rerank(reranker, |n| bar.inc(n as u64))?;
    let secs = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let (ndcg10, rr10) = set.ndcg10_rr10(&run);
    Ok(Row {
        name: name.into(),
        ndcg10,
        rr10,
        pairs_per_sec: Some(pairs as f64 / secs),
    })
}

fn table(set: &EvalSet, rows: &[Row]) -> String {
    let teacher_speed = rows
        .iter()
        .find(|r| r.name == "teacher")
        .and_then(|r| r.pairs_per_sec);
    let mut out = format!(
        "{} (top-{} reranked, {} queries)\n\n| run | nDCG@10 | RR@10 (min-rel 2) | pairs/s | vs teacher |\n|---|---|---|---|---|\n",
        set.dir.display(),
        set.top_k,
        set.run().query_ids.len()
    );
    for row in rows {
        let speed = row.pairs_per_sec.map_or("-".into(), |s| format!("{s:.1}"));
        let ratio = match (row.pairs_per_sec, teacher_speed) {
            (Some(s), Some(t)) => format!("{:.2}x", s / t),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "| {} | {:.4} | {:.4} | {speed} | {ratio} |\n",
            row.name, row.ndcg10, row.rr10
        ));
    }
    out
}
