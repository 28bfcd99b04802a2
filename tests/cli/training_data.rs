//! Training data read as `distill` reads it: augmentation, triples, labels from qrels.

use std::path::Path;

use crate::common::*;
use crate::harness::*;
use tinyrank_distill::data::TextTable;

/// Augmentation over the real training collections: a dataset directory with the asked number of
/// queries, none of DL19's passages or queries in it, and an existing directory left alone.
#[test]
fn augment_writes_training_data_without_the_evaluation_set() {
    let dir = tempfile::tempdir().unwrap();
    let (out, assets) = (dir.path().join("aug"), shared());
    let args = [
        "augment",
        "--assets",
        path(&assets),
        "--out",
        path(&out),
        "--queries",
        "40",
        "--top-k",
        "4",
        "--label-source",
    ];
    succeeds(&args);
    let read = |dir: &Path, name: &str, what: &str| TextTable::read(&dir.join(name), what).unwrap();
    let queries = read(&out, "queries.tsv", "query");
    assert_eq!(queries.len(), 40);
    let lines = |name: &str| {
        std::fs::read_to_string(out.join(name))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!((lines("bm25.run"), lines("qrels.txt")), (160, 40));
    let held_out = read(&dl19(), "collection.tsv", "passage");
    let held_out: std::collections::HashSet<&str> = held_out.iter().map(|(_, t)| t).collect();
    let pool = read(&out, "collection.tsv", "passage");
    assert!(pool.len() > 10_000);
    assert!(pool.iter().all(|(_, text)| !held_out.contains(text)));
    let dl19_queries = read(&dl19(), "queries.tsv", "query");
    let generated: Vec<&str> = queries.iter().map(|(_, q)| q).collect();
    assert!(dl19_queries.iter().all(|(_, q)| !generated.contains(&q)));
    let before = std::fs::read(out.join("bm25.run")).unwrap();
    assert_rejected(&tinyrank(&args), &[path(&out), "already exists"]);
    assert_eq!(std::fs::read(out.join("bm25.run")).unwrap(), before);
    let one = ["augment", "--top-k", "1"];
    assert_rejected(&tinyrank(&one), &["--top-k", "at least 2"]);
}

/// `augment --variants`: real DL20-22 queries with words replaced by their neighbours in the
/// shared teacher's word embeddings, unjudged, none of them a real query.
#[test]
fn augment_writes_query_variants() {
    let dir = tempfile::tempdir().unwrap();
    let (out, assets) = (dir.path().join("var"), shared());
    let args = ["augment", "--assets", path(&assets), "--variants"];
    let with_labels = [&args[..], &["--label-source"]].concat();
    assert_rejected(&tinyrank(&with_labels), &["--label-source", "--variants"]);
    let written = [&args[..], &["--out", path(&out), "--queries", "30"]].concat();
    let (_, stderr) = succeeds(&written);
    assert!(stderr.contains("183 real queries to vary"), "{stderr}");
    assert!(!out.join("qrels.txt").exists());
    let table = |dir: &Path| TextTable::read(&dir.join("queries.tsv"), "query").unwrap();
    let variants = table(&out);
    assert_eq!(variants.len(), 30);
    let words = tinyrank_distill::augment::query_words;
    let real: Vec<Vec<String>> = ["2020", "2021", "2022"]
        .iter()
        .flat_map(|y| {
            let queries = table(&assets.join(format!("data/trec-dl-{y}")));
            queries.iter().map(|(_, q)| words(q)).collect::<Vec<_>>()
        })
        .collect();
    let mut keeping = 0;
    for (id, variant) in variants.iter() {
        assert!(id.starts_with("var-"), "{id}");
        let variant = words(variant);
        assert!(!real.contains(&variant), "{variant:?} is a real query");
        // Each word stays with probability 0.6 (more where it has no neighbour), so nearly
        // every variant keeps a word of a real query of its length, in its place.
        let kept = |q: &Vec<String>| {
            q.len() == variant.len() && q.iter().zip(&variant).any(|(a, b)| a == b)
        };
        keeping += usize::from(real.iter().any(kept));
    }
    assert!(
        keeping >= 25,
        "{keeping} of 30 variants keep a word of a real query"
    );
}

#[test]
fn triples_read_and_malformed_triples_are_located() {
    let triples = tinyrank_distill::data::read_triples(
        &shared().join("data/msmarco-triples-sample/triples.tsv"),
    )
    .unwrap();
    assert_eq!(triples.len(), 100);
    assert!(
        triples
            .iter()
            .all(|t| !t.query.is_empty() && t.positive != t.negative)
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("triples.tsv");
    std::fs::write(&bad, "q\tpos\tneg\nq\tonly positive\n").unwrap();
    let e = tinyrank_distill::data::read_triples(&bad)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("triples.tsv:2") && e.contains("3 tab-separated fields"),
        "{e}"
    );
}

#[test]
fn training_examples_carry_labels_from_qrels_and_none_without() {
    use tinyrank_distill::examples::{from_dataset, from_documents, from_triples};
    // Cranfield as documents: every window carries its document's label.
    let windows = tinyrank_core::WordWindows::new(100, 50).unwrap();
    let title = tinyrank_core::TitleSource::None;
    let docs = from_documents(&shared().join("data/cranfield"), 5, 1, windows, title).unwrap();
    assert_eq!(docs.len(), 225 * 5);
    let qrels =
        tinyrank_distill::data::Qrels::read(&shared().join("data/cranfield/qrels.txt")).unwrap();
    for d in &docs {
        let q = &d.passages[0].query_id;
        let relevant = qrels.grade(q, &d.doc_id).is_some_and(|g| g >= 1);
        assert_eq!(d.label, Some(u8::from(relevant)));
        assert!(
            d.passages
                .iter()
                .all(|p| p.label == d.label && &p.query_id == q)
        );
    }
    assert!(docs.iter().any(|d| d.passages.len() > 1) && docs.iter().any(|d| d.label == Some(1)));
    let dl20 = from_dataset(&shared().join("data/trec-dl-2020"), 100, 2).unwrap();
    assert_eq!(dl20.len(), 5400);
    let positives = dl20.iter().filter(|e| e.label == Some(1)).count();
    assert!(positives > 0 && positives < dl20.len(), "{positives}");
    assert!(dl20.iter().all(|e| e.label.is_some()));
    // A lower threshold can only add positives.
    let loose = from_dataset(&shared().join("data/trec-dl-2020"), 100, 1).unwrap();
    assert!(loose.iter().filter(|e| e.label == Some(1)).count() > positives);
    // trec-dl-2022 has no qrels: teacher signal only.
    let dl22 = from_dataset(&shared().join("data/trec-dl-2022"), 10, 2).unwrap();
    assert_eq!(dl22.len(), 760);
    assert!(dl22.iter().all(|e| e.label.is_none()));
    let triples = from_triples(&shared().join("data/msmarco-triples-sample/triples.tsv")).unwrap();
    assert_eq!(triples.len(), 200);
    assert_eq!((triples[0].label, triples[1].label), (Some(1), Some(0)));
}
