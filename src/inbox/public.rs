//! The built site's federation documents, served with the content types Mastodon expects,
//! for static hosts that cannot set headers (`inbox.serve_public`). WebFinger is answered
//! from the configuration, always: the static host sends every query it has no literal
//! rule for here.

use std::collections::HashMap;
use std::path::PathBuf;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::federation::documents::{actors, webfinger_document};
use crate::federation::hostrules::{JRD_JSON_UTF8, NODEINFO_JSON};
use crate::federation::vocab::ACTIVITY_JSON_UTF8;
use crate::inbox::collections;
use crate::inbox::server::{HttpError, InboxState};

/// The file under the output folder for a decoded site path, if the path is plain: no
/// empty, `.` or `..` segments, no backslashes.
fn file_for(state: &InboxState, site_path: &str) -> Option<PathBuf> {
    let relative = site_path.strip_prefix('/')?;
    let plain = relative
        .split('/')
        .all(|segment| !matches!(segment, "" | "." | "..") && !segment.contains(['\\', '\0']));
    plain.then(|| state.public_dir.join(relative))
}

async fn serve_file(
    state: &InboxState,
    site_path: &str,
    content_type: &'static str,
) -> Result<Response, HttpError> {
    let not_found = || HttpError::not_found(format!("nothing at {site_path}"));
    if !state.config.inbox.serve_public {
        return Err(not_found());
    }
    let path = file_for(state, site_path).ok_or_else(not_found)?;
    let bytes = tokio::fs::read(&path).await.map_err(|_| not_found())?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /ap/...`: a replies collection, else a static document.
pub async fn ap_get(
    State(state): State<InboxState>,
    Path(rest): Path<String>,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, HttpError> {
    if uri.path().ends_with("/replies") {
        return collections::replies(&state, uri.path(), &query).await;
    }
    serve_file(&state, &format!("/ap/{rest}"), ACTIVITY_JSON_UTF8).await
}

/// `GET /webfinger/NAME.json`, the files the host rules route WebFinger queries to.
pub async fn webfinger_file(
    State(state): State<InboxState>,
    Path(file): Path<String>,
) -> Result<Response, HttpError> {
    serve_file(&state, &format!("/webfinger/{file}"), JRD_JSON_UTF8).await
}

pub async fn nodeinfo_links(State(state): State<InboxState>) -> Result<Response, HttpError> {
    serve_file(
        &state,
        crate::federation::urls::Urls::NODEINFO_WELL_KNOWN_PATH,
        "application/json",
    )
    .await
}

pub async fn nodeinfo(State(state): State<InboxState>) -> Result<Response, HttpError> {
    serve_file(
        &state,
        crate::federation::urls::Urls::NODEINFO_PATH,
        NODEINFO_JSON,
    )
    .await
}

/// `GET /.well-known/webfinger?resource=acct:NAME@HOST` (or `resource=<actor id>`).
pub async fn webfinger(
    State(state): State<InboxState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, HttpError> {
    let Some(resource) = query.get("resource").map(|r| r.trim()) else {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "the resource parameter is missing",
        ));
    };
    let host = state.config.host();
    let wanted = match resource.strip_prefix("acct:") {
        Some(acct) => acct
            .rsplit_once('@')
            .filter(|(_, h)| h.eq_ignore_ascii_case(&host))
            .map(|(name, _)| name.trim_start_matches('@').to_string()),
        None => state.site.actor_name(resource).map(str::to_string),
    };
    let actor = wanted.and_then(|name| {
        actors(&state.config)
            .into_iter()
            .find(|a| a.name.eq_ignore_ascii_case(&name))
    });
    let Some(actor) = actor else {
        return Err(HttpError::not_found(format!("no account {resource} here")));
    };
    let doc = webfinger_document(&state.config, &state.site.urls, &actor);
    Ok((
        [
            (header::CONTENT_TYPE, JRD_JSON_UTF8),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        doc.to_string(),
    )
        .into_response())
}
