//! `relais store copy`: moves a blog's data between stores (SQLite file ⇄ PostgreSQL).

use std::path::{Path, PathBuf};

use crate::store::{copy, Store, StoreLocation};

#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Copy every table of one store into another (a SQLite file or a postgres:// URL),
    /// in one transaction on the target; prints the rows copied per table.
    Copy {
        /// The store to read: a SQLite file or a PostgreSQL URL.
        #[arg(long)]
        from: PathBuf,
        /// The store to write, created and migrated if needed; must be empty.
        #[arg(long)]
        to: PathBuf,
        /// Replace what the target holds instead of refusing a non-empty target.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(args: StoreArgs) -> anyhow::Result<()> {
    match args.command {
        StoreCommand::Copy { from, to, force } => {
            // Paths are taken as given (relative to the current directory).
            let from = StoreLocation::of(Path::new("."), &from);
            let to = StoreLocation::of(Path::new("."), &to);
            if from == to {
                anyhow::bail!("--from and --to are the same store");
            }
            if let StoreLocation::Path(path) = &from {
                if !path.exists() {
                    anyhow::bail!("{}: no such store", path.display());
                }
            }
            let source = Store::open_location(&from)?;
            let target = Store::open_location(&to)?;
            let report = copy::copy(&source, &target, force)?;
            println!("Copied {} to {}:", from.display(), to.display());
            for (table, rows) in &report.tables {
                println!("  {table:<22} {rows:>9}");
            }
            let total: usize = report.tables.iter().map(|(_, n)| n).sum();
            println!("  {:<22} {total:>9}", "(all tables)");
            if report.replaced > 0 {
                println!("Replaced {} rows the target held.", report.replaced);
            }
            Ok(())
        }
    }
}
