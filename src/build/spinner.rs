//! A spinner on stderr for long builds: it appears only after a delay, so quick builds
//! print nothing but their summary.

use std::sync::mpsc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A build shorter than this shows no progress spinner.
const SPINNER_DELAY: Duration = Duration::from_millis(400);

/// A spinner on stderr that appears only once the build has run for `SPINNER_DELAY`.
pub struct Spinner {
    bar: ProgressBar,
    stop: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Spinner {
    pub fn start(enabled: bool) -> Spinner {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        if !enabled {
            return Spinner { bar, stop: None };
        }
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        let (tx, rx) = mpsc::channel();
        let shown = bar.clone();
        let handle = std::thread::spawn(move || {
            if rx.recv_timeout(SPINNER_DELAY) == Err(mpsc::RecvTimeoutError::Timeout) {
                shown.set_draw_target(ProgressDrawTarget::stderr());
                shown.enable_steady_tick(Duration::from_millis(120));
            }
        });
        Spinner {
            bar,
            stop: Some((tx, handle)),
        }
    }

    pub fn message(&self, text: &'static str) {
        self.bar.set_message(text);
    }

    pub fn finish(mut self) {
        self.stop_thread();
        self.bar.finish_and_clear();
    }

    fn stop_thread(&mut self) {
        if let Some((tx, handle)) = self.stop.take() {
            let _ = tx.send(());
            let _ = handle.join();
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop_thread();
        self.bar.finish_and_clear();
    }
}
