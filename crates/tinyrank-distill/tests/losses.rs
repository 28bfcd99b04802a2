//! Simplified TinyBERT's loss terms and a gradient against torch (scripts/parity/make_loss_goldens.py):
//! a 2-logit 2-layer teacher, a 1-logit 1-layer student with fit_dense, a padded batch.
#![allow(clippy::unwrap_used)] // test helpers unwrap, as #[test] functions may

#[path = "../../../tests/common/mod.rs"]
mod common;

use common::*;
use serde::Deserialize;
use tinyrank_core::burn::tensor::{Device, Int, Tensor, TensorData};
use tinyrank_core::rules::ranking_scores;
use tinyrank_core::{Batch, Checkpoint, Trace};
use tinyrank_distill::data::TextTable;
use tinyrank_distill::losses::{
    LayerMap, attention_loss, hard_loss, hidden_loss, listwise_kl, margin_mse, soft_loss,
};

#[derive(Deserialize)]
struct Golden {
    max_len: usize,
    temperature: f64,
    labels: Vec<i64>,
    labelled: Vec<f32>,
    pairs: Vec<[String; 2]>,
    input_ids: Vec<Vec<u32>>,
    attention: f32,
    hidden: f32,
    soft: f32,
    hard: f32,
    total: f32,
    grad_query_weight: Vec<Vec<f32>>,
    grad_fit_dense_weight: Vec<Vec<f32>>,
    margin_mse: f32,
    grad_query_weight_margin_mse: Vec<Vec<f32>>,
    listwise: f32,
    grad_query_weight_listwise: Vec<Vec<f32>>,
}

fn scalar(t: Tensor<1>) -> f32 {
    t.into_data().try_into_vec::<f32>().unwrap()[0]
}

/// `grad` is burn's `[in, out]`; `want` is torch's `[out, in]`.
fn assert_grad_close(grad: Tensor<2>, want: &[Vec<f32>], what: &str) {
    let [d_in, d_out] = grad.dims();
    let got = grad.into_data().try_into_vec::<f32>().unwrap();
    let mut worst = 0f32;
    for o in 0..d_out {
        for i in 0..d_in {
            worst = worst.max((got[i * d_out + o] - want[o][i]).abs());
        }
    }
    assert!(worst <= 1e-4, "{what}: max |difference| {worst}");
}

fn assert_loss_close(name: &str, got: f32, want: f32) {
    // Relative for the larger terms: f32 sums of squares carry ~1e-7 relative error.
    let tolerance = 1e-4f32.max(want.abs() * 1e-5);
    assert!(
        (got - want).abs() <= tolerance,
        "{name}: {got} vs torch {want}"
    );
}

fn query_grad(student: &Checkpoint, grads: &tinyrank_core::burn::tensor::Gradients) -> Tensor<2> {
    student.model.layers[0]
        .query
        .weight
        .val()
        .grad(grads)
        .expect("query weight has a gradient")
}

fn golden() -> Golden {
    serde_json::from_str(&std::fs::read_to_string(golden_dir().join("loss_parity.json")).unwrap())
        .unwrap()
}

/// The golden batch, its token ids checked against torch's.
fn golden_batch(golden: &Golden, student: &Checkpoint, device: &Device) -> Batch {
    let queries = TextTable::read(&dl19().join("queries.tsv"), "query").unwrap();
    let tokenizer = student.tokenizer.clone();
    let cut = tinyrank_core::Cut::new(golden.max_len).unwrap();
    let encoded: Vec<_> = golden
        .pairs
        .iter()
        .map(|[a, b]| {
            tokenizer
                .encode_pair(queries.get(a).unwrap(), queries.get(b).unwrap(), cut)
                .unwrap()
        })
        .collect();
    let batch = Batch::from_encoded(&encoded, tokenizer.pad_id(), device);
    let padded = batch
        .input_ids
        .clone()
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .unwrap();
    let want: Vec<i64> = golden
        .input_ids
        .iter()
        .flatten()
        .map(|&i| i as i64)
        .collect();
    assert_eq!(padded, want, "token ids");
    batch
}

#[test]
fn ranking_losses_and_gradients_match_torch() {
    let golden = golden();
    let device = Device::flex().autodiff();
    let teacher = Checkpoint::load(&golden_dir().join("tiny-2logit"), &Device::flex()).unwrap();
    let student = Checkpoint::load(&golden_dir().join("tiny-student"), &device).unwrap();
    // As in the trainer: the batch and the teacher live on the plain device; their tensors are
    // constants to the student's graph.
    let batch = golden_batch(&golden, &student, &Device::flex());
    let t = ranking_scores(teacher.model.forward(&batch, Trace::default()).logits);
    let cases: [(&str, f32, &Vec<Vec<f32>>); 2] = [
        (
            "margin_mse",
            golden.margin_mse,
            &golden.grad_query_weight_margin_mse,
        ),
        (
            "listwise",
            golden.listwise,
            &golden.grad_query_weight_listwise,
        ),
    ];
    for (name, want, want_grad) in cases {
        let s = ranking_scores(student.model.forward(&batch, Trace::default()).logits);
        let loss = match name {
            "margin_mse" => margin_mse(s.reshape([2, 2]), t.clone().reshape([2, 2])),
            _ => listwise_kl(
                s.reshape([1, 4]),
                t.clone().reshape([1, 4]),
                golden.temperature,
            ),
        };
        assert_loss_close(name, scalar(loss.clone()), want);
        let grads = loss.backward();
        let grad = query_grad(&student, &grads);
        assert_grad_close(grad, want_grad, &format!("d {name} / d query.weight"));
    }
}

#[test]
fn simplified_tinybert_losses_and_gradients_match_torch() {
    let golden = golden();
    let device = Device::flex().autodiff();
    let teacher = Checkpoint::load(&golden_dir().join("tiny-2logit"), &device).unwrap();
    let student = Checkpoint::load(&golden_dir().join("tiny-student"), &device).unwrap();
    let fit_dense = student
        .fit_dense
        .as_ref()
        .expect("the student carries fit_dense");
    let batch = golden_batch(&golden, &student, &device);

    let t = teacher.model.forward(&batch, Trace::ALL);
    let s = student.model.forward(&batch, Trace::ALL);
    let detach3 = |v: Vec<Tensor<3>>| v.into_iter().map(|x| x.detach()).collect::<Vec<_>>();
    let detach4 = |v: Vec<Tensor<4>>| v.into_iter().map(|x| x.detach()).collect::<Vec<_>>();
    let (t_hidden, t_scores, t_logits) = (
        detach3(t.hidden_states),
        detach4(t.attention_scores),
        t.logits.detach(),
    );

    let map = LayerMap::uniform(teacher.model.num_layers(), student.model.num_layers()).unwrap();
    let n = golden.labels.len();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(golden.labels.clone(), [n]), &device);
    let labelled = Tensor::<1>::from_data(TensorData::new(golden.labelled.clone(), [n]), &device);

    let attention = attention_loss(&s.attention_scores, &t_scores, &map, &batch.attention_mask);
    let hidden = hidden_loss(&s.hidden_states, &t_hidden, &map, fit_dense);
    let soft = soft_loss(s.logits.clone(), t_logits, golden.temperature);
    let hard = hard_loss(s.logits, labels, labelled);
    let total = attention.clone() + hidden.clone() + soft.clone() + hard.clone();

    for (name, got, want) in [
        ("attention", scalar(attention), golden.attention),
        ("hidden", scalar(hidden), golden.hidden),
        ("soft", scalar(soft), golden.soft),
        ("hard", scalar(hard), golden.hard),
        ("total", scalar(total.clone()), golden.total),
    ] {
        assert_loss_close(name, got, want);
    }

    let grads = total.backward();
    let query = query_grad(&student, &grads);
    assert_grad_close(query, &golden.grad_query_weight, "d total / d query.weight");
    let fit = fit_dense
        .weight
        .val()
        .grad(&grads)
        .expect("fit_dense has a gradient");
    assert_grad_close(
        fit,
        &golden.grad_fit_dense_weight,
        "d total / d fit_dense.weight",
    );
}
