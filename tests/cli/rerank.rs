//! `rerank`, `export` and device choice on a DL19 slice; bad data and bad checkpoints.

use std::path::Path;

use crate::harness::*;
use tinyrank_distill::data::Run;

#[test]
fn rerank_writes_a_trec_run_that_eval_reads() {
    let slice = Slice::new();
    let output = slice.file("out.run");
    let out = slice.rerank(&tiny_model(), &output);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("device: cpu"), "{stderr}");
    let text = std::fs::read_to_string(&output).unwrap();
    assert_eq!(text.lines().count(), 15);
    // Ranks restart at 1 per query and follow descending scores.
    let first: Vec<Vec<&str>> = text
        .lines()
        .take(5)
        .map(|l| l.split(' ').collect())
        .collect();
    assert_eq!(first[0][3], "1");
    assert!(
        first
            .windows(2)
            .all(|w| w[0][4].parse::<f64>().unwrap() >= w[1][4].parse::<f64>().unwrap())
    );
    let v = eval_json(&slice.file("qrels.txt"), &output, &["--judged-in-run-only"]);
    assert_eq!(v["queries"], 3);
}

/// `--interpolate 1` gives the first stage's order back (as trec_eval ranks it: score, then
/// document id, descending); a weight outside 0..1 is refused.
#[test]
fn rerank_interpolates_with_the_first_stage() {
    let slice = Slice::new();
    let output = slice.file("mixed.run");
    let mut args = slice_rerank_args(&slice, &tiny_model(), &output);
    args.extend(["--interpolate".to_string(), "1".to_string()]);
    let out = tinyrank(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let order = |p: &Path| -> Vec<Vec<String>> {
        let run = Run::read(p).unwrap();
        let ranked = |q: &String| run.ranked(q).iter().map(|e| e.doc_id.clone()).collect();
        run.query_ids.iter().map(ranked).collect()
    };
    assert_eq!(order(&output), order(&slice.file("bm25.run")));

    let mut args = slice_rerank_args(&slice, &tiny_model(), &slice.file("bad.run"));
    args.extend(["--interpolate".to_string(), "1.5".to_string()]);
    let out = tinyrank(&args);
    assert_rejected(&out, &["'1.5'", "--interpolate", "a weight from 0 to 1"]);
}

#[test]
fn bad_data_files_are_rejected_with_file_and_line() {
    let slice = Slice::new();
    let output = slice.file("out.run");
    std::fs::write(&output, "previous good run\n").unwrap();

    // Missing file.
    std::fs::rename(slice.file("queries.tsv"), slice.file("queries.bak")).unwrap();
    assert_rejected(&slice.rerank(&tiny_model(), &output), &["queries.tsv"]);
    std::fs::rename(slice.file("queries.bak"), slice.file("queries.tsv")).unwrap();

    let run = std::fs::read_to_string(slice.file("bm25.run")).unwrap();
    // Empty file.
    std::fs::write(slice.file("bm25.run"), "").unwrap();
    assert_rejected(
        &slice.rerank(&tiny_model(), &output),
        &["bm25.run", "empty"],
    );
    // Malformed line: a missing field on line 2.
    let mut lines: Vec<String> = run.lines().map(String::from).collect();
    lines[1] = lines[1].rsplit_once(' ').unwrap().0.to_string();
    std::fs::write(slice.file("bm25.run"), lines.join("\n")).unwrap();
    assert_rejected(
        &slice.rerank(&tiny_model(), &output),
        &["bm25.run:2", "6 fields"],
    );
    // A score that is not a number.
    let mut lines: Vec<String> = run.lines().map(String::from).collect();
    let f: Vec<&str> = run.lines().nth(2).unwrap().split(' ').collect();
    lines[2] = format!("{} Q0 {} {} high {}", f[0], f[2], f[3], f[5]);
    std::fs::write(slice.file("bm25.run"), lines.join("\n")).unwrap();
    assert_rejected(
        &slice.rerank(&tiny_model(), &output),
        &["bm25.run:3", "score"],
    );
    std::fs::write(slice.file("bm25.run"), &run).unwrap();

    // A query with no candidates.
    let queries = std::fs::read_to_string(slice.file("queries.tsv")).unwrap();
    std::fs::write(
        slice.file("queries.tsv"),
        format!("{queries}999999\tan extra query\n"),
    )
    .unwrap();
    assert_rejected(
        &slice.rerank(&tiny_model(), &output),
        &["999999", "no candidates"],
    );
    std::fs::write(slice.file("queries.tsv"), &queries).unwrap();

    // An empty passage that the run asks for.
    let first_pid = run
        .lines()
        .next()
        .unwrap()
        .split(' ')
        .nth(2)
        .unwrap()
        .to_string();
    let collection = std::fs::read_to_string(slice.file("collection.tsv")).unwrap();
    let line_no = collection
        .lines()
        .position(|l| l.starts_with(&format!("{first_pid}\t")))
        .unwrap()
        + 1;
    let emptied: String = collection
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{first_pid}\t")) {
                format!("{first_pid}\t\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(slice.file("collection.tsv"), emptied).unwrap();
    assert_rejected(
        &slice.rerank(&tiny_model(), &output),
        &[&format!("collection.tsv:{line_no}"), "empty"],
    );

    // Nothing above touched the previous output.
    assert_eq!(
        std::fs::read_to_string(&output).unwrap(),
        "previous good run\n"
    );
}

#[test]
fn bad_checkpoints_are_rejected_naming_what_is_wrong() {
    let slice = Slice::new();
    let output = slice.file("out.run");
    let dir = tempfile::tempdir().unwrap();

    // A config that does not match the weights.
    let model = tiny_copy(dir.path());
    let config = std::fs::read_to_string(model.join("config.json")).unwrap();
    std::fs::write(
        model.join("config.json"),
        config.replace("\"intermediate_size\": 64", "\"intermediate_size\": 96"),
    )
    .unwrap();
    assert_rejected(
        &slice.rerank(&model, &output),
        &[
            "model.safetensors",
            "encoder.layer.0.intermediate.dense.weight",
            "[64, 32]",
            "[96, 32]",
        ],
    );
    std::fs::write(model.join("config.json"), &config).unwrap();

    // A vocabulary larger than the embedding matrix.
    let vocab = std::fs::read_to_string(model.join("vocab.txt")).unwrap();
    std::fs::write(model.join("vocab.txt"), format!("{vocab}extra1\nextra2\n")).unwrap();
    assert_rejected(&slice.rerank(&model, &output), &["vocab_size", "tokens"]);
    std::fs::write(model.join("vocab.txt"), &vocab).unwrap();

    // Truncated weights.
    let weights = std::fs::read(model.join("model.safetensors")).unwrap();
    std::fs::write(
        model.join("model.safetensors"),
        &weights[..weights.len() / 2],
    )
    .unwrap();
    assert_rejected(
        &slice.rerank(&model, &output),
        &["model.safetensors", "safetensors"],
    );

    // An empty weights file, and no weights at all.
    std::fs::write(model.join("model.safetensors"), b"").unwrap();
    assert_rejected(
        &slice.rerank(&model, &output),
        &["model.safetensors", "empty"],
    );
    std::fs::remove_file(model.join("model.safetensors")).unwrap();
    assert_rejected(&slice.rerank(&model, &output), &["model.safetensors"]);
    assert!(!output.exists());
}

#[test]
fn export_round_trips_in_f32_and_f16_and_averages() {
    let dir = tempfile::tempdir().unwrap();
    let slice = Slice::new();
    let reference = slice.file("reference.run");
    assert!(slice.rerank(&tiny_model(), &reference).status.success());
    let one = path(&tiny_model()).to_string();
    // The mean of a checkpoint with itself is that checkpoint, bit for bit.
    let twice = format!("{one},{one}");
    for (name, models, dtype) in [
        ("f32", &one, "f32"),
        ("f16", &one, "f16"),
        ("soup", &twice, "f32"),
    ] {
        let exported = dir.path().join(name);
        let out = tinyrank(&[
            "export",
            "--model",
            models,
            "--out",
            path(&exported),
            "--dtype",
            dtype,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = slice.file(&format!("{name}.run"));
        assert!(slice.rerank(&exported, &run).status.success());
        // The tiny checkpoint is stored in f16, so both exports keep its scores exactly.
        let scores = |p: &Path| -> Vec<String> {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| l.split(' ').nth(4).unwrap().to_string())
                .collect()
        };
        assert_eq!(scores(&run), scores(&reference), "{name}");
    }
}

#[test]
fn auto_device_picks_something_and_says_why() {
    let slice = Slice::new();
    let out = slice.rerank_on(&tiny_model(), &slice.file("auto.run"), "auto");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // A hardware GPU, or the CPU with the reason (no adapter, or only a software one).
    let device = stderr
        .lines()
        .find(|l| l.starts_with("device: "))
        .expect("the device is named");
    assert!(
        device.starts_with("device: gpu") || device.contains("; "),
        "{device}"
    );
}
