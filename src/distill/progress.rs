//! Training behind a progress bar, stopped cleanly by Ctrl-C.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use tinyrank_distill::train::{Event, Outcome, TrainSetup, train};

/// Trains `setup`, showing progress; returns the student's directory, or None when Ctrl-C
/// stopped the run (its checkpoint saved for the same command to resume).
pub(super) fn train_with_progress(setup: TrainSetup, out: &Path) -> Result<Option<PathBuf>> {
    let stop = stop_on_ctrl_c()?;
    let bar = ProgressBar::new(setup.config.steps as u64).with_style(
        ProgressStyle::with_template("{bar:30} step {pos}/{len}  eta {eta}  {msg}")
            .expect("valid template"),
    );
    let outcome = train(setup, &stop, |event| show(&bar, event))?;
    bar.finish_and_clear();
    match outcome {
        Outcome::Stopped { step, checkpoint } => {
            eprintln!(
                "stopped at step {step}; checkpoint at {}. Run the same command again to resume.",
                checkpoint.display()
            );
            Ok(None)
        }
        Outcome::Finished {
            student_dir,
            steps,
            best_dev,
        } => {
            eprintln!(
                "trained {steps} steps; student written to {} (log {}, plot {}){}",
                student_dir.display(),
                out.join("log.jsonl").display(),
                out.join("loss.svg").display(),
                best_dev
                    .map(|(s, v)| format!("; best dev nDCG@10 {v:.4} at step {s}"))
                    .unwrap_or_default()
            );
            Ok(Some(student_dir))
        }
    }
}

/// A flag the first Ctrl-C sets (the trainer stops after the step); a second one exits.
fn stop_on_ctrl_c() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            // A second Ctrl-C: leave now. Checkpoints are written whole or not at all.
            std::process::exit(130);
        }
        eprintln!("\nstopping after this step (the checkpoint is saved); Ctrl-C again to quit now");
    })
    .context("installing the Ctrl-C handler")?;
    Ok(stop)
}

fn show(bar: &ProgressBar, event: Event) {
    match event {
        Event::Started {
            start_step,
            resumed_from,
            ..
        } => {
            bar.set_position(start_step as u64);
            bar.reset_eta();
            if let Some(dir) = resumed_from {
                // suspend + eprintln, not println: indicatif drops println when stderr is no
                // terminal, and logs of unattended runs need these lines.
                bar.suspend(|| eprintln!("resuming from {} at step {start_step}", dir.display()));
            }
        }
        Event::Step(log) => {
            let terms: Vec<String> = log
                .terms
                .iter()
                .map(|(k, v)| format!("{k} {v:.4}"))
                .collect();
            bar.set_message(format!(
                "loss {:.4} ({})  {:.1} pairs/s",
                log.loss,
                terms.join(", "),
                log.pairs_per_sec
            ));
            bar.set_position(log.step as u64);
        }
        Event::Saved { .. } => {}
        Event::Dev { step, ndcg10, best } => bar.suspend(|| {
            eprintln!(
                "step {step}: dev nDCG@10 {ndcg10:.4}{}",
                if best { " (best so far)" } else { "" }
            )
        }),
        Event::Profile(profile) => bar.suspend(|| println!("{profile}")),
    }
}
