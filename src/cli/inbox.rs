//! `relais inbox`: runs the inbox service of a site.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::config::SiteConfig;
use crate::federation::fetch::{ClientOptions, FederationClient};
use crate::federation::keys::PrivateKey;
use crate::inbox::{serve, InboxState};
use crate::store::{timestamp, Store};

#[derive(Debug, clap::Args)]
pub struct InboxArgs {
    /// Site directory (holding config.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    /// The built site, served when `inbox.serve_public` [default: SITE/public].
    #[arg(long)]
    pub public: Option<PathBuf>,
}

pub fn run(args: InboxArgs) -> anyhow::Result<()> {
    init_logging();
    run_inbox(&args.site, args.public.as_deref())
}

/// Logs to stderr, `info` unless `RUST_LOG` says otherwise.
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Fails only when a subscriber is already set, which then does the logging.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Opens what the inbox of the site in `site_dir` works with: its key, its store (created
/// and migrated), its outbound client. `config` may differ from the file (`relais serve`
/// replaces `base_url`).
pub fn inbox_state(
    site_dir: &Path,
    config: SiteConfig,
    public_dir: PathBuf,
) -> anyhow::Result<InboxState> {
    if !config.fediverse.enabled {
        bail!("fediverse.enabled is false in config.toml: there is no inbox to run");
    }
    let key_path = site_dir.join(&config.fediverse.key_path);
    let key = PrivateKey::load(&key_path)
        .context("the site key is made by `relais build` or `relais keygen`; run one first")?;
    let store_path = site_dir.join(&config.inbox.store);
    let store = Store::open(&store_path)?;
    store.set_config_blocks(&config.inbox.blocked_domains, &config.inbox.blocked_actors)?;
    let horizon = chrono::Utc::now() - chrono::Duration::days(SEEN_RETENTION_DAYS);
    store.prune_seen(&timestamp(horizon))?;
    let client = FederationClient::new(ClientOptions::from_config(&config))?;
    Ok(InboxState::new(config, public_dir, key, store, client))
}

/// Activity ids are remembered this long; senders stop retrying well before.
const SEEN_RETENTION_DAYS: i64 = 30;

/// Serves the inbox of the site in `site_dir` until Ctrl-C or SIGTERM. `public_dir` is the
/// built output to serve (default `site_dir/public`).
pub fn run_inbox(site_dir: &Path, public_dir: Option<&Path>) -> anyhow::Result<()> {
    let config = SiteConfig::load(site_dir)?;
    let public_dir = public_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| site_dir.join("public"));
    let listen = config.inbox.listen.clone();
    let state = inbox_state(site_dir, config, public_dir)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let worker = DeliveryWorker::spawn(&state);
        let poller = crate::inbox::poll::Poller::spawn(&state);
        let served = serve(state).await;
        if let Some(poller) = poller {
            poller.stop().await;
        }
        worker.stop().await;
        served.with_context(|| format!("inbox service on {listen}"))
    })
}

/// The delivery worker running beside the inbox: it sends the queued answers to follows
/// and the deliveries queued by `relais publish` or the deploy webhook.
pub struct DeliveryWorker {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// How long a stopping worker may take to finish the requests in flight; what it cannot
/// finish stays leased in the store and is sent again after a restart.
const WORKER_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

impl DeliveryWorker {
    pub fn spawn(state: &InboxState) -> DeliveryWorker {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (store, client, key, config, wake) = (
            state.store.clone(),
            state.client.clone(),
            state.key.clone(),
            state.config.clone(),
            state.wake.clone(),
        );
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            match crate::delivery::run_worker(store, client, key, &config, wake, shutdown).await {
                Ok(summary) => tracing::info!("delivery worker stopped: {summary:?}"),
                Err(e) => tracing::error!("delivery worker failed: {e}"),
            }
        });
        DeliveryWorker { stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(WORKER_STOP_GRACE, self.task)
            .await
            .is_err()
        {
            tracing::warn!("delivery worker did not stop in time; its leases will expire");
        }
    }
}
