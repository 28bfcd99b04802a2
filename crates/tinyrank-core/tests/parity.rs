//! Parity with the reference implementation (transformers), on real checkpoints and real TREC DL
//! 2019 pairs. Goldens come from scripts/parity/make_goldens.py.
#![allow(clippy::unwrap_used)] // test helpers unwrap, as #[test] functions may

#[path = "../../../tests/common/mod.rs"]
mod common;

use common::*;
use serde::Deserialize;
use tinyrank_core::burn::tensor::{Device, Tensor};
use tinyrank_core::{
    Batch, Checkpoint, CrossEncoder, Cut, Encoded, EngineKind, FastCrossEncoder, Padding,
    PairTokenizer, Precision, Reranker, Trace,
};

#[derive(Deserialize)]
struct PairId {
    qid: String,
    pid: String,
}

#[derive(Deserialize)]
struct ClassifierGolden {
    input_ids: Vec<Vec<u32>>,
    #[serde(default)]
    token_type_ids: Vec<Vec<u32>>,
    #[serde(default)]
    input_ids_128: Vec<Vec<u32>>,
    logits: Vec<Vec<f32>>,
    padded_batch_logits: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct EncoderGolden {
    input_ids: Vec<u32>,
    positions: Vec<usize>,
    hidden: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct Golden {
    max_len: usize,
    pairs: Vec<PairId>,
    teacher: ClassifierGolden,
    encoder: Vec<EncoderGolden>,
    tiny: ClassifierGolden,
}

fn golden() -> Golden {
    let text = std::fs::read_to_string(golden_dir().join("model_parity.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The (query, passage) texts of the golden pairs, read from ../shared (never copied here).
fn pair_texts(golden: &Golden) -> Vec<(String, String)> {
    let queries = tsv(&dl19().join("queries.tsv"));
    let collection = tsv(&dl19().join("collection.tsv"));
    golden
        .pairs
        .iter()
        .map(|p| (queries[&p.qid].clone(), collection[&p.pid].clone()))
        .collect()
}

/// Logits of each pair scored alone (no padding).
fn logits_one_by_one(
    model: &CrossEncoder,
    tokenizer: &PairTokenizer,
    cut: Cut,
    pairs: &[(String, String)],
    device: &Device,
) -> Vec<Vec<f32>> {
    pairs
        .iter()
        .map(|(q, p)| {
            let e = tokenizer.encode_pair(q, p, cut).unwrap();
            let batch = Batch::from_encoded([&e], tokenizer.pad_id(), device);
            model
                .forward(&batch, Trace::default())
                .logits
                .into_data()
                .try_into_vec::<f32>()
                .unwrap()
        })
        .collect()
}

/// Logits of `pairs` run as one padded batch (to a multiple of `multiple` tokens), in order.
fn logits_padded(
    model: &CrossEncoder,
    tokenizer: &PairTokenizer,
    cut: Cut,
    pairs: &[(String, String)],
    multiple: usize,
    device: &Device,
) -> Vec<Vec<f32>> {
    let encoded: Vec<_> = pairs
        .iter()
        .map(|(q, p)| tokenizer.encode_pair(q, p, cut).unwrap())
        .collect();
    let longest = encoded.iter().map(|e| e.ids.len()).max().unwrap();
    let padding = Padding {
        pad_id: tokenizer.pad_id(),
        multiple,
        cap: 512,
    };
    let batch = Batch::padded(&encoded, padding, device);
    let len = batch.dims()[1];
    assert!(len >= longest && len.is_multiple_of(multiple) && len < longest + multiple);
    let logits = model.forward(&batch, Trace::default()).logits;
    let [n, labels] = logits.dims();
    let flat = logits.into_data().try_into_vec::<f32>().unwrap();
    (0..n)
        .map(|i| flat[i * labels..(i + 1) * labels].to_vec())
        .collect()
}

fn assert_close(got: &[Vec<f32>], want: &[Vec<f32>], tolerance: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: count");
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| max_abs_diff(g, w))
        .fold(0.0, f32::max);
    assert!(
        worst <= tolerance,
        "{what}: max |difference| {worst} > {tolerance}"
    );
    eprintln!("{what}: max |difference| {worst:.2e} (tolerance {tolerance:.0e})");
}

fn teacher_parity(device: &Device, tolerance: f32) {
    let golden = golden();
    let pairs = pair_texts(&golden);
    let checkpoint = Checkpoint::load(&teacher_dir(), device).unwrap();
    let tokenizer = checkpoint.tokenizer.clone();
    let cut = Cut::new(golden.max_len).unwrap();
    let alone = logits_one_by_one(&checkpoint.model, &tokenizer, cut, &pairs, device);
    assert_close(&alone, &golden.teacher.logits, tolerance, "teacher logits");
    // Padded to the longest pair, and to a multiple of 64 tokens (training's --pad-to).
    for multiple in [1, 64] {
        let padded = logits_padded(
            &checkpoint.model,
            &tokenizer,
            cut,
            &pairs[..8],
            multiple,
            device,
        );
        assert_close(
            &padded,
            &golden.teacher.padded_batch_logits,
            tolerance,
            &format!("teacher padded batch (multiple of {multiple})"),
        );
    }
}

#[test]
fn token_ids_equal_the_python_tokenizer() {
    let golden = golden();
    let pairs = pair_texts(&golden);
    let device = Device::flex();
    let tokenizer = Checkpoint::load(&teacher_dir(), &device).unwrap().tokenizer;
    for max_len in [golden.max_len, 128] {
        let cut = Cut::new(max_len).unwrap();
        let want = if max_len == 128 {
            &golden.teacher.input_ids_128
        } else {
            &golden.teacher.input_ids
        };
        for (i, (q, p)) in pairs.iter().enumerate() {
            let e = tokenizer.encode_pair(q, p, cut).unwrap();
            assert_eq!(&e.ids, &want[i], "pair {i} at max_len {max_len}");
            if max_len == golden.max_len {
                assert_eq!(
                    &e.type_ids, &golden.teacher.token_type_ids[i],
                    "types of pair {i}"
                );
            }
        }
    }
    // The last golden pair is the longest passage: cut to exactly max_len, not tokenizer.json's 128.
    assert_eq!(
        golden.teacher.input_ids.last().unwrap().len(),
        golden.max_len
    );
}

#[test]
fn teacher_logits_match_transformers_on_cpu() {
    teacher_parity(&Device::flex(), 1e-4);
}

#[test]
fn teacher_logits_match_transformers_on_wgpu() {
    let Some(device) = gpu_device() else { return };
    teacher_parity(&device, 1e-3);
}

/// The f16 engine scores real pairs close to f32 on an adapter with f16 arithmetic (lavapipe
/// has it), is refused by one without, and is refused on the CPU.
#[test]
fn f16_engine_on_wgpu_stays_close_to_f32() {
    let refused = Reranker::load(&teacher_dir(), &cpu(), Precision::F16).unwrap_err();
    assert!(refused.to_string().contains("GPU only"), "{refused}");
    let Some(selected) = gpu() else { return };
    let (query, passages) = dl19_candidates(1).remove(0);
    let passages: Vec<&str> = passages.iter().take(24).map(String::as_str).collect();
    let scores = |precision| -> Option<Vec<f32>> {
        match Reranker::load(&teacher_dir(), &selected, precision) {
            Ok(mut reranker) => {
                reranker.set_max_len(128).unwrap();
                Some(reranker.score(&query, &passages).unwrap())
            }
            Err(e) => {
                assert!(e.to_string().contains("shader-f16"), "{e}");
                None
            }
        }
    };
    let Some(half) = scores(Precision::F16) else {
        return;
    };
    let full = scores(Precision::F32).unwrap();
    let diff = max_abs_diff(&half, &full);
    eprintln!("teacher on wgpu, 24 DL19 pairs: max |f16 - f32| = {diff:e}");
    assert!(diff <= 0.05, "{diff}");
    let order = |s: &[f32]| {
        let mut order: Vec<usize> = (0..s.len()).collect();
        order.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
        order
    };
    assert_eq!(order(&half)[..3], order(&full)[..3], "{half:?} vs {full:?}");
}

#[test]
fn encoder_hidden_states_match_transformers() {
    let golden = golden();
    let pairs = pair_texts(&golden);
    let device = Device::flex();
    // A bare BertModel: loads with a fresh pooler and classifier, which it reports.
    let checkpoint = Checkpoint::load_encoder(&encoder_dir(), &device).unwrap();
    assert!(
        checkpoint
            .initialised
            .iter()
            .any(|n| n.starts_with("classifier."))
    );
    let tokenizer = checkpoint.tokenizer.clone();
    let cut = Cut::new(golden.max_len).unwrap();
    let width = checkpoint.model.hidden_size();
    for (want, (q, p)) in golden.encoder.iter().zip(&pairs) {
        let e = tokenizer.encode_pair(q, p, cut).unwrap();
        assert_eq!(e.ids, want.input_ids);
        let batch = Batch::from_encoded([&e], tokenizer.pad_id(), &device);
        let out = checkpoint.model.forward(
            &batch,
            Trace {
                hidden_states: true,
                ..Trace::default()
            },
        );
        assert_eq!(out.hidden_states.len(), checkpoint.model.num_layers() + 1);
        let last = out
            .hidden_states
            .last()
            .unwrap()
            .clone()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        for (row, &pos) in want.hidden.iter().zip(&want.positions) {
            let got = &last[pos * width..(pos + 1) * width];
            let diff = max_abs_diff(got, row);
            assert!(
                diff <= 1e-4,
                "hidden state at token {pos}: max |difference| {diff}"
            );
        }
    }
}

#[test]
fn tiny_two_logit_f16_vocab_txt_checkpoint_matches_transformers() {
    let golden = golden();
    let pairs = pair_texts(&golden);
    let device = Device::flex();
    let checkpoint = Checkpoint::load(&golden_dir().join("tiny-2logit"), &device).unwrap();
    assert_eq!(checkpoint.model.num_labels(), 2);
    let tokenizer = checkpoint.tokenizer.clone();
    let cut = Cut::new(golden.max_len).unwrap();
    for (i, (q, p)) in pairs.iter().enumerate() {
        assert_eq!(
            tokenizer.encode_pair(q, p, cut).unwrap().ids,
            golden.tiny.input_ids[i],
            "pair {i}"
        );
    }
    let alone = logits_one_by_one(&checkpoint.model, &tokenizer, cut, &pairs, &device);
    assert_close(&alone, &golden.tiny.logits, 1e-4, "tiny logits");
    let padded = logits_padded(&checkpoint.model, &tokenizer, cut, &pairs[..8], 1, &device);
    assert_close(
        &padded,
        &golden.tiny.padded_batch_logits,
        1e-4,
        "tiny padded batch",
    );

    // A 2-logit ranking score is logit[1] - logit[0].
    let mut reranker = Reranker::from_checkpoint(checkpoint, &cpu(), Precision::F32).unwrap();
    reranker.set_max_len(golden.max_len).unwrap();
    let scores = reranker.score(&pairs[0].0, &[pairs[0].1.as_str()]).unwrap();
    let want = golden.tiny.logits[0][1] - golden.tiny.logits[0][0];
    assert!((scores[0] - want).abs() < 1e-4);
}

#[test]
fn scores_do_not_depend_on_batch_composition() {
    let golden = golden();
    let pairs = pair_texts(&golden);
    let mut reranker = Reranker::load(&teacher_dir(), &cpu(), Precision::F32).unwrap();
    let query = &pairs[0].0;
    // The same query against every golden passage, scored in batches of different make-up.
    let passages: Vec<&str> = pairs.iter().map(|(_, p)| p.as_str()).collect();
    let all_at_once = reranker.score(query, &passages).unwrap();
    reranker.set_batch_size(3).unwrap();
    let in_threes = reranker.score(query, &passages).unwrap();
    reranker.set_batch_size(1).unwrap();
    let alone = reranker.score(query, &passages).unwrap();
    assert!(max_abs_diff(&all_at_once, &alone) <= 1e-4);
    assert!(max_abs_diff(&in_threes, &alone) <= 1e-4);
    // And the first pair is the golden teacher logit.
    assert!((alone[0] - golden.teacher.logits[0][0]).abs() <= 1e-4);
}

#[test]
fn length_buckets_leave_burn_scores_unchanged() {
    let device = Device::flex();
    let checkpoint = Checkpoint::load(&teacher_dir(), &device).unwrap();
    let (model, tokenizer) = (checkpoint.model, checkpoint.tokenizer);
    let mut burn = Reranker::with_engine(model, tokenizer, device, EngineKind::Burn).unwrap();
    burn.set_max_len(128).unwrap();
    let pairs = dl19_candidates(1);
    let (query, passages) = &pairs[0];
    let passages: Vec<&str> = passages.iter().take(40).map(String::as_str).collect();
    let longest = burn.score(query, &passages).unwrap();
    // 48 does not divide 128: the last bucket stops at the max length.
    burn.set_pad_to(48).unwrap();
    let padding = burn.padding().expect("burn pads");
    assert_eq!((padding.len(50), padding.len(100)), (96, 128));
    let bucketed = burn.score(query, &passages).unwrap();
    let diff = max_abs_diff(&bucketed, &longest);
    assert!(diff <= 1e-4, "length buckets moved scores by {diff}");
    assert!(burn.set_pad_to(0).is_err());
}

/// The first `queries` DL19 queries' BM25 top-100 passages: 100 real pairs per query.
fn dl19_candidates(queries: usize) -> Vec<(String, Vec<String>)> {
    bm25_candidates(&dl19(), queries, 100)
}

/// Scores of the fused CPU path and of the burn model for the same pairs.
fn both_paths(checkpoint: Checkpoint, max_len: usize, pairs: &[(String, Vec<String>)]) -> f32 {
    let mut fast = Reranker::from_checkpoint(checkpoint, &cpu(), Precision::F32).unwrap();
    let fused = EngineKind::Fused(Precision::F32);
    assert_eq!(fast.engine(), fused, "the CPU device takes the fused path");
    fast.set_max_len(max_len).unwrap();
    let (model, tokenizer) = (fast.model().clone(), fast.tokenizer.clone());
    let mut reference =
        Reranker::with_engine(model, tokenizer, Device::flex(), EngineKind::Burn).unwrap();
    reference.set_max_len(max_len).unwrap();
    let mut worst = 0.0f32;
    for (query, passages) in pairs {
        let passages: Vec<&str> = passages.iter().map(String::as_str).collect();
        let got = fast.score(query, &passages).unwrap();
        let want = reference.score(query, &passages).unwrap();
        worst = worst.max(max_abs_diff(&got, &want));
    }
    worst
}

#[test]
fn fast_cpu_path_matches_the_burn_model_on_real_pairs() {
    let device = Device::flex();
    let pairs = dl19_candidates(2);
    for max_len in [128, 256] {
        let teacher = Checkpoint::load(&teacher_dir(), &device).unwrap();
        let diff = both_paths(teacher, max_len, &pairs);
        eprintln!("teacher, {max_len} tokens, 200 DL19 pairs: max |fast - burn| = {diff:e}");
        assert!(diff <= 1e-4, "teacher at {max_len}: {diff}");
    }
    // A 2-logit checkpoint (f16 weights, vocab.txt) and a fresh model with tanh-GELU and an
    // unusual shape (4 heads, FFN 3x) take the other branches.
    let tiny = Checkpoint::load(&golden_dir().join("tiny-2logit"), &device).unwrap();
    let diff = both_paths(tiny, 128, &pairs[..1]);
    assert!(diff <= 1e-4, "2-logit checkpoint: {diff}");
    let teacher = Checkpoint::load(&teacher_dir(), &device).unwrap();
    let mut config = teacher.config.clone();
    config.num_hidden_layers = 2;
    config.num_attention_heads = 4;
    config.intermediate_size = 3 * config.hidden_size;
    config.hidden_act = tinyrank_core::config::Activation::GeluTanh;
    config.set_num_labels(2);
    let fresh = teacher.fresh_with_config(config, &device).unwrap();
    let diff = both_paths(fresh, 96, &pairs[..1]);
    assert!(diff <= 1e-4, "fresh tanh-GELU model: {diff}");
}

/// The largest |a - b| over two tensors of one shape, only at the elements `keep` takes.
fn max_diff_where<const D: usize>(
    a: &Tensor<D>,
    b: &Tensor<D>,
    keep: impl Fn(usize) -> bool,
) -> f32 {
    let a = a.to_data().try_into_vec::<f32>().unwrap();
    let b = b.to_data().try_into_vec::<f32>().unwrap();
    assert_eq!(a.len(), b.len());
    (0..a.len())
        .filter(|&i| keep(i))
        .map(|i| (a[i] - b[i]).abs())
        .fold(0.0, f32::max)
}

/// Each layer's tensors within 1e-4 of the burn model's, at the elements `keep` takes (given
/// an element's index and the dims).
fn assert_layers_match<const D: usize>(
    got: &[Tensor<D>],
    want: &[Tensor<D>],
    what: &str,
    keep: impl Fn(usize, [usize; D]) -> bool,
) {
    assert_eq!(got.len(), want.len(), "{what}: layers");
    for (layer, (g, w)) in got.iter().zip(want).enumerate() {
        let dims = w.dims();
        assert_eq!(g.dims(), dims, "{what} {layer}");
        let diff = max_diff_where(g, w, |i| keep(i, dims));
        eprintln!("{what} {layer}: max |fused - burn| = {diff:e}");
        assert!(diff <= 1e-4, "{what} {layer}: {diff}");
    }
}

/// Training's teacher on the CPU runs the fused engine's padded forward: it must hand back what
/// the burn model's traced forward does, padded rows included (the hidden-state loss counts
/// them), and the attention scores of every real key (padded keys are masked in the loss).
#[test]
fn fused_traced_forward_matches_the_burn_model_on_real_pairs() {
    let device = Device::flex();
    let checkpoint = Checkpoint::load(&teacher_dir(), &device).unwrap();
    let pairs = dl19_candidates(1);
    let (query, passages) = &pairs[0];
    let passages: Vec<&str> = passages.iter().take(12).map(String::as_str).collect();
    let cut = Cut::new(128).unwrap();
    let encoded = checkpoint
        .tokenizer
        .encode_pairs(query, &passages, cut)
        .unwrap();
    let lens: Vec<usize> = encoded.iter().map(|e| e.ids.len()).collect();
    assert!(
        lens.iter().min() < lens.iter().max(),
        "the batch needs padding: {lens:?}"
    );
    let padding = Padding {
        pad_id: checkpoint.tokenizer.pad_id(),
        multiple: 16,
        cap: 128,
    };
    let batch = Batch::padded(&encoded, padding, &device);
    let want = checkpoint.model.forward(&batch, Trace::ALL);
    let fused = FastCrossEncoder::from_model(&checkpoint.model, Precision::F32);
    let rows: Vec<&Encoded> = encoded.iter().collect();
    let got = fused.forward_padded(&rows, padding, Trace::ALL, &device);

    let as_rows = |t: &Tensor<2>| {
        let [n, k] = t.dims();
        let v = t.to_data().try_into_vec::<f32>().unwrap();
        (0..n)
            .map(|i| v[i * k..(i + 1) * k].to_vec())
            .collect::<Vec<_>>()
    };
    assert_close(
        &as_rows(&got.logits),
        &as_rows(&want.logits),
        1e-4,
        "logits",
    );
    // Padded rows count in the hidden-state loss: every element.
    assert_layers_match(
        &got.hidden_states,
        &want.hidden_states,
        "hidden state",
        |_, _| true,
    );
    // Element i of the scores is (pair, head, query, key): the loss masks padded keys.
    let real_key = |i, [_, heads, len, _]: [usize; 4]| i % len < lens[i / (heads * len * len)];
    assert_layers_match(
        &got.attention_scores,
        &want.attention_scores,
        "attention scores",
        real_key,
    );
}
