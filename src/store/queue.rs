//! The durable outbound delivery queue: enqueue, claim under a lease, finish.
//!
//! - `delivery_activities`: one row per activity to send (its JSON body and signing actor).
//! - `deliveries`: one row per (activity, target inbox), unique, so an activity is never
//!   queued twice for one inbox. A worker claims a row by setting a lease; a worker killed
//!   mid-request leaves a lease that expires, and the row is claimed again (at least once).
//!
//! A claim reads the health of the hosts (`hosts`: the circuit breaker, unavailable hosts'
//! probes), and one queue transaction ([`QueueTx`]) also reads and writes the published-post
//! state (`published`) and the followers (`followers`), so a publish commits as one.
//!
//! Times are Unix seconds, given by the caller so tests can move the clock.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::hosts::{hold_host, host_reachable, host_unreachable, HostSignal};
use super::sql::{params, Conn, Row, WriteTx};
use super::{host_of, Store, StoreError};

/// One inbox an activity goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Recipient {
    pub inbox: String,
    /// Set when `inbox` is the personal inbox of this follower: a `410 Gone` from it means
    /// the follower is gone.
    pub follower_id: Option<String>,
}

/// An activity with the inboxes it goes to.
#[derive(Debug, Clone)]
pub struct QueuedActivity {
    pub activity_id: String,
    /// The post the activity is about: deliveries of one post to one inbox leave in the
    /// order they were queued, so an `Update` never overtakes its `Create`.
    pub object_id: Option<String>,
    pub actor_name: String,
    pub body: String,
    pub recipients: Vec<Recipient>,
}

/// A delivery a worker has leased and must now send.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub activity_id: String,
    pub actor_name: String,
    pub inbox: String,
    pub host: String,
    pub follower_id: Option<String>,
    pub body: String,
    /// Attempts made before this one.
    pub attempts: u32,
    /// The host has failed too often in a row just now: the worker reschedules this
    /// delivery without sending it (Mastodon's circuit breaker).
    pub host_cooling: bool,
    /// The end of this claim's lease, which also names the claim: only its holder records
    /// a failed attempt ([`FinishedDelivery::lease_until`]).
    pub lease_until: i64,
}

/// How to claim: how many, which hosts are already busy, how long the lease lasts.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    pub limit: usize,
    pub per_host: usize,
    /// Hosts with deliveries in flight in this worker, and how many.
    pub busy: &'a [(String, usize)],
    pub lease_until: i64,
    /// A host with this many consecutive failures is cooling off...
    pub cooling_failures: u32,
    /// ...for this many seconds after its last failure.
    pub cooling_secs: i64,
    /// How many due deliveries a claim may look at when busy hosts fill the earliest ones
    /// ([`WHOLE_QUEUE`]; less when the worker looked at all of them a moment ago).
    pub max_scan: usize,
}

/// Of a pending delivery `d`: no earlier one of the same post to the same inbox is
/// pending, so an Update never overtakes its Create (the claim and the next delivery time
/// both hold to it).
const NEXT_OF_ITS_POST: &str = "NOT EXISTS (SELECT 1 FROM deliveries e \
     WHERE e.state = 'pending' AND e.inbox = d.inbox AND e.object_id = d.object_id \
     AND e.id < d.id)";

/// A claim's widest look at the due deliveries: all of them, in practice.
pub const WHOLE_QUEUE: usize = 1 << 22;

/// The end of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered {
        status: u16,
    },
    Retry {
        status: Option<u16>,
        error: String,
        next_attempt_at: i64,
    },
    Failed {
        status: Option<u16>,
        error: String,
        /// Removes this remote actor from every follower list (its inbox said `410 Gone`).
        remove_follower: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedDelivery {
    pub id: i64,
    pub host: String,
    pub attempt: Attempt,
    pub host_signal: HostSignal,
    /// The lease of the claim that made the attempt: a worker whose lease ran out, and
    /// whose delivery another worker has claimed since, records nothing but a success.
    pub lease_until: i64,
}

/// Counts of the queue, for `relais status` and the end of `relais publish`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Pending and due now.
    pub due: u64,
    /// Pending, waiting for a retry time.
    pub waiting: u64,
    /// Pending, leased by a worker right now.
    pub leased: u64,
    /// Pending for a host marked unavailable.
    pub held: u64,
    pub done: u64,
    pub failed: u64,
}

impl QueueCounts {
    pub fn pending(&self) -> u64 {
        self.due + self.waiting + self.leased + self.held
    }
}

/// One row of the queue, for `relais status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub activity_id: String,
    pub inbox: String,
    pub state: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub finished_at: Option<i64>,
    pub next_attempt_at: i64,
}

/// The view of the store inside one write transaction: what `plan_and_enqueue` reads and
/// writes together, so a crash leaves either all of it or none.
pub struct QueueTx<'c> {
    tx: WriteTx<'c>,
}

impl<'c> QueueTx<'c> {
    /// The transaction, for the store's other modules' parts of a queue transaction.
    pub(super) fn conn(&self) -> &Conn<'c> {
        &self.tx
    }

    /// Queues an activity for its recipients; returns how many deliveries were new. An
    /// activity already queued for an inbox is not queued again.
    pub fn enqueue(&self, activity: &QueuedActivity, now: i64) -> Result<usize, StoreError> {
        self.tx.execute(
            "INSERT INTO delivery_activities (activity_id, object_id, actor_name, body, \
             created_at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            params![
                activity.activity_id,
                activity.object_id,
                activity.actor_name,
                activity.body,
                now
            ],
        )?;
        // A host unavailable or in a long backoff keeps new deliveries waiting with the rest.
        let insert = "INSERT INTO deliveries (activity_id, object_id, inbox, host, follower_id, \
             state, next_attempt_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', \
             COALESCE((SELECT next_probe_at FROM delivery_hosts \
                       WHERE host = ?4 AND unavailable_since IS NOT NULL), ?6), ?6) \
             ON CONFLICT DO NOTHING";
        let mut inserted = 0;
        for recipient in &activity.recipients {
            let host = host_of(&recipient.inbox).unwrap_or_default();
            inserted += self.tx.execute(
                insert,
                params![
                    activity.activity_id,
                    activity.object_id,
                    recipient.inbox,
                    host,
                    recipient.follower_id,
                    now
                ],
            )?;
        }
        Ok(inserted)
    }
}

impl Store {
    /// Runs `f` in one write transaction over the queue tables, committed if `f` succeeds.
    pub fn queue_transaction<T>(
        &self,
        f: impl FnOnce(&QueueTx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_conn(|c| {
            // On SQLite, IMMEDIATE: the write lock is taken before reading, so two planners
            // (the CLI and the inbox's deploy hook) cannot both plan from the same state.
            // On PostgreSQL, the published posts are locked first for the same reason.
            let tx = c.begin()?;
            if tx.is_postgres() {
                tx.execute_batch("LOCK TABLE published_posts IN SHARE ROW EXCLUSIVE MODE")?;
            }
            let queue = QueueTx { tx };
            let out = f(&queue)?;
            queue.tx.commit()?;
            Ok(out)
        })
    }

    /// Queues one activity for one inbox, signed by our actor `actor_name` (the inbox uses it
    /// for `Accept` and `Reject`). Queuing the same activity twice for an inbox does nothing.
    pub fn enqueue_delivery(
        &self,
        inbox_url: &str,
        activity_json: &str,
        actor_name: &str,
    ) -> Result<(), StoreError> {
        let activity_id = serde_json::from_str::<serde_json::Value>(activity_json)
            .ok()
            .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_string))
            // Without an id, the body itself tells repeated activities apart.
            .unwrap_or_else(|| format!("urn:sha256:{:x}", Sha256::digest(activity_json)));
        let activity = QueuedActivity {
            activity_id,
            object_id: None,
            actor_name: actor_name.to_string(),
            body: activity_json.to_string(),
            recipients: vec![Recipient {
                inbox: inbox_url.to_string(),
                follower_id: None,
            }],
        };
        let now = super::time::now_unix();
        self.queue_transaction(|q| q.enqueue(&activity, now))?;
        Ok(())
    }

    /// Records the outcome of finished attempts, then claims up to `claim.limit` due
    /// deliveries, all in one transaction (one disk sync for both).
    pub fn finish_and_claim(
        &self,
        finished: &[FinishedDelivery],
        now: i64,
        claim: Option<&ClaimRequest>,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        // Hosts in one order in every worker, so two workers' upserts cannot deadlock.
        let mut finished: Vec<&FinishedDelivery> = finished.iter().collect();
        finished.sort_by(|a, b| a.host.cmp(&b.host));
        self.with_conn_retried(|c| {
            let tx = c.begin()?;
            for done in &finished {
                finish(&tx, done, now)?;
            }
            let claimed = match claim {
                Some(request) if request.limit > 0 => claim_due(&tx, request, now)?,
                _ => Vec::new(),
            };
            tx.commit()?;
            Ok(claimed)
        })
    }

    /// When the next pending delivery becomes claimable: its retry time or the end of its
    /// lease, whichever is later. `None` when nothing is pending.
    pub fn next_delivery_at(&self) -> Result<Option<i64>, StoreError> {
        // A delivery behind an earlier one of the same post to the same inbox goes when
        // that one is done, whatever its own time: an Update due behind a Create that
        // waits hours for its retry made an idle worker look every second.
        self.with_conn(|c| {
            c.query_row(
                &format!(
                    "SELECT MIN(CASE WHEN d.next_attempt_at > d.lease_until \
                     THEN d.next_attempt_at ELSE d.lease_until END) FROM deliveries d \
                     WHERE d.state = 'pending' AND {NEXT_OF_ITS_POST}"
                ),
                params![],
                |r| r.get(0),
            )
        })
    }

    /// Pending deliveries leased by some worker until after `now`.
    pub fn leased_deliveries(&self, now: i64) -> Result<u64, StoreError> {
        self.with_conn(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM deliveries WHERE state = 'pending' AND lease_until > ?1",
                params![now],
                |r| r.get(0),
            )
        })
    }

    pub fn queue_counts(&self, now: i64) -> Result<QueueCounts, StoreError> {
        self.with_conn(|c| {
            let mut counts = QueueCounts::default();
            c.query_all(
                "SELECT CASE \
                   WHEN d.state != 'pending' THEN d.state \
                   WHEN d.lease_until > ?1 THEN 'leased' \
                   WHEN h.unavailable_since IS NOT NULL THEN 'held' \
                   WHEN d.next_attempt_at > ?1 THEN 'waiting' \
                   ELSE 'due' END AS bucket, COUNT(*) \
                 FROM deliveries d LEFT JOIN delivery_hosts h ON h.host = d.host \
                 GROUP BY bucket",
                params![now],
                |row| {
                    let bucket: String = row.get(0)?;
                    let count: u64 = row.get(1)?;
                    match bucket.as_str() {
                        "done" => counts.done = count,
                        "failed" => counts.failed = count,
                        "leased" => counts.leased = count,
                        "held" => counts.held = count,
                        "waiting" => counts.waiting = count,
                        _ => counts.due = count,
                    }
                    Ok(())
                },
            )?;
            Ok(counts)
        })
    }
    /// The latest deliveries finished or attempted, newest first.
    pub fn recent_deliveries(&self, limit: usize) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.with_conn(|c| {
            c.query_all(
                "SELECT activity_id, inbox, state, attempts, last_status, last_error, \
                 finished_at, next_attempt_at FROM deliveries WHERE attempts > 0 \
                 ORDER BY COALESCE(finished_at, next_attempt_at) DESC, id DESC LIMIT ?1",
                params![limit],
                delivery_record,
            )
        })
    }

    /// Every delivery of one activity, by inbox.
    pub fn deliveries_of(&self, activity_id: &str) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.with_conn(|c| {
            c.query_all(
                "SELECT activity_id, inbox, state, attempts, last_status, last_error, \
                 finished_at, next_attempt_at FROM deliveries WHERE activity_id = ?1 \
                 ORDER BY inbox",
                params![activity_id],
                delivery_record,
            )
        })
    }

    /// How many distinct hosts have pending deliveries.
    pub fn pending_hosts(&self) -> Result<u64, StoreError> {
        self.with_conn(|c| {
            c.query_row(
                "SELECT COUNT(DISTINCT host) FROM deliveries WHERE state = 'pending'",
                params![],
                |r| r.get(0),
            )
        })
    }
    /// as unavailable, so the queue cannot grow without bound while it stays down.
    pub fn expire_held(&self, now: i64, max_age: i64) -> Result<usize, StoreError> {
        self.with_conn(|c| {
            c.execute(
                "UPDATE deliveries SET state = 'failed', finished_at = ?1, \
                 last_error = 'expired: the server stayed unavailable' \
                 WHERE state = 'pending' AND created_at < ?2 AND lease_until <= ?1 \
                 AND host IN (SELECT host FROM delivery_hosts WHERE unavailable_since IS NOT NULL)",
                params![now, now - max_age],
            )
        })
    }

    /// Forgets deliveries finished before `before`, and activities nothing refers to any more.
    pub fn prune_deliveries(&self, before: i64) -> Result<usize, StoreError> {
        self.with_conn(|c| {
            let tx = c.begin()?;
            let removed = tx.execute(
                "DELETE FROM deliveries WHERE state != 'pending' AND finished_at < ?1",
                params![before],
            )?;
            tx.execute(
                "DELETE FROM delivery_activities WHERE NOT EXISTS \
                 (SELECT 1 FROM deliveries d WHERE d.activity_id = delivery_activities.activity_id)",
                params![],
            )?;
            tx.commit()?;
            Ok(removed)
        })
    }
}

fn delivery_record(r: &Row) -> Result<DeliveryRecord, StoreError> {
    Ok(DeliveryRecord {
        activity_id: r.get(0)?,
        inbox: r.get(1)?,
        state: r.get(2)?,
        attempts: r.get(3)?,
        last_status: r.get(4)?,
        last_error: r.get(5)?,
        finished_at: r.get(6)?,
        next_attempt_at: r.get(7)?,
    })
}

/// Records one attempt, if this worker still holds its claim: a delivery finished already,
/// or claimed again by another worker once this one's lease ran out, keeps what that
/// worker recorded or will record (the host's record and the follower too). A success is
/// recorded whoever holds the claim.
fn finish(tx: &Conn, done: &FinishedDelivery, now: i64) -> Result<(), StoreError> {
    let recorded = match &done.attempt {
        // A success is final whoever holds the claim now: the other worker's answer,
        // whatever it is, then finds the delivery done.
        Attempt::Delivered { status } => tx.execute(
            "UPDATE deliveries SET state = 'done', attempts = attempts + 1, \
             last_status = ?2, last_error = NULL, lease_until = 0, finished_at = ?3 \
             WHERE id = ?1 AND state = 'pending'",
            params![done.id, status, now],
        )?,
        Attempt::Retry {
            status,
            error,
            next_attempt_at,
        } => {
            // A host set aside is tried again at its next probe, not before.
            let probe: Option<i64> = tx
                .query_opt(
                    "SELECT next_probe_at FROM delivery_hosts \
                     WHERE host = ?1 AND unavailable_since IS NOT NULL",
                    params![done.host],
                    |r| r.get::<Option<i64>>(0),
                )?
                .flatten();
            let next = probe.map_or(*next_attempt_at, |p| p.max(*next_attempt_at));
            tx.execute(
                "UPDATE deliveries SET attempts = attempts + 1, last_status = ?2, \
                 last_error = ?3, next_attempt_at = ?4, lease_until = 0 \
                 WHERE id = ?1 AND state = 'pending' AND lease_until = ?5",
                params![done.id, status, error, next, done.lease_until],
            )?
        }
        Attempt::Failed {
            status,
            error,
            remove_follower,
        } => {
            let recorded = tx.execute(
                "UPDATE deliveries SET state = 'failed', attempts = attempts + 1, \
                 last_status = ?2, last_error = ?3, lease_until = 0, finished_at = ?4 \
                 WHERE id = ?1 AND state = 'pending' AND lease_until = ?5",
                params![done.id, status, error, now, done.lease_until],
            )?;
            if let Some(follower_id) = remove_follower.as_ref().filter(|_| recorded > 0) {
                tx.execute(
                    "DELETE FROM followers WHERE follower_id = ?1",
                    params![follower_id],
                )?;
            }
            recorded
        }
    };
    if recorded == 0 {
        return Ok(());
    }
    match done.host_signal {
        HostSignal::Reachable => host_reachable(tx, &done.host, now),
        HostSignal::Unreachable => host_unreachable(tx, &done.host, now),
        HostSignal::Unknown => Ok(()),
    }
}

fn claim_due(
    tx: &Conn,
    request: &ClaimRequest,
    now: i64,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let mut claimed: Vec<ClaimedDelivery> = Vec::with_capacity(request.limit);
    // On PostgreSQL another worker may lease the rows chosen here first: choose again
    // (among the rows still free) a few times rather than come back with too few.
    let rounds = if tx.is_postgres() { 4 } else { 1 };
    for _ in 0..rounds {
        // Busy hosts: the worker's, and those of the deliveries claimed in earlier rounds.
        let mut busy: std::collections::BTreeMap<&str, usize> = request
            .busy
            .iter()
            .map(|(host, n)| (host.as_str(), *n))
            .collect();
        for delivery in &claimed {
            *busy.entry(delivery.host.as_str()).or_default() += 1;
        }
        let busy = serde_json::Value::from(
            busy.iter()
                .map(|(host, n)| serde_json::json!([host, n]))
                .collect::<Vec<_>>(),
        )
        .to_string();
        let wanted = ClaimRequest {
            limit: request.limit - claimed.len(),
            ..request.clone()
        };
        let mut round = Vec::new();
        let lost = lease_chosen(tx, &wanted, &busy, now, &mut round)?;
        claimed.extend(round);
        if lost == 0 || claimed.len() >= request.limit {
            break;
        }
    }
    Ok(claimed)
}

/// Chooses up to `request.limit` due deliveries and leases them into `claimed`; returns
/// how many chosen ones another worker leased first.
fn lease_chosen(
    tx: &Conn,
    request: &ClaimRequest,
    busy: &str,
    now: i64,
    claimed: &mut Vec<ClaimedDelivery>,
) -> Result<usize, StoreError> {
    // Look at the earliest due deliveries first; when busy hosts fill that window, widen it.
    let mut scan = (request.limit * 2).max(32);
    let chosen = loop {
        let (rows, due_seen) = choose_due(tx, request, busy, now, scan)?;
        if rows.len() >= request.limit || due_seen < scan || scan >= request.max_scan {
            break rows;
        }
        scan *= 8;
    };
    // Several workers (in several processes) may have chosen the same rows: on PostgreSQL
    // each row is leased under its row lock, skipping rows another worker is leasing now,
    // and only while its lease is still free once the lock is held.
    let lease = if tx.is_postgres() {
        "UPDATE deliveries SET lease_until = ?2 WHERE id = (SELECT id FROM deliveries \
         WHERE id = ?1 AND state = 'pending' AND lease_until <= ?3 FOR UPDATE SKIP LOCKED) \
         RETURNING activity_id, inbox, follower_id, attempts"
    } else {
        "UPDATE deliveries SET lease_until = ?2 WHERE id = ?1 AND state = 'pending' \
         AND lease_until <= ?3 RETURNING activity_id, inbox, follower_id, attempts"
    };
    // An activity goes to many inboxes: its actor and body are read once per claim, not
    // once per delivery (a claim of 16 deliveries of one post read its body 16 times).
    let mut activities: HashMap<String, (String, String)> = HashMap::new();
    let mut lost = 0;
    for Chosen {
        id,
        host,
        unavailable,
        cooling,
    } in chosen
    {
        let leased = tx.query_opt(lease, params![id, request.lease_until, now], |r| {
            Ok((
                r.get::<String>(0)?,
                r.get::<String>(1)?,
                r.get::<Option<String>>(2)?,
                r.get::<u32>(3)?,
            ))
        })?;
        let Some((activity_id, inbox, follower_id, attempts)) = leased else {
            lost += 1;
            continue;
        };
        if unavailable {
            // This one is the probe: no other until its answer, which sets the next probe
            // a day away if it fails; a worker killed before that leaves the lease to end,
            // and the host is probed again then, not a day later.
            tx.execute(
                "UPDATE delivery_hosts SET next_probe_at = ?2 WHERE host = ?1",
                params![host, request.lease_until],
            )?;
            hold_host(tx, &host, request.lease_until, now)?;
        }
        let (actor_name, body) = match activities.get(&activity_id) {
            Some(known) => known.clone(),
            None => {
                let read = tx.query_row(
                    "SELECT actor_name, body FROM delivery_activities WHERE activity_id = ?1",
                    params![activity_id],
                    |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
                )?;
                activities.insert(activity_id.clone(), read.clone());
                read
            }
        };
        claimed.push(ClaimedDelivery {
            id,
            activity_id,
            actor_name,
            inbox,
            host,
            follower_id,
            body,
            attempts,
            host_cooling: cooling,
            lease_until: request.lease_until,
        });
    }
    Ok(lost)
}

struct Chosen {
    id: i64,
    host: String,
    unavailable: bool,
    cooling: bool,
}

/// Picks up to `request.limit` deliveries among the first `scan` due ones: at most
/// `per_host` in flight per host (one for an unavailable host, whose probe time has come),
/// and never a delivery while an earlier one of the same post to the same inbox is pending.
/// Also returns how many due deliveries were looked at.
fn choose_due(
    tx: &Conn,
    request: &ClaimRequest,
    busy: &str,
    now: i64,
    scan: usize,
) -> Result<(Vec<Chosen>, usize), StoreError> {
    // The hosts busy in this worker, from a JSON list of [host, count]. Materialized: as a
    // plain CTE SQLite parsed the list again for every due delivery it joined (a profile
    // of 10k deliveries showed its JSON functions ahead of everything but the signatures).
    let busy_sql = if tx.is_postgres() {
        "SELECT value->>0, CAST(value->>1 AS BIGINT) \
         FROM jsonb_array_elements(CAST(CAST(?1 AS TEXT) AS jsonb))"
    } else {
        "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1)"
    };
    let sql = format!(
        "WITH busy (host, n) AS MATERIALIZED ({busy_sql}), \
         due AS ( \
             SELECT d.id, d.host, d.next_attempt_at FROM deliveries d \
             WHERE d.state = 'pending' AND d.next_attempt_at <= ?2 AND d.lease_until <= ?2 \
             AND {NEXT_OF_ITS_POST} \
             ORDER BY d.next_attempt_at, d.id LIMIT ?3), \
         ranked AS ( \
             SELECT due.id, due.host, due.next_attempt_at, \
                 ROW_NUMBER() OVER (PARTITION BY due.host \
                     ORDER BY due.next_attempt_at, due.id) + COALESCE(b.n, 0) AS slot, \
                 h.unavailable_since IS NOT NULL AS unavailable, \
                 COALESCE(h.consecutive_failures >= ?5 AND h.last_failure_at > ?2 - ?6, FALSE) \
                     AS cooling \
             FROM due LEFT JOIN busy b ON b.host = due.host \
             LEFT JOIN delivery_hosts h ON h.host = due.host \
             WHERE h.unavailable_since IS NULL OR COALESCE(h.next_probe_at, 0) <= ?2) \
         SELECT id, host, unavailable, cooling, (SELECT COUNT(*) FROM due) FROM ranked \
         WHERE slot <= CASE WHEN unavailable THEN 1 ELSE ?4 END \
         ORDER BY next_attempt_at, id LIMIT ?7"
    );
    let mut due_seen = 0;
    let rows = tx.query_all(
        &sql,
        params![
            busy,
            now,
            scan,
            request.per_host,
            request.cooling_failures,
            request.cooling_secs,
            request.limit,
        ],
        |r| {
            due_seen = r.get::<usize>(4)?;
            Ok(Chosen {
                id: r.get(0)?,
                host: r.get(1)?,
                unavailable: r.get(2)?,
                cooling: r.get(3)?,
            })
        },
    )?;
    if rows.is_empty() {
        // Nothing chosen: count the due window on its own to know whether to widen it.
        due_seen = tx.query_row(
            "SELECT COUNT(*) FROM (SELECT 1 FROM deliveries d WHERE d.state = 'pending' \
             AND d.next_attempt_at <= ?1 AND d.lease_until <= ?1 LIMIT ?2) AS window_",
            params![now, scan],
            |r| r.get(0),
        )?;
    }
    Ok((rows, due_seen))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::test_stores;
    use crate::store::{BlockSource, FollowState, NewFollower, RemoteActor};

    pub(crate) const NOW: i64 = 1_800_000_000;

    pub(crate) fn follower(
        store: &Store,
        actor_name: &str,
        id: &str,
        shared: bool,
        state: FollowState,
    ) {
        let host = host_of(id).unwrap();
        let remote = RemoteActor {
            id: id.into(),
            inbox: format!("{id}/inbox"),
            shared_inbox: shared.then(|| format!("https://{host}/inbox")),
            name: "N".into(),
            handle: format!("@n@{host}"),
            url: id.into(),
            avatar: None,
            public_key_pem: "PEM".into(),
            key_id: format!("{id}#main-key"),
            also_known_as: Vec::new(),
            moved_to: None,
            fetched_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        };
        store
            .upsert_follower(&NewFollower {
                actor_name,
                follower: &remote,
                follow_activity_id: &format!("{id}#follow"),
                state,
            })
            .unwrap();
    }

    pub(crate) fn activity(id: &str, object: Option<&str>, inboxes: &[&str]) -> QueuedActivity {
        QueuedActivity {
            activity_id: id.into(),
            object_id: object.map(str::to_string),
            actor_name: "blog".into(),
            body: format!("{{\"id\":\"{id}\"}}"),
            recipients: inboxes
                .iter()
                .map(|inbox| Recipient {
                    inbox: inbox.to_string(),
                    follower_id: None,
                })
                .collect(),
        }
    }

    pub(crate) fn request(
        limit: usize,
        per_host: usize,
        busy: &[(String, usize)],
        now: i64,
    ) -> ClaimRequest<'_> {
        ClaimRequest {
            limit,
            per_host,
            busy,
            lease_until: now + 30,
            cooling_failures: 10,
            cooling_secs: 60,
            max_scan: WHOLE_QUEUE,
        }
    }

    pub(crate) fn claim(store: &Store, limit: usize, now: i64) -> Vec<ClaimedDelivery> {
        store
            .finish_and_claim(&[], now, Some(&request(limit, 4, &[], now)))
            .unwrap()
    }

    pub(crate) fn finish(
        store: &Store,
        delivery: &ClaimedDelivery,
        attempt: Attempt,
        signal: HostSignal,
        now: i64,
    ) {
        store
            .finish_and_claim(
                &[FinishedDelivery {
                    id: delivery.id,
                    host: delivery.host.clone(),
                    attempt,
                    host_signal: signal,
                    lease_until: delivery.lease_until,
                }],
                now,
                None,
            )
            .unwrap();
    }

    #[test]
    fn migrating_again_keeps_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relais.db");
        let store = Store::open(&path).unwrap();
        store
            .enqueue_delivery("https://a.example/inbox", r#"{"id":"x"}"#, "blog")
            .unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.queue_counts(NOW).unwrap().pending(), 1);
    }

    #[test]
    fn an_activity_is_queued_once_per_inbox() {
        for store in test_stores() {
            let a = activity(
                "https://b/1#create",
                Some("https://b/1"),
                &["https://a.example/inbox", "https://c.example/inbox"],
            );
            let first = store.queue_transaction(|q| q.enqueue(&a, NOW)).unwrap();
            let again = store.queue_transaction(|q| q.enqueue(&a, NOW + 5)).unwrap();
            assert_eq!((first, again), (2, 0));
            store
                .enqueue_delivery(
                    "https://a.example/inbox",
                    r#"{"id":"https://b/accept/1"}"#,
                    "blog",
                )
                .unwrap();
            store
                .enqueue_delivery(
                    "https://a.example/inbox",
                    r#"{"id":"https://b/accept/1"}"#,
                    "blog",
                )
                .unwrap();
            assert_eq!(store.queue_counts(NOW + 10).unwrap().due, 3);
        }
    }

    #[test]
    fn a_lease_hides_a_claimed_delivery_until_it_expires() {
        for store in test_stores() {
            store
                .queue_transaction(|q| {
                    q.enqueue(&activity("x", None, &["https://a.example/inbox"]), NOW)
                })
                .unwrap();
            let first = claim(&store, 10, NOW);
            assert_eq!(first.len(), 1);
            assert_eq!(first[0].body, r#"{"id":"x"}"#);
            assert!(claim(&store, 10, NOW + 29).is_empty());
            assert_eq!(store.leased_deliveries(NOW + 29).unwrap(), 1);
            // The worker that held it died: after the lease, another worker gets it.
            let again = claim(&store, 10, NOW + 30);
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].id, first[0].id);
            assert_eq!(again[0].attempts, 0);
        }
    }

    /// One delivery claimed, and claimed again by another worker once the first lease ran
    /// out: both claims.
    fn taken_over(store: &Store) -> (ClaimedDelivery, ClaimedDelivery) {
        let inbox = ["https://a.example/inbox"];
        store
            .queue_transaction(|q| q.enqueue(&activity("x", None, &inbox), NOW))
            .unwrap();
        let first = claim(store, 10, NOW).remove(0);
        let mut again = claim(store, 10, NOW + 30);
        assert_eq!(again.len(), 1);
        (first, again.remove(0))
    }

    #[test]
    fn a_late_answer_does_not_undo_what_the_worker_that_took_over_recorded() {
        for store in test_stores() {
            let (first, again) = taken_over(&store);
            // The second worker delivered it; then the first one's request times out.
            let delivered = Attempt::Delivered { status: 202 };
            finish(&store, &again, delivered, HostSignal::Reachable, NOW + 31);
            let retry = Attempt::Retry {
                status: None,
                error: "timeout".into(),
                next_attempt_at: NOW + 60,
            };
            finish(&store, &first, retry, HostSignal::Unreachable, NOW + 32);
            let records = store.deliveries_of("x").unwrap();
            assert_eq!(records[0].state, "done");
            assert_eq!(records[0].attempts, 1);
        }
    }

    #[test]
    fn a_late_answer_leaves_the_claim_that_took_over_alone() {
        for store in test_stores() {
            // The second worker is sending it when the first one's request times out.
            let (first, _again) = taken_over(&store);
            let retry = Attempt::Retry {
                status: None,
                error: "timeout".into(),
                next_attempt_at: NOW + 45,
            };
            finish(&store, &first, retry, HostSignal::Unreachable, NOW + 32);
            // Still leased by the second claim: not claimable, no attempt counted, and
            // the host's record untouched.
            assert!(claim(&store, 10, NOW + 50).is_empty());
            assert_eq!(store.leased_deliveries(NOW + 50).unwrap(), 1);
            assert_eq!(store.deliveries_of("x").unwrap()[0].attempts, 0);
            assert!(store.troubled_hosts().unwrap().is_empty());
        }
    }

    #[test]
    fn a_late_success_is_recorded_though_another_worker_took_over() {
        for store in test_stores() {
            let (first, again) = taken_over(&store);
            let delivered = Attempt::Delivered { status: 202 };
            finish(&store, &first, delivered, HostSignal::Reachable, NOW + 32);
            // The second worker's request then times out: it was delivered all the same.
            let retry = Attempt::Retry {
                status: None,
                error: "timeout".into(),
                next_attempt_at: NOW + 60,
            };
            finish(&store, &again, retry, HostSignal::Unreachable, NOW + 40);
            let records = store.deliveries_of("x").unwrap();
            assert_eq!(
                (records[0].state.as_str(), records[0].attempts),
                ("done", 1)
            );
            assert!(store.troubled_hosts().unwrap().is_empty());
        }
    }

    #[test]
    fn claims_respect_per_host_limits_and_busy_hosts() {
        for store in test_stores() {
            let inboxes: Vec<String> = (0..6)
                .map(|i| format!("https://a.example/u/{i}/inbox"))
                .collect();
            let refs: Vec<&str> = inboxes.iter().map(String::as_str).collect();
            store
                .queue_transaction(|q| {
                    q.enqueue(&activity("x", None, &refs), NOW)?;
                    q.enqueue(&activity("y", None, &["https://b.example/inbox"]), NOW)
                })
                .unwrap();
            let busy = vec![("a.example".to_string(), 1)];
            let claimed = store
                .finish_and_claim(&[], NOW, Some(&request(10, 3, &busy, NOW)))
                .unwrap();
            let on_a = claimed.iter().filter(|d| d.host == "a.example").count();
            let on_b = claimed.iter().filter(|d| d.host == "b.example").count();
            assert_eq!((on_a, on_b), (2, 1));
        }
    }

    #[test]
    fn later_activities_of_a_post_wait_for_earlier_ones_to_the_same_inbox() {
        for store in test_stores() {
            store
                .queue_transaction(|q| {
                    q.enqueue(
                        &activity("p#create", Some("p"), &["https://a.example/inbox"]),
                        NOW,
                    )?;
                    q.enqueue(
                        &activity(
                            "p#update",
                            Some("p"),
                            &["https://a.example/inbox", "https://b.example/inbox"],
                        ),
                        NOW,
                    )
                })
                .unwrap();
            let claimed = claim(&store, 10, NOW);
            let ids: Vec<(&str, &str)> = claimed
                .iter()
                .map(|d| (d.activity_id.as_str(), d.host.as_str()))
                .collect();
            assert_eq!(
                ids,
                vec![("p#create", "a.example"), ("p#update", "b.example")]
            );
            finish(
                &store,
                &claimed[1],
                Attempt::Delivered { status: 202 },
                HostSignal::Reachable,
                NOW,
            );
            let create = &claimed[0];
            finish(
                &store,
                create,
                Attempt::Retry {
                    status: Some(500),
                    error: "500".into(),
                    next_attempt_at: NOW + 100,
                },
                HostSignal::Unreachable,
                NOW,
            );
            // The Create waits for its retry: the Update to the same inbox waits behind it.
            assert!(claim(&store, 10, NOW + 1).is_empty());
            let retried = claim(&store, 10, NOW + 100);
            assert_eq!(retried.len(), 1);
            assert_eq!(retried[0].activity_id, "p#create");
            assert_eq!(retried[0].attempts, 1);
            finish(
                &store,
                &retried[0],
                Attempt::Delivered { status: 202 },
                HostSignal::Reachable,
                NOW + 100,
            );
            let update = claim(&store, 10, NOW + 100);
            assert_eq!(update.len(), 1);
            assert_eq!(update[0].activity_id, "p#update");
        }
    }

    #[test]
    fn outcomes_are_recorded() {
        for store in test_stores() {
            store
                .queue_transaction(|q| {
                    q.enqueue(
                        &activity(
                            "x",
                            None,
                            &["https://a.example/inbox", "https://b.example/inbox"],
                        ),
                        NOW,
                    )
                })
                .unwrap();
            let claimed = claim(&store, 10, NOW);
            finish(
                &store,
                &claimed[0],
                Attempt::Delivered { status: 202 },
                HostSignal::Reachable,
                NOW,
            );
            finish(
                &store,
                &claimed[1],
                Attempt::Failed {
                    status: Some(403),
                    error: "403 Forbidden".into(),
                    remove_follower: None,
                },
                HostSignal::Reachable,
                NOW,
            );
            let counts = store.queue_counts(NOW).unwrap();
            assert_eq!((counts.done, counts.failed, counts.pending()), (1, 1, 0));
            let records = store.deliveries_of("x").unwrap();
            assert_eq!(records[0].state, "done");
            assert_eq!(records[0].last_status, Some(202));
            assert_eq!(records[1].state, "failed");
            assert_eq!(records[1].last_error.as_deref(), Some("403 Forbidden"));
            assert_eq!(store.recent_deliveries(10).unwrap().len(), 2);
            assert_eq!(store.prune_deliveries(NOW + 1).unwrap(), 2);
            assert!(store.deliveries_of("x").unwrap().is_empty());
        }
    }

    #[test]
    fn blocking_drops_what_is_still_queued_for_the_blocked() {
        for store in test_stores() {
            let mut a = activity(
                "post",
                Some("p"),
                &[
                    "https://bad.example/inbox",
                    "https://sub.bad.example/inbox",
                    "https://ok.example/inbox",
                ],
            );
            a.recipients.push(Recipient {
                inbox: "https://ok.example/users/troll/inbox".into(),
                follower_id: Some("https://ok.example/users/troll".into()),
            });
            store.queue_transaction(|q| q.enqueue(&a, NOW)).unwrap();
            assert_eq!(store.queue_counts(NOW).unwrap().pending(), 4);
            store
                .block_domain("bad.example", BlockSource::Moderation)
                .unwrap();
            store
                .block_actor("https://ok.example/users/troll", BlockSource::Config)
                .unwrap();
            let left: Vec<String> = claim(&store, 10, NOW)
                .into_iter()
                .map(|d| d.inbox)
                .collect();
            assert_eq!(left, vec!["https://ok.example/inbox".to_string()]);
            let dropped = store.deliveries_of("post").unwrap();
            assert_eq!(
                dropped
                    .iter()
                    .filter(|d| d.last_error.as_deref() == Some("blocked"))
                    .count(),
                3
            );
        }
    }

    #[test]
    fn deliveries_held_for_an_unavailable_server_expire() {
        for store in test_stores() {
            let a = activity(
                "post",
                Some("p"),
                &["https://down.example/inbox", "https://up.example/inbox"],
            );
            store.queue_transaction(|q| q.enqueue(&a, NOW)).unwrap();
            store
            .with_conn(|c| {
                c.execute(
                    "INSERT INTO delivery_hosts (host, unavailable_since) VALUES ('down.example', ?1)",
                    params![NOW],
                )
            })
            .unwrap();
            let week = 7 * 86_400;
            assert_eq!(store.expire_held(NOW + week - 1, week).unwrap(), 0);
            assert_eq!(store.expire_held(NOW + week + 1, week).unwrap(), 1);
            let records = store.deliveries_of("post").unwrap();
            let down = records.iter().find(|d| d.inbox.contains("down")).unwrap();
            assert_eq!(down.state, "failed");
            let up = records
                .iter()
                .find(|d| d.inbox.contains("up.example"))
                .unwrap();
            assert_eq!(
                up.state, "pending",
                "a server that is up keeps its deliveries"
            );
        }
    }

    #[test]
    fn gone_follower_is_removed() {
        for store in test_stores() {
            follower(
                &store,
                "blog",
                "https://a.example/users/x",
                false,
                FollowState::Accepted,
            );
            let mut a = activity("x", None, &[]);
            a.recipients.push(Recipient {
                inbox: "https://a.example/users/x/inbox".into(),
                follower_id: Some("https://a.example/users/x".into()),
            });
            store.queue_transaction(|q| q.enqueue(&a, NOW)).unwrap();
            let claimed = claim(&store, 10, NOW);
            assert_eq!(
                claimed[0].follower_id.as_deref(),
                Some("https://a.example/users/x")
            );
            finish(
                &store,
                &claimed[0],
                Attempt::Failed {
                    status: Some(410),
                    error: "410 Gone".into(),
                    remove_follower: claimed[0].follower_id.clone(),
                },
                HostSignal::Reachable,
                NOW,
            );
            assert!(store.followers(None).unwrap().is_empty());
        }
    }
}
