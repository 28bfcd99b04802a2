//! `tinyrank bench` on synthetic shapes and real text.

use crate::common::*;
use crate::harness::*;

/// `tinyrank bench` measures each case in a child process: synthetic shapes on both CPU paths,
/// then a real checkpoint on real DL19 text, each row in the table and the JSON file.
#[test]
fn bench_measures_shapes_and_real_text() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.jsonl");
    let common = [
        "--devices",
        "cpu",
        "--batch-size",
        "4",
        "--repeats",
        "2",
        "--warmup",
        "1",
    ];
    let mut args = vec!["bench", "--shapes", "2/128,3/384", "--lengths", "32"];
    args.extend(common);
    args.extend(["--cpu-paths", "fast,int8", "--json", path(&json)]);
    let (table, _) = succeeds(&args);
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cases: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["model"].as_str().unwrap(), r["device"].as_str().unwrap()))
        .collect();
    assert_eq!(
        cases,
        [
            ("2/128", "cpu"),
            ("2/128", "cpu-int8"),
            ("3/384", "cpu"),
            ("3/384", "cpu-int8")
        ]
    );
    for r in &rows {
        assert!(r["median_pairs_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["rates"].as_array().unwrap().len(), 2);
        assert_eq!(r["weights"], "random");
    }
    // The 3/384 rows are the table's baseline: 1.00x beside themselves.
    assert!(
        table.lines().filter(|l| l.ends_with("| 1.00x |")).count() == 2,
        "{table}"
    );

    let (teacher, dl19) = (teacher_dir(), dl19());
    let mut args = vec!["bench", "--model", path(&teacher), "--text", path(&dl19)];
    args.extend(common);
    args.extend([
        "--text-queries",
        "1",
        "--lengths",
        "64",
        "--cpu-paths",
        "fast",
    ]);
    args.extend(["--json", path(&json)]);
    let (table, _) = succeeds(&args);
    let row: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&json).unwrap().trim()).unwrap();
    assert_eq!(row["model"], "6/384", "{row}");
    assert_eq!(row["weights"], "real");
    assert_eq!(row["pairs"], 100, "one query's top 100");
    assert!(
        row["len"].as_str().unwrap().starts_with("text<=64 (mean "),
        "{row}"
    );
    assert!(table.contains("6/384"), "{table}");
}
