//! `relais serve` as a child process on a loopback port: started, its address read from what
//! it prints, pages fetched with plain HTTP/1.1, killed when the test ends.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `relais serve`; the lines it prints after its address arrive on `lines`, and
/// what it writes to stderr (also passed on to the test's) on `errors`.
pub struct Server {
    child: Child,
    pub lines: mpsc::Receiver<String>,
    pub errors: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `relais serve --port 0 --site <site> <args>` and waits for the address it prints
/// (`127.0.0.1:PORT`).
pub fn serve(site: &Path, args: &[&str], env: &[(&str, &str)]) -> (Server, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relais"));
    command
        .args(["serve", "--port", "0", "--site"])
        .arg(site)
        .args(args)
        .env_remove("BROWSER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = child.stderr.take().unwrap();
    let (errors_tx, errors) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            // A test that does not read them has dropped the receiver: keep passing on.
            let _ = errors_tx.send(line);
        }
    });
    let server = Server {
        child,
        lines,
        errors,
    };
    let address = loop {
        let line = server
            .lines
            .recv_timeout(Duration::from_secs(120))
            .expect("serve printed its address");
        if let Some(rest) = line.split(" at http://").nth(1) {
            break rest
                .trim_end_matches(" (Ctrl-C to stop)")
                .trim_end_matches('/')
                .to_string();
        }
    };
    (server, address)
}

/// Status code and whole response (head and body) of `GET path`.
pub fn get(address: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}
