//! The ActivityPub vocabulary relais speaks, defined once: the public collection, the
//! media types it sends, asks for and accepts, and the JSON-LD contexts of its documents
//! and activities.

use serde_json::{json, Value};

/// The ActivityStreams context, alone the `@context` of the activities we send.
pub const AS_CONTEXT: &str = "https://www.w3.org/ns/activitystreams";
/// The security vocabulary (`publicKey`).
pub const SECURITY_CONTEXT: &str = "https://w3id.org/security/v1";
/// The public collection: addressed to it, a post is public.
pub const AS_PUBLIC: &str = "https://www.w3.org/ns/activitystreams#Public";

/// The content type of what we deliver and serve.
pub const ACTIVITY_JSON: &str = "application/activity+json";
/// [`ACTIVITY_JSON`] as static hosts and the inbox serve files.
pub const ACTIVITY_JSON_UTF8: &str = "application/activity+json; charset=utf-8";
/// JSON-LD, ActivityStreams' other media type (with the ActivityStreams profile).
pub const LD_JSON: &str = "application/ld+json";
/// What we ask for: Mastodon's own `Accept` for ActivityPub documents.
pub const ACTIVITY_JSON_ACCEPT: &str =
    "application/activity+json, application/ld+json; profile=\"https://www.w3.org/ns/activitystreams\"";
/// Media types read as activities, received or fetched: plain `application/json` too, as
/// some servers answer with it.
pub const ACCEPTED_MEDIA_TYPES: &[&str] = &[ACTIVITY_JSON, LD_JSON, "application/json"];

/// Whether a `Content-Type` header value is one of [`ACCEPTED_MEDIA_TYPES`], whatever its
/// parameters and case.
pub fn is_accepted_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    ACCEPTED_MEDIA_TYPES.contains(&essence.as_str())
}

/// `@context` of every document: ActivityStreams, the security vocabulary (publicKey) and
/// the extensions Mastodon understands, as Mastodon itself declares them.
pub fn context() -> Value {
    json!([
        AS_CONTEXT,
        SECURITY_CONTEXT,
        {
            "manuallyApprovesFollowers": "as:manuallyApprovesFollowers",
            "sensitive": "as:sensitive",
            "Hashtag": "as:Hashtag",
            "toot": "http://joinmastodon.org/ns#",
            "featured": { "@id": "toot:featured", "@type": "@id" },
            "discoverable": "toot:discoverable",
            "indexable": "toot:indexable",
            "alsoKnownAs": { "@id": "as:alsoKnownAs", "@type": "@id" },
            "movedTo": { "@id": "as:movedTo", "@type": "@id" },
            "schema": "http://schema.org#",
            "PropertyValue": "schema:PropertyValue",
            "value": "schema:value",
            "gts": "https://gotosocial.org/ns#",
            "interactionPolicy": { "@id": "gts:interactionPolicy", "@type": "@id" },
            "canQuote": { "@id": "gts:canQuote", "@type": "@id" },
            "automaticApproval": { "@id": "gts:automaticApproval", "@type": "@id" },
            "manualApproval": { "@id": "gts:manualApproval", "@type": "@id" },
            "interactingObject": { "@id": "gts:interactingObject", "@type": "@id" },
            "interactionTarget": { "@id": "gts:interactionTarget", "@type": "@id" },
            "QuoteRequest": "https://w3id.org/fep/044f#QuoteRequest",
            "QuoteAuthorization": "https://w3id.org/fep/044f#QuoteAuthorization"
        }
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_media_types_ignore_parameters_and_case() {
        for accepted in [
            "application/activity+json",
            "application/activity+json; charset=utf-8",
            "application/ld+json; profile=\"https://www.w3.org/ns/activitystreams\"",
            "Application/JSON",
        ] {
            assert!(is_accepted_media_type(accepted), "{accepted}");
        }
        for refused in ["text/html", "", "application/jsonx", "text/json"] {
            assert!(!is_accepted_media_type(refused), "{refused}");
        }
    }
}
