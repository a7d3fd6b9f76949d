//! Dynamic GET endpoints: followers and replies collections, and the public interactions
//! JSON read by the page script and by remote builds.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::federation::vocab::context;
use crate::federation::vocab::ACTIVITY_JSON_UTF8;
use crate::inbox::server::{blocking, HttpError, InboxState};

/// Followers listed per page (Mastodon lists 12; ids are short, so more per request).
pub const FOLLOWERS_PAGE_SIZE: u64 = 50;
pub const REPLIES_PAGE_SIZE: u64 = 20;

/// An ActivityStreams document, readable from any origin.
pub fn activity_json(value: &Value) -> Response {
    (
        [
            (header::CONTENT_TYPE, ACTIVITY_JSON_UTF8),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::VARY, "Accept"),
        ],
        value.to_string(),
    )
        .into_response()
}

/// `?page=N` (1-based); `page=true` is Mastodon's spelling of the first page.
fn page_number(query: &HashMap<String, String>) -> Result<Option<u64>, HttpError> {
    match query.get("page").map(String::as_str) {
        None => Ok(None),
        Some("true") => Ok(Some(1)),
        Some(text) => match text.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => Err(HttpError::new(
                StatusCode::BAD_REQUEST,
                format!("page {text:?} is not a page number"),
            )),
        },
    }
}

/// `GET /ap/users/{name}/followers`: the count always; the ids only when
/// `fediverse.followers_public` (otherwise pages answer 403, as Mastodon's hidden ones do).
pub async fn followers(
    State(state): State<InboxState>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, HttpError> {
    if !state.site.actor_names.contains(&name) {
        return Err(HttpError::not_found(format!("no actor {name:?} here")));
    }
    let id = state.site.urls.followers(&name);
    let public = state.config.fediverse.followers_public;
    let page = page_number(&query)?;
    let (count, items) = {
        let name = name.clone();
        let offset = page.map(|p| (p - 1) * FOLLOWERS_PAGE_SIZE);
        blocking(&state.store, move |store| {
            let count = store.follower_count(&name)?;
            let items = match offset {
                Some(offset) if public => store.follower_ids(&name, offset, FOLLOWERS_PAGE_SIZE)?,
                _ => Vec::new(),
            };
            Ok((count, items))
        })
        .await?
    };
    let doc = match page {
        None => {
            let mut doc = json!({
                "@context": context(),
                "id": id,
                "type": "OrderedCollection",
                "totalItems": count,
            });
            if public {
                doc["first"] = json!(format!("{id}?page=1"));
            }
            doc
        }
        Some(_) if !public => {
            return Err(HttpError::new(
                StatusCode::FORBIDDEN,
                "this actor's followers are not public",
            ))
        }
        Some(n) => {
            let mut doc = json!({
                "@context": context(),
                "id": format!("{id}?page={n}"),
                "type": "OrderedCollectionPage",
                "totalItems": count,
                "partOf": id,
                "orderedItems": items,
            });
            if n * FOLLOWERS_PAGE_SIZE < count {
                doc["next"] = json!(format!("{id}?page={}", n + 1));
            }
            if n > 1 {
                doc["prev"] = json!(format!("{id}?page={}", n - 1));
            }
            doc
        }
    };
    Ok(activity_json(&doc))
}

/// The object id of the post whose replies collection is at `path` (`/ap/posts/a/replies`).
fn post_of_replies_path(state: &InboxState, path: &str) -> Option<String> {
    let post = path.strip_suffix("/replies")?;
    let object = format!("{}{post}.json", state.site.urls.base());
    state.site.is_our_post(&object).then_some(object)
}

/// `GET /ap/{post}/replies`: ids of the visible direct replies, shaped like Mastodon's own
/// (a `Collection` whose `first` page is embedded and lists `items`), which is what its
/// `FetchRepliesService` reads.
pub async fn replies(
    state: &InboxState,
    path: &str,
    query: &HashMap<String, String>,
) -> Result<Response, HttpError> {
    let Some(object) = post_of_replies_path(state, path) else {
        return Err(HttpError::not_found(format!(
            "no post has replies at {path}"
        )));
    };
    let id = format!("{}{path}", state.site.urls.base());
    let page = page_number(query)?;
    let number = page.unwrap_or(1);
    let mut items = blocking(&state.store, move |store| {
        // One more than a page tells whether there is a next one.
        store.reply_ids_to(
            &object,
            (number - 1) * REPLIES_PAGE_SIZE,
            REPLIES_PAGE_SIZE + 1,
        )
    })
    .await?;
    let has_next = items.len() as u64 > REPLIES_PAGE_SIZE;
    items.truncate(REPLIES_PAGE_SIZE as usize);
    let mut page_doc = json!({
        "id": format!("{id}?page={number}"),
        "type": "CollectionPage",
        "partOf": id,
        "items": items,
    });
    if has_next {
        page_doc["next"] = json!(format!("{id}?page={}", number + 1));
    }
    let doc = match page {
        Some(_) => {
            page_doc["@context"] = context();
            page_doc
        }
        None => json!({
            "@context": context(),
            "id": id,
            "type": "Collection",
            "first": page_doc,
        }),
    };
    Ok(activity_json(&doc))
}

/// `GET /ap/interactions?post=<object id>`: visible replies (threaded), likes and boosts.
pub async fn interactions(
    State(state): State<InboxState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, HttpError> {
    // Without `?post=`: every post's interactions keyed by object id, for `relais build
    // --remote-interactions` on a host that has no store.
    let body = match query.get("post").cloned() {
        None => {
            let all = blocking(&state.store, |store| store.all_interactions()).await?;
            serde_json::to_string(&all)
        }
        Some(post) => {
            if !state.site.is_our_post(&post) {
                return Err(HttpError::not_found(format!("{post} is none of our posts")));
            }
            let found = blocking(&state.store, move |store| store.post_interactions(&post)).await?;
            serde_json::to_string(&found)
        }
    }
    .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json; charset=utf-8"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::CACHE_CONTROL, "public, max-age=60"),
        ],
        body,
    )
        .into_response())
}

/// `GET /ap/quote_authorizations/{token}`: a `QuoteAuthorization` we granted, which the
/// quoting server (and anyone showing the quote) fetches to check the quote is approved.
pub async fn quote_authorization(
    State(state): State<InboxState>,
    Path(token): Path<String>,
) -> Result<Response, HttpError> {
    let found = {
        let token = token.clone();
        blocking(&state.store, move |store| store.quote_authorization(&token)).await?
    };
    let auth =
        found.ok_or_else(|| HttpError::not_found(format!("no quote authorization {token:?}")))?;
    Ok(activity_json(
        &crate::inbox::process::quote_authorization_document(&state.site, &auth),
    ))
}
