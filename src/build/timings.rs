//! Phase timings of one build, printed to stderr when `RELAIS_BUILD_TIMINGS` is set: the
//! tool for finding what an incremental build spends its milliseconds on.

use std::time::Instant;

/// The environment variable that turns the timings on.
pub const ENV: &str = "RELAIS_BUILD_TIMINGS";

pub struct Timings {
    last: Option<Instant>,
    started: Instant,
}

impl Timings {
    pub fn from_env() -> Timings {
        let now = Instant::now();
        Timings {
            last: std::env::var_os(ENV).map(|_| now),
            started: now,
        }
    }

    /// A line of detail, when timings are on.
    pub fn note(&self, what: impl FnOnce() -> String) {
        if self.last.is_some() {
            eprintln!("timing   {}", what());
        }
    }

    /// Ends the phase `name` (the time since the previous mark).
    pub fn mark(&mut self, name: &str) {
        if let Some(last) = self.last {
            let now = Instant::now();
            eprintln!(
                "timing {name:<24} {:>8.2} ms (at {:>8.2} ms)",
                (now - last).as_secs_f64() * 1e3,
                (now - self.started).as_secs_f64() * 1e3
            );
            self.last = Some(now);
        }
    }
}
