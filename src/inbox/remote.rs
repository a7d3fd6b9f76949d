//! Remote actor documents, read into what the store caches.

use serde_json::Value;

use crate::inbox::activity::{href_of, id_of};
use crate::store::{host_of, time, RemoteActor};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActorDocError {
    #[error("actor document has no {0}")]
    Missing(&'static str),
    #[error("actor {actor}: {what} {url:?} is not an http(s) URL")]
    BadUrl {
        actor: String,
        what: &'static str,
        url: String,
    },
}

fn http_url(actor: &str, what: &'static str, url: &str) -> Result<String, ActorDocError> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            Ok(url.to_string())
        }
        _ => Err(ActorDocError::BadUrl {
            actor: actor.to_string(),
            what,
            url: url.to_string(),
        }),
    }
}

/// The actor's own key: the first `publicKey` entry (Mastodon publishes one object, some
/// servers an array) with a PEM whose owner, if named, is the actor.
fn own_key<'a>(doc: &'a Value, actor_id: &str) -> Option<&'a Value> {
    let candidates: Vec<&Value> = match doc.get("publicKey")? {
        Value::Array(keys) => keys.iter().collect(),
        key => vec![key],
    };
    candidates.into_iter().find(|key| {
        let owner_ok = key
            .get("owner")
            .and_then(id_of)
            .is_none_or(|owner| owner == actor_id);
        owner_ok && key.get("publicKeyPem").and_then(Value::as_str).is_some()
    })
}

/// Reads an actor document. Its key is taken when it lists one of its own; otherwise the key
/// fields stay empty and the next signature from it fetches the key.
pub fn actor_from_document(doc: &Value) -> Result<RemoteActor, ActorDocError> {
    let id = doc
        .get("id")
        .and_then(Value::as_str)
        .ok_or(ActorDocError::Missing("id"))?;
    let id = http_url(id, "id", id)?;
    let inbox = doc
        .get("inbox")
        .and_then(Value::as_str)
        .ok_or(ActorDocError::Missing("inbox"))?;
    let inbox = http_url(&id, "inbox", inbox)?;
    let shared_inbox = doc
        .get("endpoints")
        .and_then(|e| e.get("sharedInbox"))
        .and_then(Value::as_str)
        .map(|u| http_url(&id, "sharedInbox", u))
        .transpose()?;
    let key = own_key(doc, &id);
    let username = doc
        .get("preferredUsername")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty());
    let host = host_of(&id).unwrap_or_default();
    let handle = match username {
        Some(user) => format!("@{user}@{host}"),
        None => id.clone(),
    };
    let name = doc
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .or(username)
        .unwrap_or(&handle)
        .to_string();
    // Shown as links and images on our pages: only http(s), anything else is dropped.
    let url = doc
        .get("url")
        .and_then(href_of)
        .and_then(|u| http_url(&id, "url", u).ok())
        .unwrap_or_else(|| id.clone());
    let avatar = doc
        .get("icon")
        .and_then(href_of)
        .and_then(|u| http_url(&id, "icon", u).ok());
    let also_known_as = match doc.get("alsoKnownAs") {
        Some(Value::Array(items)) => items.iter().filter_map(id_of).map(str::to_string).collect(),
        Some(other) => id_of(other).map(str::to_string).into_iter().collect(),
        None => Vec::new(),
    };
    Ok(RemoteActor {
        key_id: key.and_then(id_of).unwrap_or_default().to_string(),
        public_key_pem: key
            .and_then(|k| k.get("publicKeyPem"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        moved_to: doc.get("movedTo").and_then(id_of).map(str::to_string),
        id,
        inbox,
        shared_inbox,
        name,
        handle,
        url,
        avatar,
        also_known_as,
        fetched_at: time::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture() -> Value {
        let text = include_str!("../../tests/fixtures/mastodon_actor.json")
            .replace("{{BASE}}", "https://m.example")
            .replace("{{USER}}", "alice")
            .replace(
                "{{PEM}}",
                "-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----\\n",
            );
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn reads_a_mastodon_actor() {
        let actor = actor_from_document(&fixture()).unwrap();
        assert_eq!(actor.id, "https://m.example/users/alice");
        assert_eq!(actor.inbox, "https://m.example/users/alice/inbox");
        assert_eq!(
            actor.shared_inbox.as_deref(),
            Some("https://m.example/inbox")
        );
        assert_eq!(actor.handle, "@alice@m.example");
        assert_eq!(actor.name, "Alice Example");
        assert_eq!(actor.url, "https://m.example/@alice");
        assert!(actor.avatar.unwrap().ends_with(".png"));
        assert_eq!(actor.key_id, "https://m.example/users/alice#main-key");
        assert!(actor
            .public_key_pem
            .starts_with("-----BEGIN PUBLIC KEY-----\nAAAA"));
        assert_eq!(actor.moved_to, None);
    }

    #[test]
    fn a_key_owned_by_another_actor_is_not_taken() {
        let mut doc = fixture();
        doc["publicKey"]["owner"] = json!("https://m.example/users/mallory");
        let actor = actor_from_document(&doc).unwrap();
        assert_eq!(actor.public_key_pem, "");
        assert_eq!(actor.key_id, "");
    }

    #[test]
    fn falls_back_on_username_and_drops_unsafe_urls() {
        let doc = json!({
            "id": "https://p.example/u/bob", "type": "Person", "inbox": "https://p.example/u/bob/inbox",
            "preferredUsername": "bob", "name": "  ",
            "url": "javascript:alert(1)", "icon": { "type": "Image", "url": "data:image/png;base64,AA" },
            "alsoKnownAs": "https://old.example/bob",
            "movedTo": "https://new.example/bob",
            "publicKey": [{ "id": "https://p.example/u/bob#k", "owner": "https://p.example/u/bob", "publicKeyPem": "PEM" }]
        });
        let actor = actor_from_document(&doc).unwrap();
        assert_eq!(actor.name, "bob");
        assert_eq!(actor.url, actor.id);
        assert_eq!(actor.avatar, None);
        assert_eq!(actor.shared_inbox, None);
        assert_eq!(
            actor.also_known_as,
            vec!["https://old.example/bob".to_string()]
        );
        assert_eq!(actor.moved_to.as_deref(), Some("https://new.example/bob"));
        let mut bad = doc.clone();
        bad["inbox"] = json!("ftp://p.example/inbox");
        assert!(matches!(
            actor_from_document(&bad),
            Err(ActorDocError::BadUrl { what: "inbox", .. })
        ));
    }
}
