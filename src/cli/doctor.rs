//! `relais doctor [URL]`: checks a live deployment from outside and prints one line per
//! check; exits non-zero when any check fails.

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::config::{EnvOverrides, KeySource};
use crate::config::{SiteConfig, CONFIG_FILE};
use crate::doctor::{diagnose, one_line, Outcome, Target};
use crate::federation::fetch::{ClientOptions, FederationClient};
use crate::federation::keys::{public_key_path, PrivateKey};

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Address of the live site [default: base_url of SITE/config.toml].
    pub url: Option<String>,
    /// Site directory: its config gives the usernames, the host and the public key to
    /// compare with what is published.
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    /// Let the checks reach private network addresses (a LAN deployment); loopback URLs
    /// are always allowed.
    #[arg(long)]
    pub allow_private: bool,
}

pub fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let config = if args.site.join(CONFIG_FILE).exists() {
        Some(SiteConfig::load(&args.site)?)
    } else {
        None
    };
    let url = match (&args.url, &config) {
        (Some(url), _) => url.clone(),
        (None, Some(config)) => config.base_url.clone(),
        (None, None) => bail!(
            "give the site's address (relais doctor https://blog.example) or run it in a \
             site folder"
        ),
    };
    let base_url = url::Url::parse(&url).with_context(|| format!("{url:?} is not a URL"))?;
    if !matches!(base_url.scheme(), "http" | "https") || base_url.host_str().is_none() {
        bail!("{url:?} is not an http(s) address");
    }
    let mut actors = Vec::new();
    let mut public_key_pem = None;
    let mut host = None;
    if let Some(config) = &config {
        if config.fediverse.enabled {
            actors.push(config.fediverse.username.clone());
            actors.extend(
                config
                    .authors
                    .iter()
                    .filter(|a| a.actor)
                    .map(|a| a.id.clone()),
            );
        }
        public_key_pem = local_public_key(&args.site, config)?;
        host = Some(config.deploy.host);
    }
    let loopback = match base_url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    let mut options = ClientOptions::new(base_url.as_str().trim_end_matches('/'));
    options.allow_private_addresses = loopback || args.allow_private;
    let client = FederationClient::new(options)?;
    let target = Target {
        base_url,
        actors,
        public_key_pem,
        host,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let checks = runtime.block_on(diagnose(&client, &target));
    let mut failed = 0;
    for check in &checks {
        let (label, detail) = match check.outcome {
            Outcome::Ok => ("ok  ", check.fix.as_str()),
            Outcome::Warn => ("WARN", check.fix.as_str()),
            Outcome::Fail => {
                failed += 1;
                ("FAIL", check.fix.as_str())
            }
        };
        println!("{label} {}: {}", one_line(&check.name), one_line(detail));
    }
    if failed > 0 {
        bail!("{failed} check(s) failed");
    }
    Ok(())
}

/// The public key the site signs with, as the local folder (or `RELAIS_KEY`) has it; none
/// when neither the private key nor its public file is there.
fn local_public_key(site: &std::path::Path, config: &SiteConfig) -> anyhow::Result<Option<String>> {
    let private = match EnvOverrides::from_env().key_source(site, config) {
        KeySource::Pem(pem) => Some(super::inbox::load_site_key(&KeySource::Pem(pem))?),
        KeySource::File(path) if path.exists() => Some(PrivateKey::load(&path)?),
        KeySource::File(path) => {
            let public = public_key_path(&path);
            if !public.exists() {
                return Ok(None);
            }
            let pem = std::fs::read_to_string(&public)
                .with_context(|| format!("{}: cannot read", public.display()))?;
            return Ok(Some(pem));
        }
    };
    Ok(private.map(|key| key.public_key_pem()).transpose()?)
}
