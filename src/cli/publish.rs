//! `relais publish`: sends what the last build changed to every follower.
//!
//! It builds nothing: it reads the built outboxes (or, with `--from`, the live site's),
//! queues a `Create`, `Update` or `Delete` per changed post for every follower's inbox, then
//! sends until every delivery is done or waits for a retry. Killed at any moment, the next
//! run (or the inbox service) picks up where it stopped.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::{EnvOverrides, SiteConfig};
use crate::delivery::{
    load_live_posts, load_published_posts, plan_and_enqueue, EnqueueReport, Signers, SystemClock,
    Worker, WorkerOptions,
};
use crate::federation::fetch::{ClientOptions, FederationClient};
use crate::federation::urls::Urls;
use crate::store::queue::{Attempt, FinishedDelivery};
use crate::store::Store;

/// Failed deliveries listed after the summary; the rest are counted.
const FAILURES_SHOWN: usize = 10;
/// Mastodon's `RequestPool` keeps at most 512 connections. reqwest cannot cap its pool as a
/// whole, only per host, so a publish to more hosts than this keeps no idle connection: at
/// that scale most hosts get one request, and 10 000 idle connections weigh 170 MB.
const MAX_POOLED_HOSTS: u64 = 512;

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// Site directory (holding config.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    /// The built site [default: SITE/public].
    #[arg(long, conflicts_with = "from")]
    pub public: Option<PathBuf>,
    /// Read the posts from the live site at this address (the config's base_url) instead of
    /// the built folder: for the machine running the inbox when the site is built elsewhere.
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,
    /// Send the Deletes a publish would otherwise hold back: every post gone, or more than
    /// delivery.max_delete_share of them.
    #[arg(long, alias = "delete-everything")]
    pub confirm_deletes: bool,
}

/// Where `relais publish` reads the published posts.
#[derive(Debug, Clone, Copy)]
pub enum PostsFrom<'a> {
    /// The built output folder [default: SITE/public].
    Folder(Option<&'a Path>),
    /// The live site at this address, which must be `base_url`.
    Live(&'a str),
}

pub fn run(args: PublishArgs) -> anyhow::Result<()> {
    let from = match &args.from {
        Some(url) => PostsFrom::Live(url),
        None => PostsFrom::Folder(args.public.as_deref()),
    };
    run_publish(&args.site, from, args.confirm_deletes)
}

/// Queues the changes of the site built in a folder (default `site_dir/public`) or live at
/// `base_url`, and delivers every due delivery, printing a summary.
pub fn run_publish(
    site_dir: &Path,
    from: PostsFrom<'_>,
    confirm_deletes: bool,
) -> anyhow::Result<()> {
    let mut config = SiteConfig::load(site_dir)?;
    if !config.fediverse.enabled {
        bail!("fediverse.enabled is false in config.toml: there is no follower to publish to");
    }
    // The same environment as `relais inbox`: a publish beside a container's inbox must
    // sign with its key and write to its store.
    let env = EnvOverrides::from_env();
    env.apply(&mut config);
    let key = super::inbox::load_site_key(&env.key_source(site_dir, &config))?;
    let store = Store::open_location(&crate::store::StoreLocation::of(
        site_dir,
        &config.inbox.store,
    ))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let posts = match from {
        PostsFrom::Folder(public_dir) => {
            let public_dir = public_dir
                .map(Path::to_path_buf)
                .unwrap_or_else(|| site_dir.join("public"));
            load_published_posts(&config, &public_dir)?
        }
        PostsFrom::Live(url) => {
            check_live_address(url, &config.base_url)?;
            let client = FederationClient::new(ClientOptions::from_config(&config))?;
            runtime
                .block_on(load_live_posts(&config, &client))
                .context("cannot read the live site; nothing was queued")?
                .posts
        }
    };
    let report = plan_and_enqueue(&store, &config, &posts, chrono::Utc::now(), confirm_deletes)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", queued_line(&report))?;
    out.flush()?;

    let mut client_options = ClientOptions::from_config(&config);
    if store.pending_hosts()? > MAX_POOLED_HOSTS {
        client_options.max_idle_per_host = 0;
    }
    let client = FederationClient::new(client_options)?;
    let worker = Worker::new(
        store.clone(),
        Arc::new(client),
        Signers::new(Arc::new(key), Urls::new(&config)),
        WorkerOptions::from_config(&config.delivery),
        SystemClock,
    );
    if deliver_queued(&runtime, &store, &worker, &mut out)? > 0 {
        writeln!(
            out,
            "Deliveries waiting for a retry go out with the next `relais publish` or from \
             `relais inbox`; `relais status` shows them."
        )?;
    }
    Ok(())
}

/// Runs `worker` until the queue is idle (Ctrl-C stops claiming; requests in flight finish
/// and are recorded), with a progress bar, then prints what was delivered and what failed.
/// Returns how many deliveries still wait for a retry.
pub(super) fn deliver_queued(
    runtime: &tokio::runtime::Runtime,
    store: &Store,
    worker: &Worker<FederationClient, SystemClock>,
    out: &mut impl Write,
) -> anyhow::Result<u64> {
    let now = chrono::Utc::now().timestamp();
    let before = store.queue_counts(now)?;
    let bar = progress_bar(before.due + before.leased);
    let mut failures: Vec<String> = Vec::new();
    let mut on_finish = |done: &FinishedDelivery| {
        if let Attempt::Failed { error, .. } = &done.attempt {
            failures.push(format!("{}: {error}", done.host));
        }
        bar.inc(1);
    };
    let summary = runtime.block_on(worker.run_until_idle(
        async {
            // Ctrl-C stops claiming; the requests in flight finish and are recorded.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        },
        &mut on_finish,
    ))?;
    bar.finish_and_clear();

    let after = store.queue_counts(chrono::Utc::now().timestamp())?;
    writeln!(
        out,
        "delivered {}, retrying {}, failed {}",
        summary.delivered,
        after.pending(),
        summary.failed
    )?;
    for failure in failures.iter().take(FAILURES_SHOWN) {
        writeln!(out, "  failed: {failure}")?;
    }
    if failures.len() > FAILURES_SHOWN {
        writeln!(out, "  ... and {} more", failures.len() - FAILURES_SHOWN)?;
    }
    Ok(after.pending())
}

/// The published posts' ids are under `base_url`: another address could only be compared as
/// a site whose every post is gone.
fn check_live_address(url: &str, base_url: &str) -> anyhow::Result<()> {
    let given = url::Url::parse(url).with_context(|| format!("--from {url:?} is not a URL"))?;
    let base = url::Url::parse(base_url).context("base_url is not a URL")?;
    if given.origin() != base.origin() {
        bail!(
            "--from {url} is not the site's address: the posts were published under base_url \
             {base_url}, and their ids are read from there (give --from {}, or change \
             base_url in config.toml)",
            base.origin().ascii_serialization()
        );
    }
    Ok(())
}

fn queued_line(report: &EnqueueReport) -> String {
    let mut line = format!(
        "Queued {} new, {} edited, {} deleted post(s)",
        report.creates, report.updates, report.deletes
    );
    if report.announces > 0 {
        line.push_str(&format!(
            " (+{} boost(s) by the site actor)",
            report.announces
        ));
    }
    line.push_str(&format!(": {} deliveries", report.deliveries));
    if report.skipped_old > 0 {
        line.push_str(&format!(
            "; {} older post(s) recorded as already published",
            report.skipped_old
        ));
    }
    line
}

fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() || total == 0 {
        return ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} deliveries ({per_sec}, {eta} left)")
    {
        bar.set_style(style);
    }
    bar
}
