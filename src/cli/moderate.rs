//! `relais moderate`: what the inbox received, and the owner's decisions about it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::config::SiteConfig;
use crate::content::{plain_text, printable};
use crate::federation::fetch::{ClientOptions, FederationClient};
use crate::federation::keys::PrivateKey;
use crate::federation::signature::SigningKey;
use crate::federation::urls::Urls;
use crate::inbox::process::FollowAnswer;
use crate::inbox::send_follow_answer;
use crate::store::time::rfc3339;
use crate::store::{BlockSource, FollowState, Follower, ReplyState, Store, StoredReply};

#[derive(Debug, clap::Args)]
pub struct ModerateArgs {
    /// Site directory (holding config.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    #[command(subcommand)]
    pub command: ModerateCommand,
}

pub fn run(args: ModerateArgs) -> anyhow::Result<()> {
    run_moderate(&args.site, &args.command)
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ModerateCommand {
    /// Lists replies, followers, blocks and reports (or only the kind given).
    List {
        #[arg(value_enum)]
        what: Option<ListKind>,
    },
    /// Shows a reply (by its number in `list`): pending or hidden ones included.
    Approve {
        id: i64,
    },
    /// Hides a reply from the site.
    Hide {
        id: i64,
    },
    /// Blocks a domain (and its subdomains): its followers and reactions are removed, its
    /// replies hidden, and its requests refused.
    BlockDomain {
        domain: String,
    },
    UnblockDomain {
        domain: String,
    },
    /// Blocks one remote actor by its id (URL).
    BlockActor {
        actor: String,
    },
    UnblockActor {
        actor: String,
    },
    /// Accepts a pending follow request and sends the `Accept`.
    ApproveFollower {
        id: i64,
    },
    /// Refuses a follow request (or removes a follower) and sends a `Reject`.
    RejectFollower {
        id: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListKind {
    Replies,
    Followers,
    Blocks,
    Flags,
}

pub fn run_moderate(site_dir: &Path, command: &ModerateCommand) -> anyhow::Result<()> {
    let mut config = SiteConfig::load(site_dir)?;
    crate::config::EnvOverrides::from_env().apply_store(&mut config);
    let store = Store::open_location(&crate::store::StoreLocation::of(
        site_dir,
        &config.inbox.store,
    ))?;
    let mut out = std::io::stdout().lock();
    match command {
        ModerateCommand::List { what } => list(&store, *what, &mut out)?,
        ModerateCommand::Approve { id } => set_reply(&store, *id, ReplyState::Visible, &mut out)?,
        ModerateCommand::Hide { id } => set_reply(&store, *id, ReplyState::Hidden, &mut out)?,
        ModerateCommand::BlockDomain { domain } => {
            store.block_domain(domain, BlockSource::Moderation)?;
            let purged = store.purge_domain(domain)?;
            writeln!(
                out,
                "blocked {domain}: {} followers and {} reactions removed, {} replies hidden",
                purged.followers, purged.reactions, purged.replies_hidden
            )?;
        }
        ModerateCommand::UnblockDomain { domain } => {
            if !store.unblock_domain(domain)? {
                bail!("{domain} is not blocked");
            }
            writeln!(
                out,
                "unblocked {domain}; hidden replies stay hidden until approved"
            )?;
        }
        ModerateCommand::BlockActor { actor } => {
            store.block_actor(actor, BlockSource::Moderation)?;
            writeln!(out, "blocked {actor}")?;
        }
        ModerateCommand::UnblockActor { actor } => {
            if !store.unblock_actor(actor)? {
                bail!("{actor} is not blocked");
            }
            writeln!(out, "unblocked {actor}")?;
        }
        ModerateCommand::ApproveFollower { id } => {
            let Some(follower) = store.accept_follower(*id)? else {
                bail!("no pending follow request #{id}");
            };
            writeln!(
                out,
                "{} now follows {}",
                printable(&follower.follower_id),
                follower.actor_name
            )?;
            answer(site_dir, &config, &follower, FollowAnswer::Accept, &mut out)?;
        }
        ModerateCommand::RejectFollower { id } => {
            let Some(follower) = store.remove_follower_row(*id)? else {
                bail!("no follower or follow request #{id}");
            };
            writeln!(
                out,
                "{} no longer follows {}",
                printable(&follower.follower_id),
                follower.actor_name
            )?;
            answer(site_dir, &config, &follower, FollowAnswer::Reject, &mut out)?;
        }
    }
    Ok(())
}

fn set_reply(
    store: &Store,
    id: i64,
    state: ReplyState,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if !store.set_reply_state(id, state)? {
        bail!("no reply #{id}");
    }
    writeln!(out, "reply #{id} is now {}", state.as_str())?;
    Ok(())
}

/// Sends the answer to the follower's server now, signed by the followed actor.
fn answer(
    site_dir: &Path,
    config: &SiteConfig,
    follower: &Follower,
    answer: FollowAnswer,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let key = PrivateKey::load(&site_dir.join(&config.fediverse.key_path))?;
    let urls = Urls::new(config);
    let signing_key = SigningKey::new(urls.key_id(&follower.actor_name), std::sync::Arc::new(key));
    let client = FederationClient::new(ClientOptions::from_config(config))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let status = runtime
        .block_on(send_follow_answer(
            &client,
            &urls,
            &signing_key,
            follower,
            answer,
        ))
        .with_context(|| format!("sending the {answer:?} to {}", follower.inbox))?;
    if !status.is_success() {
        bail!("{} answered {status} to our {answer:?}", follower.inbox);
    }
    writeln!(out, "{answer:?} sent to {}", printable(&follower.inbox))?;
    Ok(())
}

fn write_reply(out: &mut impl Write, r: &StoredReply) -> std::io::Result<()> {
    let text = plain_text(&r.reply.content);
    let short: String = text.chars().take(120).collect();
    let ellipsis = if text.chars().count() > 120 {
        "…"
    } else {
        ""
    };
    writeln!(
        out,
        "  #{:<5} {:<8} {}  {} ({})\n         on {}\n         {}{ellipsis}",
        r.id,
        r.state.as_str(),
        r.reply.published.format("%Y-%m-%d %H:%M"),
        printable(&r.reply.author_handle),
        printable(&r.reply.author_name),
        printable(&r.root_id),
        printable(&short),
    )
}

fn list(store: &Store, what: Option<ListKind>, out: &mut impl Write) -> anyhow::Result<()> {
    let wants = |kind| what.is_none_or(|w| w == kind);
    if wants(ListKind::Replies) {
        for (title, state) in [
            ("Replies waiting for approval", ReplyState::Pending),
            ("Visible replies", ReplyState::Visible),
            ("Hidden replies", ReplyState::Hidden),
        ] {
            let replies = store.replies(Some(state))?;
            writeln!(out, "{title}: {}", replies.len())?;
            for r in &replies {
                write_reply(out, r)?;
            }
        }
    }
    if wants(ListKind::Followers) {
        for (title, state) in [
            ("Follow requests", FollowState::Pending),
            ("Followers", FollowState::Accepted),
        ] {
            let followers = store.followers(Some(state))?;
            writeln!(out, "{title}: {}", followers.len())?;
            for f in &followers {
                writeln!(
                    out,
                    "  #{:<5} {} follows {} since {}",
                    f.id,
                    printable(&f.follower_id),
                    f.actor_name,
                    rfc3339(&f.followed_at)
                )?;
            }
        }
    }
    if wants(ListKind::Blocks) {
        let domains = store.blocked_domains()?;
        let actors = store.blocked_actors()?;
        writeln!(
            out,
            "Blocked: {} domains, {} actors",
            domains.len(),
            actors.len()
        )?;
        for (blocked, source) in domains.iter().chain(&actors) {
            let from = match source {
                BlockSource::Config => "config.toml",
                BlockSource::Moderation => "moderate",
            };
            writeln!(out, "  {} (from {from})", printable(blocked))?;
        }
        let theirs = store.remote_blocks()?;
        writeln!(out, "Blocking us: {}", theirs.len())?;
        for (actor, ours) in &theirs {
            writeln!(out, "  {} blocks {ours}", printable(actor))?;
        }
    }
    if wants(ListKind::Flags) {
        let flags = store.flags()?;
        writeln!(out, "Reports: {}", flags.len())?;
        for f in &flags {
            writeln!(
                out,
                "  #{:<5} {} from {}: {}\n         about {}",
                f.id,
                rfc3339(&f.received_at),
                printable(&f.actor_id),
                printable(&plain_text(&f.content)),
                printable(&f.objects.join(", "))
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_prints_no_remote_control_character() {
        let store = Store::open_in_memory().unwrap();
        let mut evil = crate::store::test_actor("https://m.example/users/e\u{1b}]0;pwned\u{7}");
        evil.name = "Eve\u{1b}[2J".into();
        store
            .upsert_follower(&crate::store::NewFollower {
                actor_name: "blog",
                follower: &evil,
                follow_activity_id: "https://m.example/f/1",
                state: FollowState::Accepted,
            })
            .unwrap();
        store
            .block_actor("https://x.example/\u{9b}31m", BlockSource::Moderation)
            .unwrap();
        let mut out = Vec::new();
        list(&store, None, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert!(out.contains("e\\u{1b}]0;pwned\\u{7}"), "{out}");
    }

    /// The text after the last `marker`: a time as relais always showed it,
    /// RFC 3339 in UTC with whole seconds, whatever form the store keeps it in.
    fn shown_time(out: &str, marker: &str) -> chrono::DateTime<chrono::Utc> {
        let (_, rest) = out.rsplit_once(marker).unwrap();
        let shown = &rest[..20];
        assert!(
            shown.ends_with('Z') && shown.as_bytes()[10] == b'T',
            "{shown:?} in {out}"
        );
        chrono::DateTime::parse_from_rfc3339(shown).unwrap().into()
    }

    #[test]
    fn list_shows_times_as_rfc3339_with_whole_seconds() {
        let store = Store::open_in_memory().unwrap();
        let follower = store
            .upsert_follower(&crate::store::NewFollower {
                actor_name: "blog",
                follower: &crate::store::test_actor("https://m.example/users/a"),
                follow_activity_id: "https://m.example/f/1",
                state: FollowState::Accepted,
            })
            .unwrap();
        store
            .add_flag(&crate::store::NewFlag {
                activity_id: Some("https://m.example/flag/1"),
                actor_id: "https://m.example/users/a",
                objects: &[],
                content: "spam",
            })
            .unwrap();
        let mut out = Vec::new();
        list(&store, None, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(shown_time(&out, " since "), follower.followed_at);
        let flag = &store.flags().unwrap()[0];
        assert_eq!(
            shown_time(&out, &format!("#{:<5} ", flag.id)),
            flag.received_at
        );
    }

    #[test]
    fn plain_text_drops_tags_and_decodes_entities() {
        assert_eq!(
            plain_text("<p>Fish &amp; chips</p><p>&lt;3 <a href=\"x\">you</a></p>"),
            "Fish & chips <3 you"
        );
    }
}
