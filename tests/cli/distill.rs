//! `tinyrank distill`: every method end to end on small real data.

use crate::common::*;
use crate::harness::*;
use tinyrank_core::Checkpoint;
use tinyrank_core::burn::tensor::Device;

#[test]
fn distill_without_assets_says_where_to_point() {
    let out = tinyrank(&["distill", "--assets", "/nonexistent-assets"]);
    assert_rejected(&out, &["--assets", "TINYRANK_SHARED"]);
}

/// `distill --augment`: pseudo-queries over the training collections join the examples, each
/// with --train-top-k candidates or --augment-top-k's, and the evaluation set's passages stay out.
#[test]
fn distill_trains_on_augmented_queries() {
    let out = tempfile::tempdir().unwrap();
    let (teacher, assets) = (golden_dir().join("tiny-2logit"), shared());
    let train = assets.join("data/trec-dl-2020");
    let args = [
        "distill",
        "--teacher",
        path(&teacher),
        "--student",
        "teacher-layers:1",
        "--train",
        path(&train),
        "--train-top-k",
        "2",
        "--augment",
        "8",
        "--steps",
        "1",
        "--batch-size",
        "4",
        "--max-len",
        "32",
        "--no-eval",
        "--device",
        "cpu",
        "--out",
        path(out.path()),
    ];
    let (_, stderr) = succeeds(&args);
    assert!(
        stderr.contains("augmentation: 16 pairs of 8 pseudo-queries"),
        "{stderr}"
    );
    let held_out = stderr.contains("held out by") && stderr.contains("trec-dl-2019");
    assert!(held_out, "{stderr}");
    // 54 DL20 queries with 2 candidates each, and the 16 augmented pairs.
    assert!(stderr.contains("with 124 examples"), "{stderr}");

    // Pseudo-queries can go deeper than the real pools: 3 candidates each, the real ones still 2.
    let deeper_out = out.path().join("deeper");
    let n = args.len();
    let with = ["--augment-top-k", "3", "--out", path(&deeper_out)];
    let deeper = [&args[..n - 2], &with[..]].concat();
    let (_, stderr) = succeeds(&deeper);
    assert!(
        stderr.contains("augmentation: 24 pairs of 8 pseudo-queries"),
        "{stderr}"
    );
    assert!(stderr.contains("with 132 examples"), "{stderr}");
    // A pseudo-query without a negative is refused, whether the flag or --train-top-k says 1.
    let one = [
        &args[..n - 2],
        &["--augment-top-k", "1", "--out", path(&deeper_out)],
    ]
    .concat();
    assert_rejected(&tinyrank(&one), &["--augment-top-k", "at least 2"]);
    let mut shallow = args.to_vec();
    let k = args.iter().position(|&a| a == "--train-top-k").unwrap() + 1;
    shallow[k] = "1";
    assert_rejected(&tinyrank(&shallow), &["--augment-top-k", "at least 2"]);

    // Query variants take their words from the teacher's vocabulary: the tiny teacher's holds
    // only word pieces, so it is refused; the shared teacher's gives 4 variants of 3 pairs.
    let variants = ["--augment-variants", "4", "--augment-top-k", "3"];
    let variants_out = out.path().join("variants");
    let tiny = [
        &args[..n - 2],
        &variants[..],
        &["--out", path(&variants_out)],
    ]
    .concat();
    assert_rejected(&tinyrank(&tiny), &["--augment-variants", "tiny-2logit"]);
    let real_teacher = assets.join("models/teacher-minilm-l6");
    let mut real = tiny.clone();
    real[2] = path(&real_teacher);
    let (_, stderr) = succeeds(&real);
    assert!(
        stderr.contains("augmentation: 12 pairs of 4 query variants"),
        "{stderr}"
    );
    assert!(stderr.contains("with 144 examples"), "{stderr}");
}

/// A cross-encoder fine-tuned from the pretrained encoder (a teacher in the making): hard
/// negatives mined by the bi-encoder, graded listwise and prior terms (the prior an ensemble of
/// the bi-encoder and the teacher), and the bi-encoder as a row of the comparison.
#[test]
fn distill_fine_tunes_an_encoder_on_mined_negatives_and_bi_encoder_scores() {
    let out = tempfile::tempdir().unwrap();
    let train = small_training_set(out.path());
    let slice = Slice::new();
    let (encoder, teacher) = (encoder_dir(), tiny_model());
    let run_dir = out.path().join("run");
    let args = [
        "distill",
        "--method",
        "fine-tune",
        "--teacher",
        path(&teacher),
        "--student",
        path(&encoder),
        "--train",
        path(&train),
        "--train-top-k",
        "4",
        "--mine-top-k",
        "4",
        "--prior-teacher",
        "0.5",
        "--group-size",
        "4",
        "--batch-size",
        "8",
        "--steps",
        "2",
        "--max-len",
        "48",
        "--eval",
        path(&slice.root),
        "--eval-top-k",
        "5",
        "--device",
        "cpu",
        "--out",
        path(&run_dir),
    ];
    let (stdout, stderr) = succeeds(&args);
    assert!(stderr.contains("passages embedded"), "{stderr}");
    let mined: usize = stderr
        .split("mined: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(mined > 0, "{stderr}");
    assert!(stderr.contains("mixed in at 0.5"), "{stderr}");
    assert!(stdout.contains("| bi-encoder |"), "{stdout}");
    assert!(stdout.contains("| student (fine-tune) |"), "{stdout}");
    let log = std::fs::read_to_string(run_dir.join("log.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    for term in ["graded", "prior"] {
        let value = first["terms"][term].as_f64().unwrap();
        assert!(value.is_finite() && value >= 0.0, "{term}: {value}");
    }
    let trained = Checkpoint::load(&run_dir.join("student"), &Device::flex()).unwrap();
    assert_eq!(trained.model.num_layers(), 6);

    let missing = out.path().join("no-bi-encoder");
    let bad_args = [&args[..], &["--bi-encoder", path(&missing)]].concat();
    assert_rejected(&tinyrank(&bad_args), &["no-bi-encoder"]);
    let other_method = args.map(|a| if a == "fine-tune" { "simplified" } else { a });
    assert_rejected(&tinyrank(&other_method), &["--prior-teacher", "fine-tune"]);
}

#[test]
fn distill_trains_exports_and_compares() {
    let out = tempfile::tempdir().unwrap();
    let (teacher, data) = (golden_dir().join("tiny-2logit"), dl19());
    let mut args = tiny_distill(&teacher, &data);
    args.extend([
        "--eval",
        path(&data),
        "--eval-top-k",
        "2",
        "--max-len",
        "64",
        "--device",
        "cpu",
        "--dev",
        path(&data),
        "--dev-top-k",
        "2",
        "--eval-every",
        "2",
        "--out",
        path(out.path()),
    ]);
    let (stdout, stderr) = succeeds(&args);
    assert!(stdout.contains("| BM25 | 0.5058 |"), "{stdout}");
    assert!(stdout.contains("| teacher |") && stdout.contains("| student (simplified) |"));
    assert!(stderr.contains("dev nDCG@10"), "{stderr}");
    // Explicit training sets get no augmentation unless asked for.
    assert!(!stderr.contains("augmentation:"), "{stderr}");
    for file in [
        "results.md",
        "log.jsonl",
        "loss.svg",
        "student/config.json",
        "best/config.json",
    ] {
        assert!(out.path().join(file).is_file(), "{file} missing");
    }
    let student = Checkpoint::load(&out.path().join("student"), &Device::flex()).unwrap();
    assert_eq!(student.model.num_layers(), 1);

    let again = tinyrank(&args);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(
        stderr.contains("resuming from") && stderr.contains("at step 3"),
        "{stderr}"
    );
    let log = std::fs::read_to_string(out.path().join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 3);

    let bad = tinyrank(&[&args[..], &["--method", "listwise", "--group-size", "3"]].concat());
    assert_rejected(&bad, &["multiple of the group size"]);
}

#[test]
fn distill_profiles_where_a_step_goes() {
    let out = tempfile::tempdir().unwrap();
    let (teacher, data) = (golden_dir().join("tiny-2logit"), dl19());
    let mut args = tiny_distill(&teacher, &data);
    args.extend([
        "--max-len",
        "64",
        "--pad-to",
        "32",
        "--no-eval",
        "--device",
        "cpu",
        "--profile",
        "--out",
        path(out.path()),
    ]);
    let (stdout, _) = succeeds(&args);
    for phase in [
        "teacher forward",
        "student forward",
        "backward",
        "clipping and AdamW",
    ] {
        assert!(
            stdout.contains(&format!("| {phase} |")),
            "{phase}: {stdout}"
        );
    }
    assert!(stdout.contains("(2 steps after the first"), "{stdout}");
    // Every step is logged, with its values read back from the device and in time order.
    let log = std::fs::read_to_string(out.path().join("log.jsonl")).unwrap();
    let steps: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(steps.len(), 3);
    let elapsed: Vec<f64> = steps
        .iter()
        .map(|s| s["elapsed_s"].as_f64().unwrap())
        .collect();
    assert!(elapsed.windows(2).all(|w| w[0] <= w[1]), "{elapsed:?}");
    assert!(steps.iter().all(|s| {
        let (loss, norm) = (
            s["loss"].as_f64().unwrap(),
            s["grad_norm"].as_f64().unwrap(),
        );
        loss.is_finite() && loss > 0.0 && norm.is_finite() && norm > 0.0
    }));
}

/// `distill` on documents: Cranfield abstracts cut into windows, the teacher keeping the best
/// passage of each relevant document.
#[test]
fn distill_trains_on_document_passages() {
    let out = tempfile::tempdir().unwrap();
    let teacher = golden_dir().join("tiny-2logit");
    let cranfield = shared().join("data/cranfield");
    let args = |passages: &str| {
        tinyrank(&[
            "distill",
            "--teacher",
            path(&teacher),
            "--student",
            "teacher-layers:1",
            "--train-docs",
            path(&cranfield),
            "--train-top-k",
            "3",
            "--doc-window",
            "40",
            "--doc-stride",
            "20",
            "--doc-title",
            "first-sentence",
            "--doc-passages",
            passages,
            "--min-rel",
            "1",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--max-len",
            "64",
            "--no-eval",
            "--device",
            "cpu",
            "--out",
            path(&out.path().join(passages)),
        ])
    };
    let all = args("all");
    let stderr = String::from_utf8_lossy(&all.stderr);
    assert!(all.status.success(), "{stderr}");
    assert!(out.path().join("all/student/config.json").is_file());
    let best = args("teacher-best");
    let best_err = String::from_utf8_lossy(&best.stderr);
    assert!(best.status.success(), "{best_err}");
    assert!(best_err.contains("teacher-best: kept"), "{best_err}");
    let examples = |stderr: &str| -> usize {
        let at = stderr
            .find(" examples,")
            .expect("the example count is reported");
        stderr[..at].rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(
        examples(&best_err) < examples(&stderr),
        "the filter drops passages"
    );
}
