//! The bi-encoder on the real all-MiniLM-L6-v2: the fused engine's mean pooling equals the burn
//! model's (whose hidden states match transformers, see parity.rs), and its similarities rank
//! passages as a retriever should.
#![allow(clippy::unwrap_used)] // test helpers unwrap, as #[test] functions may

#[path = "../../../tests/common/mod.rs"]
mod common;

use common::*;
use tinyrank_core::bi_encoder::{BI_ENCODER_MAX_LEN, dot};
use tinyrank_core::burn::tensor::Device;
use tinyrank_core::{Batch, BiEncoder, Checkpoint, Trace};

#[test]
fn fused_mean_pooling_equals_the_burn_model() {
    let device = Device::flex();
    let checkpoint = Checkpoint::load_encoder(&encoder_dir(), &device).unwrap();
    let bi = BiEncoder::new(&checkpoint, BI_ENCODER_MAX_LEN).unwrap();
    let texts = [
        "how long is a marathon",
        "The marathon is a long-distance race of 42.195 kilometres, run on roads.",
        "a",
    ];
    let got = bi.embed(&texts).unwrap();
    for (text, got) in texts.iter().zip(&got) {
        let encoded = checkpoint
            .tokenizer
            .encode_texts(&[text], BI_ENCODER_MAX_LEN)
            .unwrap();
        let batch = Batch::from_encoded(&encoded, checkpoint.tokenizer.pad_id(), &device);
        let out = checkpoint.model.forward(&batch, Trace::default());
        let mean: Vec<f32> = out
            .sequence_output
            .mean_dim(1)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt();
        let want: Vec<f32> = mean.iter().map(|x| x / norm).collect();
        assert!(max_abs_diff(got, &want) < 1e-5, "{text}");
        assert!((dot(got, got) - 1.0).abs() < 1e-5);
    }
}

#[test]
fn similarities_rank_an_answer_above_a_namesake_and_an_unrelated_text() {
    let bi = BiEncoder::load(&encoder_dir(), BI_ENCODER_MAX_LEN).unwrap();
    let query = bi.embed(&["how long is a marathon"]).unwrap().remove(0);
    let passages = bi
        .embed(&[
            "A marathon is a long-distance foot race with a distance of 42.195 km (26.2 miles).",
            "The Battle of Marathon took place in 490 BC between Athens and Persia.",
            "Preheat the oven to 180 degrees and butter a cake tin.",
        ])
        .unwrap();
    let sims: Vec<f32> = passages.iter().map(|p| dot(&query, p)).collect();
    assert!(sims[0] > sims[1] && sims[1] > sims[2], "{sims:?}");
}
