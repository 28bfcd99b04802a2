//! Building students from a teacher: some of its layers, or a fresh configuration.
#![allow(clippy::unwrap_used)] // test helpers unwrap, as #[test] functions may

#[path = "../../../tests/common/mod.rs"]
mod common;

use common::*;
use tinyrank_core::burn::tensor::Device;
use tinyrank_core::{Checkpoint, Precision, Reranker};
use tinyrank_distill::student::{StudentSpec, build_student};

fn weights(t: tinyrank_core::burn::tensor::Tensor<2>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

#[test]
fn students_from_teacher_layers_and_from_scratch() {
    let device = Device::flex();
    let teacher_dir = golden_dir().join("tiny-2logit");
    let pairs = ["a flea is an insect", "paris is a city in france"];
    let score = |c: Checkpoint| {
        Reranker::from_checkpoint(c, &cpu(), Precision::F32)
            .unwrap()
            .score("what is a flea", &pairs)
            .unwrap()
    };

    // Keeping every layer reproduces the teacher.
    let all = build_student(
        &"teacher-layers:0,1".parse().unwrap(),
        &teacher_dir,
        &device,
    )
    .unwrap();
    assert_eq!(
        score(all),
        score(Checkpoint::load(&teacher_dir, &device).unwrap())
    );

    // One layer: the teacher's layer 1, as torch built tests/golden/tiny-student.
    let one = build_student(&"teacher-layers:1".parse().unwrap(), &teacher_dir, &device).unwrap();
    assert_eq!(one.model.num_layers(), 1);
    assert_eq!(one.config.num_hidden_layers, 1);
    let reference = Checkpoint::load(&golden_dir().join("tiny-student"), &device).unwrap();
    assert_eq!(
        weights(one.model.layers[0].query.weight.val()),
        weights(reference.model.layers[0].query.weight.val())
    );

    let e = build_student(
        &"teacher-layers:0,5".parse().unwrap(),
        &teacher_dir,
        &device,
    )
    .unwrap_err();
    assert!(e.to_string().contains("layer 5 does not exist"), "{e}");
    let e = build_student(
        &"teacher-layers:1,1".parse().unwrap(),
        &teacher_dir,
        &device,
    )
    .unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");

    let spec: StudentSpec = "random:layers=1,hidden=16,heads=4,ffn=32".parse().unwrap();
    let fresh = build_student(&spec, &teacher_dir, &device).unwrap();
    assert_eq!(
        (
            fresh.model.num_layers(),
            fresh.model.hidden_size(),
            fresh.model.num_heads()
        ),
        (1, 16, 4)
    );
    assert_eq!(fresh.model.num_labels(), 2);
    let scores = score(fresh);
    assert!(scores.iter().all(|s| s.is_finite()));
    let e = build_student(
        &"random:layers=1,hidden=18,heads=4".parse().unwrap(),
        &teacher_dir,
        &device,
    )
    .unwrap_err();
    assert!(e.to_string().contains("not divisible"), "{e}");
}
