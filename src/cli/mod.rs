//! Command line: parses arguments and drives the stages.

mod inbox;
mod moderate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use inbox::run_inbox;
pub use moderate::{run_moderate, ListKind, ModerateCommand};

#[derive(Debug, Parser)]
#[command(name = "relais", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the inbox service: follows, replies, likes and boosts from the fediverse.
    Inbox {
        /// The site folder (holding config.toml).
        #[arg(long, default_value = ".")]
        site: PathBuf,
        /// The built site to serve (default: SITE/public).
        #[arg(long)]
        public: Option<PathBuf>,
    },
    /// Reviews and decides on what the inbox received.
    Moderate {
        #[arg(long, default_value = ".")]
        site: PathBuf,
        #[command(subcommand)]
        command: ModerateCommand,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match &cli.command {
        Command::Inbox { site, public } => run_inbox(site, public.as_deref()),
        Command::Moderate { site, command } => run_moderate(site, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, `info` unless `RUST_LOG` says otherwise.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Only fails when a subscriber is already set, which then keeps logging.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
