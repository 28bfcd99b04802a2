//! The trainer on tiny real checkpoints (tests/golden) and real TREC DL 2019 text: exact resume,
//! refusal to resume another run, a non-finite loss that keeps the last good checkpoint, and
//! teacher/student pairs that cannot be distilled.
#![allow(clippy::unwrap_used)] // test helpers unwrap, as #[test] functions may

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use tinyrank_core::burn::tensor::{DType, Device};
use tinyrank_core::{Checkpoint, SelectedDevice};
use tinyrank_distill::examples::{Example, from_dataset};
use tinyrank_distill::train::{
    Event, Method, Outcome, RunIdentity, TrainConfig, TrainError, TrainSetup, read_f32_safetensors,
    train,
};

fn examples() -> Vec<Example> {
    let mut all = from_dataset(&dl19(), 4, 2).unwrap();
    all.truncate(24);
    all
}

fn setup(config: TrainConfig, out: &Path) -> TrainSetup {
    setup_on(config, out, cpu())
}

fn setup_on(config: TrainConfig, out: &Path, selected: SelectedDevice) -> TrainSetup {
    let examples = examples();
    let device = selected.device.clone();
    let teacher_dir = golden_dir().join("tiny-2logit");
    TrainSetup {
        identity: RunIdentity {
            config: config.clone(),
            teacher: "tiny-2logit".into(),
            student: "tiny-student".into(),
            data: vec!["dl19 top-4, first 24".into()],
            examples: examples.len(),
        },
        config,
        teacher: Some(Checkpoint::load(&teacher_dir, &device).unwrap()),
        student: Checkpoint::load(
            &golden_dir().join("tiny-student"),
            &device.clone().autodiff(),
        )
        .unwrap(),
        examples,
        device: selected,
        out_dir: out.to_path_buf(),
        resume: None,
        checkpoint_every: 2,
        dev: None,
        eval_every: 0,
        profile: false,
    }
}

fn config(method: Method) -> TrainConfig {
    let mut config = TrainConfig::new(method, 6);
    config.batch_size = 4;
    config.accumulation = 2;
    config.group_size = 2;
    config.max_len = 48;
    config.learning_rate = 1e-3;
    config
}

fn file(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

#[test]
fn a_stopped_and_resumed_run_ends_with_the_weights_of_an_uninterrupted_one() {
    for method in [Method::Simplified, Method::Tinybert, Method::Listwise] {
        let whole = tempfile::tempdir().unwrap();
        let outcome = train(
            setup(config(method), whole.path()),
            &AtomicBool::new(false),
            |_| {},
        )
        .unwrap();
        assert!(matches!(outcome, Outcome::Finished { steps: 6, .. }));

        let split = tempfile::tempdir().unwrap();
        let stop = AtomicBool::new(false);
        let outcome = train(setup(config(method), split.path()), &stop, |event| {
            if let Event::Step(log) = event
                && log.step == 2
            {
                stop.store(true, Ordering::SeqCst);
            }
        })
        .unwrap();
        assert!(
            matches!(outcome, Outcome::Stopped { step: 2, .. }),
            "{outcome:?}"
        );
        assert!(!split.path().join("student").exists());
        let mut resumed_at = None;
        let outcome = train(
            setup(config(method), split.path()),
            &AtomicBool::new(false),
            |event| {
                if let Event::Started { start_step, .. } = event {
                    resumed_at = Some(start_step);
                }
            },
        )
        .unwrap();
        assert_eq!(resumed_at, Some(2));
        assert!(matches!(outcome, Outcome::Finished { steps: 6, .. }));

        for name in ["model.safetensors", "optimizer.safetensors"] {
            assert!(
                file(&whole.path().join("checkpoint"), name)
                    == file(&split.path().join("checkpoint"), name),
                "{method}: {name} differs between the uninterrupted and the resumed run"
            );
        }
        assert!(
            file(&whole.path().join("student"), "model.safetensors")
                == file(&split.path().join("student"), "model.safetensors")
        );
        let log = std::fs::read_to_string(split.path().join("log.jsonl")).unwrap();
        let steps: Vec<u64> = log
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(steps, vec![1, 2, 3, 4, 5, 6], "{method}");
        let svg = std::fs::read_to_string(split.path().join("loss.svg")).unwrap();
        assert!(svg.contains("<polyline"));

        // The student loads as a plain cross-encoder (no fit_dense) and scores.
        let student = Checkpoint::load(&split.path().join("student"), &Device::flex()).unwrap();
        assert!(student.fit_dense.is_none());
    }
}

#[test]
fn a_checkpoint_of_another_configuration_is_not_resumed() {
    let out = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(true);
    let outcome = train(setup(config(Method::Simplified), out.path()), &stop, |_| {}).unwrap();
    assert!(matches!(outcome, Outcome::Stopped { step: 1, .. }));
    let mut other = config(Method::Simplified);
    other.learning_rate = 5e-4;
    let e = train(setup(other, out.path()), &AtomicBool::new(false), |_| {}).unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains("another run") && message.contains("config.learning_rate"),
        "{message}"
    );
    // The checkpoint it refused is still there.
    assert!(out.path().join("checkpoint/trainer_state.json").is_file());
}

#[test]
fn a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint() {
    let out = tempfile::tempdir().unwrap();
    let mut config = config(Method::Standard);
    // Weights of 1e30 overflow the attention scores to infinity after the first update.
    config.learning_rate = 1e30;
    config.max_grad_norm = 0.0;
    let mut setup = setup(config, out.path());
    setup.checkpoint_every = 1;
    let e = train(setup, &AtomicBool::new(false), |_| {}).unwrap_err();
    match &e {
        TrainError::NonFinite {
            step, last_good, ..
        } => {
            let (good, dir) = last_good.clone().expect("a checkpoint was written");
            assert_eq!(good + 1, *step);
            let state: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(dir.join("trainer_state.json")).unwrap(),
            )
            .unwrap();
            assert_eq!(state["step"].as_u64(), Some(good as u64));
        }
        other => panic!("expected a non-finite loss, got {other}"),
    }
    assert!(e.to_string().contains("is intact at"), "{e}");
}

#[test]
fn pairs_that_cannot_be_distilled_are_refused() {
    let device = Device::flex();
    let out = tempfile::tempdir().unwrap();

    // Another vocabulary: the shared teacher's WordPiece against the tiny test vocabulary.
    let mut s = setup(config(Method::Simplified), out.path());
    s.teacher = Some(Checkpoint::load(&teacher_dir(), &device).unwrap());
    let e = train(s, &AtomicBool::new(false), |_| {}).unwrap_err();
    assert!(e.to_string().contains("tokenise differently"), "{e}");

    // A layer map naming a teacher layer that does not exist.
    let mut c = config(Method::Simplified);
    c.layer_map = Some("attention=2;hidden=0,2".parse().unwrap());
    let e = train(setup(c, out.path()), &AtomicBool::new(false), |_| {}).unwrap_err();
    assert!(e.to_string().contains("teacher layer 2"), "{e}");

    // Head counts differ: a 2-head student against the 4-head teacher.
    let mut s = setup(config(Method::Simplified), out.path());
    s.student = tinyrank_distill::student::build_student(
        &"random:layers=1,hidden=32,heads=2,ffn=64".parse().unwrap(),
        &golden_dir().join("tiny-2logit"),
        &device.clone().autodiff(),
    )
    .unwrap();
    let e = train(s, &AtomicBool::new(false), |_| {}).unwrap_err();
    assert!(e.to_string().contains("4 heads"), "{e}");

    // An f16 teacher needs a GPU.
    let mut c = config(Method::Simplified);
    c.teacher_f16 = true;
    let e = train(setup(c, out.path()), &AtomicBool::new(false), |_| {}).unwrap_err();
    assert!(e.to_string().contains("GPU only"), "{e}");

    // Margin-MSE groups must fit in a batch.
    let mut c = config(Method::MarginMse);
    c.group_size = 3;
    let e = train(setup(c, out.path()), &AtomicBool::new(false), |_| {}).unwrap_err();
    assert!(e.to_string().contains("multiple of the group size"), "{e}");
}

/// The same three steps on wgpu (lavapipe here, a real GPU elsewhere) and on the CPU give the
/// same weights. A small learning rate bounds what Adam's sign-like first steps can amplify.
/// With the teacher in f16 (`--teacher-f16`, where the adapter has f16 arithmetic) the first
/// step's loss terms, which the teacher's outputs set, move a little, and not at all without it.
#[test]
fn training_on_wgpu_matches_the_cpu() {
    let Some(gpu) = gpu() else {
        return;
    };
    let mut config = config(Method::Simplified);
    config.steps = 3;
    config.learning_rate = 1e-5;
    let run = |device: SelectedDevice, teacher_f16: bool| {
        let out = tempfile::tempdir().unwrap();
        let config = TrainConfig {
            teacher_f16,
            ..config.clone()
        };
        let mut first_terms = None;
        train(
            setup_on(config, out.path(), device),
            &AtomicBool::new(false),
            |event| {
                if let Event::Step(log) = event {
                    first_terms.get_or_insert_with(|| log.terms.clone());
                }
            },
        )
        .unwrap();
        let weights = read_f32_safetensors(&out.path().join("checkpoint/model.safetensors"))
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>();
        (weights, first_terms.unwrap())
    };
    let (cpu, cpu_terms) = run(cpu(), false);
    let (gpu_weights, gpu_terms) = run(gpu.clone(), false);
    let mut worst = 0f32;
    for ((name, a), (other, b)) in cpu.iter().zip(&gpu_weights) {
        assert_eq!(name, other);
        worst = worst.max(max_abs_diff(a, b));
    }
    eprintln!("trained weights, wgpu vs CPU: max |difference| {worst:.2e}");
    assert!(worst <= 1e-4, "trained weights differ by {worst}");
    let relative = |terms: &std::collections::BTreeMap<String, f64>| {
        cpu_terms
            .iter()
            .map(|(name, want)| ((terms[name] - want) / want).abs())
            .fold(0.0, f64::max)
    };
    assert!(
        relative(&gpu_terms) <= 1e-5,
        "{gpu_terms:?} vs {cpu_terms:?}"
    );
    if gpu.device.supports_dtype(DType::F16) {
        let (_, half_terms) = run(gpu, true);
        let moved = relative(&half_terms);
        eprintln!("first-step loss terms with an f16 teacher: {moved:.2e} relative to f32");
        assert!(
            moved > 0.0 && moved <= 1e-2,
            "{half_terms:?} vs {cpu_terms:?}"
        );
    }
}

/// Unmounts the test's small filesystem however the test ends.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A disk that fills up while the second checkpoint is written: the run stops with the system's
/// error and the first checkpoint stays whole and loadable. Needs a 600 KB tmpfs (one checkpoint
/// of the tiny student is ~400 KB), so it mounts one: root only, skipped (said) elsewhere.
#[test]
fn a_full_disk_while_checkpointing_keeps_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=600k", "tmpfs"])
        .arg(dir.path())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipping the full-disk check: cannot mount a small tmpfs here (not root?)");
        return;
    }
    let _guard = Mounted(dir.path().to_path_buf());
    let e = train(
        setup(config(Method::Simplified), dir.path()),
        &AtomicBool::new(false),
        |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("No space left"), "{e}");
    let checkpoint = dir.path().join("checkpoint");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(checkpoint.join("trainer_state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["step"].as_u64(), Some(2));
    let saved = Checkpoint::load(&checkpoint, &Device::flex()).unwrap();
    assert!(saved.fit_dense.is_some());
    // No half-written directory is left behind to fill the disk further.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
