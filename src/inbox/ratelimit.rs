//! Requests per minute per remote host, counted in fixed one-minute windows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Past this many tracked hosts, finished windows are dropped so the map stays small.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request from `host` at `now`; `Err(wait)` when over the limit, with the time
    /// until the window ends (for `Retry-After`).
    pub fn check(&self, host: &str, now: Instant) -> Result<(), Duration> {
        // A poisoned lock only means another request panicked mid-count: keep counting.
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.len() > PRUNE_ABOVE {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let (start, count) = windows.entry(host.to_string()).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *count = 0;
        }
        if *count >= self.per_minute {
            return Err(WINDOW.saturating_sub(now.duration_since(*start)));
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_host_within_its_window() {
        let limiter = RateLimiter::new(2);
        let t0 = Instant::now();
        assert!(limiter.check("a.example", t0).is_ok());
        assert!(limiter.check("a.example", t0).is_ok());
        let wait = limiter
            .check("a.example", t0 + Duration::from_secs(20))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(40));
        assert!(limiter.check("b.example", t0).is_ok(), "hosts count apart");
        assert!(
            limiter.check("a.example", t0 + WINDOW).is_ok(),
            "a new window"
        );
    }
}
