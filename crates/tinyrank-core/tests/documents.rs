//! Documents longer than max length, with the shared teacher's real WordPiece tokenizer and real
//! text: pairs joined from separately tokenised texts, token windows, the per-document encoder
//! and its cache, and the awkward documents (empty, one enormous token).
#![allow(clippy::unwrap_used)] // test helpers unwrap, as #[test] functions may

#[path = "../../../tests/common/mod.rs"]
mod common;

use common::*;
use tinyrank_core::{
    Checkpoint, Cut, DocumentEncoder, PairTokenizer, TitleSource, Truncation, Windows, WordWindows,
};

fn tokenizer() -> PairTokenizer {
    Checkpoint::load(&teacher_dir(), &tinyrank_core::burn::tensor::Device::flex())
        .unwrap()
        .tokenizer
}

fn cranfield(file: &str) -> std::path::PathBuf {
    shared().join("data/cranfield").join(file)
}

/// The `tokenizers` crate itself, truncating pairs as transformers does.
fn reference_tokenizer(max_len: usize, truncation: Truncation) -> tokenizers::Tokenizer {
    use tokenizers::{TruncationDirection, TruncationParams, TruncationStrategy};
    let mut reference = tokenizers::Tokenizer::from_file(teacher_dir().join("tokenizer.json"))
        .expect("the teacher's tokenizer.json");
    reference.with_padding(None);
    let strategy = match truncation {
        Truncation::LongestFirst => TruncationStrategy::LongestFirst,
        Truncation::OnlyPassage => TruncationStrategy::OnlySecond,
    };
    reference
        .with_truncation(Some(TruncationParams {
            direction: TruncationDirection::Right,
            max_length: max_len,
            strategy,
            stride: 0,
        }))
        .expect("valid truncation");
    reference
}

/// DL19's first 300 BM25 pairs plus a query longer than the whole budget, at several lengths and
/// both truncations: pairs tokenised whole and cut by a `Cut` equal what the `tokenizers` crate
/// makes of the pair (only-passage falls back to longest-first when the query alone is too long,
/// where the crate refuses).
#[test]
fn joined_pairs_equal_pairs_tokenised_together() {
    let mut pairs: Vec<(String, String)> = bm25_candidates(&dl19(), usize::MAX, 7)
        .into_iter()
        .flat_map(|(query, passages)| passages.into_iter().map(move |p| (query.clone(), p)))
        .take(300)
        .collect();
    let long_query = pairs[0].0.repeat(40);
    pairs.push((long_query.clone(), pairs[1].1.clone()));
    pairs.push((long_query, "short".into()));
    let tokenizer = tokenizer();
    for truncation in [Truncation::LongestFirst, Truncation::OnlyPassage] {
        for max_len in [16, 33, 64, 128, 256] {
            let cut = Cut::new(max_len).unwrap().with_truncation(truncation);
            let reference = reference_tokenizer(max_len, truncation);
            let fallback = reference_tokenizer(max_len, Truncation::LongestFirst);
            for (query, passage) in &pairs {
                let ours = tokenizer.encode_pair(query, passage, cut).unwrap();
                let theirs = reference
                    .encode((query.as_str(), passage.as_str()), true)
                    .or_else(|_| fallback.encode((query.as_str(), passage.as_str()), true))
                    .unwrap();
                assert_eq!(
                    ours.ids,
                    theirs.get_ids(),
                    "{truncation:?} {max_len}: {query:?}"
                );
                assert_eq!(ours.type_ids, theirs.get_type_ids());
            }
        }
    }
}

/// Token windows over Cranfield's longest abstract: each pair fills max length exactly but the
/// last, windows overlap by the stride, start and end between words, and together hold every
/// token of the document.
#[test]
fn token_windows_fill_max_length_and_cover_the_document() {
    let collection = tsv_rows(&cranfield("collection.tsv"));
    let (_, longest) = collection
        .iter()
        .max_by_key(|(_, text)| text.split_whitespace().count())
        .unwrap();
    let tokenizer = tokenizer();
    let cut = Cut::new(128).unwrap();
    let query = "what is the effect of the boundary layer on the shock wave";
    let tokens = tokenizer.tokenize(&[query, longest.as_str()]).unwrap();
    let (query_ids, body) = (&tokens[0].ids, &tokens[1]);
    assert!(body.len() > 700, "{}", body.len());
    let windows = tokenizer
        .token_windows(query_ids, &[], body, 50, cut)
        .unwrap();
    assert!(windows.len() > 10, "{}", windows.len());
    let prefix = query_ids.len() + 2;
    let mut covered = vec![false; body.len()];
    let mut position = 0;
    for (i, w) in windows.iter().enumerate() {
        let last = i + 1 == windows.len();
        // Cut between words: a window may end up to one word short of max length.
        assert!(
            w.ids.len() <= 128 && (last || w.ids.len() >= 118),
            "{}",
            w.ids.len()
        );
        assert_eq!(&w.ids[1..prefix - 1], &query_ids[..]);
        let passage = &w.ids[prefix..w.ids.len() - 1];
        // Find the window in the document at or after the previous window's start.
        let start = (position..body.len())
            .find(|&s| body.ids[s..].starts_with(passage))
            .expect("a window is a run of the document's tokens");
        assert!(body.word_start[start], "window {i} starts inside a word");
        assert!(start + passage.len() == body.len() || body.word_start[start + passage.len()]);
        if i > 0 {
            assert!(start > position && start <= position + 50, "stride");
        }
        covered[start..start + passage.len()].fill(true);
        position = start;
    }
    assert!(covered.iter().all(|&c| c), "every token is in a window");

    // A title goes before every window; an empty document has none.
    let title = tokenizer
        .tokenize(&["wing in a slipstream"])
        .unwrap()
        .remove(0);
    let titled = tokenizer
        .token_windows(query_ids, &title.ids, body, 50, cut)
        .unwrap();
    assert!(
        titled
            .iter()
            .all(|w| w.ids[prefix..].starts_with(&title.ids))
    );
    let empty = tokenizer.tokenize(&[""]).unwrap().remove(0);
    assert!(
        tokenizer
            .token_windows(query_ids, &[], &empty, 50, cut)
            .unwrap()
            .is_empty()
    );
    assert!(
        tokenizer
            .token_windows(query_ids, &[], body, 0, cut)
            .is_err()
    );
}

/// The document encoder: word-window pairs equal pairs tokenised together; a document shared by
/// two queries is tokenised once; empty and one-enormous-token documents are handled.
#[test]
fn document_encoder_tokenises_each_text_once() {
    let collection = tsv(&cranfield("collection.tsv"));
    let docs: Vec<&str> = ["1", "12", "184", "329"]
        .iter()
        .map(|&id| collection[id].as_str())
        .collect();
    let tokenizer = tokenizer();
    let cut = Cut::new(96).unwrap();
    let windows = WordWindows::new(60, 30).unwrap();
    let mut encoder = DocumentEncoder::new(
        &tokenizer,
        cut,
        Windows::Words(windows),
        TitleSource::FirstSentence,
    );
    let query = "slipstream effects on wing lift";
    let first = encoder.encode(query, &docs).unwrap();
    let tokenised = encoder.tokenised_texts();
    let mut expected = Vec::new();
    for (d, text) in docs.iter().enumerate() {
        let (title, body) = TitleSource::FirstSentence.split(text);
        assert!(title.is_some(), "Cranfield documents open with their title");
        for passage in windows.split(body, title) {
            expected.push((d, tokenizer.encode_pair(query, &passage, cut).unwrap()));
        }
    }
    assert_eq!(
        first.document,
        expected.iter().map(|e| e.0).collect::<Vec<_>>()
    );
    assert_eq!(
        first.pairs,
        expected.into_iter().map(|e| e.1).collect::<Vec<_>>()
    );
    assert!(
        first.truncated > 0,
        "60 words do not always fit in 96 tokens"
    );

    // Another query over the same documents tokenises nothing new.
    encoder.encode("boundary layer", &docs[1..]).unwrap();
    assert_eq!(encoder.tokenised_texts(), tokenised);

    // Empty documents have no passages; one enormous token is one (truncated) passage.
    let enormous = "x".repeat(100_000);
    for windows in [Windows::Words(windows), Windows::Tokens { stride: 40 }] {
        let mut encoder = DocumentEncoder::new(&tokenizer, cut, windows, TitleSource::None);
        let pairs = encoder.encode(query, &["", "  \t ", &enormous]).unwrap();
        assert_eq!(pairs.document, [2], "{windows:?}");
        assert!(pairs.pairs[0].ids.len() <= 96);
        assert!(encoder.encode(" ", &docs).is_err(), "an empty query");
    }
}
