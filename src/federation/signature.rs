//! HTTP Signatures (draft-cavage-http-signatures-12) the way Mastodon signs and checks them.
//!
//! Mastodon's rules (`app/lib/signed_request.rb`, `app/lib/http_signature_draft.rb`) are
//! followed so that what Mastodon accepts from us and what we accept from it agree:
//! RSASSA-PKCS1-v1_5 with SHA-256 under the names `rsa-sha256` and `hs2019`, a SHA-256
//! `Digest` for bodies, and its time window. One deliberate difference: `(request-target)` and
//! `host` must always be covered, which every known server does, so a signature cannot be
//! replayed against another path or server.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, DATE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use sha2::{Digest, Sha256};
use url::Url;

use super::keys::{self, KeyError, PrivateKey, PublicKey};

/// The longest a signature may stay valid after its creation, whatever `expires` says.
pub const EXPIRATION_WINDOW_LIMIT: Duration = Duration::from_secs(12 * 60 * 60);
/// Tolerated clock difference with the signer, in both directions.
pub const CLOCK_SKEW_MARGIN: Duration = Duration::from_secs(60 * 60);
/// Validity of a signature without `expires`, counted from its `Date` or `created`.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(5 * 60);

pub const REQUEST_TARGET: &str = "(request-target)";
const CREATED: &str = "(created)";
const EXPIRES: &str = "(expires)";
const DIGEST: HeaderName = HeaderName::from_static("digest");
const SIGNATURE: HeaderName = HeaderName::from_static("signature");
const SIGNATURE_INPUT: HeaderName = HeaderName::from_static("signature-input");

#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("the request is not signed (no Signature header, no Authorization: Signature)")]
    Unsigned,
    #[error("RFC 9421 HTTP Message Signatures are not supported, only draft-cavage signatures")]
    MessageSignatures,
    #[error("malformed signature: {0}")]
    Malformed(String),
    #[error("signature parameter `{0}` is missing or empty")]
    MissingParameter(&'static str),
    #[error("unsupported signature algorithm {0:?} (only rsa-sha256 and hs2019 are supported)")]
    UnsupportedAlgorithm(String),
    #[error("the signature must cover {0}")]
    NotCovered(&'static str),
    #[error("pseudo-header {name}: {reason}")]
    PseudoHeader { name: String, reason: &'static str },
    #[error("signed header `{0}` is absent from the request")]
    MissingHeader(String),
    #[error("header `{0}` is not visible ASCII")]
    InvalidHeader(String),
    #[error("Date header {0:?} is not an HTTP date")]
    InvalidDate(String),
    #[error("signed request date is more than {} s in the future", CLOCK_SKEW_MARGIN.as_secs())]
    NotYetValid,
    #[error("signed request is outside the acceptable time window (expired)")]
    Expired,
    #[error("the Digest header is signed but missing")]
    DigestMissing,
    #[error("only SHA-256 is supported in the Digest header; offered: {0}")]
    DigestAlgorithm(String),
    #[error("Digest value {0:?} is not a base64 SHA-256 digest")]
    DigestInvalid(String),
    #[error("Digest does not match the body: computed SHA-256={computed}, given {given}")]
    DigestMismatch { computed: String, given: String },
    #[error("the signature does not match the request for this key")]
    Mismatch,
    #[error("cannot sign: {0}")]
    Key(#[from] KeyError),
    #[error("cannot sign: {0}")]
    Sign(String),
}

impl SignatureError {
    /// The answer an inbox gives: 400 when the request cannot even be read, 401 when it is
    /// readable but does not authenticate (as Mastodon answers every signature failure).
    pub fn status(&self) -> StatusCode {
        use SignatureError::*;
        match self {
            Malformed(_) | MissingParameter(_) | InvalidHeader(_) | InvalidDate(_)
            | DigestInvalid(_) => StatusCode::BAD_REQUEST,
            Key(_) | Sign(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// Our private key together with the `keyId` that names it (`<actor>#main-key`).
#[derive(Debug, Clone)]
pub struct SigningKey {
    pub key_id: String,
    pub key: Arc<PrivateKey>,
}

impl SigningKey {
    pub fn new(key_id: impl Into<String>, key: Arc<PrivateKey>) -> SigningKey {
        SigningKey {
            key_id: key_id.into(),
            key,
        }
    }
}

/// Signs an outgoing request as Mastodon does: sets `Host`, `Date` (from `now`) and, with a
/// body, `Digest`, then adds `Signature` over `(request-target) host date` plus
/// `digest content-type` for a body (`content-type` only when the caller has set it).
pub fn sign_request(
    key: &SigningKey,
    method: &Method,
    url: &Url,
    headers: &mut HeaderMap,
    body: Option<&[u8]>,
    now: SystemTime,
) -> Result<(), SignatureError> {
    let digest = body.map(digest_header);
    sign_request_digested(key, method, url, headers, digest.as_deref(), now)
}

/// A request body with its `Digest` header value, computed once for every inbox the same
/// activity goes to. Cloning shares the bytes.
#[derive(Debug, Clone)]
pub struct DigestedBody {
    bytes: Bytes,
    digest: Arc<str>,
}

impl DigestedBody {
    pub fn new(bytes: Bytes) -> DigestedBody {
        let digest = digest_header(&bytes).into();
        DigestedBody { bytes, digest }
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// `SHA-256=<base64>`.
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

/// [`sign_request`] for a body whose `Digest` value (`digest`) is already known.
pub fn sign_request_digested(
    key: &SigningKey,
    method: &Method,
    url: &Url,
    headers: &mut HeaderMap,
    digest: Option<&str>,
    now: SystemTime,
) -> Result<(), SignatureError> {
    let host = host_header(url)?;
    headers.insert(HOST, header_value(&host)?);
    headers.insert(DATE, header_value(&httpdate::fmt_http_date(now))?);
    let mut covered = vec![REQUEST_TARGET, "host", "date"];
    if let Some(digest) = digest {
        headers.insert(DIGEST, header_value(digest)?);
        covered.push("digest");
        if headers.contains_key(CONTENT_TYPE) {
            covered.push("content-type");
        }
    }
    sign_headers(key, method, url, headers, &covered)
}

/// Adds a `Signature` header (`algorithm="rsa-sha256"`) covering exactly `covered`, in that
/// order, from the headers already present. Only `(request-target)` is supported as a
/// pseudo-header.
pub fn sign_headers(
    key: &SigningKey,
    method: &Method,
    url: &Url,
    headers: &mut HeaderMap,
    covered: &[&str],
) -> Result<(), SignatureError> {
    let target = request_target(method, &url_path_and_query(url));
    let mut lines = Vec::with_capacity(covered.len());
    for name in covered {
        let name = name.to_ascii_lowercase();
        if name == REQUEST_TARGET {
            lines.push(format!("{REQUEST_TARGET}: {target}"));
        } else if name.starts_with('(') {
            return Err(SignatureError::Sign(format!(
                "cannot sign pseudo-header {name}"
            )));
        } else {
            let value = header_text(headers, &name)?
                .ok_or_else(|| SignatureError::Sign(format!("header `{name}` is not set")))?;
            lines.push(format!("{name}: {value}"));
        }
    }
    let signature = key.key.sign_sha256(lines.join("\n").as_bytes())?;
    let value = format!(
        "keyId=\"{}\",algorithm=\"rsa-sha256\",headers=\"{}\",signature=\"{}\"",
        quote_escape(&key.key_id),
        covered.join(" ").to_ascii_lowercase(),
        BASE64.encode(signature)
    );
    headers.insert(SIGNATURE, header_value(&value)?);
    Ok(())
}

/// `Digest` header value of a body: `SHA-256=<base64>`.
pub fn digest_header(body: &[u8]) -> String {
    format!("SHA-256={}", BASE64.encode(Sha256::digest(body)))
}

/// `Host` for a URL: the host, with the port when it is not the scheme's default.
fn host_header(url: &Url) -> Result<String, SignatureError> {
    let host = url
        .host_str()
        .ok_or_else(|| SignatureError::Sign(format!("{url} has no host")))?;
    Ok(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

fn url_path_and_query(url: &Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    }
}

fn request_target(method: &Method, path_and_query: &str) -> String {
    format!("{} {path_and_query}", method.as_str().to_ascii_lowercase())
}

fn header_value(text: &str) -> Result<HeaderValue, SignatureError> {
    HeaderValue::from_str(text)
        .map_err(|_| SignatureError::Sign(format!("{text:?} is not a valid header value")))
}

fn quote_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// All values of a header, trimmed and joined by `, ` as the draft specifies.
pub(crate) fn header_text(
    headers: &HeaderMap,
    name: &str,
) -> Result<Option<String>, SignatureError> {
    let mut values = headers.get_all(name).iter().peekable();
    if values.peek().is_none() {
        return Ok(None);
    }
    let texts = values
        .map(|v| {
            v.to_str()
                .map(str::trim)
                .map_err(|_| SignatureError::InvalidHeader(name.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(texts.join(", ")))
}

/// The parameters of a `Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureParams {
    pub key_id: String,
    /// As sent; absent means `hs2019`, as Mastodon reads it.
    pub algorithm: Option<String>,
    /// Covered headers, lowercased. When the parameter is absent: `(created)` for `hs2019`,
    /// `date` otherwise (Mastodon's reading, which also fits the draft's examples).
    pub headers: Vec<String>,
    pub signature: Vec<u8>,
    /// `created`, in Unix seconds.
    pub created: Option<u64>,
    /// `expires`, in Unix seconds (a fractional part is dropped).
    pub expires: Option<u64>,
    /// The parameters as sent, for the `(created)` and `(expires)` lines.
    created_text: Option<String>,
    expires_text: Option<String>,
}

impl SignatureParams {
    /// Reads the `Signature` header or, failing that, `Authorization: Signature ...`.
    pub fn from_headers(headers: &HeaderMap) -> Result<SignatureParams, SignatureError> {
        if headers.contains_key(SIGNATURE_INPUT) {
            return Err(SignatureError::MessageSignatures);
        }
        if let Some(value) = headers.get(SIGNATURE) {
            return SignatureParams::parse(visible_ascii(value)?);
        }
        if let Some(value) = headers.get(AUTHORIZATION) {
            let value = visible_ascii(value)?.trim_start();
            if let Some((scheme, rest)) = value.split_once(' ') {
                if scheme.eq_ignore_ascii_case("Signature") {
                    return SignatureParams::parse(rest);
                }
            }
        }
        Err(SignatureError::Unsigned)
    }

    /// Parses `keyId="...",algorithm="...",headers="...",signature="..."`.
    ///
    /// The grammar is Mastodon's (`SignatureParser`): comma-separated `token=token` or
    /// `token="quoted string"` with optional whitespace, and an optional `Signature ` prefix
    /// that old node-http-signature versions add. Unknown parameters are ignored.
    pub fn parse(text: &str) -> Result<SignatureParams, SignatureError> {
        let text = text.trim();
        let text = text.strip_prefix("Signature ").unwrap_or(text);
        let mut key_id = None;
        let mut algorithm = None;
        let mut headers = None;
        let mut signature = None;
        let mut created_text = None;
        let mut expires_text = None;
        for (name, value) in parse_params(text)? {
            let slot = match name {
                "keyId" => &mut key_id,
                "algorithm" => &mut algorithm,
                "headers" => &mut headers,
                "signature" => &mut signature,
                "created" => &mut created_text,
                "expires" => &mut expires_text,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(SignatureError::Malformed(format!(
                    "parameter `{name}` is given twice"
                )));
            }
        }
        let key_id = key_id
            .filter(|k| !k.is_empty())
            .ok_or(SignatureError::MissingParameter("keyId"))?;
        let signature = signature
            .filter(|s| !s.is_empty())
            .ok_or(SignatureError::MissingParameter("signature"))?;
        // The draft prints signatures wrapped over several lines.
        let signature: String = signature
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let signature = BASE64
            .decode(signature)
            .map_err(|_| SignatureError::Malformed("`signature` is not base64".into()))?;
        let headers = match headers {
            Some(list) => list
                .split_ascii_whitespace()
                .map(str::to_ascii_lowercase)
                .collect(),
            None if algorithm.as_deref().unwrap_or("hs2019") == "hs2019" => vec![CREATED.into()],
            None => vec!["date".into()],
        };
        Ok(SignatureParams {
            key_id,
            created: created_text
                .as_deref()
                .map(|t| unix_seconds("created", t))
                .transpose()?,
            expires: expires_text
                .as_deref()
                .map(|t| unix_seconds("expires", t))
                .transpose()?,
            algorithm,
            headers,
            signature,
            created_text,
            expires_text,
        })
    }

    /// The algorithm name in effect (`hs2019` when none is given).
    pub fn algorithm(&self) -> &str {
        self.algorithm.as_deref().unwrap_or("hs2019")
    }

    fn covers(&self, name: &str) -> bool {
        self.headers.iter().any(|h| h == name)
    }
}

fn visible_ascii(value: &HeaderValue) -> Result<&str, SignatureError> {
    value
        .to_str()
        .map_err(|_| SignatureError::Malformed("header is not visible ASCII".into()))
}

fn unix_seconds(name: &str, text: &str) -> Result<u64, SignatureError> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return Err(SignatureError::Malformed(format!(
            "`{name}` {text:?} is not a Unix time"
        )));
    }
    whole
        .parse()
        .map_err(|_| SignatureError::Malformed(format!("`{name}` {text:?} is out of range")))
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+.^_`|~-".contains(c)
}

fn parse_params(mut rest: &str) -> Result<Vec<(&str, String)>, SignatureError> {
    let malformed = |what: String| SignatureError::Malformed(what);
    let mut params = Vec::new();
    loop {
        let name_len = rest.find(|c| !is_token_char(c)).unwrap_or(rest.len());
        if name_len == 0 {
            return Err(malformed(format!(
                "expected a parameter name at {:?}",
                preview(rest)
            )));
        }
        let (name, after) = rest.split_at(name_len);
        rest = after
            .trim_start()
            .strip_prefix('=')
            .ok_or_else(|| malformed(format!("expected `=` after `{name}`")))?
            .trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut text = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, escaped)) => text.push(escaped),
                        None => break,
                    },
                    c => text.push(c),
                }
            }
            let end = end.ok_or_else(|| malformed(format!("unterminated value of `{name}`")))?;
            value = text;
            rest = &quoted[end..];
        } else {
            let len = rest.find(|c| !is_token_char(c)).unwrap_or(rest.len());
            if len == 0 {
                return Err(malformed(format!("`{name}` has no value")));
            }
            value = rest[..len].to_string();
            rest = &rest[len..];
        }
        params.push((name, value));
        rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(params);
        }
        rest = rest
            .strip_prefix(',')
            .ok_or_else(|| malformed(format!("expected `,` after the value of `{name}`")))?
            .trim_start();
    }
}

fn preview(text: &str) -> String {
    text.chars().take(20).collect()
}

/// An incoming request, as much of it as a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct IncomingRequest<'a> {
    pub method: &'a Method,
    /// Path and query exactly as received (`/ap/inbox?x=1`), not decoded.
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
    /// The site's public host (`SiteConfig::host()`), used for the `host` line instead of
    /// the `Host` header: the static host proxies the inbox, so the header may differ.
    pub public_host: &'a str,
    /// The body, for the `Digest` check; `None` when the request has none.
    pub body: Option<&'a [u8]>,
}

/// Everything but the cryptography, in Mastodon's order: algorithm, time window, coverage,
/// `Digest`. Cheap, so an inbox runs it before fetching anyone's key.
pub fn check_request(
    params: &SignatureParams,
    request: &IncomingRequest<'_>,
    now: SystemTime,
) -> Result<(), SignatureError> {
    if !matches!(params.algorithm(), "rsa-sha256" | "hs2019") {
        return Err(SignatureError::UnsupportedAlgorithm(
            params.algorithm().to_string(),
        ));
    }
    check_time_window(params, request.headers, now)?;
    if !params.covers("date") && !params.covers(CREATED) {
        return Err(SignatureError::NotCovered("date or (created)"));
    }
    if !params.covers(REQUEST_TARGET) {
        return Err(SignatureError::NotCovered(REQUEST_TARGET));
    }
    if !params.covers("host") {
        return Err(SignatureError::NotCovered("host"));
    }
    if *request.method == Method::POST && !params.covers("digest") {
        return Err(SignatureError::NotCovered("digest (required for POST)"));
    }
    if params.covers("digest") {
        check_digest(request.headers, request.body.unwrap_or_default())?;
    }
    Ok(())
}

/// Verifies an incoming request: [`check_request`], then the signature against `key`.
///
/// Like Mastodon, a `(request-target)` without the query string is also accepted (older
/// Mastodon versions signed that way), and so is a `host` without the port when the public
/// host has one (Mastodon signs `Host` without the port).
pub fn verify_request(
    params: &SignatureParams,
    request: &IncomingRequest<'_>,
    key: &PublicKey,
    now: SystemTime,
) -> Result<(), SignatureError> {
    check_request(params, request, now)?;
    verify_signature(params, request, key)
}

fn verify_signature(
    params: &SignatureParams,
    request: &IncomingRequest<'_>,
    key: &PublicKey,
) -> Result<(), SignatureError> {
    let mut targets = vec![request.path_and_query];
    if let Some((path, _query)) = request.path_and_query.split_once('?') {
        targets.push(path);
    }
    let mut hosts = vec![request.public_host];
    if let Some(host) = host_without_port(request.public_host) {
        hosts.push(host);
    }
    for target in &targets {
        for host in &hosts {
            let text = signing_string(params, request, target, host)?;
            if keys::verify_sha256(key, text.as_bytes(), &params.signature) {
                return Ok(());
            }
        }
    }
    Err(SignatureError::Mismatch)
}

fn host_without_port(host: &str) -> Option<&str> {
    let (name, port) = host.rsplit_once(':')?;
    let is_port = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    let name_is_whole = !name.contains(':') || name.ends_with(']');
    (is_port && name_is_whole).then_some(name)
}

/// The text the signer signed, rebuilt from the request.
fn signing_string(
    params: &SignatureParams,
    request: &IncomingRequest<'_>,
    path_and_query: &str,
    host: &str,
) -> Result<String, SignatureError> {
    let mut lines = Vec::with_capacity(params.headers.len());
    for name in &params.headers {
        let line = match name.as_str() {
            REQUEST_TARGET => format!(
                "{REQUEST_TARGET}: {}",
                request_target(request.method, path_and_query)
            ),
            CREATED => format!("{CREATED}: {}", pseudo_value(params, CREATED)?),
            EXPIRES => format!("{EXPIRES}: {}", pseudo_value(params, EXPIRES)?),
            "host" => format!("host: {host}"),
            other => {
                let value = header_text(request.headers, other)?
                    .ok_or_else(|| SignatureError::MissingHeader(other.to_string()))?;
                format!("{other}: {value}")
            }
        };
        lines.push(line);
    }
    Ok(lines.join("\n"))
}

fn pseudo_value<'p>(params: &'p SignatureParams, name: &str) -> Result<&'p str, SignatureError> {
    let error = |reason| SignatureError::PseudoHeader {
        name: name.to_string(),
        reason,
    };
    if params.algorithm() != "hs2019" {
        return Err(error("only valid with algorithm hs2019"));
    }
    let value = if name == CREATED {
        &params.created_text
    } else {
        &params.expires_text
    };
    value
        .as_deref()
        .ok_or_else(|| error("covered but the parameter is missing"))
}

/// Mastodon's `matches_time_window?`: the signature is created at `created` (hs2019 only)
/// or `Date`, expires at `expires` or 5 minutes later, never more than 12 hours later, and
/// both bounds get an hour of clock skew.
fn check_time_window(
    params: &SignatureParams,
    headers: &HeaderMap,
    now: SystemTime,
) -> Result<(), SignatureError> {
    let at = |seconds: u64, name: &str| {
        UNIX_EPOCH
            .checked_add(Duration::from_secs(seconds))
            .ok_or_else(|| SignatureError::Malformed(format!("`{name}` is out of range")))
    };
    // `created` and `expires` count only when signed: unsigned, anyone replaying an old
    // request could freshen them.
    let created = match (params.algorithm(), params.created) {
        ("hs2019", Some(created)) if params.covers(CREATED) => Some(at(created, "created")?),
        _ => match header_text(headers, "date")? {
            Some(date) => Some(
                httpdate::parse_http_date(&date).map_err(|_| SignatureError::InvalidDate(date))?,
            ),
            None => None,
        },
    };
    let expires = params
        .expires
        .filter(|_| params.covers(EXPIRES))
        .map(|seconds| at(seconds, "expires"))
        .transpose()?;
    check_window(created, expires, now)
}

/// The window itself, shared with RFC 9421 signatures: valid from `created` (an hour of skew
/// early) until `expires` or 5 minutes after `created`, never past 12 hours, plus an hour.
pub(crate) fn check_window(
    created: Option<SystemTime>,
    mut expires: Option<SystemTime>,
    now: SystemTime,
) -> Result<(), SignatureError> {
    if let Some(created) = created {
        let limit = later(created, EXPIRATION_WINDOW_LIMIT)?;
        let default = later(created, DEFAULT_VALIDITY)?;
        expires = Some(expires.unwrap_or(default).min(limit));
        if created > later(now, CLOCK_SKEW_MARGIN)? {
            return Err(SignatureError::NotYetValid);
        }
    }
    if let Some(expires) = expires {
        if now > later(expires, CLOCK_SKEW_MARGIN)? {
            return Err(SignatureError::Expired);
        }
    }
    Ok(())
}

fn later(time: SystemTime, by: Duration) -> Result<SystemTime, SignatureError> {
    time.checked_add(by)
        .ok_or_else(|| SignatureError::Malformed("signature time is out of range".into()))
}

/// Mastodon's `verify_body_digest!`, reading the comma-separated list leniently.
fn check_digest(headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
    let value = header_text(headers, "digest")?.ok_or(SignatureError::DigestMissing)?;
    let mut offered = Vec::new();
    let mut sha256 = None;
    for part in value.split(',') {
        let (algorithm, digest) = part.split_once('=').unwrap_or((part, ""));
        let algorithm = algorithm.trim().to_ascii_lowercase();
        if algorithm == "sha-256" {
            sha256 = Some(digest.trim());
            break;
        }
        offered.push(algorithm);
    }
    let given = sha256.ok_or_else(|| SignatureError::DigestAlgorithm(offered.join(", ")))?;
    let decoded = BASE64
        .decode(given)
        .ok()
        .filter(|d| d.len() == 32)
        .ok_or_else(|| SignatureError::DigestInvalid(given.to_string()))?;
    let computed = Sha256::digest(body);
    if decoded != computed.as_slice() {
        return Err(SignatureError::DigestMismatch {
            computed: BASE64.encode(computed),
            given: given.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::keys::parse_public_key_pem;
    use crate::federation::keys::test_keys::{
        CAVAGE_PUBLIC_PEM, OTHER_PRIVATE_PEM, TEST_PRIVATE_PEM,
    };

    // draft-cavage-http-signatures-12, Appendix C: the request and the published signatures.
    const BODY: &[u8] = br#"{"hello": "world"}"#;
    const DATE_TEXT: &str = "Sun, 05 Jan 2014 21:31:40 GMT";
    const DIGEST_TEXT: &str = "SHA-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=";
    const C1_DEFAULT: &str = "keyId=\"Test\",algorithm=\"rsa-sha256\",signature=\"SjWJWbWN7i0wzBvtPl8rbASWz5xQW6mcJmn+ibttBqtifLN7Sazz6m79cNfwwb8DMJ5cou1s7uEGKKCs+FLEEaDV5lp7q25WqS+lavg7T8hc0GppauB6hbgEKTwblDHYGEtbGmtdHgVCk9SuS13F0hZ8FD0k/5OxEPXe5WozsbM=\"";
    const C2_BASIC: &str = "keyId=\"Test\",algorithm=\"rsa-sha256\",headers=\"(request-target) host date\",signature=\"qdx+H7PHHDZgy4y/Ahn9Tny9V3GP6YgBPyUXMmoxWtLbHpUnXS2mg2+SbrQDMCJypxBLSPQR2aAjn7ndmw2iicw3HMbe8VfEdKFYRqzic+efkb3nndiv/x1xSHDJWeSWkx3ButlYSuBskLu6kd9Fswtemr3lgdDEmn04swr2Os0=\"";
    const C3_ALL: &str = "keyId=\"Test\",algorithm=\"rsa-sha256\",headers=\"(request-target) host date content-type digest content-length\",signature=\"vSdrb+dS3EceC9bcwHSo4MlyKS59iFIrhgYkz8+oVLEEzmYZZvRs8rgOp+63LEM3v+MFHB32NfpB2bEKBIvB1q52LaEUHFv120V01IL+TAD48XaERZFukWgHoBTLMhYS2Gb51gWxpeIq8knRmPnYePbF5MOkR0Zkly4zKH7s1dE=\"";

    // The same requests signed with the 2048-bit test key by OpenSSL
    // (`openssl dgst -sha256 -sign`), as the draft's 1024-bit key cannot sign in aws-lc.
    const C1_OPENSSL: &str = "B1C6uvMyvg88u0yP4t1XQHp4KfRiEVu6RPcNImNi2A+1gQQgcgO+5byqFnVRons9/nFxhyuaq/nfPmjExs6zvcQBu9eHmpoEnIMKS87AgJt4XIB7uC3caOeFYwh98t6luynyS/MwgHnnswAbKnSHItPO35NfSBPVoVH0VVAnOeuVClGcsGFlLJL0eG2UqBQaW3RLcRjNXodXlIh5SNOa/98Re+5cqJ2PPGKNJWtMVHMH1bZjlWhmf08YHnzgzO8IDc5AfsxpX8Dxj4Wd6dcJY7N/7d2Tif7LrQstmlAxEVmgrrPjbCeeqiRd0CUtB+dhdNvGMWcn0UtBzEIfxm6PbA==";
    const C2_OPENSSL: &str = "KhgD92hy42k3wAtXBLe49F9zsr2jhNW9a69NmQ16adjW95z+HYCTUblRgh/6qhufki5AVOl1+ltM4HV2Pk0NO0D2MGNFLZeNqAn5w7TWlH9q6Kkz4cczcGz+CmVSkXRCdr+318JxOnHjI3e2/iUpeEZrTmQFwOjsyAo7/8Z3fXj1SWxpuFongwRjjYrnvAoDYi7P+VaF07nUD2fJraV4Be3G/d6Xj25uJ96JxLCIDu/2AK+sX3B8ekD42qZfXAK0y3lNQ4Ig2C5z4HlTRIBCYkNSg00OSkvqBIkGNOiD9H4cyDLHsj5Ddcu+bhz0ajeyEZqsBJP8TW4NV8++zzzedQ==";
    const C3_OPENSSL: &str = "TVeDaHeleXe0CsucOIFyDalMOzS4t2gxjDzoIdlylpSWh7QjJlPO5Wo2f9p+cqVZUtwo6Z1Ri4GjrwFWKyVYCMrTx+mNuZzOw5ZM8bGttotR/pcl2QLwYy4eNIMIU/+4I1zKetYjCa3WrZIva6LKtxlRE9SdtP1OUvAAcZ37xoCBX8xtmgULUL8VjuJs4YHc5CDea47HRO72PL1z8myHhCosmFdyGg0btoOGQrLvjmGIWNmbWnHstCKAvbKWPc3UD7wKUCDB3rTFCvQnwyz3YTmC5NcGLUz8o5wwP4zjeSJC46D/fNz1qGzLe4AOjaFhdCn1zte0inLmNFZN2Dnt6Q==";

    fn key() -> SigningKey {
        SigningKey::new(
            "Test",
            Arc::new(PrivateKey::from_pem(TEST_PRIVATE_PEM).unwrap()),
        )
    }

    /// The test signing key's public half.
    fn public() -> PublicKey {
        key().key.public_key()
    }

    /// The draft's key, which made its published signatures.
    fn cavage_public() -> PublicKey {
        parse_public_key_pem(CAVAGE_PUBLIC_PEM).unwrap()
    }

    fn date() -> SystemTime {
        httpdate::parse_http_date(DATE_TEXT).unwrap()
    }

    fn url() -> Url {
        Url::parse("http://example.com/foo?param=value&pet=dog").unwrap()
    }

    fn appendix_c_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("example.com"));
        headers.insert(DATE, HeaderValue::from_static(DATE_TEXT));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(DIGEST, HeaderValue::from_static(DIGEST_TEXT));
        headers.insert("content-length", HeaderValue::from_static("18"));
        headers
    }

    fn incoming<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> IncomingRequest<'a> {
        IncomingRequest {
            method: &Method::POST,
            path_and_query: "/foo?param=value&pet=dog",
            headers,
            public_host: "example.com",
            body: Some(body),
        }
    }

    fn signed_with(covered: &[&str]) -> String {
        let mut headers = appendix_c_headers();
        sign_headers(&key(), &Method::POST, &url(), &mut headers, covered).unwrap();
        headers[SIGNATURE].to_str().unwrap().to_string()
    }

    #[test]
    fn appendix_c_digest_is_the_body_digest() {
        assert_eq!(digest_header(BODY), DIGEST_TEXT);
    }

    #[test]
    fn signer_reproduces_openssls_signatures_of_the_appendix_c_requests() {
        let with_signature = |published: &str, signature: &str| {
            let (params, _) = published.split_once(",signature=").unwrap();
            format!("{params},signature=\"{signature}\"")
        };
        assert_eq!(
            signed_with(&["date"]),
            with_signature(
                &C1_DEFAULT.replace(",signature", ",headers=\"date\",signature"),
                C1_OPENSSL
            )
        );
        assert_eq!(
            signed_with(&["(request-target)", "host", "date"]),
            with_signature(C2_BASIC, C2_OPENSSL)
        );
        assert_eq!(
            signed_with(&[
                "(request-target)",
                "host",
                "date",
                "content-type",
                "digest",
                "content-length"
            ]),
            with_signature(C3_ALL, C3_OPENSSL)
        );
    }

    #[test]
    fn published_signatures_verify_cryptographically() {
        let headers = appendix_c_headers();
        let request = incoming(&headers, BODY);
        for published in [C1_DEFAULT, C2_BASIC, C3_ALL] {
            let params = SignatureParams::parse(published).unwrap();
            verify_signature(&params, &request, &cavage_public()).unwrap();
        }
        let c1 = SignatureParams::parse(C1_DEFAULT).unwrap();
        assert_eq!(c1.headers, ["date"]);
    }

    #[test]
    fn all_headers_test_passes_the_full_verification() {
        let headers = appendix_c_headers();
        let params = SignatureParams::parse(C3_ALL).unwrap();
        verify_request(&params, &incoming(&headers, BODY), &cavage_public(), date()).unwrap();
    }

    #[test]
    fn weaker_published_signatures_fail_mastodons_coverage_rules() {
        let headers = appendix_c_headers();
        let request = incoming(&headers, BODY);
        let c1 = SignatureParams::parse(C1_DEFAULT).unwrap();
        let err = verify_request(&c1, &request, &cavage_public(), date()).unwrap_err();
        assert!(
            matches!(err, SignatureError::NotCovered(REQUEST_TARGET)),
            "{err}"
        );
        let c2 = SignatureParams::parse(C2_BASIC).unwrap();
        let err = verify_request(&c2, &request, &cavage_public(), date()).unwrap_err();
        assert!(
            matches!(err, SignatureError::NotCovered(n) if n.starts_with("digest")),
            "{err}"
        );
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn hs2019_is_verified_as_rsa_sha256() {
        let headers = appendix_c_headers();
        let params = SignatureParams::parse(&C3_ALL.replace("rsa-sha256", "hs2019")).unwrap();
        assert_eq!(params.algorithm(), "hs2019");
        verify_request(&params, &incoming(&headers, BODY), &cavage_public(), date()).unwrap();

        let other = SignatureParams::parse(&C3_ALL.replace("rsa-sha256", "rsa-sha512")).unwrap();
        let err = verify_request(&other, &incoming(&headers, BODY), &cavage_public(), date())
            .unwrap_err();
        assert!(matches!(err, SignatureError::UnsupportedAlgorithm(ref a) if a == "rsa-sha512"));
    }

    #[test]
    fn tampering_is_detected() {
        let params = SignatureParams::parse(C3_ALL).unwrap();
        let headers = appendix_c_headers();

        let err = verify_request(
            &params,
            &incoming(&headers, br#"{"hello": "World"}"#),
            &cavage_public(),
            date(),
        )
        .unwrap_err();
        assert!(
            matches!(err, SignatureError::DigestMismatch { .. }),
            "{err}"
        );

        // A Digest matching the forged body still breaks the signature.
        let forged = br#"{"hello": "mallory"}"#;
        let mut with_forged_digest = appendix_c_headers();
        with_forged_digest.insert(
            DIGEST,
            HeaderValue::from_str(&digest_header(forged)).unwrap(),
        );
        let err = verify_request(
            &params,
            &incoming(&with_forged_digest, forged),
            &cavage_public(),
            date(),
        )
        .unwrap_err();
        assert!(matches!(err, SignatureError::Mismatch), "{err}");

        let mut other_type = appendix_c_headers();
        other_type.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let err = verify_request(
            &params,
            &incoming(&other_type, BODY),
            &cavage_public(),
            date(),
        )
        .unwrap_err();
        assert!(matches!(err, SignatureError::Mismatch), "{err}");

        let mut other_date = appendix_c_headers();
        other_date.insert(
            DATE,
            HeaderValue::from_static("Sun, 05 Jan 2014 21:31:41 GMT"),
        );
        let err = verify_request(
            &params,
            &incoming(&other_date, BODY),
            &cavage_public(),
            date(),
        )
        .unwrap_err();
        assert!(matches!(err, SignatureError::Mismatch), "{err}");

        let mut request = incoming(&headers, BODY);
        request.public_host = "example.org";
        let err = verify_request(&params, &request, &cavage_public(), date()).unwrap_err();
        assert!(matches!(err, SignatureError::Mismatch), "{err}");

        let mut request = incoming(&headers, BODY);
        request.path_and_query = "/bar?param=value&pet=dog";
        let err = verify_request(&params, &request, &cavage_public(), date()).unwrap_err();
        assert!(matches!(err, SignatureError::Mismatch), "{err}");

        let mut request = incoming(&headers, BODY);
        request.method = &Method::PUT;
        let err = verify_request(&params, &request, &cavage_public(), date()).unwrap_err();
        assert!(matches!(err, SignatureError::Mismatch), "{err}");

        let stranger = PrivateKey::from_pem(OTHER_PRIVATE_PEM).unwrap();
        let err = verify_request(
            &params,
            &incoming(&headers, BODY),
            &stranger.public_key(),
            date(),
        )
        .unwrap_err();
        assert!(matches!(err, SignatureError::Mismatch), "{err}");
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn host_is_the_configured_one_not_the_header() {
        // The static host proxied the request: the Host header names the inbox service.
        let params = SignatureParams::parse(C3_ALL).unwrap();
        let mut proxied = appendix_c_headers();
        proxied.insert(HOST, HeaderValue::from_static("127.0.0.1:8787"));
        verify_request(&params, &incoming(&proxied, BODY), &cavage_public(), date()).unwrap();
    }

    /// A POST to `url` signed by the test key at `when` with [`sign_request`].
    fn fresh_post(url: &str, when: SystemTime) -> (HeaderMap, SignatureParams) {
        let url = Url::parse(url).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/activity+json"),
        );
        sign_request(&key(), &Method::POST, &url, &mut headers, Some(BODY), when).unwrap();
        let params = SignatureParams::from_headers(&headers).unwrap();
        (headers, params)
    }

    #[test]
    fn sign_request_covers_what_mastodon_covers() {
        let (headers, params) = fresh_post("https://blog.example:8443/ap/inbox?x=1", date());
        assert_eq!(params.key_id, "Test");
        assert_eq!(params.algorithm(), "rsa-sha256");
        assert_eq!(
            params.headers,
            ["(request-target)", "host", "date", "digest", "content-type"]
        );
        assert_eq!(headers[HOST], "blog.example:8443");
        assert_eq!(headers[DATE], DATE_TEXT);
        assert_eq!(headers[DIGEST], DIGEST_TEXT);
        let request = IncomingRequest {
            method: &Method::POST,
            path_and_query: "/ap/inbox?x=1",
            headers: &headers,
            public_host: "blog.example:8443",
            body: Some(BODY),
        };
        verify_request(&params, &request, &public(), date()).unwrap();

        let mut get_headers = HeaderMap::new();
        let url = Url::parse("https://blog.example/ap/users/blog.json").unwrap();
        sign_request(&key(), &Method::GET, &url, &mut get_headers, None, date()).unwrap();
        let params = SignatureParams::from_headers(&get_headers).unwrap();
        assert_eq!(params.headers, ["(request-target)", "host", "date"]);
        assert_eq!(get_headers[HOST], "blog.example");
        assert!(!get_headers.contains_key(DIGEST));
        let request = IncomingRequest {
            method: &Method::GET,
            path_and_query: "/ap/users/blog.json",
            headers: &get_headers,
            public_host: "blog.example",
            body: None,
        };
        verify_request(&params, &request, &public(), date()).unwrap();
    }

    #[test]
    fn date_window_follows_mastodon() {
        let (headers, params) = fresh_post("https://blog.example/ap/inbox", date());
        let request = IncomingRequest {
            method: &Method::POST,
            path_and_query: "/ap/inbox",
            headers: &headers,
            public_host: "blog.example",
            body: Some(BODY),
        };
        let verify = |now| verify_request(&params, &request, &public(), now);
        let last_valid = date() + DEFAULT_VALIDITY + CLOCK_SKEW_MARGIN;
        verify(last_valid).unwrap();
        let err = verify(last_valid + Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, SignatureError::Expired), "{err}");
        let earliest = date() - CLOCK_SKEW_MARGIN;
        verify(earliest).unwrap();
        let err = verify(earliest - Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, SignatureError::NotYetValid), "{err}");
    }

    #[test]
    fn unsigned_created_cannot_freshen_a_replayed_request() {
        let (mut headers, _) = fresh_post("https://blog.example/ap/inbox", date());
        let later = date() + Duration::from_secs(13 * 3600);
        let now_secs = later.duration_since(UNIX_EPOCH).unwrap().as_secs();
        // A replayer rewrites the unsigned parameters of a 13-hour-old request.
        let original = headers[SIGNATURE].to_str().unwrap().to_string();
        let replayed = original.replace(
            "algorithm=\"rsa-sha256\"",
            &format!(
                "algorithm=\"hs2019\",created={now_secs},expires={}",
                now_secs + 60
            ),
        );
        assert_ne!(original, replayed);
        headers.insert(SIGNATURE, HeaderValue::from_str(&replayed).unwrap());
        let params = SignatureParams::from_headers(&headers).unwrap();
        let err = check_request(&params, &incoming(&headers, BODY), later).unwrap_err();
        assert!(matches!(err, SignatureError::Expired), "{err}");
    }

    #[test]
    fn unreadable_date_is_a_bad_request() {
        let (mut headers, params) = fresh_post("https://blog.example/ap/inbox", date());
        headers.insert(DATE, HeaderValue::from_static("yesterday"));
        let err = check_request(&params, &incoming(&headers, BODY), date()).unwrap_err();
        assert!(matches!(err, SignatureError::InvalidDate(_)), "{err}");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    /// A hs2019 signature over `(created)`/`(expires)` as a non-Mastodon peer would send.
    fn hs2019_with(created: u64, expires: Option<u64>) -> (HeaderMap, SignatureParams) {
        let headers = appendix_c_headers();
        let mut covered = vec!["(request-target)", "(created)"];
        let mut lines = vec![
            "(request-target): post /foo?param=value&pet=dog".to_string(),
            format!("(created): {created}"),
        ];
        if let Some(expires) = expires {
            covered.push("(expires)");
            lines.push(format!("(expires): {expires}"));
        }
        covered.extend(["host", "digest"]);
        lines.push("host: example.com".into());
        lines.push(format!("digest: {DIGEST_TEXT}"));
        let signature = key().key.sign_sha256(lines.join("\n").as_bytes()).unwrap();
        let expires_param = expires.map(|e| format!(",expires={e}")).unwrap_or_default();
        let header = format!(
            "keyId=\"Test\",algorithm=\"hs2019\",created={created}{expires_param},headers=\"{}\",signature=\"{}\"",
            covered.join(" "),
            BASE64.encode(signature)
        );
        (headers, SignatureParams::parse(&header).unwrap())
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn created_and_expires_are_honoured() {
        let created = 1_402_170_695;
        let (headers, params) = hs2019_with(created, Some(created + 60));
        assert_eq!(params.created, Some(created));
        assert_eq!(params.expires, Some(created + 60));
        let request = incoming(&headers, BODY);
        let verify = |now| verify_request(&params, &request, &public(), now);
        verify(at(created)).unwrap();
        verify(at(created + 60 + 3600)).unwrap();
        assert!(matches!(
            verify(at(created + 60 + 3601)),
            Err(SignatureError::Expired)
        ));
        verify(at(created - 3600)).unwrap();
        assert!(matches!(
            verify(at(created - 3601)),
            Err(SignatureError::NotYetValid)
        ));
    }

    #[test]
    fn expires_cannot_stretch_the_window_beyond_twelve_hours() {
        let created = 1_402_170_695;
        let (headers, params) = hs2019_with(created, Some(created + 48 * 3600));
        let request = incoming(&headers, BODY);
        let verify = |now| verify_request(&params, &request, &public(), now);
        verify(at(created + 13 * 3600)).unwrap();
        assert!(matches!(
            verify(at(created + 13 * 3600 + 1)),
            Err(SignatureError::Expired)
        ));
    }

    #[test]
    fn created_without_expires_lasts_five_minutes_plus_skew() {
        let created = 1_402_170_695;
        let (headers, params) = hs2019_with(created, None);
        let request = incoming(&headers, BODY);
        verify_request(&params, &request, &public(), at(created + 300 + 3600)).unwrap();
        let err =
            verify_request(&params, &request, &public(), at(created + 300 + 3601)).unwrap_err();
        assert!(matches!(err, SignatureError::Expired));
    }

    #[test]
    fn created_pseudo_header_needs_hs2019_and_its_parameter() {
        let created = 1_402_170_695;
        let (headers, params) = hs2019_with(created, None);
        let text = format!(
            "keyId=\"Test\",algorithm=\"rsa-sha256\",created={created},headers=\"{}\",signature=\"{}\"",
            params.headers.join(" "),
            BASE64.encode(&params.signature)
        );
        let rsa = SignatureParams::parse(&text).unwrap();
        // With rsa-sha256 the window comes from Date, whatever `created` says.
        let err = verify_request(&rsa, &incoming(&headers, BODY), &public(), date()).unwrap_err();
        assert!(matches!(err, SignatureError::PseudoHeader { .. }), "{err}");

        let without = SignatureParams::parse(
            &text
                .replace("rsa-sha256", "hs2019")
                .replace(&format!(",created={created}"), ""),
        )
        .unwrap();
        // No `created` parameter: the window falls back to Date, then the line cannot be built.
        let err =
            verify_request(&without, &incoming(&headers, BODY), &public(), date()).unwrap_err();
        assert!(matches!(err, SignatureError::PseudoHeader { .. }), "{err}");
    }

    #[test]
    fn digest_list_and_its_failures() {
        let params = SignatureParams::parse(C3_ALL).unwrap();
        let headers = appendix_c_headers();
        let check = |digest: Option<&'static str>| {
            let mut h = headers.clone();
            match digest {
                Some(d) => h.insert(DIGEST, HeaderValue::from_static(d)),
                None => h.remove(DIGEST),
            };
            check_request(&params, &incoming(&h, BODY), date())
        };
        check(Some(DIGEST_TEXT)).unwrap();
        check(Some(
            "MD5=Sd/dVLAcvNLSq16eXua5uQ==, sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",
        ))
        .unwrap();
        let err = check(Some("SHA-512=abcd, MD5=Sd/dVLAcvNLSq16eXua5uQ==")).unwrap_err();
        assert!(
            matches!(err, SignatureError::DigestAlgorithm(ref o) if o == "sha-512, md5"),
            "{err}"
        );
        let err = check(Some("SHA-256=not*base64")).unwrap_err();
        assert!(matches!(err, SignatureError::DigestInvalid(_)), "{err}");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let err = check(Some("SHA-256=Sd/dVLAcvNLSq16eXua5uQ==")).unwrap_err();
        assert!(matches!(err, SignatureError::DigestInvalid(_)), "{err}");
        let err = check(None).unwrap_err();
        assert!(matches!(err, SignatureError::DigestMissing), "{err}");
    }

    #[test]
    fn query_less_target_and_port_less_host_are_accepted() {
        // Older Mastodon signs `(request-target)` without the query, and `host` without port.
        let mut headers = appendix_c_headers();
        let url = Url::parse("http://example.com/foo").unwrap();
        sign_headers(
            &key(),
            &Method::POST,
            &url,
            &mut headers,
            &["(request-target)", "host", "date", "digest"],
        )
        .unwrap();
        let params = SignatureParams::from_headers(&headers).unwrap();
        let mut request = incoming(&headers, BODY);
        request.public_host = "example.com:8443";
        verify_request(&params, &request, &public(), date()).unwrap();
        request.public_host = "[::1]:8443";
        assert!(matches!(
            verify_request(&params, &request, &public(), date()),
            Err(SignatureError::Mismatch)
        ));
    }

    #[test]
    fn host_without_port_only_strips_ports() {
        assert_eq!(host_without_port("example.com:8443"), Some("example.com"));
        assert_eq!(host_without_port("[::1]:80"), Some("[::1]"));
        assert_eq!(host_without_port("example.com"), None);
        assert_eq!(host_without_port("[::1]"), None);
        assert_eq!(host_without_port("example.com:"), None);
    }

    #[test]
    fn signed_header_absent_from_request() {
        let params = SignatureParams::parse(C3_ALL).unwrap();
        let mut headers = appendix_c_headers();
        headers.remove("content-length");
        let err = verify_request(&params, &incoming(&headers, BODY), &cavage_public(), date())
            .unwrap_err();
        assert!(
            matches!(err, SignatureError::MissingHeader(ref h) if h == "content-length"),
            "{err}"
        );
    }

    #[test]
    fn parser_reads_the_variants_peers_send() {
        let wrapped = "Signature keyId = \"https://a.example/u#k\" ,\n algorithm=hs2019,\tcreated=1402170695,\n expires=\"1402170699.25\", headers=\"(Request-Target) (created) Host\",\n ext=\"a\\\"b\", signature=\"qdx+H7PHHDZgy4y/Ahn9Tny9V3GP6YgBPyUXMmoxWtLbHpUnXS2mg2+SbrQDMCJy\n  pxBLSPQR2aAjn7ndmw2iicw3HMbe8VfEdKFYRqzic+efkb3nndiv/x1xSHDJWeSWkx3ButlYSuBskLu6kd9Fswtemr3lgdDEmn04swr2Os0=\"";
        let params = SignatureParams::parse(wrapped).unwrap();
        assert_eq!(params.key_id, "https://a.example/u#k");
        assert_eq!(params.algorithm.as_deref(), Some("hs2019"));
        assert_eq!(params.headers, ["(request-target)", "(created)", "host"]);
        assert_eq!(params.created, Some(1_402_170_695));
        assert_eq!(params.expires, Some(1_402_170_699));
        assert_eq!(params.signature.len(), 128);

        let escaped = SignatureParams::parse("keyId=\"a\\\"b\\\\c\",signature=\"AAAA\"").unwrap();
        assert_eq!(escaped.key_id, "a\"b\\c");
        assert_eq!(escaped.algorithm(), "hs2019");
        assert_eq!(escaped.headers, ["(created)"]);

        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("signature {C2_BASIC}")).unwrap(),
        );
        assert_eq!(
            SignatureParams::from_headers(&headers).unwrap(),
            SignatureParams::parse(C2_BASIC).unwrap()
        );
    }

    #[test]
    fn requests_without_a_usable_signature_header() {
        let mut headers = HeaderMap::new();
        assert!(matches!(
            SignatureParams::from_headers(&headers),
            Err(SignatureError::Unsigned)
        ));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert!(matches!(
            SignatureParams::from_headers(&headers),
            Err(SignatureError::Unsigned)
        ));
        headers.insert(
            SIGNATURE_INPUT,
            HeaderValue::from_static("sig1=(\"@method\");created=1"),
        );
        headers.insert(SIGNATURE, HeaderValue::from_static("sig1=:AAAA:"));
        assert!(matches!(
            SignatureParams::from_headers(&headers),
            Err(SignatureError::MessageSignatures)
        ));
        let mut binary = HeaderMap::new();
        binary.insert(
            SIGNATURE,
            HeaderValue::from_bytes(b"keyId=\"\xff\"").unwrap(),
        );
        let err = SignatureParams::from_headers(&binary).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        let malformed = [
            "",
            "keyId",
            "keyId=",
            "keyId=\"abc",
            "keyId=\"abc\\",
            "keyId=\"a\" signature=\"AAAA\"",
            "keyId=\"a\",signature=\"AAAA\",",
            "=x",
            ",,,",
            "k\u{e9}yId=\"a\"",
            "keyId=\"a\",signature=\"%%%\"",
            "keyId=\"a\",keyId=\"b\",signature=\"AAAA\"",
            "keyId=\"a\",signature=\"AAAA\",created=\"soon\"",
            "keyId=\"a\",signature=\"AAAA\",created=\"99999999999999999999999\"",
            "keyId=\"a\",signature=\"AAAA\",expires=-5",
        ];
        for text in malformed {
            let err = SignatureParams::parse(text).unwrap_err();
            assert!(
                matches!(err, SignatureError::Malformed(_)),
                "{text:?} gave {err:?}"
            );
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{text:?}");
        }
        let incomplete = [
            ("signature=\"AAAA\"", "keyId"),
            ("keyId=\"\",signature=\"AAAA\"", "keyId"),
            ("keyId=\"a\",headers=\"date\"", "signature"),
        ];
        for (text, missing) in incomplete {
            let err = SignatureParams::parse(text).unwrap_err();
            assert!(
                matches!(err, SignatureError::MissingParameter(name) if name == missing),
                "{text:?} gave {err:?}"
            );
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{text:?}");
        }
    }

    #[test]
    fn far_future_timestamps_do_not_overflow() {
        let text = format!(
            "keyId=\"a\",algorithm=\"hs2019\",created={},headers=\"(created)\",signature=\"AAAA\"",
            u64::MAX
        );
        let params = SignatureParams::parse(&text).unwrap();
        let headers = HeaderMap::new();
        let request = IncomingRequest {
            method: &Method::GET,
            path_and_query: "/",
            headers: &headers,
            public_host: "example.com",
            body: None,
        };
        let err = check_request(&params, &request, date()).unwrap_err();
        assert!(matches!(err, SignatureError::Malformed(_)), "{err}");
    }

    #[test]
    fn random_input_never_panics_the_parser() {
        use rand::{Rng, SeedableRng};
        let alphabet: Vec<char> = "keyIdsignature=\",\\ ()-AZaz019+/é\n\t".chars().collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..60);
            let text: String = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            let _ = SignatureParams::parse(&text);
        }
    }
}
