//! Checkpoint round trips and the errors for tensors that are missing, unexpected or mis-shaped.
#![allow(clippy::unwrap_used)] // test helpers unwrap, as #[test] functions may

#[path = "../../../tests/common/mod.rs"]
mod common;

use common::*;
use std::path::Path;
use tinyrank_core::burn::tensor::Device;
use tinyrank_core::checkpoint::save_checkpoint;
use tinyrank_core::{Checkpoint, SaveDtype};

/// Rewrites `dir/model.safetensors` through `edit` on its (name, dtype, shape, bytes) list.
fn edit_weights(
    dir: &Path,
    edit: impl FnOnce(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let parsed = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = parsed
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                view.dtype(),
                view.shape().to_vec(),
                view.data().to_vec(),
            )
        })
        .collect();
    edit(&mut tensors);
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::tensor::serialize(views, None).unwrap(),
    )
    .unwrap();
}

fn load_error(dir: &Path) -> String {
    Checkpoint::load(dir, &Device::flex())
        .unwrap_err()
        .to_string()
}

#[test]
fn saved_checkpoints_reload_with_fit_dense_and_the_same_scores() {
    let device = Device::flex();
    let original = Checkpoint::load(&golden_dir().join("tiny-2logit"), &device).unwrap();
    assert!(original.fit_dense.is_none());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("student");
    // A distillation checkpoint carries the student->teacher projection.
    let fit = tinyrank_core::burn::nn::LinearConfig::new(32, 48).init(&device);
    save_checkpoint(
        &out,
        &original.config,
        &original.model,
        Some(&fit),
        &original.tokenizer_files,
        SaveDtype::F32,
    )
    .unwrap();
    let reloaded = Checkpoint::load(&out, &device).unwrap();
    let fit_back = reloaded.fit_dense.as_ref().expect("fit_dense is read back");
    assert_eq!(fit_back.weight.dims(), [32, 48]);
    let a = fit.weight.val().into_data().try_to_vec::<f32>().unwrap();
    let b = fit_back
        .weight
        .val()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(a, b);
    // No leftovers from the atomic write.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("student")]);

    let pairs = [
        ("what is a flea", "Fleas are small insects."),
        ("what is a flea", "Paris is in France."),
    ];
    let score = |c: Checkpoint| {
        let r = tinyrank_core::Reranker::from_checkpoint(c, &cpu(), tinyrank_core::Precision::F32)
            .unwrap();
        pairs
            .iter()
            .map(|(q, p)| r.score(q, &[p]).unwrap()[0])
            .collect::<Vec<_>>()
    };
    assert_eq!(score(original), score(reloaded));
}

#[test]
fn missing_unexpected_and_misshaped_tensors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let fresh = || {
        let d = dir.path().join("m");
        let c = Checkpoint::load(&golden_dir().join("tiny-2logit"), &device).unwrap();
        c.save(&d, SaveDtype::F32).unwrap();
        d
    };

    let d = fresh();
    edit_weights(&d, |t| {
        t.retain(|(n, ..)| n != "bert.encoder.layer.1.output.dense.bias")
    });
    let e = load_error(&d);
    assert!(
        e.contains("bert.encoder.layer.1.output.dense.bias") && e.contains("missing"),
        "{e}"
    );

    let d = fresh();
    edit_weights(&d, |t| {
        t.push((
            "cls.predictions.bias".into(),
            safetensors::Dtype::F32,
            vec![1],
            vec![0; 4],
        ))
    });
    let e = load_error(&d);
    assert!(
        e.contains("cls.predictions.bias") && e.contains("unexpected"),
        "{e}"
    );

    let d = fresh();
    edit_weights(&d, |t| {
        let w = t
            .iter_mut()
            .find(|(n, ..)| n == "classifier.weight")
            .unwrap();
        w.2 = vec![1, 64];
    });
    let e = load_error(&d);
    assert!(
        e.contains("classifier.weight") && e.contains("[1, 64]") && e.contains("[2, 32]"),
        "{e}"
    );

    // A bare encoder lacks the head: an error for a reranker, initialised for a student.
    let d = fresh();
    edit_weights(&d, |t| t.retain(|(n, ..)| !n.starts_with("classifier.")));
    assert!(load_error(&d).contains("classifier.weight"));
    let c = Checkpoint::load_encoder(&d, &device).unwrap();
    assert_eq!(
        c.initialised,
        vec![
            "classifier.weight".to_string(),
            "classifier.bias".to_string()
        ]
    );
}

fn values<const D: usize>(t: tinyrank_core::burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn averaging_takes_each_parameters_mean_and_refuses_other_shapes() {
    let device = Device::flex();
    let dir = golden_dir().join("tiny-2logit");
    let load = || Checkpoint::load(&dir, &device).unwrap();
    // The same checkpoint with its two layers swapped: same shape, other weights per layer.
    let swapped = load().select_layers(&[1, 0]).unwrap();
    let names = vec!["a".to_string(), "b".to_string()];
    let soup = Checkpoint::average(&[load(), swapped], &names, &device).unwrap();
    let original = load();
    let (l0, l1) = (&original.model.layers[0], &original.model.layers[1]);
    let mean = values((l0.query.weight.val() + l1.query.weight.val()) / 2.0);
    let got = values(soup.model.layers[0].query.weight.val());
    assert!(max_abs_diff(&mean, &got) < 1e-6);
    assert_ne!(got, values(l0.query.weight.val()));
    // Parameters the two share come back unchanged.
    assert_eq!(
        values(soup.model.classifier.weight.val()),
        values(original.model.classifier.weight.val())
    );

    let student = Checkpoint::load(&golden_dir().join("tiny-student"), &device).unwrap();
    let e = Checkpoint::average(&[load(), student], &names, &device)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot average b with a") && e.contains("shapes"),
        "{e}"
    );
}
