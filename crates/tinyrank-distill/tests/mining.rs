//! Hard negatives mined by the real all-MiniLM-L6-v2 over a pool of two collections: a judged
//! passage found under another collection's id keeps its grade (matched by text), and priors
//! are the bi-encoder's scaled cosine, or an ensemble's with the teacher mixed in.
#![allow(clippy::unwrap_used)] // test helpers unwrap, as #[test] functions may

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use common::*;
use tinyrank_core::bi_encoder::{BI_ENCODER_MAX_LEN, dot};
use tinyrank_core::{BiEncoder, Precision, Reranker};
use tinyrank_distill::augment::Pool;
use tinyrank_distill::mining::{DenseIndex, blend_priors, mined_examples, set_priors};

const ANSWER: &str = "A marathon is a long-distance foot race of 42.195 kilometres (26.2 miles).";
const NAMESAKE: &str = "The Battle of Marathon was fought in 490 BC between Athens and Persia.";
const OTHER: &str = "Preheat the oven to 180 degrees and butter a round cake tin.";

fn dataset(root: &Path, name: &str, collection: &[(&str, &str)], qrels: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let tsv: String = collection
        .iter()
        .map(|(id, t)| format!("{id}\t{t}\n"))
        .collect();
    std::fs::write(dir.join("collection.tsv"), tsv).unwrap();
    std::fs::write(dir.join("queries.tsv"), "q1\thow long is a marathon\n").unwrap();
    let run: String = collection
        .iter()
        .enumerate()
        .map(|(i, (id, _))| format!("q1 Q0 {id} {} {} bm25\n", i + 1, 10 - i))
        .collect();
    std::fs::write(dir.join("bm25.run"), run).unwrap();
    if !qrels.is_empty() {
        std::fs::write(dir.join("qrels.txt"), qrels).unwrap();
    }
    dir
}

#[test]
fn mined_passages_take_their_grade_by_text_and_priors_are_scaled_cosines() {
    let root = tempfile::tempdir().unwrap();
    // The query's own collection judges the answer (id a1) but does not hold it in its pool
    // order first; another collection holds the same text under id b7.
    let own = dataset(
        root.path(),
        "own",
        &[("a1", ANSWER), ("a2", OTHER)],
        "q1 0 a1 3\nq1 0 a2 0\n",
    );
    let other = dataset(
        root.path(),
        "other",
        &[("b7", ANSWER), ("b8", NAMESAKE)],
        "",
    );
    let pool = Pool::read(&[other.clone(), own.clone()], &[]).unwrap();
    assert_eq!(pool.len(), 3, "the answer's text is pooled once");
    let bi = BiEncoder::load(&encoder_dir(), BI_ENCODER_MAX_LEN).unwrap();
    let index = DenseIndex::of_pool(&bi, &pool).unwrap();

    let mut mined = mined_examples(&own, &pool, &index, &bi, 3, 2).unwrap();
    let passages: Vec<&str> = mined.iter().map(|e| e.passage.as_str()).collect();
    assert_eq!(passages, [ANSWER, NAMESAKE, OTHER]);
    let grades: Vec<Option<u8>> = mined.iter().map(|e| e.grade).collect();
    assert_eq!(grades, [Some(3), Some(0), Some(0)]);
    assert_eq!(mined[0].label, Some(1));
    // Without qrels nothing is graded.
    let ungraded = mined_examples(&other, &pool, &index, &bi, 2, 2).unwrap();
    assert!(
        ungraded
            .iter()
            .all(|e| e.grade.is_none() && e.label.is_none())
    );

    set_priors(&mut mined, &bi, &index, 20.0).unwrap();
    let query = bi.embed(&["how long is a marathon"]).unwrap().remove(0);
    let answer = bi.embed(&[ANSWER]).unwrap().remove(0);
    let want = 20.0 * dot(&query, &answer);
    assert!((mined[0].prior.unwrap() - want).abs() < 1e-4);
    let priors: Vec<f32> = mined.iter().map(|e| e.prior.unwrap()).collect();
    assert!(priors.windows(2).all(|w| w[0] >= w[1]), "{priors:?}");

    // Blended with the real teacher: weight 0 keeps the bi-encoder's priors, 1 gives the
    // teacher's scores, and between them both agree the answer comes first.
    let teacher = Reranker::load(&teacher_dir(), &cpu(), Precision::F32).unwrap();
    let texts: Vec<&str> = mined.iter().map(|e| e.passage.as_str()).collect();
    let scores = teacher.score("how long is a marathon", &texts).unwrap();
    let blended = |weight: f64| {
        let mut examples = mined.clone();
        blend_priors(&mut examples, &teacher, weight).unwrap();
        examples
            .iter()
            .map(|e| e.prior.unwrap())
            .collect::<Vec<f32>>()
    };
    assert!(max_abs_diff(&blended(0.0), &priors) < 1e-4);
    assert!(max_abs_diff(&blended(1.0), &scores) < 1e-4);
    let half = blended(0.5);
    assert!(half[0] > half[1] && half[0] > half[2], "{half:?}");
    assert!(half != priors && half != scores);
}
