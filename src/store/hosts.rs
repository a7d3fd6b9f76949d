//! The health of remote hosts, as delivery sees it: consecutive failures, failure days and
//! unavailability (Mastodon's `DeliveryFailureTracker` and `UnavailableDomain`), which the
//! queue's claims read for the circuit breaker and the probes of an unavailable host.
//!
//! Times are Unix seconds, given by the caller so tests can move the clock.

use super::sql::{params, Conn};
use super::{Store, StoreError};

/// What a remote host's answer says about the host, for its failure tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostSignal {
    /// It answered (2xx, or a 4xx that is final): it is up.
    Reachable,
    /// Timeout, connection failure, 5xx, 429...
    Unreachable,
    /// Nothing was learnt (the request was not sent).
    Unknown,
}

/// A host delivery has given up on for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostHealth {
    pub host: String,
    pub consecutive_failures: u32,
    pub failure_days: u32,
    pub unavailable_since: Option<i64>,
    pub next_probe_at: Option<i64>,
    pub pending: u64,
}

/// Consecutive distinct UTC days of failures after which a host is unavailable
/// (Mastodon's `DeliveryFailureTracker::FAILURE_DAYS_THRESHOLD`).
pub const UNAVAILABLE_AFTER_FAILURE_DAYS: u32 = 7;

/// An unavailable host gets one delivery through this often, to see whether it is back.
pub const PROBE_INTERVAL_SECS: i64 = 86_400;

const SECONDS_PER_DAY: i64 = 86_400;

impl Store {
    /// Hosts that are unavailable or have failed lately, worst first.
    pub fn troubled_hosts(&self) -> Result<Vec<HostHealth>, StoreError> {
        self.with_conn(|c| {
            c.query_all(
                "SELECT h.host, h.consecutive_failures, h.failure_days, h.unavailable_since, \
                 h.next_probe_at, (SELECT COUNT(*) FROM deliveries d \
                                   WHERE d.host = h.host AND d.state = 'pending') \
                 FROM delivery_hosts h WHERE h.consecutive_failures > 0 \
                 OR h.unavailable_since IS NOT NULL \
                 ORDER BY h.unavailable_since IS NULL, h.failure_days DESC, \
                 h.consecutive_failures DESC, h.host",
                params![],
                |r| {
                    Ok(HostHealth {
                        host: r.get(0)?,
                        consecutive_failures: r.get(1)?,
                        failure_days: r.get(2)?,
                        unavailable_since: r.get(3)?,
                        next_probe_at: r.get(4)?,
                        pending: r.get(5)?,
                    })
                },
            )
        })
    }

    /// A host was heard from (it sent us a signed request): like Mastodon, it is available
    /// again and its held deliveries leave now.
    pub fn mark_host_reachable(&self, host: &str, now: i64) -> Result<(), StoreError> {
        self.with_conn(|c| {
            let tx = c.begin()?;
            host_reachable(&tx, host, now)?;
            tx.commit()
        })
    }
}

/// Records a success: the host is available again and the deliveries held for it go now.
pub(super) fn host_reachable(tx: &Conn, host: &str, now: i64) -> Result<(), StoreError> {
    // A host without a record never failed: nothing to reset, and no row to write (one
    // write per server made a 10k-server delivery write 10k rows for nothing).
    let Some(was_unavailable) = tx.query_opt(
        "SELECT unavailable_since IS NOT NULL FROM delivery_hosts WHERE host = ?1",
        params![host],
        |r| r.get::<bool>(0),
    )?
    else {
        return Ok(());
    };
    tx.execute(
        "UPDATE delivery_hosts SET consecutive_failures = 0, failure_days = 0, \
         last_failure_day = NULL, last_success_at = ?2, unavailable_since = NULL, \
         next_probe_at = NULL WHERE host = ?1",
        params![host, now],
    )?;
    if was_unavailable {
        // Deliveries were held until the probe time; the host is back, so they go now.
        tx.execute(
            "UPDATE deliveries SET next_attempt_at = ?2 WHERE host = ?1 AND state = 'pending' \
             AND next_attempt_at > ?2",
            params![host, now],
        )?;
    }
    Ok(())
}

/// Counts a failure; the host becomes unavailable after failures on
/// `UNAVAILABLE_AFTER_FAILURE_DAYS` distinct days with no success between them.
pub(super) fn host_unreachable(tx: &Conn, host: &str, now: i64) -> Result<(), StoreError> {
    let day = now.div_euclid(SECONDS_PER_DAY);
    tx.execute(
        "INSERT INTO delivery_hosts (host, consecutive_failures, failure_days, \
         last_failure_day, last_failure_at) VALUES (?1, 1, 1, ?2, ?3) \
         ON CONFLICT (host) DO UPDATE SET \
         consecutive_failures = delivery_hosts.consecutive_failures + 1, \
         failure_days = delivery_hosts.failure_days \
             + CASE WHEN COALESCE(delivery_hosts.last_failure_day, -1) != ?2 THEN 1 ELSE 0 END, \
         last_failure_day = ?2, last_failure_at = ?3",
        params![host, day, now],
    )?;
    let next_probe = now + PROBE_INTERVAL_SECS;
    tx.execute(
        "UPDATE delivery_hosts SET unavailable_since = ?2 \
         WHERE host = ?1 AND unavailable_since IS NULL AND failure_days >= ?3",
        params![host, now, UNAVAILABLE_AFTER_FAILURE_DAYS],
    )?;
    // Unavailable now, or still (a failed probe): the next probe is a day away, and every
    // delivery waits for it, those answered just now too. Left at their own retry time,
    // they would be due and never claimed, and an idle worker would look every second.
    let unavailable = tx.execute(
        "UPDATE delivery_hosts SET next_probe_at = ?2 \
         WHERE host = ?1 AND unavailable_since IS NOT NULL",
        params![host, next_probe],
    )?;
    if unavailable > 0 {
        hold_host(tx, host, next_probe, now)?;
    }
    Ok(())
}

/// Moves the host's pending deliveries (but those leased right now) to `until`.
pub(super) fn hold_host(tx: &Conn, host: &str, until: i64, now: i64) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE deliveries SET next_attempt_at = ?2 WHERE host = ?1 AND state = 'pending' \
         AND next_attempt_at < ?2 AND lease_until <= ?3",
        params![host, until, now],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::queue::tests::{activity, claim, finish, NOW};
    use crate::store::queue::Attempt;
    use crate::store::test_stores;

    #[test]
    fn a_host_failing_seven_days_is_unavailable_until_a_probe_succeeds() {
        for store in test_stores() {
            store
                .queue_transaction(|q| {
                    q.enqueue(&activity("a", None, &["https://down.example/inbox"]), NOW)?;
                    q.enqueue(&activity("b", None, &["https://down.example/inbox"]), NOW)
                })
                .unwrap();
            let day = 86_400;
            for n in 0..7 {
                let now = NOW + n * day;
                let claimed = claim(&store, 10, now);
                assert_eq!(claimed.len(), 2, "day {n}");
                for d in &claimed {
                    finish(
                        &store,
                        d,
                        Attempt::Retry {
                            status: None,
                            error: "timeout".into(),
                            next_attempt_at: now + day,
                        },
                        HostSignal::Unreachable,
                        now,
                    );
                }
            }
            let hosts = store.troubled_hosts().unwrap();
            assert_eq!(hosts.len(), 1);
            assert_eq!(hosts[0].failure_days, 7);
            assert_eq!(hosts[0].unavailable_since, Some(NOW + 6 * day));
            let probe_at = NOW + 6 * day + PROBE_INTERVAL_SECS;
            assert_eq!(hosts[0].next_probe_at, Some(probe_at));
            assert_eq!(store.queue_counts(NOW + 7 * day).unwrap().held, 2);
            // New deliveries for the host wait for the probe too.
            store
                .queue_transaction(|q| {
                    q.enqueue(
                        &activity("c", None, &["https://down.example/inbox"]),
                        NOW + 7 * day - 10,
                    )
                })
                .unwrap();
            assert!(claim(&store, 10, probe_at - 1).is_empty());
            let probe = claim(&store, 10, probe_at);
            assert_eq!(probe.len(), 1, "one probe at a time");
            finish(
                &store,
                &probe[0],
                Attempt::Delivered { status: 202 },
                HostSignal::Reachable,
                probe_at + 1,
            );
            assert!(store.troubled_hosts().unwrap().is_empty());
            assert_eq!(claim(&store, 10, probe_at + 1).len(), 2);
        }
    }

    /// A host made unavailable: every delivery (those answered as it happened, and the
    /// probe once it fails) waits for the next probe, which is when an idle worker looks
    /// again; a probe whose worker was killed is taken again when its lease ends.
    #[test]
    fn deliveries_of_an_unavailable_host_wait_for_the_next_probe() {
        for store in test_stores() {
            let inboxes = [
                "https://down.example/a/inbox",
                "https://down.example/b/inbox",
                "https://down.example/c/inbox",
            ];
            store
                .queue_transaction(|q| q.enqueue(&activity("a", None, &inboxes), NOW))
                .unwrap();
            let day = 86_400;
            let fail = |d: &crate::store::queue::ClaimedDelivery, now: i64| {
                let retry = Attempt::Retry {
                    status: None,
                    error: "timeout".into(),
                    next_attempt_at: now + 60,
                };
                finish(&store, d, retry, HostSignal::Unreachable, now);
            };
            // All in flight on the seventh day of failures: the first answer makes the host
            // unavailable while the others are still leased; the third is rescheduled
            // unsent (the host cooling off), which says nothing of the host.
            for n in 0..7 {
                let now = NOW + n * day;
                let claimed = claim(&store, 10, now);
                assert_eq!(claimed.len(), 3, "day {n}");
                fail(&claimed[0], now);
                fail(&claimed[1], now + 1);
                let unsent = Attempt::Retry {
                    status: None,
                    error: "cooling off".into(),
                    next_attempt_at: now + 62,
                };
                finish(&store, &claimed[2], unsent, HostSignal::Unknown, now + 2);
            }
            // A day after the last failure.
            let became = NOW + 6 * day;
            let probe_at = became + 1 + PROBE_INTERVAL_SECS;
            assert_eq!(store.next_delivery_at().unwrap(), Some(probe_at));
            assert!(claim(&store, 10, became + 61).is_empty());
            // The probe fails: the next one is a day after it, for every delivery.
            let probe = claim(&store, 10, probe_at);
            assert_eq!(probe.len(), 1);
            fail(&probe[0], probe_at + 5);
            let next_probe = probe_at + 5 + PROBE_INTERVAL_SECS;
            assert_eq!(store.next_delivery_at().unwrap(), Some(next_probe));
            assert!(claim(&store, 10, probe_at + 65).is_empty());
            // That probe's worker is killed: once its lease ends, the host is probed again.
            let probe = claim(&store, 10, next_probe);
            assert_eq!(probe.len(), 1);
            assert!(claim(&store, 10, next_probe + 29).is_empty());
            assert_eq!(claim(&store, 10, next_probe + 30).len(), 1);
        }
    }

    #[test]
    fn failures_on_one_day_count_once_and_a_success_resets_them() {
        for store in test_stores() {
            store
                .queue_transaction(|q| {
                    q.enqueue(&activity("a", None, &["https://flaky.example/inbox"]), NOW)
                })
                .unwrap();
            for n in 0..3 {
                let claimed = claim(&store, 10, NOW + n * 100);
                finish(
                    &store,
                    &claimed[0],
                    Attempt::Retry {
                        status: Some(503),
                        error: "503".into(),
                        next_attempt_at: NOW + (n + 1) * 100,
                    },
                    HostSignal::Unreachable,
                    NOW + n * 100,
                );
            }
            let hosts = store.troubled_hosts().unwrap();
            assert_eq!(
                (hosts[0].consecutive_failures, hosts[0].failure_days),
                (3, 1)
            );
            let claimed = claim(&store, 10, NOW + 300);
            finish(
                &store,
                &claimed[0],
                Attempt::Delivered { status: 200 },
                HostSignal::Reachable,
                NOW + 300,
            );
            assert!(store.troubled_hosts().unwrap().is_empty());
        }
    }

    #[test]
    fn a_host_failing_in_a_row_cools_off() {
        for store in test_stores() {
            let inboxes: Vec<String> = (0..12)
                .map(|i| format!("https://slow.example/u/{i}/inbox"))
                .collect();
            let refs: Vec<&str> = inboxes.iter().map(String::as_str).collect();
            store
                .queue_transaction(|q| q.enqueue(&activity("a", None, &refs), NOW))
                .unwrap();
            for round in 0..3 {
                let claimed = claim(&store, 4, NOW);
                assert!(claimed.iter().all(|d| !d.host_cooling), "round {round}");
                for d in &claimed {
                    finish(
                        &store,
                        d,
                        Attempt::Retry {
                            status: None,
                            error: "timeout".into(),
                            next_attempt_at: NOW + 1000,
                        },
                        HostSignal::Unreachable,
                        NOW,
                    );
                }
            }
            // 12 failures in a row (threshold 10): the next claims within 60 s are marked.
            store
                .queue_transaction(|q| {
                    q.enqueue(&activity("b", None, &["https://slow.example/inbox"]), NOW)
                })
                .unwrap();
            let claimed = claim(&store, 4, NOW + 59);
            assert_eq!(claimed.len(), 1);
            assert!(claimed[0].host_cooling);
            finish(
                &store,
                &claimed[0],
                Attempt::Retry {
                    status: None,
                    error: "cooling".into(),
                    next_attempt_at: NOW + 100,
                },
                HostSignal::Unknown,
                NOW + 59,
            );
            let claimed = claim(&store, 4, NOW + 100);
            assert!(!claimed[0].host_cooling);
        }
    }
}
