//! `relais inbox`: runs the inbox service of a site.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::config::{EnvOverrides, KeySource, SiteConfig};
use crate::federation::fetch::{ClientOptions, FederationClient};
use crate::federation::keys::PrivateKey;
use crate::inbox::{serve, InboxState};
use crate::logging::LogFormat;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct InboxArgs {
    /// Site directory (holding config.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    /// The built site, served when `inbox.serve_public` [default: SITE/public].
    #[arg(long)]
    pub public: Option<PathBuf>,
    /// `text` lines, or `json` objects for a log collector.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "RELAIS_LOG_FORMAT")]
    pub log_format: LogFormat,
}

pub fn run(args: InboxArgs) -> anyhow::Result<()> {
    crate::logging::init(args.log_format);
    if crate::lambda::in_lambda() {
        tracing::info!(
            "{} is set: serving Lambda invocations",
            crate::lambda::RUNTIME_API
        );
        return crate::cli::lambda::run_function(&args.site, args.public.as_deref());
    }
    run_inbox(&args.site, args.public.as_deref())
}

/// Opens what the inbox of the site in `site_dir` works with: its key, its store (created
/// and migrated), its outbound client. `config` may differ from the file (`relais serve`
/// replaces `base_url`).
pub fn inbox_state(
    site_dir: &Path,
    config: SiteConfig,
    public_dir: PathBuf,
) -> anyhow::Result<InboxState> {
    inbox_state_with_env(site_dir, config, public_dir, &EnvOverrides::default())
}

/// [`inbox_state`] with the key taken as `env` says (`RELAIS_KEY`, `RELAIS_KEY_FILE`);
/// `config` already has `env` applied.
pub fn inbox_state_with_env(
    site_dir: &Path,
    config: SiteConfig,
    public_dir: PathBuf,
    env: &EnvOverrides,
) -> anyhow::Result<InboxState> {
    if !config.fediverse.enabled {
        bail!("fediverse.enabled is false in config.toml: there is no inbox to run");
    }
    let key = load_site_key(&env.key_source(site_dir, &config))?;
    let store = Store::open_location(&crate::store::StoreLocation::of(
        site_dir,
        &config.inbox.store,
    ))?;
    store.set_config_blocks(&config.inbox.blocked_domains, &config.inbox.blocked_actors)?;
    let horizon = chrono::Utc::now() - chrono::Duration::days(SEEN_RETENTION_DAYS);
    store.prune_seen(horizon)?;
    let client = FederationClient::new(ClientOptions::from_config(&config))?;
    Ok(InboxState::new(config, public_dir, key, store, client))
}

/// The site's private key from `RELAIS_KEY` or its file. The PEM from the environment is
/// parsed in memory only: it is never written anywhere.
pub(crate) fn load_site_key(source: &KeySource) -> anyhow::Result<PrivateKey> {
    match source {
        KeySource::Pem(pem) => PrivateKey::from_pem(pem).map_err(|message| {
            anyhow::anyhow!(
                "{} is not an RSA private key in PEM (PKCS#8 or PKCS#1): {message}",
                EnvOverrides::KEY
            )
        }),
        KeySource::File(path) => Ok(PrivateKey::load(path).context(
            "the site key is made by `relais build` or `relais keygen` (or give it in RELAIS_KEY)",
        )?),
    }
}

/// Activity ids are remembered this long; senders stop retrying well before.
const SEEN_RETENTION_DAYS: i64 = 30;

/// Serves the inbox of the site in `site_dir` until Ctrl-C or SIGTERM. `public_dir` is the
/// built output to serve (default `site_dir/public`).
pub fn run_inbox(site_dir: &Path, public_dir: Option<&Path>) -> anyhow::Result<()> {
    let mut config = SiteConfig::load(site_dir)?;
    let env = EnvOverrides::from_env();
    env.apply(&mut config);
    let public_dir = public_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| site_dir.join("public"));
    let listen = config.inbox.listen.clone();
    let state = inbox_state_with_env(site_dir, config, public_dir, &env)?;

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
