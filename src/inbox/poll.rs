//! Publishing without webhooks: with `inbox.poll_interval` set, the inbox checks the live
//! site's outboxes every interval and publishes what changed, as the deploy webhook does.
//!
//! A check is cheap when nothing changed: the outboxes and their pages are asked for with
//! the validators of the last complete read (`If-None-Match` / `If-Modified-Since`), and
//! only when one of them is not `304 Not Modified` is the site read again and compared.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{parse_interval, SiteConfig};
use crate::delivery::publish_live;
use crate::federation::fetch::{Conditional, FederationClient, IdCheck, Validators};
use crate::inbox::InboxState;
use crate::store::Store;

/// The poller running beside the inbox.
pub struct Poller {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Poller {
    /// Starts polling when `inbox.poll_interval` is set: at once, then every interval.
    pub fn spawn(state: &InboxState) -> Option<Poller> {
        let interval = parse_interval(state.config.inbox.poll_interval.as_deref()?)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let watch = Watch::of(state);
        tracing::info!("checking the live site for changes every {interval:?}");
        let task = tokio::spawn(async move {
            tokio::select! {
                _ = watch.run(interval) => {}
                _ = stopped => {}
            }
        });
        Some(Poller { stop, task })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The outbox documents of the last complete read of the live site, with their validators;
/// empty until there is one.
#[derive(Debug, Default)]
pub struct LastRead(Vec<(String, Validators)>);

/// One check of the live site, for a caller without a background task (`relais lambda`,
/// on its schedule): publishes what changed since `last`, and remembers this read there.
pub async fn check_once(state: &InboxState, last: &mut LastRead) {
    Watch::of(state).check(last).await;
}

struct Watch {
    store: Store,
    config: Arc<SiteConfig>,
    client: FederationClient,
    wake: Arc<tokio::sync::Notify>,
}

impl Watch {
    fn of(state: &InboxState) -> Watch {
        Watch {
            store: state.store.clone(),
            config: state.config.clone(),
            client: state.client.clone(),
            wake: state.wake.clone(),
        }
    }

    async fn run(self, every: Duration) {
        let mut ticks = tokio::time::interval(every.max(Duration::from_secs(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = LastRead::default();
        loop {
            ticks.tick().await;
            self.check(&mut last).await;
        }
    }

    async fn check(&self, last: &mut LastRead) {
        if !last.0.is_empty() && unchanged(&self.client, &last.0).await {
            return;
        }
        if let Some(read) = self.publish().await {
            last.0 = read;
        }
    }

    /// Reads the live site and publishes its changes. Returns the documents read when the
    /// read was complete, whether or not the publish was held back: a held publish waits for
    /// `relais publish --confirm-deletes` or another change, not for the next tick.
    async fn publish(&self) -> Option<Vec<(String, Validators)>> {
        match publish_live(&self.store, &self.config, &self.client, false).await {
            Err(e) => {
                tracing::warn!("poll: cannot read the live site: {:?}", e.to_string());
                None
            }
            Ok((read, Ok(report))) => {
                if report.deliveries > 0 {
                    self.wake.notify_one();
                }
                if report != Default::default() {
                    tracing::info!(
                        "poll: queued {} creates, {} updates, {} deletes, {} announces \
                         ({} deliveries)",
                        report.creates,
                        report.updates,
                        report.deletes,
                        report.announces,
                        report.deliveries
                    );
                }
                Some(read)
            }
            Ok((read, Err(e))) if e.is_held_delete() => {
                tracing::warn!("poll: {:?}", e.to_string());
                Some(read)
            }
            Ok((_, Err(e))) => {
                tracing::error!("poll: {e}");
                None
            }
        }
    }
}

/// Whether every document still answers `304 Not Modified`. A failed check counts as a
/// change: the full read that follows says what is wrong.
async fn unchanged(client: &FederationClient, known: &[(String, Validators)]) -> bool {
    for (url, validators) in known {
        match client
            .fetch_json_if_changed(url, validators, IdCheck::MatchUrl)
            .await
        {
            Ok(Conditional::NotModified) => {}
            Ok(Conditional::Changed { .. }) | Err(_) => return false,
        }
    }
    true
}
