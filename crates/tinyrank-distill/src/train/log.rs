//! The run's record: one JSON line per optimiser step (`log.jsonl`) and the loss curves
//! (`loss.svg`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::TrainError;
use super::config::Method;

pub const LOG_FILE: &str = "log.jsonl";
pub const PLOT_FILE: &str = "loss.svg";

/// One optimiser step, as logged.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepLog {
    pub step: usize,
    pub epoch: f64,
    pub lr: f64,
    pub loss: f64,
    /// Loss terms by name (attention, hidden, soft, hard, margin, listwise), means over the
    /// micro-batches.
    pub terms: BTreeMap<String, f64>,
    pub grad_norm: f64,
    pub pairs_per_sec: f64,
    pub elapsed_s: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dev_ndcg10: Option<f64>,
}

/// The log lines of steps up to `up_to` (a resumed run drops what came after its checkpoint).
pub(super) fn read_log(path: &Path, up_to: usize) -> Vec<StepLog> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<StepLog>(line).ok())
        .filter(|log| log.step <= up_to)
        .collect()
}

pub(super) fn rewrite_log(path: &Path, logs: &[StepLog]) -> Result<(), TrainError> {
    let mut text = String::new();
    for log in logs {
        text.push_str(&serde_json::to_string(log).expect("log serialises"));
        text.push('\n');
    }
    crate::data::write_atomically(path, text.as_bytes())?;
    Ok(())
}

pub(super) fn append_log(path: &Path, log: &StepLog) -> Result<(), TrainError> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| tinyrank_core::Error::io(path, e))?;
    writeln!(
        file,
        "{}",
        serde_json::to_string(log).expect("log serialises")
    )
    .map_err(|e| tinyrank_core::Error::io(path, e))?;
    Ok(())
}

/// A loss curve per term on a log scale, as a self-contained SVG.
pub(super) fn write_plot(path: &Path, logs: &[StepLog], method: Method) -> Result<(), TrainError> {
    const W: f64 = 720.0;
    const H: f64 = 400.0;
    const M: f64 = 50.0;
    const COLOURS: [&str; 7] = [
        "#111111", "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
    ];
    let series = log_series(logs);
    let (x0, x1, y0, y1) = extent(&series);
    let sx = |x: f64| M + (x - x0) / (x1 - x0).max(1.0) * (W - 2.0 * M);
    let sy = |y: f64| H - M - (y - y0) / (y1 - y0) * (H - 2.0 * M);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{M}\" y=\"20\">tinyrank distill ({method}): loss per step, log scale</text>\n\
         <line x1=\"{M}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{M}\" y1=\"{M}\" x2=\"{M}\" y2=\"{}\" stroke=\"black\"/>\n",
        H - M,
        W - M,
        H - M,
        H - M
    );
    let mut decade = y0;
    while decade <= y1 {
        svg.push_str(&format!(
            "<text x=\"4\" y=\"{:.1}\">1e{decade}</text>\n",
            sy(decade) + 4.0
        ));
        decade += 1.0;
    }
    svg.push_str(&format!(
        "<text x=\"{M}\" y=\"{}\">step {x0}</text><text x=\"{}\" y=\"{}\">step {x1}</text>\n",
        H - M + 18.0,
        W - M - 60.0,
        H - M + 18.0
    ));
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>\n\
             <text x=\"{}\" y=\"{}\" fill=\"{colour}\">{name}</text>\n",
            path.join(" "),
            W - M + 4.0 - 40.0,
            M + 16.0 * i as f64
        ));
    }
    svg.push_str("</svg>\n");
    crate::data::write_atomically(path, svg.as_bytes())?;
    Ok(())
}

/// The loss and each term per step, as (step, log10 value); values that a log scale cannot
/// show are left out.
fn log_series(logs: &[StepLog]) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for log in logs {
        let points = std::iter::once(("loss".to_string(), log.loss))
            .chain(log.terms.iter().map(|(k, v)| (k.clone(), *v)));
        for (name, value) in points {
            if value > 0.0 && value.is_finite() {
                series
                    .entry(name)
                    .or_default()
                    .push((log.step as f64, value.log10()));
            }
        }
    }
    series
}

/// The steps' range and the values' range in whole decades (a unit square without points).
fn extent(series: &BTreeMap<String, Vec<(f64, f64)>>) -> (f64, f64, f64, f64) {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in series.values().flatten() {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    (x0, x1, y0.floor(), y1.ceil().max(y0.floor() + 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: usize, loss: f64, hard: f64) -> StepLog {
        StepLog {
            step,
            loss,
            terms: BTreeMap::from([("hard".to_string(), hard)]),
            ..StepLog::default()
        }
    }

    #[test]
    fn the_plot_spans_whole_decades_and_leaves_out_what_a_log_scale_cannot_show() {
        let logs = [
            step(1, 20.0, 0.5),
            step(5, 2.0, 0.0),
            step(9, f64::NAN, 0.05),
        ];
        let series = log_series(&logs);
        assert_eq!(series["loss"].len(), 2);
        assert_eq!(series["hard"].len(), 2);
        assert_eq!(extent(&series), (1.0, 9.0, -2.0, 2.0));
        assert_eq!(extent(&BTreeMap::new()), (0.0, 1.0, 0.0, 1.0));
    }
}
