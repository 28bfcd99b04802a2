//! Documents reranked through their passages.

use std::path::{Path, PathBuf};

use crate::common::*;
use crate::harness::*;
use tinyrank_distill::data::TextTable;

/// Document reranking on Cranfield (real abstracts up to 670 words): passage windows, one score
/// per document, MaxP >= FirstP for every document, and bad windows refused.
#[test]
fn documents_are_reranked_from_their_passages() {
    let cranfield = shared().join("data/cranfield");
    let out = tempfile::tempdir().unwrap();
    let rerank_docs = |mode: &str, window: &str, stride: &str| {
        let output = out.path().join(format!("{mode}-{window}-{stride}.run"));
        let result = tinyrank(&[
            "rerank",
            "--model",
            path(&tiny_model()),
            "--queries",
            path(&cranfield.join("queries.tsv")),
            "--collection",
            path(&cranfield.join("collection.tsv")),
            "--run",
            path(&cranfield.join("bm25.run")),
            "--top-k",
            "3",
            "--max-len",
            "96",
            "--doc-mode",
            mode,
            "--window",
            window,
            "--stride",
            stride,
            "--device",
            "cpu",
            "--output",
            path(&output),
        ]);
        (result, output)
    };
    let scores = |run: &Path| -> std::collections::HashMap<(String, String), f64> {
        std::fs::read_to_string(run)
            .unwrap()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                ((f[0].into(), f[2].into()), f[4].parse().unwrap())
            })
            .collect()
    };
    // Two modes from one scoring pass: one run each.
    let (both, output) = rerank_docs("maxp,firstp", "50", "25");
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(both.status.success(), "{stderr}");
    assert!(stderr.contains("675 documents as"), "{stderr}");
    let with_suffix = |mode: &str| PathBuf::from(format!("{}.{mode}", output.display()));
    let (max, first) = (scores(&with_suffix("maxp")), scores(&with_suffix("firstp")));
    let (single, single_run) = rerank_docs("maxp", "50", "25");
    assert!(single.status.success());
    assert_eq!(scores(&single_run), max);
    assert_eq!(max.len(), 225 * 3);
    assert!(first.iter().all(|(k, f)| max[k] >= *f - 1e-6));
    assert!(
        first.iter().any(|(k, f)| max[k] > *f + 1e-4),
        "some document has a better later passage"
    );

    // Token windows with the title before each: more passages than 50-word windows (each holds
    // what fits beside the query), every document scored.
    let (fill, fill_run) = rerank_docs("maxp", "fill", "40");
    let stderr = String::from_utf8_lossy(&fill.stderr);
    assert!(fill.status.success(), "{stderr}");
    assert!(
        stderr.contains("tokens filling max-len 96, stride 40"),
        "{stderr}"
    );
    assert_eq!(scores(&fill_run).len(), 225 * 3);

    let (zero, _) = rerank_docs("maxp", "50", "0");
    assert_rejected(&zero, &["stride"]);
    let (wide, _) = rerank_docs("maxp", "50", "60");
    assert_rejected(&wide, &["stride", "skip"]);
    let (bad, _) = rerank_docs("bestp", "50", "25");
    assert_rejected(&bad, &["maxp", "firstp"]);
    let (zero_fill, _) = rerank_docs("maxp", "fill", "0");
    assert_rejected(&zero_fill, &["stride"]);
    let (words, _) = rerank_docs("maxp", "many", "1");
    assert_rejected(&words, &["--window", "fill"]);
}

/// Awkward documents: an empty one ranks last (its candidates keep their order), one enormous
/// token is one passage, and windows longer than max length are cut with a note saying so.
#[test]
fn empty_and_enormous_documents_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cranfield =
        TextTable::read(&shared().join("data/cranfield/collection.tsv"), "passage").unwrap();
    let queries = file("queries.tsv", "1\tshock waves on a swept wing\n");
    let collection = file(
        "collection.tsv",
        &format!(
            "a\t{}\nempty\t\nhuge\t{}\nb\t{}\n",
            cranfield.get("1").unwrap(),
            "y".repeat(50_000),
            cranfield.get("2").unwrap()
        ),
    );
    let run = file(
        "run",
        "1 Q0 empty 1 9 bm25\n1 Q0 a 2 8 bm25\n1 Q0 huge 3 7 bm25\n1 Q0 b 4 6 bm25\n",
    );
    let output = dir.path().join("out.run");
    let model = tiny_model();
    let rerank = |extra: &[&str]| {
        let inputs = [
            "rerank",
            "--model",
            path(&model),
            "--queries",
            path(&queries),
            "--collection",
            path(&collection),
            "--run",
            path(&run),
            "--device",
            "cpu",
            "--output",
            path(&output),
        ];
        tinyrank(&[&inputs[..], extra].concat())
    };
    let out = rerank(&["--max-len", "64", "--doc-mode", "maxp", "--window", "150"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("1 candidate documents have no text"),
        "{stderr}"
    );
    assert!(
        stderr.contains("longer than max-len 64 and were cut"),
        "{stderr}"
    );
    let ranked: Vec<String> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').nth(2).unwrap().to_string())
        .collect();
    assert_eq!(ranked.len(), 4);
    assert_eq!(ranked[3], "empty");
    // Passage reranking still refuses an empty passage, naming its line.
    let passages = rerank(&[]);
    assert_rejected(&passages, &["collection.tsv:2", "empty"]);
}
