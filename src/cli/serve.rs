//! `relais serve`: build, serve on 127.0.0.1 (or `--bind`), rebuild when a source changes
//! and tell the browser through server-sent events: reload after a build, or show the
//! build's error over the page until a build succeeds again.

use std::collections::HashSet;
use std::convert::Infallible;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Response};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures::Stream;
use notify::{RecursiveMode, Watcher};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt as _;
use tower_http::services::{ServeDir, ServeFile};

use super::build::{build_site, BuildOptions, BuildState};
use crate::config::SiteConfig;
use crate::inbox::InboxState;

pub const LIVERELOAD_PATH: &str = "/__relais/livereload";
/// Where `serve` writes: not `public/`, which must never ship the reload script's host.
pub const SERVE_DIR: &str = ".relais/serve";
/// Sources watched for changes, relative to the site directory.
const WATCHED: &[&str] = &["content", "templates", "static", "themes", "config.toml"];
/// Editors save in bursts (temp file, rename, chmod): wait for quiet before rebuilding.
/// A build starts once the sources were quiet this long: an editor's save is several events
/// within a millisecond or two.
const SETTLE: Duration = Duration::from_millis(5);
/// Quiet needed once every Markdown file edited in place has been closed after writing: the
/// save is complete, and only a second write of the same save could still come.
const SETTLE_CLOSED: Duration = Duration::from_millis(1);
/// ... and no file written to is still open, for at most this long.
const DEBOUNCE: Duration = Duration::from_millis(150);
/// HTML pages are buffered to inject the reload script; none is anywhere near this.
const MAX_HTML_BYTES: usize = 64 * 1024 * 1024;
/// Reloads the page after a build; shows a failed build's error over the page (as text:
/// it quotes sources). The next good build reloads the page, which clears it.
const RELOAD_SCRIPT: &str = r#"<script>(function () {
  var live = new EventSource("/__relais/livereload");
  live.onmessage = function () { location.reload(); };
  live.addEventListener("build-error", function (event) {
    var box = document.getElementById("relais-build-error");
    if (!box) {
      box = document.createElement("div");
      box.id = "relais-build-error";
      box.setAttribute("role", "alert");
      box.style.cssText = "position:fixed;inset:0 0 auto 0;max-height:80vh;overflow:auto;z-index:2147483647;margin:0;padding:1rem 1.25rem;background:#2b1113;color:#ffe4e4;border-bottom:4px solid #f87171;font:14px/1.5 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;overflow-wrap:anywhere";
      document.body.appendChild(box);
    }
    box.textContent = "relais: the build failed. Fix it and save; this page reloads once it builds.\n\n" + event.data;
  });
})();</script>"#;
/// The SSE event that carries a failed build's error.
const BUILD_ERROR_EVENT: &str = "build-error";

/// What the rebuild loop tells open pages.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LiveEvent {
    Reload,
    BuildError(String),
}

/// The live-reload channel, and the error of the last build while it stands, for pages
/// opened (or reloaded) after it failed.
#[derive(Clone)]
struct Live {
    events: broadcast::Sender<LiveEvent>,
    error: Arc<Mutex<Option<String>>>,
}

impl Live {
    fn new() -> Live {
        Live {
            events: broadcast::channel(16).0,
            error: Arc::new(Mutex::new(None)),
        }
    }

    fn publish(&self, event: LiveEvent) {
        let standing = match &event {
            LiveEvent::Reload => None,
            LiveEvent::BuildError(message) => Some(message.clone()),
        };
        *self.error.lock().unwrap_or_else(|e| e.into_inner()) = standing;
        // No subscriber (no open page) is not an error.
        let _ = self.events.send(event);
    }
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Site directory (holding config.toml).
    #[arg(long, default_value = ".")]
    pub site: PathBuf,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 1111)]
    pub port: u16,
    /// Address to listen on: 0.0.0.0 (or ::) for every interface, to preview from a phone
    /// on the same network or from outside a container.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,
    /// Open the site in the browser once it is served ($BROWSER, else the system's opener).
    #[arg(long)]
    pub open: bool,
    /// Include posts and pages marked `draft = true`.
    #[arg(long)]
    pub drafts: bool,
    /// Show posts dated in the future (held back until their date otherwise).
    #[arg(long)]
    pub future: bool,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    crate::logging::init(crate::logging::LogFormat::Text);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let bind = SocketAddr::new(args.bind, args.port);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(bind))
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                anyhow::anyhow!(
                    "port {} on {} is already in use (another `relais serve`?): pick another with --port, or --port 0 for any free one",
                    args.port,
                    args.bind
                )
            } else {
                anyhow::Error::new(e).context(format!("cannot listen on {bind}"))
            }
        })?;
    let address = listener.local_addr().context("reading the bound address")?;
    let base_url = format!("http://{}", link_address(address));
    let options = BuildOptions {
        site_dir: args.site.clone(),
        out_dir: args.site.join(SERVE_DIR),
        drafts: args.drafts,
        future: args.future,
        base_url: Some(base_url.clone()),
        progress: false,
        dry_run: false,
        remote_interactions: false,
    };
    // Parsed documents do not depend on base_url: `build` and `serve` share the disk cache.
    let mut state = BuildState::on_disk(&args.site).watching();
    let report = build_site(&options, &mut state)?;
    println!("{}", report.summary());
    println!(
        "Serving {} at {base_url}/ (Ctrl-C to stop)",
        args.site.display()
    );
    if address.ip().is_unspecified() {
        println!(
            "Listening on every interface: from another device, open http://THIS-MACHINE'S-ADDRESS:{}/",
            address.port()
        );
    }
    let inbox = if report.key_source.is_some() {
        let mut config = SiteConfig::load(&args.site)?;
        config.base_url = base_url.clone();
        let inbox = super::inbox::inbox_state(&args.site, config, args.site.join(SERVE_DIR))?;
        println!(
            "Inbox on {base_url}/ap/inbox (store {})",
            crate::store::StoreLocation::of(&args.site, &inbox.config.inbox.store).display()
        );
        Some(inbox)
    } else {
        None
    };
    if args.open {
        open_browser(&format!("{base_url}/"));
    }
    // Tests and scripts read the address from stdout as soon as it is printed.
    let _ = std::io::stdout().flush();

    let live = Live::new();
    let (events_tx, events_rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // notify 7+ reports reads too (inotify open/close): serving a page, or the build
        // reading its sources, changes nothing and must not reach the rebuild loop.
        if event.as_ref().is_ok_and(|e| is_read_only(&e.kind)) {
            return;
        }
        let _ = events_tx.send(event);
    })
    .context("starting the file watcher")?;
    watcher
        .watch(&args.site, RecursiveMode::Recursive)
        .with_context(|| format!("watching {}", args.site.display()))?;
    let rebuild_live = live.clone();
    std::thread::spawn(move || {
        // The first build's index is written now, while the site is served, not when the
        // first edit's build starts (130 ms at 10k posts).
        let mut state = state;
        state.save_pending();
        rebuild_loop(&options, state, &events_rx, &rebuild_live)
    });

    let worker = inbox.as_ref().map(|state| {
        let _entered = runtime.enter();
        super::inbox::DeliveryWorker::spawn(state)
    });
    let app = router(&args.site.join(SERVE_DIR), live, inbox);
    runtime.block_on(async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
        if let Some(worker) = worker {
            worker.stop().await;
        }
        served
    })?;
    drop(watcher);
    Ok(())
}

/// The live-reloading file server, and the inbox's routes when the site federates.
fn router(out_dir: &Path, live: Live, inbox: Option<InboxState>) -> Router {
    let files = ServeDir::new(out_dir).not_found_service(ServeFile::new(out_dir.join("404.html")));
    let base = inbox.map(crate::inbox::routes).unwrap_or_default();
    base.merge(
        Router::new()
            .route(LIVERELOAD_PATH, get(livereload))
            .with_state(live),
    )
    .fallback_service(files)
    .layer(axum::middleware::map_response(inject_reload_script))
}

async fn livereload(
    State(live): State<Live>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribe before reading the standing error, so no change falls between the two.
    let updates = BroadcastStream::new(live.events.subscribe()).filter_map(|m| m.ok());
    let standing = live
        .error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .map(LiveEvent::BuildError);
    let stream = tokio_stream::iter(standing)
        .chain(updates)
        .map(|event| Ok(sse_event(&event)));
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn sse_event(event: &LiveEvent) -> Event {
    match event {
        LiveEvent::Reload => Event::default().data("reload"),
        LiveEvent::BuildError(message) => Event::default().event(BUILD_ERROR_EVENT).data(message),
    }
}

/// The address pages link to: the bound one, or loopback when bound to every interface
/// (`0.0.0.0` is no address a browser can open).
fn link_address(bound: SocketAddr) -> SocketAddr {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bound.port())
}

/// Opens `url` with `$BROWSER` (a `:`-separated list of commands, `%s` standing for the
/// URL, as Python's `webbrowser` reads it) or the system's opener; says so and goes on
/// when there is none, since serving works without it.
fn open_browser(url: &str) {
    let mut commands: Vec<Vec<String>> = std::env::var("BROWSER")
        .unwrap_or_default()
        .split(':')
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            let mut words: Vec<String> =
                c.split_whitespace().map(|w| w.replace("%s", url)).collect();
            if !c.contains("%s") {
                words.push(url.to_string());
            }
            words
        })
        .collect();
    let system: &[&str] = if cfg!(target_os = "macos") {
        &["open"]
    } else if cfg!(windows) {
        &["cmd", "/C", "start", ""]
    } else {
        &["xdg-open"]
    };
    commands.push(
        system
            .iter()
            .map(|s| s.to_string())
            .chain([url.to_string()])
            .collect(),
    );
    for command in &commands {
        let Some((program, rest)) = command.split_first() else {
            continue;
        };
        let spawned = std::process::Command::new(program)
            .args(rest)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if let Ok(mut child) = spawned {
            // Reap the opener when it exits; it outlives nothing of ours.
            std::thread::spawn(move || child.wait());
            println!("Opened {url} in the browser ({program})");
            return;
        }
    }
    println!(
        "--open: no browser opener found (set BROWSER, or install xdg-open); open {url} yourself"
    );
}

/// Adds the reload script to HTML pages and keeps browsers from caching anything.
async fn inject_reload_script(response: Response<Body>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    parts
        .headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let is_html = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if !is_html {
        return Response::from_parts(parts, body);
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_HTML_BYTES).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let html = String::from_utf8_lossy(&bytes);
    let injected = match html.rfind("</body>") {
        Some(at) => format!("{}{RELOAD_SCRIPT}{}", &html[..at], &html[at..]),
        None => format!("{html}{RELOAD_SCRIPT}"),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(injected))
}

fn is_watched(site_dir: &Path, path: &Path) -> bool {
    // Paths from the watcher may be absolute while `site_dir` is relative.
    let site = site_dir
        .canonicalize()
        .unwrap_or_else(|_| site_dir.to_path_buf());
    let rel = path
        .strip_prefix(&site)
        .or_else(|_| path.strip_prefix(site_dir))
        .unwrap_or(path);
    WATCHED.iter().any(|w| rel.starts_with(w))
}

/// Events that change nothing: opening, reading, closing without writing, access times.
fn is_read_only(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, MetadataKind, ModifyKind};
    use notify::EventKind;
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => false,
        EventKind::Access(_) => true,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => true,
        _ => false,
    }
}

/// What the watcher reported between two builds.
struct Changes {
    /// Markdown files of `content/` modified in place (relative to the site folder), while
    /// that is all that happened; `None` once anything else did.
    modified: Option<HashSet<PathBuf>>,
    /// Files written to and not closed yet.
    writing: HashSet<PathBuf>,
    /// The last event closed a file written to.
    last_closed: bool,
}

impl Changes {
    fn new() -> Changes {
        Changes {
            modified: Some(HashSet::new()),
            writing: HashSet::new(),
            last_closed: false,
        }
    }

    /// How long the sources must stay quiet before building: shorter once the save is
    /// complete (in-place edits of Markdown files, each closed after writing), as editors
    /// that write in place do; a rename, a new or a deleted file waits the full SETTLE.
    fn settle(&self) -> Duration {
        let saved = self.last_closed
            && self.writing.is_empty()
            && self.modified.as_ref().is_some_and(|m| !m.is_empty());
        if saved {
            SETTLE_CLOSED
        } else {
            SETTLE
        }
    }

    fn add(&mut self, site_dir: &Path, event: &notify::Result<notify::Event>) {
        use notify::event::{AccessKind, AccessMode, ModifyKind};
        use notify::EventKind;
        let Ok(event) = event else {
            self.modified = None;
            self.last_closed = false;
            return;
        };
        let in_place = matches!(
            event.kind,
            EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any | ModifyKind::Metadata(_))
                | EventKind::Access(AccessKind::Close(AccessMode::Write))
        );
        let closed = matches!(
            event.kind,
            EventKind::Access(AccessKind::Close(AccessMode::Write))
        );
        self.last_closed = closed;
        for path in &event.paths {
            if matches!(event.kind, EventKind::Modify(ModifyKind::Data(_))) {
                self.writing.insert(path.clone());
            } else if closed {
                self.writing.remove(path);
            }
            let source = relative(site_dir, path).filter(|rel| {
                rel.starts_with("content") && rel.extension().is_some_and(|e| e == "md")
            });
            match (source, self.modified.as_mut()) {
                (Some(rel), Some(modified)) if in_place && !event.need_rescan() => {
                    modified.insert(rel);
                }
                _ => self.modified = None,
            }
        }
    }
}

/// A watched path relative to the site folder (the watcher's paths are absolute).
fn relative(site_dir: &Path, path: &Path) -> Option<PathBuf> {
    let site = site_dir
        .canonicalize()
        .unwrap_or_else(|_| site_dir.to_path_buf());
    path.strip_prefix(&site)
        .or_else(|_| path.strip_prefix(site_dir))
        .ok()
        .map(Path::to_path_buf)
}

fn rebuild_loop(
    options: &BuildOptions,
    mut state: BuildState,
    events: &mpsc::Receiver<notify::Result<notify::Event>>,
    live: &Live,
) {
    let relevant = |event: &notify::Result<notify::Event>| match event {
        Ok(event) => event.paths.iter().any(|p| is_watched(&options.site_dir, p)),
        Err(_) => true,
    };
    while let Ok(event) = events.recv() {
        if !relevant(&event) {
            continue;
        }
        // Build once the sources have been quiet for SETTLE and no written file is still
        // open (up to DEBOUNCE). Events outside the sources (the build's own output) do
        // not count. In-place edits of known sources let the build skip listing and
        // stat'ing the others.
        let first = Instant::now();
        let mut changes = Changes::new();
        changes.add(&options.site_dir, &event);
        let mut quiet_since = Instant::now();
        loop {
            let settle = changes.settle().saturating_sub(quiet_since.elapsed());
            let left = if changes.writing.is_empty() {
                settle
            } else {
                DEBOUNCE.saturating_sub(first.elapsed()).max(settle)
            };
            if left.is_zero() {
                break;
            }
            match events.recv_timeout(left) {
                Ok(event) if relevant(&event) => {
                    changes.add(&options.site_dir, &event);
                    quiet_since = Instant::now();
                }
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        if let Some(modified) = changes.modified {
            state.only_modified(modified);
        }
        match build_site(options, &mut state) {
            Ok(report) => {
                live.publish(LiveEvent::Reload);
                println!("{} [{} parsed]", report.summary(), report.parsed);
                let _ = std::io::stdout().flush();
                // The index is written once the page is on its way.
                state.save_pending();
            }
            Err(err) => {
                super::report(&err);
                live.publish(LiveEvent::BuildError(super::error_message(&err)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, ModifyKind, RenameMode};
    use notify::{Event, EventKind};

    fn event(kind: EventKind, path: &Path) -> notify::Result<Event> {
        Ok(Event::new(kind).add_path(path.to_path_buf()))
    }

    const WRITE: EventKind = EventKind::Modify(ModifyKind::Data(DataChange::Any));
    const CLOSE: EventKind = EventKind::Access(AccessKind::Close(AccessMode::Write));

    #[test]
    fn an_in_place_save_builds_once_the_file_is_closed() {
        let site = Path::new("/site");
        let post = site.join("content/posts/a.md");
        let mut changes = Changes::new();
        changes.add(site, &event(WRITE, &post));
        assert_eq!(changes.settle(), SETTLE, "still open for writing");
        changes.add(site, &event(CLOSE, &post));
        assert_eq!(changes.settle(), SETTLE_CLOSED);
        assert!(changes.modified.as_ref().is_some_and(|m| m.len() == 1));
    }

    #[test]
    fn renames_new_files_and_other_files_wait_the_full_settling_time() {
        let site = Path::new("/site");
        let post = site.join("content/posts/a.md");
        // An editor writing a temporary file and renaming it over the post.
        let mut changes = Changes::new();
        let temp = site.join("content/posts/.a.md.swp");
        changes.add(site, &event(EventKind::Create(CreateKind::File), &temp));
        changes.add(site, &event(WRITE, &temp));
        changes.add(site, &event(CLOSE, &temp));
        assert_eq!(changes.settle(), SETTLE, "the rename may follow");
        changes.add(
            site,
            &event(EventKind::Modify(ModifyKind::Name(RenameMode::To)), &post),
        );
        assert_eq!(changes.settle(), SETTLE);
        // A template closed after writing: not an in-place edit of a post.
        let mut changes = Changes::new();
        let template = site.join("templates/page.html");
        changes.add(site, &event(WRITE, &template));
        changes.add(site, &event(CLOSE, &template));
        assert_eq!(changes.settle(), SETTLE);
        // A watcher error: anything may have changed.
        let mut changes = Changes::new();
        changes.add(site, &event(WRITE, &post));
        changes.add(site, &event(CLOSE, &post));
        changes.add(site, &Err(notify::Error::generic("queue overflow")));
        assert_eq!(changes.settle(), SETTLE);
    }
}
