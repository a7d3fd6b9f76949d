//! Every activity relais sends (and the FEP-044f stamp it serves), as typed structs
//! serialized with serde, the way Lemmy's `activitypub-federation` builds its activities:
//! one struct per shape, its `type` a kind enum, the `@context` added by [`WithContext`].
//!
//! The shapes are Mastodon's serializers: `CreateSerializer`/`UpdateSerializer` and
//! `DeleteSerializer` for posts, `AcceptFollowSerializer`/`RejectFollowSerializer`,
//! `MoveSerializer`, `QuoteAuthorizationSerializer` and its `Accept`/`Reject` of a
//! `QuoteRequest`, `DeleteQuoteAuthorizationSerializer`. [`WithContext::to_value`] gives
//! the JSON that is queued and signed; its keys are sorted as before these structs existed,
//! so the bytes on the wire did not change (`tests/fixtures/activities/` holds them).

use serde::Serialize;
use serde_json::Value;

use crate::federation::vocab::{context, AS_CONTEXT, AS_PUBLIC};

/// An activity or document with its `@context`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WithContext<T> {
    #[serde(rename = "@context")]
    pub context: Value,
    #[serde(flatten)]
    pub inner: T,
}

impl<T: Serialize> WithContext<T> {
    /// With the full context of our documents ([`context`]): what posts' activities and
    /// the quote answers carry, as Mastodon's do.
    pub fn full(inner: T) -> Self {
        WithContext {
            context: context(),
            inner,
        }
    }

    /// With the ActivityStreams context alone, as Mastodon sends follow answers and moves.
    pub fn activitystreams(inner: T) -> Self {
        WithContext {
            context: Value::from(AS_CONTEXT),
            inner,
        }
    }

    /// The activity as JSON, keys sorted at every level.
    pub fn to_value(&self) -> Value {
        to_json(self)
    }
}

/// An activity without `@context` (as the outbox lists them) as JSON, keys sorted.
pub fn to_json(value: &impl Serialize) -> Value {
    // These structs hold strings, string lists and JSON values only: serializing them
    // cannot fail.
    serde_json::to_value(value).unwrap_or_default()
}

/// `Create` or `Update` of a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CreateOrUpdateType {
    Create,
    Update,
}

/// A post sent to followers (or listed in the outbox, without `@context`): the addressing
/// is the object's own.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreateOrUpdate {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: CreateOrUpdateType,
    pub actor: String,
    /// `null` for an undated post in the outbox, as before.
    pub published: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    /// The post object, as `federation::documents::post_object` made it.
    pub object: Value,
}

impl CreateOrUpdate {
    /// The activity of `object`, its actor and addressing read from the object
    /// (`attributedTo`, `to`, `cc`); `actor` and `cc` stand in for those it lacks, and the
    /// public for a missing `to`.
    pub fn of_object(
        kind: CreateOrUpdateType,
        id: String,
        published: Option<String>,
        object: Value,
        actor: impl FnOnce() -> String,
        cc: impl FnOnce() -> Vec<String>,
    ) -> Self {
        CreateOrUpdate {
            id,
            kind,
            actor: object
                .get("attributedTo")
                .and_then(Value::as_str)
                .map_or_else(actor, str::to_string),
            published,
            to: addresses(object.get("to")).unwrap_or_else(|| vec![AS_PUBLIC.to_string()]),
            cc: addresses(object.get("cc")).unwrap_or_else(cc),
            object,
        }
    }

    /// The activity as JSON, its object moved in rather than copied (an outbox page holds
    /// hundreds of posts' whole content).
    pub fn into_json(mut self) -> Value {
        let object = std::mem::take(&mut self.object);
        let mut json = to_json(&self);
        if let Some(map) = json.as_object_mut() {
            map.insert("object".into(), object);
        }
        json
    }
}

/// An address field (`to`, `cc`): one id or a list of them.
fn addresses(field: Option<&Value>) -> Option<Vec<String>> {
    match field? {
        Value::String(one) => Some(vec![one.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect(),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AnnounceType {
    Announce,
}

/// The site actor's boost of an author's post.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Announce {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: AnnounceType,
    pub actor: String,
    pub published: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    /// The post's id.
    pub object: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DeleteType {
    Delete,
}

/// A `Delete` of a post (its object a [`Tombstone`]) or of a quote stamp (its URL).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delete<O> {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: DeleteType,
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    pub to: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cc: Option<Vec<String>>,
    pub object: O,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TombstoneType {
    Tombstone,
}

/// What is left of a deleted post.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tombstone {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: TombstoneType,
    pub deleted: String,
}

/// `Accept` or `Reject` of a follow or of a quote request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AnswerType {
    Accept,
    Reject,
}

/// Our answer to a remote actor's `Follow` or `QuoteRequest`, which it embeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer<O> {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: AnswerType,
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<String>>,
    pub object: O,
    /// The `QuoteAuthorization` an accepted quote request grants.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FollowType {
    Follow,
}

/// A remote `Follow` of one of our actors, as our answer names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Follow {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: FollowType,
    pub actor: String,
    pub object: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum QuoteRequestType {
    QuoteRequest,
}

/// A remote `QuoteRequest` (FEP-044f) of one of our posts, as our answer names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuoteRequest {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: QuoteRequestType,
    pub actor: String,
    /// The quoting post.
    pub instrument: String,
    /// Our quoted post.
    pub object: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum QuoteAuthorizationType {
    QuoteAuthorization,
}

/// The stamp a granted quote points to (served by the inbox, not sent).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuoteAuthorization {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: QuoteAuthorizationType,
    pub attributed_to: String,
    pub interacting_object: String,
    pub interaction_target: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MoveType {
    Move,
}

/// Our actor moving to another account: actor and object are the account that moves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Move {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: MoveType,
    pub actor: String,
    pub object: String,
    pub target: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LikeType {
    Like,
}

/// A `Like`: only `doctor` sends one, unsigned, to see the inbox refuse it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Like {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: LikeType,
    pub actor: String,
    pub object: String,
}

#[cfg(test)]
mod tests {
    //! Each builder's output against the JSON relais sent before the activities were typed
    //! (captured from the `json!` builders into `tests/fixtures/activities/`).

    use super::*;
    use crate::delivery::plan::{content_hash, plan, PlanContext, PublishedPost};
    use crate::federation::documents::tests::{config, post};
    use crate::federation::documents::{create_activity, post_object};
    use crate::federation::urls::Urls;
    use crate::inbox::process::{follow_answer, quote_answer, FollowAnswer, OurSite};
    use crate::store::{FollowState, Follower};
    use serde_json::json;
    use std::path::Path;

    fn fixture(name: &str) -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/activities")
            .join(format!("{name}.json"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    /// Equal as JSON and byte for byte as sent (`Value::to_string`, as the queue stores it).
    fn assert_sent_as(actual: &Value, name: &str) {
        let expected = fixture(name);
        assert_eq!(actual, &expected, "{name}");
        assert_eq!(actual.to_string(), expected.to_string(), "{name}");
    }

    fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    fn auth(post_id: &str) -> crate::store::QuoteAuthorization {
        crate::store::QuoteAuthorization {
            token: "0123456789abcdef0123456789abcdef".into(),
            request_id: "https://m.example/users/alice/quote_requests/1".into(),
            actor_id: "https://m.example/users/alice".into(),
            quote_id: "https://m.example/users/alice/statuses/1".into(),
            post_id: post_id.into(),
            actor_name: "ann".into(),
        }
    }

    #[test]
    fn a_posts_create_announce_update_and_delete_are_sent_as_before() {
        let c = config("");
        let u = Urls::new(&c);
        let object = post_object(&c, &u, &post("hello", &["ann"]));
        let published = PublishedPost {
            object_id: object["id"].as_str().unwrap().to_string(),
            actor_name: "ann".into(),
            content_hash: content_hash(&object),
            object,
            updated: None,
            published: Some(at("2026-03-01T08:00:00Z")),
        };
        let ctx = PlanContext {
            urls: &u,
            site_actor: "blog",
            now: at("2026-03-02T00:00:00Z"),
            first_publish_max_age: chrono::Duration::days(7),
        };
        let first = plan(std::slice::from_ref(&published), &[], &ctx);
        assert_sent_as(&first.activities[0].json, "create");
        assert_sent_as(&first.activities[1].json, "announce");

        let mut edited = published.clone();
        edited.object["content"] = json!("<p>Edited</p>");
        edited.content_hash = content_hash(&edited.object);
        let next_day = PlanContext {
            now: at("2026-03-03T00:00:00Z"),
            ..ctx.clone()
        };
        let update = plan(&[edited], &first.records, &next_day);
        assert_sent_as(&update.activities[0].json, "update");

        let later = PlanContext {
            now: at("2026-03-04T00:00:00Z"),
            ..ctx
        };
        let removal = plan(&[], &first.records, &later);
        assert_sent_as(&removal.activities[0].json, "delete");
    }

    #[test]
    fn outbox_creates_are_listed_as_before_undated_ones_with_a_null_published() {
        let c = config("");
        let u = Urls::new(&c);
        assert_sent_as(
            &create_activity(&c, &u, &post("hello", &["ann"])),
            "outbox_create",
        );
        let mut undated = post("undated", &[]);
        undated.date = None;
        assert_sent_as(&create_activity(&c, &u, &undated), "outbox_create_undated");
    }

    #[test]
    fn follow_answers_are_sent_as_before() {
        let u = Urls::new(&config(""));
        let follower = Follower {
            id: 1,
            actor_name: "ann".into(),
            follower_id: "https://m.example/users/alice".into(),
            inbox: "https://m.example/users/alice/inbox".into(),
            shared_inbox: None,
            follow_activity_id: "https://m.example/f/1".into(),
            state: FollowState::Accepted,
            followed_at: chrono::DateTime::default(),
        };
        assert_sent_as(
            &follow_answer(&u, &follower, FollowAnswer::Accept),
            "follow_accept",
        );
        assert_sent_as(
            &follow_answer(&u, &follower, FollowAnswer::Reject),
            "follow_reject",
        );
    }

    #[test]
    fn quote_answers_stamp_and_stamp_deletion_are_sent_as_before() {
        let c = config("");
        let u = Urls::new(&c);
        let auth = auth("https://blog.example/ap/posts/hello.json");
        let request = QuoteRequest {
            id: auth.request_id.clone(),
            kind: QuoteRequestType::QuoteRequest,
            actor: auth.actor_id.clone(),
            instrument: auth.quote_id.clone(),
            object: auth.post_id.clone(),
        };
        assert_sent_as(
            &quote_answer(
                &u,
                "ann",
                request.clone(),
                "fedcba9876543210fedcba9876543210",
                Some(&auth.token),
            ),
            "quote_accept",
        );
        assert_sent_as(
            &quote_answer(&u, "ann", request, "00112233445566778899aabbccddeeff", None),
            "quote_reject",
        );
        assert_sent_as(
            &crate::inbox::process::quote_authorization_document(&OurSite::new(&c, None), &auth),
            "quote_authorization",
        );
        assert_sent_as(
            &crate::delivery::revoke::stamp_deletion(&u, &auth),
            "stamp_delete",
        );
    }

    #[test]
    fn a_move_and_doctors_probe_are_sent_as_before() {
        let u = Urls::new(&config(""));
        assert_sent_as(
            &crate::delivery::moving::move_activity(
                &u,
                "blog",
                "https://new.example/users/blog",
                3,
            ),
            "move",
        );
        assert_sent_as(&crate::doctor::inbox_probe(&u), "doctor_probe");
    }

    #[test]
    fn into_json_is_the_serialized_activity() {
        let activity = CreateOrUpdate::of_object(
            CreateOrUpdateType::Create,
            "c".into(),
            Some("2026-01-01T00:00:00Z".into()),
            json!({ "attributedTo": "a", "content": "<p>x</p>", "tag": [{ "type": "Hashtag" }] }),
            || unreachable!("the object has an actor"),
            Vec::new,
        );
        let serialized = to_json(&activity);
        assert_eq!(serialized.to_string(), activity.into_json().to_string());
    }

    #[test]
    fn addressing_is_read_from_the_object_whether_one_id_or_a_list() {
        let built = CreateOrUpdate::of_object(
            CreateOrUpdateType::Create,
            "c".into(),
            None,
            json!({ "attributedTo": "a", "to": "x", "cc": ["y", "z"] }),
            || unreachable!("the object has an actor"),
            || unreachable!("the object has a cc"),
        );
        assert_eq!(
            (built.actor.as_str(), built.to, built.cc),
            (
                "a",
                vec!["x".to_string()],
                vec!["y".to_string(), "z".to_string()]
            )
        );
        let bare = CreateOrUpdate::of_object(
            CreateOrUpdateType::Update,
            "u".into(),
            None,
            json!({ "to": [1] }),
            || "me".into(),
            || vec!["f".into()],
        );
        assert_eq!(bare.actor, "me");
        assert_eq!(bare.to, vec![AS_PUBLIC.to_string()]);
        assert_eq!(bare.cc, vec!["f".to_string()]);
    }
}
