//! The retry policy of deliveries, without I/O: what an answer to one attempt means for the
//! delivery and for its host, as Mastodon's `ActivityPub::DeliveryWorker` judges it.
//!
//! - 2xx: delivered.
//! - 410 Gone: final; from a follower's personal inbox, the follower is removed.
//! - 501, and 4xx but 401, 408 and 429: final, retrying cannot help.
//! - anything else (3xx, as deliveries follow no redirects, 5xx, 401, 408, 429, timeouts,
//!   refused connections): a failure of the host, retried with Sidekiq's backoff as
//!   Mastodon configures it (`retry: 16`), up to `delivery.max_attempts` attempts (17: the
//!   first and 16 retries, two to three days).

use rand::Rng;

use crate::store::queue::{Attempt, ClaimedDelivery};
use crate::store::HostSignal;

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// It must not or cannot be sent at all (refused address, invalid URL): final.
    Refused(String),
    /// Timeout, refused connection, broken transfer: worth retrying.
    Failed(String),
}

/// Sidekiq's delay before retry number `count + 1` (0-based `count`), with the jitter
/// Mastodon adds: `count⁴ + 15 + rand(0.5·count⁴) + rand(10)·(count + 1)` seconds.
pub fn retry_delay(count: u32, rng: &mut impl Rng) -> i64 {
    let power = i64::from(count).pow(4);
    let jitter = rng.gen_range(0..=power / 2);
    let sidekiq_jitter = rng.gen_range(0..10) * (i64::from(count) + 1);
    power + 15 + jitter + sidekiq_jitter
}

/// Turns the answer to one attempt into what to record.
pub fn judge(
    result: &Result<u16, SendError>,
    delivery: &ClaimedDelivery,
    now: i64,
    max_attempts: u32,
    rng: &mut impl Rng,
) -> (Attempt, HostSignal) {
    let mut retry = |status: Option<u16>, error: String| {
        let attempts = delivery.attempts + 1;
        if attempts >= max_attempts {
            Attempt::Failed {
                status,
                error: format!("{error} (gave up after {attempts} attempts)"),
                remove_follower: None,
            }
        } else {
            Attempt::Retry {
                status,
                error,
                next_attempt_at: now + retry_delay(delivery.attempts, rng),
            }
        }
    };
    match result {
        Ok(status @ 200..=299) => (
            Attempt::Delivered { status: *status },
            HostSignal::Reachable,
        ),
        Ok(410) => (
            Attempt::Failed {
                status: Some(410),
                error: "410 Gone".into(),
                remove_follower: delivery.follower_id.clone(),
            },
            HostSignal::Reachable,
        ),
        Ok(status @ (400..=499 | 501)) if !matches!(status, 401 | 408 | 429) => (
            Attempt::Failed {
                status: Some(*status),
                error: format!("HTTP {}", status_text(*status)),
                remove_follower: None,
            },
            HostSignal::Reachable,
        ),
        Ok(status) => (
            retry(Some(*status), format!("HTTP {}", status_text(*status))),
            HostSignal::Unreachable,
        ),
        Err(SendError::Refused(error)) => (
            Attempt::Failed {
                status: None,
                error: error.clone(),
                remove_follower: None,
            },
            HostSignal::Unknown,
        ),
        Err(SendError::Failed(error)) => (retry(None, error.clone()), HostSignal::Unreachable),
    }
}

fn status_text(status: u16) -> String {
    match http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: i64 = 1_800_000_000;

    #[test]
    fn retry_delays_follow_sidekiq_and_grow_to_days() {
        let mut rng = rand::thread_rng();
        for _ in 0..100 {
            let first = retry_delay(0, &mut rng);
            assert!((15..=24).contains(&first), "{first}");
            let tenth = retry_delay(10, &mut rng);
            assert!((10_015..=10_015 + 5_000 + 99).contains(&tenth), "{tenth}");
        }
        // 17 attempts: 16 retries, at least Σ c⁴ + 15 s for c < 16, over two days.
        let total: i64 = (0..16).map(|c| retry_delay(c, &mut rng)).sum();
        assert!(total >= 178_552, "17 attempts span {total} s");
    }

    #[test]
    fn answers_are_judged_as_mastodon_judges_them() {
        let delivery = ClaimedDelivery {
            id: 1,
            activity_id: "a".into(),
            actor_name: "blog".into(),
            inbox: "https://m.example/users/x/inbox".into(),
            host: "m.example".into(),
            follower_id: Some("https://m.example/users/x".into()),
            body: "{}".into(),
            attempts: 0,
            host_cooling: false,
            lease_until: START + 30,
        };
        let mut rng = rand::thread_rng();
        let mut judge_of =
            |result: Result<u16, SendError>| judge(&result, &delivery, START, 17, &mut rng);
        assert_eq!(
            judge_of(Ok(202)),
            (Attempt::Delivered { status: 202 }, HostSignal::Reachable)
        );
        for status in [500, 502, 503, 401, 408, 429, 301, 302, 308] {
            let (attempt, signal) = judge_of(Ok(status));
            assert!(
                matches!(attempt, Attempt::Retry { next_attempt_at, .. } if next_attempt_at > START),
                "{status}"
            );
            assert_eq!(signal, HostSignal::Unreachable);
        }
        for status in [400, 403, 404, 422, 501] {
            let (attempt, signal) = judge_of(Ok(status));
            assert!(
                matches!(
                    attempt,
                    Attempt::Failed {
                        remove_follower: None,
                        ..
                    }
                ),
                "{status}"
            );
            assert_eq!(signal, HostSignal::Reachable);
        }
        let (gone, _) = judge_of(Ok(410));
        assert!(
            matches!(gone, Attempt::Failed { remove_follower: Some(ref id), .. } if id == "https://m.example/users/x")
        );
        let (refused, signal) = judge_of(Err(SendError::Refused("private address".into())));
        assert!(matches!(refused, Attempt::Failed { .. }));
        assert_eq!(signal, HostSignal::Unknown);
        let (timeout, _) = judge_of(Err(SendError::Failed("timeout".into())));
        assert!(matches!(timeout, Attempt::Retry { .. }));

        // Mastodon's `retry: 16`: the first attempt and 16 retries.
        let last = ClaimedDelivery {
            attempts: 16,
            ..delivery.clone()
        };
        let (attempt, _) = judge(&Ok(503), &last, START, 17, &mut rng);
        assert!(
            matches!(attempt, Attempt::Failed { ref error, .. } if error.contains("gave up after 17 attempts"))
        );
    }
}
