//! `relais lambda`: the inbox as an AWS Lambda function (see `crate::lambda`). `relais
//! inbox`, and `relais` without arguments (how the `provided.al2023` runtime starts its
//! `bootstrap`), come here when the Lambda runtime's environment is present.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::inbox::inbox_state_with_env;
use crate::config::{EnvOverrides, SiteConfig};
use crate::lambda::{report_init_error, run};
use crate::logging::LogFormat;
use crate::store::StoreError;

#[derive(Debug, clap::Args)]
pub struct LambdaArgs {
    /// Site directory (holding config.toml) [default: the folder of this binary, where
    /// the deployment package is unpacked].
    #[arg(long, env = "RELAIS_SITE")]
    pub site: Option<PathBuf>,
    /// The built site, served when `inbox.serve_public` [default: SITE/public].
    #[arg(long)]
    pub public: Option<PathBuf>,
    /// `text` lines, or `json` objects for CloudWatch Logs Insights.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "RELAIS_LOG_FORMAT")]
    pub log_format: LogFormat,
}

pub fn run_cli(args: LambdaArgs) -> anyhow::Result<()> {
    crate::logging::init(args.log_format);
    let site = match args.site {
        Some(site) => site,
        None => bundle_dir()?,
    };
    run_function(&site, args.public.as_deref())
}

/// The folder of the running binary: a deployment package unpacks `bootstrap` and the site
/// (`config.toml`, `public/`) side by side in `/var/task`.
fn bundle_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot tell where this binary is")?;
    Ok(exe
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".")))
}

/// Opens the site's inbox and serves Lambda invocations; a failure to start is reported to
/// the Runtime API's `init/error` as well as returned.
pub fn run_function(site_dir: &Path, public_dir: Option<&Path>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let state = match open(site_dir, public_dir) {
        Ok(state) => state,
        Err(e) => {
            runtime.block_on(report_init_error(&crate::cli::error_message(&e)));
            return Err(e);
        }
    };
    runtime.block_on(async move { run(state).await })?;
    Ok(())
}

fn open(site_dir: &Path, public_dir: Option<&Path>) -> anyhow::Result<crate::inbox::InboxState> {
    let mut config = SiteConfig::load(site_dir)?;
    let env = EnvOverrides::from_env();
    env.apply(&mut config);
    let public_dir = public_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| site_dir.join("public"));
    let local_store = crate::lambda::store_is_local_file(&config.inbox.store);
    inbox_state_with_env(site_dir, config, public_dir, &env).map_err(|e| {
        let store_failed = e.chain().any(|cause| cause.is::<StoreError>());
        if local_store && store_failed {
            e.context(
                "a function's files are read-only except /tmp, which is lost with it: \
                 set RELAIS_STORE to a PostgreSQL URL",
            )
        } else {
            e
        }
    })
}
