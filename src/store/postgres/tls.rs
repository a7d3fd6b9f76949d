//! TLS to the PostgreSQL server, as libpq's `sslmode` and `sslrootcert` ask for it.
//!
//! The `postgres` crate parses `sslmode` itself but knows only `disable`, `prefer` and
//! `require`, and no `sslrootcert`: both are taken off the URL here and mapped onto its
//! three modes plus a rustls certificate verifier (aws-lc-rs, as for outgoing HTTP):
//!
//! | sslmode       | TLS                        | certificate checked                      |
//! |---------------|----------------------------|------------------------------------------|
//! | `disable`     | never                      | —                                        |
//! | `prefer`      | if the server offers it    | chain only if `sslrootcert` is given     |
//! | `require`     | always                     | chain only if `sslrootcert` is given     |
//! | `verify-ca`   | always                     | chain                                    |
//! | `verify-full` | always                     | chain and host name                      |
//!
//! As in libpq, `require` without `sslrootcert` encrypts without checking who answers:
//! the URLs managed databases hand out say `sslmode=require`, and their CAs (Amazon RDS,
//! Supabase) are not among the Mozilla roots. The chain is checked against `sslrootcert`
//! (a PEM file), or the compiled-in Mozilla roots when it is absent or `system`.
//! Without `sslmode` a loopback server or a Unix socket gets no TLS (it would protect
//! nothing), any other host libpq's default `prefer`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use postgres::config::{Host, SslMode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values this store honours (`allow` is refused: no client offers it
/// without libpq's retry logic, and it never protects anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(value: &str) -> Result<Mode, String> {
        Ok(match value {
            "disable" => Mode::Disable,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other:?} is not supported \
                     (disable, prefer, require, verify-ca or verify-full)"
                ))
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Disable => "disable",
            Mode::Prefer => "prefer",
            Mode::Require => "require",
            Mode::VerifyCa => "verify-ca",
            Mode::VerifyFull => "verify-full",
        }
    }
}

/// Where trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The compiled-in Mozilla roots (`webpki-root-certs`), as for outgoing HTTP.
    Mozilla,
    /// A PEM file of one or more CA certificates.
    File(PathBuf),
}

/// What the URL asked for, before the hosts are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    mode: Option<Mode>,
    roots: Option<Roots>,
}

/// Takes `sslmode` and `sslrootcert` off a PostgreSQL URL's query: returns the URL the
/// `postgres` crate is to parse, and what they asked for.
pub fn split(url: &str) -> Result<(String, Requested), String> {
    let mut requested = Requested {
        mode: None,
        roots: None,
    };
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), requested));
    };
    let mut kept = Vec::new();
    for piece in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = url::form_urlencoded::parse(piece.as_bytes())
            .next()
            .unwrap_or_default();
        match &*key {
            "sslmode" => requested.mode = Some(Mode::parse(&value)?),
            "sslrootcert" if value == "system" => requested.roots = Some(Roots::Mozilla),
            "sslrootcert" if value.is_empty() => {
                return Err("sslrootcert is empty: give a PEM file or `system`".into())
            }
            "sslrootcert" => requested.roots = Some(Roots::File(PathBuf::from(&*value))),
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" => {
                return Err(format!(
                    "{key}: client certificates and CRLs are not supported"
                ))
            }
            _ => kept.push(piece),
        }
    }
    if requested.roots == Some(Roots::Mozilla)
        && requested.mode.is_some_and(|m| m != Mode::VerifyFull)
    {
        // libpq's rule: trusting every public CA only makes sense with the name checked.
        return Err("sslrootcert=system needs sslmode=verify-full (or no sslmode)".into());
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, requested))
}

/// How connections to one database are made: the mode for the `postgres` crate, and the
/// connector whose verifier does what the mode promises.
pub struct Tls {
    pub mode: Mode,
    pub connector: MakeRustlsConnect,
    /// Whether an active attacker could stand in for the server (for a warning).
    pub unverified: bool,
}

impl Tls {
    /// The settings for `requested` against `hosts` (to tell a loopback server).
    pub fn new(requested: &Requested, hosts: &[Host], hostaddrs: &[IpAddr]) -> Result<Tls, String> {
        let mode = match (requested.mode, &requested.roots) {
            (Some(mode), _) => mode,
            (None, Some(Roots::Mozilla)) => Mode::VerifyFull,
            (None, _) if is_loopback(hosts, hostaddrs) => Mode::Disable,
            (None, _) => Mode::Prefer,
        };
        let roots = requested.roots.clone();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
            (Mode::Disable, _) | (Mode::Prefer | Mode::Require, None) => {
                Arc::new(AnyCertificate(provider.clone()))
            }
            (Mode::Prefer | Mode::Require | Mode::VerifyCa, roots) => Arc::new(ChainOnly(webpki(
                roots.unwrap_or(Roots::Mozilla),
                &provider,
            )?)),
            (Mode::VerifyFull, roots) => webpki(roots.unwrap_or(Roots::Mozilla), &provider)?,
        };
        let unverified = matches!(mode, Mode::Prefer | Mode::Require)
            && requested.roots.is_none()
            && !is_loopback(hosts, hostaddrs);
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Tls {
            mode,
            connector: MakeRustlsConnect::new(config),
            unverified,
        })
    }

    /// The `postgres` crate's own mode: TLS always, when the mode asks for any check.
    pub fn ssl_mode(&self) -> SslMode {
        match self.mode {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }

    pub fn mode_name(&self) -> &'static str {
        self.mode.name()
    }
}

/// Whether every host is a Unix socket, `localhost` or a loopback address (or every
/// `hostaddr`, which is what is connected to when given).
fn is_loopback(hosts: &[Host], hostaddrs: &[IpAddr]) -> bool {
    if !hostaddrs.is_empty() {
        return hostaddrs.iter().all(IpAddr::is_loopback);
    }
    !hosts.is_empty()
        && hosts.iter().all(|host| match host {
            Host::Tcp(name) => {
                name.eq_ignore_ascii_case("localhost")
                    || name
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            #[cfg(unix)]
            Host::Unix(_) => true,
        })
}

fn webpki(
    roots: Roots,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    let mut store = RootCertStore::empty();
    match &roots {
        Roots::Mozilla => {
            store.add_parsable_certificates(
                webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned(),
            );
        }
        Roots::File(path) => {
            for cert in read_pem(path)? {
                store
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            }
        }
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map_err(|e| format!("TLS roots: {e}"))
}

fn read_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("sslrootcert {shown}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("sslrootcert {shown}: not a PEM file of certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!("sslrootcert {shown}: no certificate in it"));
    }
    Ok(certs)
}

/// `verify-ca`: the chain must lead to a trusted root, whatever name the certificate is for.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The web PKI verifier checks the chain first and the name last: a name error
        // means the chain was good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer`/`require` without roots (libpq's meaning): encrypted against eavesdroppers, the
/// certificate taken as it comes; the handshake's signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_off_the_url() {
        let (rest, requested) = split(
            "postgresql://u:p@db.example/blog?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(rest, "postgresql://u:p@db.example/blog?connect_timeout=5");
        assert_eq!(requested.mode, Some(Mode::VerifyFull));
        assert_eq!(requested.roots, Some(Roots::File("/etc/ca.pem".into())));

        let (rest, requested) = split("postgresql://db.example/blog?sslmode=require").unwrap();
        assert_eq!(rest, "postgresql://db.example/blog");
        assert_eq!(requested.mode, Some(Mode::Require));
        assert_eq!(requested.roots, None);
    }

    #[test]
    fn unknown_or_contradictory_settings_are_refused() {
        let error = split("postgresql://db.example/blog?sslmode=allow").unwrap_err();
        assert!(error.contains("sslmode=\"allow\""), "{error}");
        let error =
            split("postgresql://db.example/blog?sslmode=require&sslrootcert=system").unwrap_err();
        assert!(error.contains("verify-full"), "{error}");
        let error = split("postgresql://db.example/blog?sslcert=me.pem").unwrap_err();
        assert!(error.contains("client certificates"), "{error}");
    }

    #[test]
    fn without_sslmode_loopback_is_plain_and_remote_prefers_tls() {
        let none = Requested {
            mode: None,
            roots: None,
        };
        let tcp = |h: &str| vec![Host::Tcp(h.into())];
        for host in ["127.0.0.1", "localhost", "::1", "[::1]"] {
            assert_eq!(
                Tls::new(&none, &tcp(host), &[]).unwrap().mode,
                Mode::Disable,
                "{host}"
            );
        }
        let remote = Tls::new(&none, &tcp("db.example"), &[]).unwrap();
        assert_eq!(remote.mode, Mode::Prefer);
        assert!(remote.unverified);
        let system = Requested {
            mode: None,
            roots: Some(Roots::Mozilla),
        };
        let full = Tls::new(&system, &tcp("db.example"), &[]).unwrap();
        assert_eq!(full.mode, Mode::VerifyFull);
        assert_eq!(full.ssl_mode(), SslMode::Require);
        assert!(!full.unverified);
    }

    #[test]
    fn a_missing_or_empty_root_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        for path in [dir.path().join("absent.pem"), empty] {
            let requested = Requested {
                mode: Some(Mode::VerifyFull),
                roots: Some(Roots::File(path.clone())),
            };
            let error = Tls::new(&requested, &[Host::Tcp("db.example".into())], &[])
                .err()
                .unwrap();
            assert!(error.contains(&path.display().to_string()), "{error}");
        }
    }
}

/// Against the TLS-only test cluster: what each mode accepts, refuses, and says.
#[cfg(test)]
mod on_postgres {
    use crate::store::sql::params;
    use crate::store::{testdb, Store, StoreError};

    /// The session's `pg_stat_ssl` row: whether encrypted, and the protocol.
    fn session_tls(store: &Store) -> (i64, String) {
        store
            .with_conn(|c| {
                c.query_row(
                    "SELECT (ssl::int)::bigint, COALESCE(version, '') FROM pg_stat_ssl \
                     WHERE pid = pg_backend_pid()",
                    params![],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .unwrap()
    }

    fn refused(url: &str) -> String {
        match Store::connect(url) {
            Err(error @ StoreError::Connect { .. }) => error.to_string(),
            Err(other) => panic!("{url}: expected a connection error, got {other:?}"),
            Ok(_) => panic!("{url}: connected"),
        }
    }

    #[test]
    fn verify_full_with_the_ca_connects_encrypted() {
        let Some(db) = testdb::tls_database() else {
            return;
        };
        for host in ["127.0.0.1", "localhost"] {
            let url = format!(
                "postgresql://postgres@{host}:{}/{}?sslmode=verify-full&sslrootcert={}",
                db.port,
                db.name,
                db.ca.display()
            );
            let store = Store::connect(&url).unwrap();
            let (ssl, version) = session_tls(&store);
            assert_eq!(ssl, 1, "{host}: not encrypted");
            assert!(version.starts_with("TLSv1."), "{host}: {version:?}");
        }
    }

    #[test]
    fn another_ca_or_another_name_is_refused() {
        let Some(db) = testdb::tls_database() else {
            return;
        };
        let other = format!(
            "postgresql://postgres:s3cret@127.0.0.1:{}/{}?sslmode=verify-full&sslrootcert={}",
            db.port,
            db.name,
            db.other_ca.display()
        );
        let error = refused(&other);
        assert!(error.contains("UnknownIssuer"), "{error}");
        assert!(error.contains("sslmode=verify-full"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
        // `require` with a root file checks the chain, as libpq's does.
        let error = refused(&other.replace("verify-full", "require"));
        assert!(error.contains("UnknownIssuer"), "{error}");

        // The certificate is for localhost and 127.0.0.1, not this name.
        let misnamed = format!(
            "postgresql://postgres@db.relais.test:{}/{}?hostaddr=127.0.0.1&sslrootcert={}",
            db.port,
            db.name,
            db.ca.display()
        );
        let error = refused(&format!("{misnamed}&sslmode=verify-full"));
        assert!(
            error.contains("not valid for name \"db.relais.test\""),
            "{error}"
        );
        // verify-ca checks the chain only.
        let store = Store::connect(&format!("{misnamed}&sslmode=verify-ca")).unwrap();
        assert_eq!(session_tls(&store).0, 1);
    }

    #[test]
    fn require_encrypts_and_disable_is_refused_by_a_tls_only_server() {
        let Some(db) = testdb::tls_database() else {
            return;
        };
        for mode in ["require", "prefer"] {
            let store = Store::connect(&format!("{}?sslmode={mode}", db.url)).unwrap();
            assert_eq!(session_tls(&store).0, 1, "sslmode={mode}: not encrypted");
        }
        // And a server without TLS is not talked to in clear when TLS is required.
        if let Some(plain) = testdb::database_url() {
            let error = refused(&format!("{plain}?sslmode=require"));
            assert!(error.contains("server does not support TLS"), "{error}");
        }
        // No sslmode on loopback: no TLS, as before; this server wants it.
        for url in [format!("{}?sslmode=disable", db.url), db.url.clone()] {
            let error = refused(&url);
            assert!(error.contains("no encryption"), "{error}");
        }
    }
}
