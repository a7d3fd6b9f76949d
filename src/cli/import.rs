//! `relais import zola|hugo DIR`: prints what the import changed and what it left.

use std::path::PathBuf;

use crate::import::{import, Generator};

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The generator that built the site so far.
    #[arg(value_enum)]
    pub generator: Generator,
    /// The site's folder (holding the generator's configuration and content/).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let report = import(args.generator, &args.dir)?;
    for change in &report.changes {
        println!("{change}");
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    println!(
        "Imported: {} change(s), {} warning(s). Next: `relais build --site {}`.",
        report.changes.len(),
        report.warnings.len(),
        args.dir.display()
    );
    Ok(())
}
