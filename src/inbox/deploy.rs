//! The deploy webhook: after the site is built and deployed, a POST here queues the new,
//! edited and deleted posts for delivery, as `relais publish` does, and wakes the worker.
//!
//! It reads the built output the inbox serves (`public/`), so the deploy must put the
//! build there too. The bearer token comes from the environment variable named by
//! `inbox.deploy_token_env`; without it the webhook does not exist (404).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use crate::delivery::{load_published_posts, plan_and_enqueue, DeliveryError};
use crate::inbox::server::{HttpError, InboxState};

pub const DEPLOY_PATH: &str = "/relais/deploy";

/// Compares without stopping at the first difference, so timing says nothing of the token.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

pub async fn deploy(
    State(state): State<InboxState>,
    headers: HeaderMap,
) -> Result<Json<Value>, HttpError> {
    let Some(expected) = std::env::var_os(&state.config.inbox.deploy_token_env) else {
        return Err(HttpError::not_found("the deploy webhook is not enabled"));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if expected.is_empty() || !same_secret(given.as_bytes(), expected.as_encoded_bytes()) {
        return Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "a valid `Authorization: Bearer` token is required",
        ));
    }
    let config = state.config.clone();
    let public_dir = state.public_dir.clone();
    let store = state.store.clone();
    let planned = tokio::task::spawn_blocking(move || {
        let posts = load_published_posts(&config, &public_dir)?;
        plan_and_enqueue(&store, &config, &posts, chrono::Utc::now(), false)
    })
    .await
    .map_err(|e| {
        tracing::error!("deploy task failed: {e}");
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "the deploy task failed")
    })?;
    let report = match planned {
        Ok(report) => report,
        Err(e @ (DeliveryError::Load(_) | DeliveryError::WouldDeleteEverything(_))) => {
            return Err(HttpError::new(StatusCode::CONFLICT, e.to_string()))
        }
        Err(DeliveryError::Store(e)) => return Err(e.into()),
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
    use super::same_secret;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"token", b"token"));
        assert!(!same_secret(b"tokeN", b"token"));
        assert!(!same_secret(b"tok", b"token"));
        assert!(!same_secret(b"", b"token"));
    }
}
