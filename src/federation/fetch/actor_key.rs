//! Finding the key a signature's `keyId` names, and the actor owning it, as Mastodon does
//! (an actor listing the key, GoToSocial's `/main-key` documents, or a key document with
//! an `owner`).

use serde_json::Value;
use url::Url;

use super::{FederationClient, FetchError, IdCheck};
use crate::federation::keys::{parse_public_key_pem, PublicKey};
use crate::federation::signature::SigningKey;

/// An actor's public key, as found by [`FederationClient::fetch_actor_key`].
#[derive(Debug, Clone)]
pub struct ActorKey {
    /// The actor that owns the key: the one a signed request speaks for.
    pub actor_id: String,
    pub public_key: PublicKey,
    /// The owner's actor document, as served from its own id: callers need not fetch it
    /// again.
    pub actor: Value,
}
impl FederationClient {
    /// Finds the key a `keyId` names and the actor owning it, as Mastodon does:
    /// - the keyId (fragment removed) serves an actor listing the key in `publicKey` (object
    ///   or array); that document is the actor when its `id` is the URL it was served from,
    ///   else (GoToSocial's `/main-key`) the actor is fetched from its id to confirm it;
    /// - or it serves a key document (`publicKeyPem` + `owner`) whose owner, fetched, lists
    ///   the key.
    ///
    /// Ids are compared with the URL a document was finally served from, after redirects.
    pub async fn fetch_actor_key(
        &self,
        key_id: &str,
        signer: Option<&SigningKey>,
    ) -> Result<ActorKey, FetchError> {
        let key_error = |reason: String| FetchError::Key {
            key_id: key_id.to_string(),
            reason,
        };
        let (document, served_from) = self.fetch_document(key_id, signer, IdCheck::Skip).await?;
        let id = document
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| key_error("the fetched document has no id".into()))?;
        let served_from_id = Url::parse(id).ok().is_some_and(|mut id_url| {
            id_url.set_fragment(None);
            id_url == served_from
        });

        if document.get("publicKeyPem").is_some() {
            if !served_from_id {
                return Err(key_error(format!(
                    "the key document says its id is {id:?}, but was served from {served_from}"
                )));
            }
            let owner = document
                .get("owner")
                .and_then(value_or_id)
                .ok_or_else(|| key_error("the key document has no owner".into()))?;
            let actor = self.fetch_json(owner, signer, IdCheck::MatchUrl).await?;
            let listed = public_keys(&actor).any(|entry| value_or_id(entry) == Some(id));
            if !listed {
                return Err(key_error(format!("its owner {owner} does not list it")));
            }
            return Ok(ActorKey {
                actor_id: owner.to_string(),
                public_key: key_from(&document, key_id)?,
                actor,
            });
        }

        // Either way the actor document below was served from its own id.
        let actor_id = id.to_string();
        let actor = if Url::parse(id).ok().as_ref() == Some(&served_from) {
            document
        } else {
            self.fetch_json(id, signer, IdCheck::MatchUrl).await?
        };
        let entry = public_keys(&actor)
            .find(|entry| value_or_id(entry) == Some(key_id))
            .ok_or_else(|| key_error(format!("the actor {actor_id} does not list this key")))?;
        if let Some(owner) = entry.get("owner").and_then(value_or_id) {
            if owner != actor_id {
                return Err(key_error(format!(
                    "the key's owner {owner} is not the actor {actor_id}"
                )));
            }
        }
        let public_key = key_from(entry, key_id)?;
        Ok(ActorKey {
            public_key,
            actor_id,
            actor,
        })
    }
}

/// The entries of an actor's `publicKey`, which may be one object or id, or an array.
fn public_keys(actor: &Value) -> impl Iterator<Item = &Value> {
    let keys = actor.get("publicKey");
    let list: &[Value] = match keys {
        Some(Value::Array(entries)) => entries,
        Some(single) => std::slice::from_ref(single),
        None => &[],
    };
    list.iter()
}

/// A reference that is either a URL string or an object with an `id`.
fn value_or_id(value: &Value) -> Option<&str> {
    match value {
        Value::String(id) => Some(id),
        other => other.get("id").and_then(Value::as_str),
    }
}

fn key_from(entry: &Value, key_id: &str) -> Result<PublicKey, FetchError> {
    let key_error = |reason: String| FetchError::Key {
        key_id: key_id.to_string(),
        reason,
    };
    let pem = entry
        .get("publicKeyPem")
        .and_then(Value::as_str)
        .ok_or_else(|| key_error("no publicKeyPem".into()))?;
    parse_public_key_pem(pem).map_err(|e| key_error(e.to_string()))
}
