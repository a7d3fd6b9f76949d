//! Logging for the long-running commands (`inbox`, `serve`): human lines or JSON on stderr.
//!
//! Log lines carry remote text (actor ids, activity ids, error messages that quote them).
//! Every line goes through [`EscapingWriter`], so a forged line break or a terminal escape
//! sequence from a remote server is shown escaped, never acted on. Colours only on a
//! terminal.

use std::io::{IsTerminal, Write};

use tracing_subscriber::fmt::MakeWriter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logs to stderr, `info` unless `RUST_LOG` says otherwise.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(MakeEscaping { ansi });
    // Fails only when a subscriber is already set, which then does the logging.
    let _ = match format {
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
        // JSON strings escape control characters themselves.
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

struct MakeEscaping {
    ansi: bool,
}

impl<'a> MakeWriter<'a> for MakeEscaping {
    type Writer = EscapingWriter<std::io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter {
            inner: std::io::stderr(),
            keep_escape: self.ansi,
        }
    }
}

/// Writes each formatted event (one `write` call per event, as `tracing_subscriber::fmt`
/// does) with its control characters escaped, except the final line break and, when
/// colouring, ESC: the formatter's own colours use it, and it escapes ESC in the values it
/// prints itself.
pub struct EscapingWriter<W> {
    inner: W,
    keep_escape: bool,
}

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, end) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (text.as_ref(), ""),
        };
        let mut out = String::with_capacity(buf.len());
        for c in body.chars() {
            if c.is_control() && !(self.keep_escape && c == '\u{1b}') {
                out.extend(c.escape_unicode());
            } else {
                out.push(c);
            }
        }
        out.push_str(end);
        self.inner.write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(line: &str, keep_escape: bool) -> String {
        let mut writer = EscapingWriter {
            inner: Vec::new(),
            keep_escape,
        };
        writer.write_all(line.as_bytes()).unwrap();
        String::from_utf8(writer.inner).unwrap()
    }

    #[test]
    fn a_forged_line_break_stays_on_its_line() {
        assert_eq!(
            escaped("INFO refused a\nERROR forged\n", false),
            "INFO refused a\\u{a}ERROR forged\n"
        );
        assert_eq!(
            escaped("bell\u{7}\u{1b}[2J\n", false),
            "bell\\u{7}\\u{1b}[2J\n"
        );
        // With colours on, the formatter's ESC stays (it escapes remote ESC itself).
        assert_eq!(
            escaped("\u{1b}[32mINFO\u{1b}[0m\r\n", true),
            "\u{1b}[32mINFO\u{1b}[0m\\u{d}\n"
        );
    }
}
