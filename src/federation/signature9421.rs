//! RFC 9421 HTTP Message Signatures (`Signature-Input` / `Signature`), verified under
//! Mastodon's rules (`app/lib/signed_request.rb`, `HttpMessageSignature`) so that a request
//! Mastodon ≥ 4.4 or NodeBB signs this way is accepted on the same terms as a cavage one.
//!
//! Supported: one signature per request, `rsa-v1_5-sha256` (the only algorithm an actor's RSA
//! key serves; `alg` may be omitted), `created` required, `@method` and `@target-uri`
//! covered, and on POST a covered `Content-Digest` (RFC 9530) whose `sha-256` matches the
//! body. The time window is cavage's (`signature::check_window`). Component parameters
//! (`;sf`, `;key`, `;req`, …) are refused: no fediverse signer uses them.
//!
//! [`RequestSignature`] is the one entry point the inbox uses: it reads whichever kind of
//! signature a request carries, as Mastodon does (`Signature-Input` present → RFC 9421).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use sha2::{Digest, Sha256};
use url::Url;

use super::keys::{self, PublicKey};
use super::signature::{
    check_request, check_window, header_text, verify_request, IncomingRequest, SignatureError,
    SignatureParams, SigningKey,
};

const SIGNATURE: HeaderName = HeaderName::from_static("signature");
const SIGNATURE_INPUT: HeaderName = HeaderName::from_static("signature-input");
const CONTENT_DIGEST: HeaderName = HeaderName::from_static("content-digest");
/// The algorithm name RFC 9421 registers for RSASSA-PKCS1-v1_5 with SHA-256.
pub const ALGORITHM: &str = "rsa-v1_5-sha256";
const LABEL: &str = "sig1";

/// A structured-field bare item (RFC 8941), as far as signature parameters need them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Integer(i64),
    String(String),
    Token(String),
    Bytes(Vec<u8>),
    Boolean(bool),
}

impl Item {
    /// The canonical serialization (RFC 8941 §4.1), used to rebuild `@signature-params`.
    fn serialize(&self, out: &mut String) {
        match self {
            Item::Integer(n) => out.push_str(&n.to_string()),
            Item::String(s) => {
                out.push('"');
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
            Item::Token(t) => out.push_str(t),
            Item::Bytes(b) => {
                out.push(':');
                out.push_str(&BASE64.encode(b));
                out.push(':');
            }
            Item::Boolean(b) => out.push_str(if *b { "?1" } else { "?0" }),
        }
    }
}

type Params = Vec<(String, Item)>;

/// One signature of a request: what `Signature-Input` says and the bytes `Signature` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSignature {
    pub label: String,
    /// Covered component names, in order (`@method`, `content-digest`, …).
    pub components: Vec<String>,
    params: Params,
    pub key_id: String,
    pub created: Option<u64>,
    pub expires: Option<u64>,
    pub algorithm: Option<String>,
    pub signature: Vec<u8>,
}

impl MessageSignature {
    /// Reads `Signature-Input` and `Signature`; both must hold exactly one, same-labelled entry.
    pub fn from_headers(headers: &HeaderMap) -> Result<MessageSignature, SignatureError> {
        let input = joined(headers, &SIGNATURE_INPUT)?.ok_or(SignatureError::Unsigned)?;
        let signature = joined(headers, &SIGNATURE)?.ok_or(SignatureError::Unsigned)?;
        let mut inputs = Parser::new(&input).dictionary()?;
        let mut signatures = Parser::new(&signature).dictionary()?;
        if inputs.len() != 1 {
            return Err(malformed(format!(
                "Signature-Input holds {} signatures; exactly one is supported",
                inputs.len()
            )));
        }
        let (label, member) = inputs.remove(0);
        let Member::InnerList(items, params) = member else {
            return Err(malformed(format!(
                "Signature-Input `{label}` is not a list"
            )));
        };
        let position = signatures
            .iter()
            .position(|(name, _)| *name == label)
            .ok_or_else(|| malformed(format!("Signature has no `{label}` entry")))?;
        let signature = match signatures.remove(position).1 {
            Member::Item(Item::Bytes(bytes)) => bytes,
            _ => {
                return Err(malformed(format!(
                    "Signature `{label}` is not a byte sequence"
                )))
            }
        };
        let mut components = Vec::with_capacity(items.len());
        for (item, item_params) in items {
            let Item::String(name) = item else {
                return Err(malformed("a covered component is not a string".into()));
            };
            if !item_params.is_empty() {
                return Err(malformed(format!(
                    "component parameters (on {name:?}) are not supported"
                )));
            }
            if name.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(malformed(format!(
                    "component name {name:?} is not lowercase"
                )));
            }
            if components.contains(&name) {
                return Err(malformed(format!("component {name:?} is covered twice")));
            }
            components.push(name);
        }
        let mut key_id = None;
        let (mut created, mut expires, mut algorithm) = (None, None, None);
        for (name, value) in &params {
            match (name.as_str(), value) {
                ("keyid", Item::String(k)) => key_id = Some(k.clone()),
                ("alg", Item::String(a)) => algorithm = Some(a.clone()),
                ("created", Item::Integer(n)) => created = Some(unix(*n, "created")?),
                ("expires", Item::Integer(n)) => expires = Some(unix(*n, "expires")?),
                ("keyid" | "alg" | "created" | "expires", _) => {
                    return Err(malformed(format!("parameter `{name}` has the wrong type")))
                }
                _ => {}
            }
        }
        Ok(MessageSignature {
            key_id: key_id
                .filter(|k| !k.is_empty())
                .ok_or(SignatureError::MissingParameter("keyid"))?,
            label,
            components,
            params,
            created,
            expires,
            algorithm,
            signature,
        })
    }

    fn covers(&self, name: &str) -> bool {
        self.components.iter().any(|c| c == name)
    }

    /// `@signature-params`: the inner list and its parameters, serialized canonically.
    fn signature_params(&self) -> String {
        let mut out = String::from("(");
        for (i, name) in self.components.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            Item::String(name.clone()).serialize(&mut out);
        }
        out.push(')');
        for (name, value) in &self.params {
            out.push(';');
            out.push_str(name);
            if *value != Item::Boolean(true) {
                out.push('=');
                value.serialize(&mut out);
            }
        }
        out
    }

    /// Mastodon's checks before any key is fetched: algorithm, `created`, time window,
    /// coverage, then `Content-Digest` against the body.
    pub fn check(
        &self,
        request: &IncomingRequest<'_>,
        now: SystemTime,
    ) -> Result<(), SignatureError> {
        if let Some(alg) = self.algorithm.as_deref().filter(|a| *a != ALGORITHM) {
            return Err(SignatureError::UnsupportedAlgorithm(alg.to_string()));
        }
        let created = self
            .created
            .ok_or(SignatureError::MissingParameter("created"))?;
        let at = |s: u64| {
            UNIX_EPOCH
                .checked_add(Duration::from_secs(s))
                .ok_or_else(|| malformed("signature time is out of range".into()))
        };
        check_window(Some(at(created)?), self.expires.map(at).transpose()?, now)?;
        if !self.covers("@method") || !self.covers("@target-uri") {
            return Err(SignatureError::NotCovered("@method and @target-uri"));
        }
        if *request.method == Method::POST && !self.covers("content-digest") {
            return Err(SignatureError::NotCovered(
                "content-digest (required for POST)",
            ));
        }
        if self.covers("content-digest") {
            check_content_digest(request.headers, request.body.unwrap_or_default())?;
        }
        Ok(())
    }

    /// The signature base (RFC 9421 §2.5) of this signature over `request`.
    pub fn signature_base(
        &self,
        request: &IncomingRequest<'_>,
        scheme: &str,
    ) -> Result<String, SignatureError> {
        let mut base = String::new();
        for name in &self.components {
            let value = component(name, request, scheme)?;
            base.push_str(&format!("\"{name}\": {value}\n"));
        }
        base.push_str(&format!(
            "\"@signature-params\": {}",
            self.signature_params()
        ));
        Ok(base)
    }

    /// The cryptographic check alone, against `key`.
    pub fn verify_signature(
        &self,
        request: &IncomingRequest<'_>,
        scheme: &str,
        key: &PublicKey,
    ) -> Result<(), SignatureError> {
        let base = self.signature_base(request, scheme)?;
        if keys::verify_sha256(key, base.as_bytes(), &self.signature) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// The value of one covered component. The host is the site's public host, not the `Host`
/// header, because the static host proxies the inbox (as for cavage's `host` line).
fn component(
    name: &str,
    request: &IncomingRequest<'_>,
    scheme: &str,
) -> Result<String, SignatureError> {
    let target = request.path_and_query;
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let authority = request.public_host.to_ascii_lowercase();
    Ok(match name {
        "@method" => request.method.as_str().to_string(),
        "@target-uri" => format!("{scheme}://{authority}{target}"),
        "@authority" => authority,
        "@scheme" => scheme.to_ascii_lowercase(),
        "@request-target" => target.to_string(),
        "@path" if path.is_empty() => "/".to_string(),
        "@path" => path.to_string(),
        "@query" => format!("?{}", query.unwrap_or_default()),
        "host" => authority,
        derived if derived.starts_with('@') => {
            return Err(SignatureError::PseudoHeader {
                name: derived.to_string(),
                reason: "is not a supported derived component",
            })
        }
        header => header_text(request.headers, header)?
            .ok_or_else(|| SignatureError::MissingHeader(header.to_string()))?,
    })
}

/// RFC 9530 `Content-Digest`: a dictionary whose `sha-256` entry must hash the body.
fn check_content_digest(headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
    let text = joined(headers, &CONTENT_DIGEST)?.ok_or(SignatureError::DigestMissing)?;
    let digests = Parser::new(&text).dictionary()?;
    let Some((_, member)) = digests.iter().find(|(name, _)| name == "sha-256") else {
        let offered: Vec<&str> = digests.iter().map(|(name, _)| name.as_str()).collect();
        return Err(SignatureError::DigestAlgorithm(offered.join(", ")));
    };
    let given = match member {
        Member::Item(Item::Bytes(bytes)) if bytes.len() == 32 => bytes,
        _ => return Err(SignatureError::DigestInvalid(text.clone())),
    };
    let computed = Sha256::digest(body);
    if given.as_slice() != computed.as_slice() {
        return Err(SignatureError::DigestMismatch {
            computed: BASE64.encode(computed),
            given: BASE64.encode(given),
        });
    }
    Ok(())
}

/// `Content-Digest` value of a body: `sha-256=:<base64>:`.
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-256=:{}:", BASE64.encode(Sha256::digest(body)))
}

/// Signs a request the way Mastodon 4.5 does when it double-knocks: `@method`,
/// `@target-uri` and, with a body, `content-digest` (set here), `created` and `keyid`.
pub fn sign_message(
    key: &SigningKey,
    method: &Method,
    url: &Url,
    headers: &mut HeaderMap,
    body: Option<&[u8]>,
    now: SystemTime,
) -> Result<(), SignatureError> {
    let value = |text: &str| {
        HeaderValue::from_str(text)
            .map_err(|_| SignatureError::Sign(format!("{text:?} is not a valid header value")))
    };
    let mut components = vec!["@method".to_string(), "@target-uri".to_string()];
    if let Some(body) = body {
        headers.insert(CONTENT_DIGEST, value(&content_digest(body))?);
        components.push("content-digest".into());
    }
    let created = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| SignatureError::Sign("the clock is before 1970".into()))?
        .as_secs();
    let signature = MessageSignature {
        label: LABEL.into(),
        components,
        params: vec![
            ("created".into(), Item::Integer(created as i64)),
            ("keyid".into(), Item::String(key.key_id.clone())),
        ],
        key_id: key.key_id.clone(),
        created: Some(created),
        expires: None,
        algorithm: None,
        signature: Vec::new(),
    };
    let host = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        (None, _) => return Err(SignatureError::Sign(format!("{url} has no host"))),
    };
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    };
    let request = IncomingRequest {
        method,
        path_and_query: &target,
        headers,
        public_host: &host,
        body,
    };
    let base = signature.signature_base(&request, url.scheme())?;
    let bytes = key.key.sign_sha256(base.as_bytes())?;
    headers.insert(
        SIGNATURE_INPUT,
        value(&format!("{LABEL}={}", signature.signature_params()))?,
    );
    headers.insert(
        SIGNATURE,
        value(&format!("{LABEL}=:{}:", BASE64.encode(bytes)))?,
    );
    Ok(())
}

/// Whichever signature a request carries: RFC 9421 when `Signature-Input` is present (as
/// Mastodon decides), else draft-cavage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestSignature {
    Cavage(SignatureParams),
    Message(MessageSignature),
}

impl RequestSignature {
    pub fn from_headers(headers: &HeaderMap) -> Result<RequestSignature, SignatureError> {
        if headers.contains_key(SIGNATURE_INPUT) {
            MessageSignature::from_headers(headers).map(RequestSignature::Message)
        } else {
            SignatureParams::from_headers(headers).map(RequestSignature::Cavage)
        }
    }

    pub fn key_id(&self) -> &str {
        match self {
            RequestSignature::Cavage(params) => &params.key_id,
            RequestSignature::Message(signature) => &signature.key_id,
        }
    }

    /// Everything but the cryptography; `scheme` is the public site's (`https`).
    pub fn check(
        &self,
        request: &IncomingRequest<'_>,
        now: SystemTime,
    ) -> Result<(), SignatureError> {
        match self {
            RequestSignature::Cavage(params) => check_request(params, request, now),
            RequestSignature::Message(signature) => signature.check(request, now),
        }
    }

    /// The checks, then the signature against `key`.
    pub fn verify(
        &self,
        request: &IncomingRequest<'_>,
        scheme: &str,
        key: &PublicKey,
        now: SystemTime,
    ) -> Result<(), SignatureError> {
        match self {
            RequestSignature::Cavage(params) => verify_request(params, request, key, now),
            RequestSignature::Message(signature) => {
                signature.check(request, now)?;
                signature.verify_signature(request, scheme, key)
            }
        }
    }
}

fn malformed(what: String) -> SignatureError {
    SignatureError::Malformed(what)
}

fn unix(n: i64, name: &str) -> Result<u64, SignatureError> {
    u64::try_from(n).map_err(|_| malformed(format!("`{name}` {n} is not a Unix time")))
}

/// All lines of a header joined by `, ` (a structured field may be split over lines).
fn joined(headers: &HeaderMap, name: &HeaderName) -> Result<Option<String>, SignatureError> {
    header_text(headers, name.as_str()).map_err(|_| malformed(format!("{name} is not ASCII")))
}

enum Member {
    Item(Item),
    InnerList(Vec<(Item, Params)>, Params),
}

/// A strict RFC 8941 parser for dictionaries, the only top-level type signatures use.
struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Parser<'a> {
        Parser {
            text: text.as_bytes(),
            at: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn skip(&mut self, set: &[u8]) {
        while self.peek().is_some_and(|b| set.contains(&b)) {
            self.at += 1;
        }
    }

    fn error(&self, what: &str) -> SignatureError {
        malformed(format!("structured field: {what} at byte {}", self.at))
    }

    fn dictionary(&mut self) -> Result<Vec<(String, Member)>, SignatureError> {
        let mut members: Vec<(String, Member)> = Vec::new();
        self.skip(b" ");
        while self.peek().is_some() {
            let key = self.key()?;
            let member = if self.peek() == Some(b'=') {
                self.at += 1;
                self.member()?
            } else {
                self.params()?;
                Member::Item(Item::Boolean(true))
            };
            members.retain(|(k, _)| *k != key);
            members.push((key, member));
            self.skip(b" \t");
            match self.peek() {
                None => break,
                Some(b',') => {
                    self.at += 1;
                    self.skip(b" \t");
                    if self.peek().is_none() {
                        return Err(self.error("trailing comma"));
                    }
                }
                Some(_) => return Err(self.error("expected `,`")),
            }
        }
        Ok(members)
    }

    fn member(&mut self) -> Result<Member, SignatureError> {
        if self.peek() != Some(b'(') {
            // Parameters on a dictionary item (none in signatures) are read and dropped.
            let item = self.bare_item()?;
            self.params()?;
            return Ok(Member::Item(item));
        }
        self.at += 1;
        let mut items = Vec::new();
        loop {
            self.skip(b" ");
            if self.peek() == Some(b')') {
                self.at += 1;
                return Ok(Member::InnerList(items, self.params()?));
            }
            let item = self.bare_item()?;
            items.push((item, self.params()?));
            if !matches!(self.peek(), Some(b' ' | b')')) {
                return Err(self.error("expected a space or `)` in an inner list"));
            }
        }
    }

    fn params(&mut self) -> Result<Params, SignatureError> {
        let mut params: Params = Vec::new();
        while self.peek() == Some(b';') {
            self.at += 1;
            self.skip(b" ");
            let key = self.key()?;
            let value = if self.peek() == Some(b'=') {
                self.at += 1;
                self.bare_item()?
            } else {
                Item::Boolean(true)
            };
            params.retain(|(k, _)| *k != key);
            params.push((key, value));
        }
        Ok(params)
    }

    fn key(&mut self) -> Result<String, SignatureError> {
        let start = self.at;
        match self.peek() {
            Some(b) if b.is_ascii_lowercase() || b == b'*' => self.at += 1,
            _ => return Err(self.error("expected a key")),
        }
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b))
        {
            self.at += 1;
        }
        Ok(String::from_utf8_lossy(&self.text[start..self.at]).into_owned())
    }

    fn bare_item(&mut self) -> Result<Item, SignatureError> {
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b':') => {
                self.at += 1;
                let start = self.at;
                while self
                    .peek()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
                {
                    self.at += 1;
                }
                if self.peek() != Some(b':') {
                    return Err(self.error("unterminated byte sequence"));
                }
                let bytes = BASE64
                    .decode(&self.text[start..self.at])
                    .map_err(|_| self.error("byte sequence is not base64"))?;
                self.at += 1;
                Ok(Item::Bytes(bytes))
            }
            Some(b'?') => {
                self.at += 1;
                let value = match self.peek() {
                    Some(b'1') => true,
                    Some(b'0') => false,
                    _ => return Err(self.error("bad boolean")),
                };
                self.at += 1;
                Ok(Item::Boolean(value))
            }
            Some(b) if b == b'-' || b.is_ascii_digit() => {
                let start = self.at;
                self.at += 1;
                while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    self.at += 1;
                }
                if self.peek() == Some(b'.') {
                    return Err(self.error("decimals are not supported"));
                }
                let digits = &self.text[start..self.at];
                if digits.len() > 16 || digits == b"-" {
                    return Err(self.error("integer out of range"));
                }
                String::from_utf8_lossy(digits)
                    .parse()
                    .map(Item::Integer)
                    .map_err(|_| self.error("bad integer"))
            }
            Some(b) if b.is_ascii_alphabetic() || b == b'*' => {
                let start = self.at;
                while self
                    .peek()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b))
                {
                    self.at += 1;
                }
                Ok(Item::Token(
                    String::from_utf8_lossy(&self.text[start..self.at]).into_owned(),
                ))
            }
            _ => Err(self.error("expected an item")),
        }
    }

    fn string(&mut self) -> Result<Item, SignatureError> {
        self.at += 1;
        let mut text = String::new();
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(Item::String(text));
                }
                Some(b'\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => text.push(c as char),
                        _ => return Err(self.error("bad escape in a string")),
                    }
                    self.at += 1;
                }
                Some(c @ 0x20..=0x7e) => {
                    text.push(c as char);
                    self.at += 1;
                }
                _ => return Err(self.error("unterminated string")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::keys::parse_public_key_pem;
    use crate::federation::keys::test_keys::TEST_PRIVATE_PEM;
    use crate::federation::keys::PrivateKey;
    use std::sync::Arc;

    // RFC 9421 Appendix B.1.1, test-key-rsa (public part).
    const TEST_KEY_RSA: &str = "-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEAhAKYdtoeoy8zcAcR874L8cnZxKzAGwd7v36APp7Pv6Q2jdsPBRrw
WEBnez6d0UDKDwGbc6nxfEXAy5mbhgajzrw3MOEt8uA5txSKobBpKDeBLOsdJKFq
MGmXCQvEG7YemcxDTRPxAleIAgYYRjTSd/QBwVW9OwNFhekro3RtlinV0a75jfZg
kne/YiktSvLG34lw2zqXBDTC5NHROUqGTlML4PlNZS5Ri2U4aCNx2rUPRcKIlE0P
uKxI4T+HIaFpv8+rdV6eUgOrB2xeI1dSFFn/nnv5OoZJEIB+VmuKn3DCUcCZSFlQ
PSXSfBDiUGhwOw76WuSSsf1D4b/vLoJ10wIDAQAB
-----END RSA PUBLIC KEY-----
";

    /// RFC 9421 §4.3: the request as the proxy forwards it, with `proxy_sig`, the RFC's only
    /// `rsa-v1_5-sha256` signature (by test-key-rsa). The client's `sig1` is left out.
    fn rfc_4_3() -> HeaderMap {
        let mut h = HeaderMap::new();
        let mut set = |name: &'static str, value: &str| {
            h.insert(name, HeaderValue::from_str(value).unwrap());
        };
        set("host", "origin.host.internal.example");
        set("date", "Tue, 20 Apr 2021 02:07:56 GMT");
        set("content-type", "application/json");
        set("content-length", "18");
        set("forwarded", "for=192.0.2.123;host=example.com;proto=https");
        set("content-digest", "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:");
        set("signature-input", "proxy_sig=(\"@method\" \"@authority\" \"@path\" \"content-digest\" \"content-type\" \"content-length\" \"forwarded\");created=1618884480;keyid=\"test-key-rsa\";alg=\"rsa-v1_5-sha256\";expires=1618884540");
        set("signature", "proxy_sig=:S6ZzPXSdAMOPjN/6KXfXWNO/f7V6cHm7BXYUh3YD/fRad4BCaRZxP+JH+8XY1I6+8Cy+CM5g92iHgxtRPz+MjniOaYmdkDcnL9cCpXJleXsOckpURl49GwiyUpZ10KHgOEe11sx3G2gxI8S0jnxQB+Pu68U9vVcasqOWAEObtNKKZd8tSFu7LB5YAv0RAGhB8tmpv7sFnIm9y+7X5kXQfi8NMaZaA8i2ZHwpBdg7a6CMfwnnrtflzvZdXAsD3LH2TwevU+/PBPv0B6NMNk93wUs/vfJvye+YuI87HU38lZHowtznbLVdp770I6VHR6WfgS9ddzirrswsE1w5o0LV/g==:");
        h
    }

    const BODY: &[u8] = br#"{"hello": "world"}"#;

    fn incoming<'a>(headers: &'a HeaderMap, target: &'a str, host: &'a str) -> IncomingRequest<'a> {
        IncomingRequest {
            method: &Method::POST,
            path_and_query: target,
            headers,
            public_host: host,
            body: Some(BODY),
        }
    }

    #[test]
    fn rfc_9421_section_4_3_rsa_v1_5_vector_verifies() {
        let headers = rfc_4_3();
        let signature = MessageSignature::from_headers(&headers).unwrap();
        assert_eq!(signature.key_id, "test-key-rsa");
        assert_eq!(signature.algorithm.as_deref(), Some(ALGORITHM));
        let key = parse_public_key_pem(TEST_KEY_RSA).unwrap();
        let request = incoming(
            &headers,
            "/foo?param=Value&Pet=dog",
            "origin.host.internal.example",
        );
        let base = signature.signature_base(&request, "https").unwrap();
        assert_eq!(
            base,
            "\"@method\": POST\n\"@authority\": origin.host.internal.example\n\"@path\": /foo\n\"content-digest\": sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:\n\"content-type\": application/json\n\"content-length\": 18\n\"forwarded\": for=192.0.2.123;host=example.com;proto=https\n\"@signature-params\": (\"@method\" \"@authority\" \"@path\" \"content-digest\" \"content-type\" \"content-length\" \"forwarded\");created=1618884480;keyid=\"test-key-rsa\";alg=\"rsa-v1_5-sha256\";expires=1618884540"
        );
        signature.verify_signature(&request, "https", &key).unwrap();
        // Another path, another authority or a changed header: no longer the signed message.
        for (target, host) in [
            ("/bar?param=Value&Pet=dog", "origin.host.internal.example"),
            ("/foo?param=Value&Pet=dog", "example.com"),
        ] {
            let err = signature
                .verify_signature(&incoming(&headers, target, host), "https", &key)
                .unwrap_err();
            assert!(matches!(err, SignatureError::Mismatch), "{err}");
        }
        let mut changed = headers.clone();
        changed.insert("content-length", HeaderValue::from_static("19"));
        let err = signature
            .verify_signature(
                &incoming(
                    &changed,
                    "/foo?param=Value&Pet=dog",
                    "origin.host.internal.example",
                ),
                "https",
                &key,
            )
            .unwrap_err();
        assert!(matches!(err, SignatureError::Mismatch), "{err}");
    }

    #[test]
    fn the_rfc_vector_fails_mastodons_rules() {
        // It covers neither @target-uri nor a sha-256 Content-Digest, and has long expired.
        let headers = rfc_4_3();
        let signature = MessageSignature::from_headers(&headers).unwrap();
        let request = incoming(
            &headers,
            "/foo?param=Value&Pet=dog",
            "origin.host.internal.example",
        );
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        let err = signature.check(&request, at(1_618_884_500)).unwrap_err();
        assert!(matches!(err, SignatureError::NotCovered(_)), "{err}");
        let err = signature.check(&request, SystemTime::now()).unwrap_err();
        assert!(matches!(err, SignatureError::Expired), "{err}");
    }

    fn our_key() -> SigningKey {
        SigningKey::new(
            "https://peer.example/users/a#main-key",
            Arc::new(PrivateKey::from_pem(TEST_PRIVATE_PEM).unwrap()),
        )
    }

    fn signed(now: SystemTime) -> HeaderMap {
        let url = Url::parse("https://blog.example/ap/inbox?x=1").unwrap();
        let mut headers = HeaderMap::new();
        sign_message(
            &our_key(),
            &Method::POST,
            &url,
            &mut headers,
            Some(BODY),
            now,
        )
        .unwrap();
        headers
    }

    #[test]
    fn signed_here_verifies_under_mastodons_rules_and_tampering_fails() {
        let now = SystemTime::now();
        let headers = signed(now);
        let sig = RequestSignature::from_headers(&headers).unwrap();
        assert!(matches!(sig, RequestSignature::Message(_)));
        assert_eq!(sig.key_id(), "https://peer.example/users/a#main-key");
        let key = our_key().key.public_key();
        let request = incoming(&headers, "/ap/inbox?x=1", "blog.example");
        sig.verify(&request, "https", &key, now).unwrap();

        let err = sig
            .verify(
                &incoming(&headers, "/ap/inbox?x=2", "blog.example"),
                "https",
                &key,
                now,
            )
            .unwrap_err();
        assert!(matches!(err, SignatureError::Mismatch), "{err}");
        let err = sig.verify(&request, "http", &key, now).unwrap_err();
        assert!(matches!(err, SignatureError::Mismatch), "{err}");
        let mut tampered = request;
        tampered.body = Some(br#"{"hello": "world!"}"#);
        let err = sig.verify(&tampered, "https", &key, now).unwrap_err();
        assert!(
            matches!(err, SignatureError::DigestMismatch { .. }),
            "{err}"
        );
        let late = now + Duration::from_secs(5 * 60 + 3600 + 1);
        let err = sig.verify(&request, "https", &key, late).unwrap_err();
        assert!(matches!(err, SignatureError::Expired), "{err}");
    }

    #[test]
    fn refusals_follow_mastodon() {
        let now = SystemTime::now();
        let headers = signed(now);
        let with_input = |input: String| {
            let mut h = headers.clone();
            h.insert(SIGNATURE_INPUT, HeaderValue::from_str(&input).unwrap());
            MessageSignature::from_headers(&h)
        };
        let request = incoming(&headers, "/ap/inbox?x=1", "blog.example");
        let no_created =
            with_input("sig1=(\"@method\" \"@target-uri\" \"content-digest\");keyid=\"k\"".into())
                .unwrap();
        assert!(matches!(
            no_created.check(&request, now),
            Err(SignatureError::MissingParameter("created"))
        ));
        let created = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let no_digest = with_input(format!(
            "sig1=(\"@method\" \"@target-uri\");created={created};keyid=\"k\""
        ))
        .unwrap();
        assert!(matches!(
            no_digest.check(&request, now),
            Err(SignatureError::NotCovered(_))
        ));
        let pss = with_input(format!(
            "sig1=(\"@method\" \"@target-uri\" \"content-digest\");created={created};keyid=\"k\";alg=\"rsa-pss-sha512\""
        ))
        .unwrap();
        assert!(matches!(
            pss.check(&request, now),
            Err(SignatureError::UnsupportedAlgorithm(_))
        ));
        let mut sha512 = headers.clone();
        sha512.insert(CONTENT_DIGEST, HeaderValue::from_static("sha-512=:AAAA:"));
        let sig = MessageSignature::from_headers(&sha512).unwrap();
        let err = sig
            .check(&incoming(&sha512, "/ap/inbox?x=1", "blog.example"), now)
            .unwrap_err();
        assert!(
            matches!(err, SignatureError::DigestAlgorithm(ref o) if o == "sha-512"),
            "{err}"
        );
        for bad in [
            "sig1",
            "sig1=(\"@method\"",
            "sig1=(\"@method\";req);created=1;keyid=\"k\"",
            "sig1=(\"@Method\");created=1;keyid=\"k\"",
            "sig1=(\"@method\");created=1;keyid=\"k\", sig2=(\"@method\");created=1;keyid=\"k\"",
            "sig1=(\"@method\");created=-1;keyid=\"k\"",
            "sig1=(\"@method\");created=1.5;keyid=\"k\"",
        ] {
            let err = with_input(bad.into()).unwrap_err();
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST, "{bad}: {err}");
        }
        assert!(matches!(
            with_input("sig1=(\"@method\");created=1".into()),
            Err(SignatureError::MissingParameter("keyid"))
        ));
    }

    #[test]
    fn random_input_never_panics_the_parser() {
        use rand::{Rng, SeedableRng};
        let alphabet: Vec<u8> = b"sig1=();\"@:-?,* kAZ09+/\\.".to_vec();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..40);
            let text: String = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
                .collect();
            let _ = Parser::new(&text).dictionary();
        }
    }
}
