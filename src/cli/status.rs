//! `relais status`: the delivery queue, the followers and the hosts that fail.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};

use crate::config::SiteConfig;
use crate::store::time::rfc3339;
use crate::store::{FollowState, MoveDirection, Store};

/// Deliveries listed under "last deliveries".
const RECENT_SHOWN: usize = 10;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Site directory (holding config.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
}

pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    run_status(&args.site)
}

pub fn run_status(site_dir: &Path) -> anyhow::Result<()> {
    let mut config = SiteConfig::load(site_dir)?;
    crate::config::EnvOverrides::from_env().apply_store(&mut config);
    let location = crate::store::StoreLocation::of(site_dir, &config.inbox.store);
    let store = Store::open_location(&location)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "Store: {}", location.display())?;
    write_status(&store, Utc::now().timestamp(), &mut out)
}

/// Writes the report for the store as of `now` (Unix seconds).
pub fn write_status(store: &Store, now: i64, out: &mut impl Write) -> anyhow::Result<()> {
    let counts = store.queue_counts(now)?;
    writeln!(
        out,
        "Queue: {} pending (due {}, waiting for a retry {}, in flight {}, held for unavailable \
         hosts {}), {} delivered, {} failed",
        counts.pending(),
        counts.due,
        counts.waiting,
        counts.leased,
        counts.held,
        counts.done,
        counts.failed
    )?;
    if let Some(next) = store.next_delivery_at()?.filter(|at| *at > now) {
        writeln!(out, "Next retry: {}", time(next))?;
    }

    let mut accepted: BTreeMap<String, usize> = BTreeMap::new();
    let mut pending = 0;
    for follower in store.followers(None)? {
        match follower.state {
            FollowState::Accepted => *accepted.entry(follower.actor_name).or_default() += 1,
            FollowState::Pending => pending += 1,
        }
    }
    let per_actor: Vec<String> = accepted
        .iter()
        .map(|(actor, n)| format!("{actor} {n}"))
        .collect();
    writeln!(
        out,
        "Followers: {} ({}), {} awaiting approval",
        accepted.values().sum::<usize>(),
        if per_actor.is_empty() {
            "none".to_string()
        } else {
            per_actor.join(", ")
        },
        pending
    )?;
    for moved in store.moved_follower_counts()? {
        writeln!(
            out,
            "Moved here: {} of {}'s followers arrived through the move of {} (known since {})",
            moved.followers,
            moved.actor_name,
            moved.origin,
            rfc3339(&moved.moved_at)
        )?;
    }
    for moved in store.account_moves()? {
        if moved.direction == MoveDirection::Out {
            writeln!(
                out,
                "Moved away: {} moved to {} on {}; followers still here: {}",
                moved.actor_name,
                moved.target,
                rfc3339(&moved.moved_at),
                accepted.get(&moved.actor_name).copied().unwrap_or(0)
            )?;
        }
    }
    let (live, deleted) = store.published_post_counts()?;
    writeln!(out, "Posts published: {live} ({deleted} deleted since)")?;

    let hosts = store.troubled_hosts()?;
    let unavailable: Vec<_> = hosts
        .iter()
        .filter(|h| h.unavailable_since.is_some())
        .collect();
    writeln!(out, "Hosts unavailable: {}", unavailable.len())?;
    for host in &unavailable {
        writeln!(
            out,
            "  {} since {}, {} pending, next probe {}",
            host.host,
            host.unavailable_since.map(time).unwrap_or_default(),
            host.pending,
            host.next_probe_at.map(time).unwrap_or_default()
        )?;
    }
    for host in hosts.iter().filter(|h| h.unavailable_since.is_none()) {
        writeln!(
            out,
            "  {} failing: {} failures in a row on {} day(s), {} pending",
            host.host, host.consecutive_failures, host.failure_days, host.pending
        )?;
    }

    let recent = store.recent_deliveries(RECENT_SHOWN)?;
    if !recent.is_empty() {
        writeln!(out, "Last deliveries:")?;
    }
    for delivery in recent {
        let when = delivery
            .finished_at
            .map(time)
            .unwrap_or_else(|| format!("retry at {}", time(delivery.next_attempt_at)));
        let answer = match (delivery.last_status, &delivery.last_error) {
            (_, Some(error)) => error.clone(),
            (Some(status), None) => status.to_string(),
            (None, None) => String::new(),
        };
        writeln!(
            out,
            "  {when} {} {} → {} ({} attempt(s)) {answer}",
            delivery.state, delivery.activity_id, delivery.inbox, delivery.attempts
        )?;
    }
    Ok(())
}

fn time(unix: i64) -> String {
    Utc.timestamp_opt(unix, 0)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::queue::{Attempt, ClaimRequest, FinishedDelivery, QueuedActivity, Recipient};
    use crate::store::HostSignal;

    #[test]
    fn reports_queue_hosts_and_last_deliveries() {
        let store = Store::open_in_memory().unwrap();
        let now = 1_800_000_000;
        let activity = QueuedActivity {
            activity_id: "https://blog.example/ap/posts/a.json#create".into(),
            object_id: None,
            actor_name: "blog".into(),
            body: "{}".into(),
            recipients: ["https://ok.example/inbox", "https://down.example/inbox"]
                .iter()
                .map(|i| Recipient {
                    inbox: i.to_string(),
                    follower_id: None,
                })
                .collect(),
        };
        store
            .queue_transaction(|q| q.enqueue(&activity, now))
            .unwrap();
        let busy = Vec::new();
        let claimed = store
            .finish_and_claim(
                &[],
                now,
                Some(&ClaimRequest {
                    limit: 10,
                    per_host: 1,
                    busy: &busy,
                    lease_until: now + 20,
                    cooling_failures: 10,
                    cooling_secs: 60,
                    max_scan: crate::store::queue::WHOLE_QUEUE,
                }),
            )
            .unwrap();
        let finished: Vec<FinishedDelivery> = claimed
            .iter()
            .map(|d| FinishedDelivery {
                id: d.id,
                host: d.host.clone(),
                lease_until: d.lease_until,
                attempt: if d.host == "ok.example" {
                    Attempt::Delivered { status: 202 }
                } else {
                    Attempt::Retry {
                        status: Some(503),
                        error: "HTTP 503 Service Unavailable".into(),
                        next_attempt_at: now + 30,
                    }
                },
                host_signal: if d.host == "ok.example" {
                    HostSignal::Reachable
                } else {
                    HostSignal::Unreachable
                },
            })
            .collect();
        store.finish_and_claim(&finished, now, None).unwrap();
        let mut out = Vec::new();
        write_status(&store, now, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("Queue: 1 pending (due 0, waiting for a retry 1, in flight 0"),
            "{text}"
        );
        assert!(text.contains("1 delivered, 0 failed"), "{text}");
        assert!(
            text.contains("Followers: 0 (none), 0 awaiting approval"),
            "{text}"
        );
        assert!(text.contains("Hosts unavailable: 0"), "{text}");
        assert!(
            text.contains("down.example failing: 1 failures in a row on 1 day(s), 1 pending"),
            "{text}"
        );
        assert!(text.contains("done https://blog.example/ap/posts/a.json#create → https://ok.example/inbox (1 attempt(s)) 202"), "{text}");
        assert!(text.contains("HTTP 503 Service Unavailable"), "{text}");
    }

    #[test]
    fn moves_show_their_time_as_rfc3339_with_whole_seconds() {
        let store = Store::open_in_memory().unwrap();
        let moved_in = store
            .record_move(
                "blog",
                MoveDirection::In,
                "https://old.example/u/me",
                "https://blog.example/ap/actor",
            )
            .unwrap();
        let moved_out = store
            .record_move(
                "alice",
                MoveDirection::Out,
                "https://blog.example/ap/alice",
                "https://new.example/u/alice",
            )
            .unwrap();
        let mut out = Vec::new();
        write_status(&store, 1_800_000_000, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        // `…T10:00:00Z`, as the text the store kept before it kept Unix seconds.
        let shown = |time: &chrono::DateTime<Utc>| time.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        assert!(
            text.contains(&format!(
                "the move of https://old.example/u/me (known since {})\n",
                shown(&moved_in.moved_at)
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "alice moved to https://new.example/u/alice on {}; followers",
                shown(&moved_out.moved_at)
            )),
            "{text}"
        );
    }
}
