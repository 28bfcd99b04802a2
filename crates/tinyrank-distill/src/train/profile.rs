//! Where a training step's time goes (`distill --profile`): the device is synchronised at the end
//! of each phase, so each phase is charged with the kernels it queued. The syncs cost time of
//! their own, so a profiled run is slower than a plain one; the shares are what it is for. The
//! first step (kernel compilation, autotuning) is left out.

use std::fmt;
use std::time::{Duration, Instant};

use burn::tensor::Device;

pub(super) struct Profile {
    device: Device,
    last: Instant,
    /// Phases in the order first seen, with their total time.
    phases: Vec<(&'static str, Duration)>,
    steps: usize,
    counting: bool,
}

impl Profile {
    pub fn new(device: Device) -> Self {
        Self {
            device,
            last: Instant::now(),
            phases: Vec::new(),
            steps: 0,
            counting: false,
        }
    }

    /// Starts a step; `counted` is false for the warm-up step.
    pub fn start_step(&mut self, counted: bool) {
        self.sync();
        self.counting = counted;
        self.steps += usize::from(counted);
        self.last = Instant::now();
    }

    /// Ends `phase`: waits for the device and charges the time since the last mark.
    pub fn mark(&mut self, phase: &'static str) {
        self.sync();
        let now = Instant::now();
        let spent = now - self.last;
        self.last = now;
        if !self.counting {
            return;
        }
        match self.phases.iter_mut().find(|(name, _)| *name == phase) {
            Some((_, total)) => *total += spent,
            None => self.phases.push((phase, spent)),
        }
    }

    fn sync(&self) {
        // A failed sync shows up as a failed read later; the profile only loses accuracy.
        let _ = self.device.sync();
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: Duration = self.phases.iter().map(|(_, d)| *d).sum();
        let steps = self.steps.max(1) as f64;
        writeln!(
            f,
            "where a step's time goes ({} steps after the first, device synchronised after each phase):",
            self.steps
        )?;
        writeln!(f, "| phase | ms per step | share |")?;
        writeln!(f, "|---|---|---|")?;
        for (name, spent) in self.phases.iter().chain([&("step", total)]) {
            let share = spent.as_secs_f64() / total.as_secs_f64().max(1e-12);
            let ms = spent.as_secs_f64() * 1e3 / steps;
            writeln!(f, "| {name} | {ms:.1} | {:.0}% |", 100.0 * share)?;
        }
        Ok(())
    }
}
