//! `tinyrank retrieve`: the bi-encoder over a whole collection or a run's candidates.

use crate::common::*;
use crate::harness::*;
use tinyrank_distill::data::{Run, TextTable};

/// A dense first stage: every passage of the collection ranked by the bi-encoder, written as a
/// run that `eval` reads; the first hit is the passage the library's embeddings put first.
#[test]
fn retrieve_ranks_a_whole_collection_with_the_bi_encoder() {
    use tinyrank_core::BiEncoder;
    use tinyrank_core::bi_encoder::{BI_ENCODER_MAX_LEN, dot};

    let dir = tempfile::tempdir().unwrap();
    let data = small_training_set(dir.path());
    let output = dir.path().join("dense.run");
    let (queries, collection) = (data.join("queries.tsv"), data.join("collection.tsv"));
    let encoder = encoder_dir();
    let args = [
        "retrieve",
        "--model",
        path(&encoder),
        "--queries",
        path(&queries),
        "--collection",
        path(&collection),
        "--output",
        path(&output),
        "--top-k",
        "5",
    ];
    succeeds(&args);
    let run = std::fs::read_to_string(&output).unwrap();
    let lines: Vec<Vec<&str>> = run.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len(), 3 * 5);
    let scores: Vec<f32> = lines[..5].iter().map(|f| f[4].parse().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]) && scores[0] <= 1.0);

    let bi = BiEncoder::load(&encoder, BI_ENCODER_MAX_LEN).unwrap();
    let passages = TextTable::read(&collection, "passage").unwrap();
    let queries = TextTable::read(&queries, "query").unwrap();
    let (qid, query) = queries.iter().find(|(q, _)| *q == lines[0][0]).unwrap();
    let q = bi.embed(&[query]).unwrap().remove(0);
    let (ids, texts): (Vec<&str>, Vec<&str>) = passages.iter().unzip();
    let sims: Vec<f32> = bi
        .embed(&texts)
        .unwrap()
        .iter()
        .map(|p| dot(&q, p))
        .collect();
    let best = (0..sims.len())
        .max_by(|&a, &b| sims[a].total_cmp(&sims[b]))
        .unwrap();
    assert_eq!((lines[0][0], lines[0][2]), (qid, ids[best]));
    eval_json(&data.join("qrels.txt"), &output, &[]);

    // --run: only each query's BM25 candidates, rescored, the best of them first.
    let bm25_path = data.join("bm25.run");
    let bm25 = Run::read(&bm25_path).unwrap();
    let rescored_path = dir.path().join("rescored.run");
    let with_run: Vec<&str> = (args.iter())
        .map(|&a| {
            if a == path(&output) {
                path(&rescored_path)
            } else {
                a
            }
        })
        .chain(["--run", path(&bm25_path)])
        .collect();
    succeeds(&with_run);
    let rescored = Run::read(&rescored_path).unwrap();
    let candidates =
        |q: &str| -> Vec<&str> { bm25.results[q].iter().map(|e| e.doc_id.as_str()).collect() };
    let mine = candidates(qid);
    let best_candidate = (0..ids.len())
        .filter(|&i| mine.contains(&ids[i]))
        .max_by(|&a, &b| sims[a].total_cmp(&sims[b]))
        .unwrap();
    assert_eq!(rescored.ranked(qid)[0].doc_id, ids[best_candidate]);
    for q in &bm25.query_ids {
        let kept = rescored.ranked(q);
        assert_eq!(kept.len(), 5);
        assert!(
            kept.iter()
                .all(|e| candidates(q).contains(&e.doc_id.as_str()))
        );
    }
    // A candidate the collection lacks fails before the model loads, naming the file.
    let stray = dir.path().join("stray.run");
    std::fs::write(&stray, format!("{qid} Q0 no-such-passage 1 1.0 x\n")).unwrap();
    let with_stray: Vec<&str> = (args.iter().copied())
        .chain(["--run", path(&stray)])
        .collect();
    assert_rejected(
        &tinyrank(&with_stray),
        &["collection.tsv", "no passage with id no-such-passage"],
    );
}
