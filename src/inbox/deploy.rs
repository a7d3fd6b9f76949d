//! The deploy webhook: after the site is deployed, a POST here reads the live site's outboxes
//! from `base_url`, queues the new, edited and deleted posts for delivery, as `relais
//! publish` does, and wakes the worker.
//!
//! The caller proves itself in one of three ways, each with its own secret taken from the
//! environment variable the config names; without any of them the webhook does not exist
//! (404):
//! - Netlify's deploy notification: `X-Webhook-Signature` is an HS256 JWS made with the
//!   notification's "JWS secret token", with claims `iss = "netlify"` and `sha256` = the hex
//!   SHA-256 of the raw body (`inbox.netlify_jws_secret_env`);
//! - a GitHub-style `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`
//!   (`inbox.deploy_hmac_secret_env`), for a CI workflow;
//! - `Authorization: Bearer <token>` (`inbox.deploy_token_env`).
//!
//! The body itself is never used: it only has to be what was signed. What is published is
//! read from the live site, so a forged or replayed call can at most make the inbox look.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::delivery::{publish_live, DeliveryError};
use crate::inbox::server::{HttpError, InboxState};

pub const DEPLOY_PATH: &str = "/relais/deploy";
/// Netlify's deploy notification (the deploy as JSON) is a few kilobytes.
pub const MAX_DEPLOY_BODY: usize = 256 * 1024;

pub const NETLIFY_SIGNATURE_HEADER: &str = "x-webhook-signature";
pub const HUB_SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// The webhook's secrets, each present only when its variable is set and not empty.
#[derive(Debug, Default, Clone)]
pub struct DeploySecrets {
    pub netlify_jws: Option<Vec<u8>>,
    pub hmac: Option<Vec<u8>>,
    pub bearer: Option<Vec<u8>>,
}

impl DeploySecrets {
    pub fn from_env(config: &crate::config::InboxConfig) -> DeploySecrets {
        let read = |name: &str| {
            std::env::var_os(name)
                .map(|v| v.as_encoded_bytes().to_vec())
                .filter(|v| !v.is_empty())
        };
        DeploySecrets {
            netlify_jws: read(&config.netlify_jws_secret_env),
            hmac: read(&config.deploy_hmac_secret_env),
            bearer: read(&config.deploy_token_env),
        }
    }

    pub fn any(&self) -> bool {
        self.netlify_jws.is_some() || self.hmac.is_some() || self.bearer.is_some()
    }

    /// Whether one of the configured ways vouches for this request.
    pub fn authenticate(&self, headers: &HeaderMap, body: &[u8]) -> bool {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let netlify = self
            .netlify_jws
            .as_deref()
            .zip(header(NETLIFY_SIGNATURE_HEADER))
            .is_some_and(|(secret, jws)| verify_netlify(jws, body, secret));
        let hub = self
            .hmac
            .as_deref()
            .zip(header(HUB_SIGNATURE_HEADER))
            .is_some_and(|(secret, signature)| verify_hub_signature(signature, body, secret));
        let bearer = self
            .bearer
            .as_deref()
            .zip(header(axum::http::header::AUTHORIZATION.as_str()))
            .is_some_and(|(secret, value)| verify_bearer(value, secret));
        netlify || hub || bearer
    }
}

#[derive(serde::Deserialize)]
struct NetlifyClaims {
    sha256: String,
}

/// Netlify's `X-Webhook-Signature`: an HS256 JWS with `iss = "netlify"` whose `sha256`
/// claim is the hex SHA-256 of `body` (Netlify writes it in lowercase; either case is read).
/// The signature is checked by `jsonwebtoken` (HMAC verified in constant time, `alg` pinned
/// to HS256), the hash compared in constant time.
pub fn verify_netlify(jws: &str, body: &[u8], secret: &[u8]) -> bool {
    use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&["netlify"]);
    // Netlify's claims are `iss` and `sha256`; an `exp`, if ever sent, is still checked.
    validation.set_required_spec_claims(&["iss"]);
    let Ok(token) = decode::<NetlifyClaims>(jws, &DecodingKey::from_secret(secret), &validation)
    else {
        return false;
    };
    let Some(claimed) = decode_hex(&token.claims.sha256) else {
        return false;
    };
    claimed.ct_eq(Sha256::digest(body).as_slice()).into()
}

/// GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
pub fn verify_hub_signature(header: &str, body: &[u8], secret: &[u8]) -> bool {
    let Some(signature) = header.trim().strip_prefix("sha256=").and_then(decode_hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// `Authorization: Bearer <token>`, the scheme in any case (RFC 9110 §11.1).
pub fn verify_bearer(header: &str, secret: &[u8]) -> bool {
    let Some((scheme, token)) = header.trim().split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && token.trim().as_bytes().ct_eq(secret).into()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// 429 for a client that failed to authenticate too often.
fn too_many_failures(wait: Duration) -> HttpError {
    HttpError::too_many("too many failed attempts from this address", wait)
}

pub async fn deploy(
    State(state): State<InboxState>,
    // `Extension`: axum 0.8's `Option<ConnectInfo>` no longer extracts.
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, HttpError> {
    let secrets = DeploySecrets::from_env(&state.config.inbox);
    if !secrets.any() {
        return Err(HttpError::not_found("the deploy webhook is not enabled"));
    }
    // Whoever failed too often is refused before its credentials are even looked at.
    let client =
        peer.map(|Extension(ConnectInfo(peer))| state.limits.client_address(peer.ip(), &headers));
    if let Some(client) = &client {
        state
            .limits
            .deploy_failures
            .check(client)
            .map_err(too_many_failures)?;
    }
    let body = axum::body::to_bytes(body, MAX_DEPLOY_BODY)
        .await
        .map_err(|_| {
            HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a deploy notification has at most {MAX_DEPLOY_BODY} bytes"),
            )
        })?;
    if !secrets.authenticate(&headers, &body) {
        if let Some(client) = &client {
            tracing::info!("deploy: failed authentication from {client}");
            state
                .limits
                .deploy_failures
                .failed(client)
                .map_err(too_many_failures)?;
        }
        return Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "a valid X-Webhook-Signature (Netlify), X-Hub-Signature-256 or \
             `Authorization: Bearer` token is required",
        ));
    }
    let (_, queued) = publish_live(&state.store, &state.config, &state.client, false)
        .await
        .map_err(|e| {
            let message = format!("cannot read the live site: {e}; nothing was queued");
            tracing::warn!("deploy: {message:?}");
            HttpError::new(StatusCode::BAD_GATEWAY, message)
        })?;
    let report = match queued {
        Ok(report) => report,
        Err(e) if e.is_held_delete() => {
            tracing::warn!("deploy: {:?}", e.to_string());
            return Err(HttpError::new(StatusCode::CONFLICT, e.to_string()));
        }
        Err(DeliveryError::Store(e)) => return Err(e.into()),
        Err(e) => {
            tracing::error!("deploy: {e}");
            return Err(HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the deploy task failed",
            ));
        }
    };
    state.wake.notify_one();
    tracing::info!(
        "deploy: queued {} creates, {} updates, {} deletes, {} announces ({} deliveries)",
        report.creates,
        report.updates,
        report.deletes,
        report.announces,
        report.deliveries
    );
    Ok(Json(json!({
        "creates": report.creates,
        "updates": report.updates,
        "deletes": report.deletes,
        "announces": report.announces,
        "skipped_old": report.skipped_old,
        "deliveries": report.deliveries,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fixed vectors made outside relais: the JWS with PyJWT 2.15.1
    // (`jwt.encode({"iss": "netlify", "sha256": hashlib.sha256(body).hexdigest()},
    // "jws-secret", algorithm="HS256")`), the HMAC as GitHub's documentation gives it.
    const BODY: &[u8] = b"{\"id\":\"5ebc34bf4fea0b01f02efa3a\",\"state\":\"ready\"}";
    const NETLIFY_SECRET: &[u8] = b"jws-secret";

    #[test]
    fn github_documentation_vector() {
        // docs.github.com, "Validating webhook deliveries": secret "It's a Secret to
        // Everybody", payload "Hello, World!".
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(verify_hub_signature(
            header,
            b"Hello, World!",
            b"It's a Secret to Everybody"
        ));
        assert!(verify_hub_signature(
            &header.to_uppercase().replace("SHA256=", "sha256="),
            b"Hello, World!",
            b"It's a Secret to Everybody"
        ));
        assert!(!verify_hub_signature(
            header,
            b"Hello, World?",
            b"It's a Secret to Everybody"
        ));
        assert!(!verify_hub_signature(header, b"Hello, World!", b"other"));
        assert!(!verify_hub_signature(
            header.trim_start_matches("sha256="),
            b"Hello, World!",
            b"It's a Secret to Everybody"
        ));
        assert!(!verify_hub_signature("sha256=zz", b"", b"s"));
    }

    #[test]
    fn netlify_vector() {
        let jws = include_str!("../../tests/fixtures/netlify_jws.txt").trim();
        assert!(verify_netlify(jws, BODY, NETLIFY_SECRET));
        assert!(!verify_netlify(
            jws,
            b"{\"state\":\"error\"}",
            NETLIFY_SECRET
        ));
        assert!(!verify_netlify(jws, BODY, b"other-secret"));
        let mut tampered = jws.to_string();
        tampered.pop();
        tampered.push('A');
        assert!(!verify_netlify(&tampered, BODY, NETLIFY_SECRET));
    }

    #[test]
    fn netlify_claims_are_required() {
        use jsonwebtoken::{encode, EncodingKey, Header};
        let sign = |claims: Value, alg| {
            encode(
                &Header::new(alg),
                &claims,
                &EncodingKey::from_secret(NETLIFY_SECRET),
            )
            .unwrap()
        };
        let hash = hex(&Sha256::digest(BODY));
        let good = json!({"iss": "netlify", "sha256": hash});
        assert!(verify_netlify(
            &sign(good, jsonwebtoken::Algorithm::HS256),
            BODY,
            NETLIFY_SECRET
        ));
        let wrong_issuer = json!({"iss": "github", "sha256": hash});
        assert!(!verify_netlify(
            &sign(wrong_issuer, jsonwebtoken::Algorithm::HS256),
            BODY,
            NETLIFY_SECRET
        ));
        let no_issuer = json!({"sha256": hash});
        assert!(!verify_netlify(
            &sign(no_issuer, jsonwebtoken::Algorithm::HS256),
            BODY,
            NETLIFY_SECRET
        ));
        let expired = json!({"iss": "netlify", "sha256": hash, "exp": 1_000_000});
        assert!(!verify_netlify(
            &sign(expired, jsonwebtoken::Algorithm::HS256),
            BODY,
            NETLIFY_SECRET
        ));
        let other_alg = json!({"iss": "netlify", "sha256": hash});
        assert!(!verify_netlify(
            &sign(other_alg, jsonwebtoken::Algorithm::HS512),
            BODY,
            NETLIFY_SECRET
        ));
        // An unsigned token (`alg: none`) is refused.
        let unsigned = format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
            base64_url(&json!({"iss": "netlify", "sha256": hash}).to_string())
        );
        assert!(!verify_netlify(&unsigned, BODY, NETLIFY_SECRET));
    }

    #[test]
    fn bearer_scheme_in_any_case() {
        assert!(verify_bearer("Bearer token", b"token"));
        assert!(verify_bearer("bearer token", b"token"));
        assert!(verify_bearer("BEARER  token ", b"token"));
        assert!(!verify_bearer("Basic token", b"token"));
        assert!(!verify_bearer("Bearer tokeN", b"token"));
        assert!(!verify_bearer("Bearer tok", b"token"));
        assert!(!verify_bearer("Bearer", b"token"));
        assert!(!verify_bearer("token", b"token"));
    }

    #[test]
    fn only_configured_ways_count() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer token".parse().unwrap());
        let none = DeploySecrets::default();
        assert!(!none.any());
        assert!(!none.authenticate(&headers, b""));
        let hmac_only = DeploySecrets {
            hmac: Some(b"token".to_vec()),
            ..DeploySecrets::default()
        };
        // The HMAC secret is not a bearer token.
        assert!(!hmac_only.authenticate(&headers, b""));
        let bearer = DeploySecrets {
            bearer: Some(b"token".to_vec()),
            ..DeploySecrets::default()
        };
        assert!(bearer.authenticate(&headers, b""));
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn base64_url(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }
}
