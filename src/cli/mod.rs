//! Command line: parses arguments and drives the stages. One file per command.

pub mod build;
pub mod check;
pub mod doctor;
pub mod federate;
pub mod import;
pub mod inbox;
pub mod init;
pub mod keygen;
pub mod lambda;
pub mod moderate;
pub mod r#move;
pub mod new;
pub mod publish;
pub mod serve;
pub mod status;
pub mod store;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "relais",
    version,
    about = "A folder of Markdown as a static blog and a fediverse account"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new site in DIR.
    Init(init::InitArgs),
    /// Build the site into its output folder.
    Build(build::BuildArgs),
    /// Build in memory and fail on anything Mastodon would show badly.
    Check(check::CheckArgs),
    /// Write a new RSA key pair for the site's actors.
    Keygen(keygen::KeygenArgs),
    /// Build, serve on 127.0.0.1 and rebuild on change, reloading the browser.
    Serve(serve::ServeArgs),
    /// Run the inbox service: follows, replies, likes and boosts from the fediverse.
    Inbox(inbox::InboxArgs),
    /// Run the inbox as an AWS Lambda function (Function URL and scheduled events).
    Lambda(lambda::LambdaArgs),
    /// Review and decide on what the inbox received.
    Moderate(moderate::ModerateArgs),
    /// Send the new, edited and deleted posts of the last build to every follower.
    Publish(publish::PublishArgs),
    /// Move the site actor's followers to another account (it must list ours as an alias).
    Move(r#move::MoveArgs),
    /// Show the delivery queue, followers and failing hosts.
    Status(status::StatusArgs),
    /// Copy a store's data to another store (`store copy --from relais.db --to postgres://…`).
    Store(store::StoreArgs),
    /// Check a live deployment from outside, as Mastodon meets it.
    Doctor(doctor::DoctorArgs),
    /// Add the fediverse to a site another generator built (Hugo, Jekyll, Eleventy…).
    Federate(federate::FederateArgs),
    /// Make a Zola or Hugo site in DIR a relais site: converts its configuration, reports
    /// what relais does not render (shortcodes).
    Import(import::ImportArgs),
    /// Start a new post (`new post "Title"`) or titleless note (`new note`) dated now.
    New(new::NewArgs),
}

pub fn main() -> ExitCode {
    // The `provided.al2023` runtime starts its `bootstrap` without arguments.
    let cli = if std::env::args_os().len() == 1 && crate::lambda::in_lambda() {
        Cli::parse_from(["relais", "lambda"])
    } else {
        Cli::parse()
    };
    let result = match cli.command {
        Command::Init(args) => init::run(args),
        Command::Build(args) => build::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Check(args) => check::run(args),
        Command::Keygen(args) => keygen::run(args),
        Command::Inbox(args) => inbox::run(args),
        Command::Lambda(args) => lambda::run_cli(args),
        Command::Moderate(args) => moderate::run(args),
        Command::Publish(args) => publish::run(args),
        Command::Move(args) => r#move::run(args),
        Command::Status(args) => status::run(args),
        Command::Store(args) => store::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Federate(args) => federate::run(args),
        Command::Import(args) => import::run(args),
        Command::New(args) => new::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&err);
            ExitCode::FAILURE
        }
    }
}

/// Prints an error as `error: <file>:<line>: ...`, one line per problem: a build reports
/// every broken document at once.
pub fn report(err: &anyhow::Error) {
    for line in error_message(err).lines() {
        eprintln!("error: {line}");
    }
}

/// An error and its causes as one text, one line per problem.
pub fn error_message(err: &anyhow::Error) -> String {
    // Module errors often show their cause in their own message already: skip repeats.
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message.push_str(": ");
            message.push_str(&cause);
        }
    }
    message
}
