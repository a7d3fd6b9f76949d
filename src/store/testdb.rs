//! A throwaway PostgreSQL cluster for tests: started on first use, one per test process,
//! on 127.0.0.1 and a free port, in a temporary folder; each test gets a database of its own.
//! A second one, [`tls_database`], speaks only TLS, with a certificate made at start by the
//! `openssl` command from a CA of its own.
//!
//! Shared by the store's unit tests and the integration tests (`tests/common` includes this
//! file). Without PostgreSQL installed, [`database_url`] prints why and returns `None`;
//! with `RELAIS_REQUIRE_POSTGRES=1` (CI) it panics instead. A watcher process stops the
//! server and removes its folder when the test process exits, however it exits.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

struct Cluster {
    port: u16,
    /// Where its Unix socket is: the admin's way in, whatever pg_hba.conf says of TCP.
    dir: PathBuf,
}

impl Cluster {
    fn create_database(&self, name: &str) {
        let admin = format!(
            "host={} port={} user=postgres dbname=postgres",
            self.dir.display(),
            self.port
        );
        let mut admin = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connecting to the test cluster: {e}"));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    }
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static TLS_CLUSTER: OnceLock<Result<(Cluster, TlsFiles), String>> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// A database on the TLS-only cluster, whose certificate is for `localhost` and 127.0.0.1.
pub struct TlsDatabase {
    /// `postgresql://postgres@127.0.0.1:PORT/NAME`, to which tests add `?sslmode=…`.
    pub url: String,
    pub port: u16,
    pub name: String,
    /// The CA that signed the server's certificate (PEM).
    pub ca: PathBuf,
    /// A CA that did not.
    pub other_ca: PathBuf,
}

#[derive(Clone)]
struct TlsFiles {
    ca: PathBuf,
    other_ca: PathBuf,
}

fn skip_or_fail(why: &str) {
    if std::env::var("RELAIS_REQUIRE_POSTGRES").as_deref() == Ok("1") {
        panic!("RELAIS_REQUIRE_POSTGRES=1 but PostgreSQL cannot run: {why}");
    }
    eprintln!("skipping the PostgreSQL variant: {why}");
}

/// A new database on a cluster that refuses connections without TLS (`hostnossl … reject`),
/// or `None` as [`database_url`].
pub fn tls_database() -> Option<TlsDatabase> {
    std::thread::spawn(|| {
        let (cluster, files) = match TLS_CLUSTER.get_or_init(|| start(true)) {
            Ok(started) => started,
            Err(why) => {
                skip_or_fail(why);
                return None;
            }
        };
        let name = format!("relais_tls_{}", DATABASES.fetch_add(1, Ordering::SeqCst));
        cluster.create_database(&name);
        Some(TlsDatabase {
            url: format!("postgresql://postgres@127.0.0.1:{}/{name}", cluster.port),
            port: cluster.port,
            name,
            ca: files.ca.clone(),
            other_ca: files.other_ca.clone(),
        })
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The URL of a new, empty database, or `None` (with a printed message) when PostgreSQL is
/// not installed and `RELAIS_REQUIRE_POSTGRES` is not set.
pub fn database_url() -> Option<String> {
    // The sync client blocks on a runtime of its own: not on a thread of the test's runtime.
    std::thread::spawn(new_database)
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn new_database() -> Option<String> {
    let cluster = match CLUSTER.get_or_init(|| start(false).map(|(cluster, _)| cluster)) {
        Ok(cluster) => cluster,
        Err(why) => {
            skip_or_fail(why);
            return None;
        }
    };
    let n = DATABASES.fetch_add(1, Ordering::SeqCst);
    let name = format!("relais_t_{n}");
    cluster.create_database(&name);
    Some(format!(
        "postgresql://postgres@127.0.0.1:{}/{name}",
        cluster.port
    ))
}

/// The folder holding PostgreSQL's programs: on PATH, else Debian's versioned folder.
fn bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| dir.join("initdb").is_file()));
    if let Some(dir) = on_path {
        // Debian links initdb into /usr/local/bin; the server sits beside the real file.
        let real = std::fs::canonicalize(dir.join("initdb")).ok()?;
        return real.parent().map(Path::to_path_buf);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program args…`, as the `postgres` user when we are root (initdb refuses root).
fn as_server_user(root: bool, program: &Path) -> Command {
    if root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Starts a cluster; with `tls`, one that accepts TLS connections only, and the CAs.
fn start(tls: bool) -> Result<(Cluster, TlsFiles), String> {
    let bin = bin_dir().ok_or("PostgreSQL's initdb was not found (apt-get install postgresql)")?;
    let kind = if tls { "pgtls" } else { "pg" };
    let dir = std::env::temp_dir().join(format!("relais-{kind}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Once the server runs, its watcher removes the folder; before, nothing else would.
    start_in(&bin, tls, dir.clone()).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&dir);
    })
}

fn start_in(bin: &Path, tls: bool, dir: PathBuf) -> Result<(Cluster, TlsFiles), String> {
    let root = is_root();
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
    };
    let mut settings: Vec<String> = Vec::new();
    if tls {
        make_certificates(&dir)?;
        let hba = dir.join("pg_hba.conf");
        std::fs::write(
            &hba,
            "local all all trust\n\
             hostnossl all all all reject\n\
             hostssl all all 127.0.0.1/32 trust\n",
        )
        .map_err(|e| format!("{}: {e}", hba.display()))?;
        for (key, file) in [
            ("ssl_cert_file", "server.pem"),
            ("ssl_key_file", "server.key"),
            ("hba_file", "pg_hba.conf"),
        ] {
            settings.push(format!("{key}={}", dir.join(file).display()));
        }
        settings.push("ssl=on".into());
    }
    if root {
        let owned = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        if !owned.success() {
            return Err("cannot give the cluster's folder to the postgres user".into());
        }
    }
    let data = dir.join("data");
    let initdb = as_server_user(root, &bin.join("initdb"))
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
            "-D",
        ])
        .arg(&data)
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !initdb.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        ));
    }
    let port = free_port()?;
    // The watcher outlives no one: it runs the server, and when this process is gone it
    // stops the server and removes the folder.
    let server = as_server_user(root, &bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
        .args(settings.iter().flat_map(|s| ["-c", s.as_str()]))
        .arg("-k")
        .arg(&dir)
        .get_args()
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    let program = if root {
        "runuser".to_string()
    } else {
        shell_quote(&bin.join("postgres").to_string_lossy())
    };
    let script = format!(
        "{program} {server} >{log} 2>&1 & server=$!\n\
         while kill -0 {parent} 2>/dev/null; do sleep 0.3; done\n\
         kill -INT $server 2>/dev/null; pid=$(head -1 {pidfile} 2>/dev/null)\n\
         [ -n \"$pid\" ] && kill -INT \"$pid\" 2>/dev/null\n\
         for _ in $(seq 50); do [ -e {pidfile} ] || break; sleep 0.1; done\n\
         [ -n \"$RELAIS_KEEP_TEST_POSTGRES\" ] || rm -rf {dir}\n",
        log = shell_quote(&dir.join("log").to_string_lossy()),
        parent = std::process::id(),
        pidfile = shell_quote(&data.join("postmaster.pid").to_string_lossy()),
        dir = shell_quote(&dir.to_string_lossy()),
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start postgres: {e}"))?;
    let url = format!(
        "host={} port={port} user=postgres dbname=postgres",
        dir.display()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match postgres::Client::connect(&url, postgres::NoTls) {
            Ok(_) => return Ok((Cluster { port, dir }, files)),
            Err(e) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                return Err(format!("postgres did not start: {e}\n{log}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A CA, a server certificate it signs for `localhost` and 127.0.0.1 (`server.pem`,
/// `server.key`), and a second CA that signs nothing, all in `dir`.
fn make_certificates(dir: &Path) -> Result<(), String> {
    let cnf = dir.join("openssl.cnf");
    std::fs::write(
        &cnf,
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = relais test\n\
         [ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\n\
         [server]\nbasicConstraints = critical,CA:FALSE\n\
         keyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = serverAuth\n\
         subjectAltName = DNS:localhost,IP:127.0.0.1\nsubjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = keyid\n",
    )
    .map_err(|e| format!("{}: {e}", cnf.display()))?;
    let cnf = cnf.to_string_lossy().into_owned();
    let ca = |name: &str, cn: &str| -> Vec<String> {
        let out = [
            "req",
            "-x509",
            "-config",
            &cnf,
            "-extensions",
            "ca",
            "-days",
            "2",
            "-subj",
            cn,
        ];
        words(&out, &[&format!("{name}.key"), &format!("{name}.pem")])
    };
    let steps: [Vec<String>; 4] = [
        ca("ca", "/CN=relais test CA"),
        ca("other-ca", "/CN=another CA"),
        words(
            &["req", "-new", "-config", &cnf, "-subj", "/CN=localhost"],
            &["server.key", "server.csr"],
        ),
        [
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-days",
            "2",
            "-set_serial",
            "2",
            "-extfile",
            &cnf,
            "-extensions",
            "server",
            "-out",
            "server.pem",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for step in steps {
        let done = Command::new("openssl")
            .args(&step)
            .current_dir(dir)
            .output()
            .map_err(|e| format!("the openssl command is needed for the TLS cluster: {e}"))?;
        if !done.status.success() {
            return Err(format!(
                "openssl {}: {}",
                step.join(" "),
                String::from_utf8_lossy(&done.stderr)
            ));
        }
    }
    // PostgreSQL refuses a key others can read.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .map_err(|e| format!("server.key: {e}"))
}

/// `openssl req` arguments with a new P-256 key written to `files[0]`, output to `files[1]`.
fn words(args: &[&str], files: &[&str; 2]) -> Vec<String> {
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    args.iter()
        .chain(&key)
        .chain(&["-keyout", files[0], "-out", files[1]])
        .map(|w| w.to_string())
        .collect()
}
