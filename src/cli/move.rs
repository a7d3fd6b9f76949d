//! `relais move --to ACTOR_URL`: moves the site actor's followers to another account.
//!
//! The checks and the queueing live in `delivery::moving`; this parses, writes
//! `fediverse.moved_to` into `config.toml`, sends the queued `Move` and prints what to do
//! next.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};

use crate::config::{EnvOverrides, SiteConfig};
use crate::delivery::moving::{config_with_moved_to, enqueue_move, fetch_target};
use crate::delivery::{Signers, SystemClock, Worker, WorkerOptions};
use crate::federation::fetch::{ClientOptions, FederationClient};
use crate::federation::signature::SigningKey;
use crate::federation::urls::Urls;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct MoveArgs {
    /// Site directory (holding config.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    /// The actor URL (id) of the new account; it must list this site's actor in its
    /// alsoKnownAs (an "account alias" on Mastodon).
    #[arg(long, value_name = "ACTOR_URL")]
    pub to: String,
}

pub fn run(args: MoveArgs) -> anyhow::Result<()> {
    let config_path = args.site.join("config.toml");
    let mut config = SiteConfig::load(&args.site)?;
    if !config.fediverse.enabled {
        bail!("fediverse.enabled is false in config.toml: there is no actor to move");
    }
    let env = EnvOverrides::from_env();
    env.apply(&mut config);
    let key = Arc::new(super::inbox::load_site_key(
        &env.key_source(&args.site, &config),
    )?);
    let store = Store::open_location(&crate::store::StoreLocation::of(
        &args.site,
        &config.inbox.store,
    ))?;
    let urls = Urls::new(&config);
    let name = config.fediverse.username.clone();
    let our_actor = urls.actor(&name);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;

    let client = FederationClient::new(ClientOptions::from_config(&config))?;
    let signer = SigningKey::new(urls.key_id(&name), key.clone());
    let handle = Urls::handle(&name, &config.host());
    let target = runtime.block_on(fetch_target(
        &client, &signer, &args.to, &our_actor, &handle,
    ))?;

    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    if let Some(edited) = config_with_moved_to(&text, &config_path, &target.id)? {
        std::fs::write(&config_path, edited)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
    }
    let queued = enqueue_move(&store, &urls, &name, &target.id, chrono::Utc::now())?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{our_actor} moves to {} ({:?}); config.toml now has fediverse.moved_to.\n\
         Queued Move {}: {} deliveries",
        target.id, target.handle, queued.activity_id, queued.deliveries
    )?;
    out.flush()?;

    let worker = Worker::new(
        store.clone(),
        Arc::new(client),
        Signers::new(key, urls.clone()),
        WorkerOptions::from_config(&config.delivery),
        SystemClock,
    );
    super::publish::deliver_queued(&runtime, &store, &worker, &mut out)?;
    writeln!(
        out,
        "Next: rebuild and deploy the site so that the actor shows movedTo. Followers' \
         servers now follow {} instead; the inbox keeps answering for {our_actor} (retries \
         go out from `relais inbox` or the next `relais publish`).",
        target.id
    )?;
    Ok(())
}
