//! Incoming activities, read from JSON into the few shapes the inbox acts on.
//!
//! ActivityStreams lets most properties be a link (a string id), an embedded object or an
//! array of either; the helpers here accept all three the way Mastodon's `JsonLdHelper` does.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::federation::vocab::AS_PUBLIC;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActivityError {
    #[error("the activity is not a JSON object")]
    NotAnObject,
    #[error("the activity has no type")]
    NoType,
    #[error("the activity has no actor")]
    NoActor,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub id: Option<String>,
    /// Id of the actor that performs it: must own the key that signed the request.
    pub actor: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Follow {
        object: String,
    },
    Undo(Undone),
    Create(Note),
    Update(Updated),
    Delete {
        object: String,
    },
    Like {
        object: String,
    },
    Announce {
        object: String,
    },
    Move {
        object: String,
        target: String,
    },
    Block {
        object: String,
    },
    /// FEP-044f: `actor` asks to quote `object` (ours) in `instrument` (its post).
    QuoteRequest {
        object: String,
        instrument: Option<String>,
    },
    Flag {
        objects: Vec<String>,
        content: String,
    },
    /// Anything else: acknowledged and ignored.
    Other(String),
}

/// What an `Undo` takes back.
#[derive(Debug, Clone, PartialEq)]
pub enum Undone {
    /// An embedded activity of a type we act on; `object` is what it was about.
    Follow {
        id: Option<String>,
        actor: Option<String>,
        object: Option<String>,
    },
    Like {
        id: Option<String>,
        object: Option<String>,
    },
    Announce {
        id: Option<String>,
        object: Option<String>,
    },
    Block {
        object: Option<String>,
    },
    /// Only the id of the undone activity.
    Reference(String),
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Updated {
    Note(Note),
    /// An actor document (the sender's new profile or key).
    Actor(Value),
    Other,
}

/// A post-like object (`Note`, `Article`, `Page`, `Question`) as a reply candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub id: String,
    pub attributed_to: Option<String>,
    pub in_reply_to: Option<String>,
    /// Remote HTML, not yet sanitized.
    pub content: String,
    /// Content warning.
    pub summary: Option<String>,
    pub url: Option<String>,
    pub published: Option<DateTime<Utc>>,
    pub updated: Option<DateTime<Utc>>,
    /// Addressed to `as:Public` (public or unlisted); anything else is a private message.
    pub public: bool,
    /// The post it quotes: FEP-044f `quote`, else `quoteUri` or Misskey's `_misskey_quote`.
    pub quote: Option<String>,
    /// The `QuoteAuthorization` stamp it shows (`quoteAuthorization`).
    pub quote_authorization: Option<String>,
}

/// The id of a link or embedded object.
pub fn id_of(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => Some(s),
        Value::Object(map) => map.get("id").and_then(Value::as_str),
        _ => None,
    }
}

/// The first id of a property that may be an array (`attributedTo` of PeerTube videos).
pub fn first_id(value: &Value) -> Option<&str> {
    match value {
        Value::Array(items) => items.iter().find_map(id_of),
        other => id_of(other),
    }
}

pub fn ids_of(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().filter_map(id_of).map(str::to_string).collect(),
        other => id_of(other).map(str::to_string).into_iter().collect(),
    }
}

/// A `url`-like property: a string, a `Link` (`href`) or an array of those, where the
/// `text/html` link wins.
pub fn href_of(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => Some(s),
        Value::Object(map) => map.get("href").or_else(|| map.get("url")).and_then(href_of),
        Value::Array(items) => items
            .iter()
            .find(|v| v.get("mediaType").and_then(Value::as_str) == Some("text/html"))
            .or_else(|| items.first())
            .and_then(href_of),
        _ => None,
    }
}

fn type_of(value: &Value) -> Option<&str> {
    match value.get("type")? {
        Value::String(s) => Some(s),
        Value::Array(types) => types.iter().find_map(Value::as_str),
        _ => None,
    }
}

fn string(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_string)
}

fn time(value: &Value, key: &str) -> Option<DateTime<Utc>> {
    let text = value.get(key)?.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `content`, else the first language of `contentMap`.
fn content_of(object: &Value) -> String {
    if let Some(content) = object.get("content").and_then(Value::as_str) {
        return content.to_string();
    }
    object
        .get("contentMap")
        .and_then(Value::as_object)
        .and_then(|map| map.values().find_map(Value::as_str))
        .unwrap_or_default()
        .to_string()
}

fn addressed_publicly(object: &Value) -> bool {
    ["to", "cc"].iter().any(|key| {
        object.get(*key).is_some_and(|v| {
            ids_of(v)
                .iter()
                .any(|id| id == AS_PUBLIC || id == "as:Public" || id == "Public")
        })
    })
}

const NOTE_TYPES: &[&str] = &["Note", "Article", "Page", "Question"];

fn note(object: &Value) -> Option<Note> {
    if !NOTE_TYPES.contains(&type_of(object)?) {
        return None;
    }
    Some(Note {
        id: string(object, "id")?,
        attributed_to: object
            .get("attributedTo")
            .and_then(first_id)
            .map(str::to_string),
        in_reply_to: object.get("inReplyTo").and_then(id_of).map(str::to_string),
        content: content_of(object),
        summary: string(object, "summary").filter(|s| !s.trim().is_empty()),
        url: object.get("url").and_then(href_of).map(str::to_string),
        published: time(object, "published"),
        updated: time(object, "updated"),
        public: addressed_publicly(object),
        quote: ["quote", "quoteUri", "_misskey_quote"]
            .iter()
            .find_map(|key| object.get(*key).and_then(id_of))
            .map(str::to_string),
        quote_authorization: object
            .get("quoteAuthorization")
            .and_then(id_of)
            .map(str::to_string),
    })
}

const ACTOR_TYPES: &[&str] = &["Person", "Service", "Organization", "Group", "Application"];

fn undone(object: &Value) -> Undone {
    if let Value::String(id) = object {
        return Undone::Reference(id.clone());
    }
    let id = string(object, "id");
    let target = object.get("object").and_then(id_of).map(str::to_string);
    match type_of(object) {
        Some("Follow") => Undone::Follow {
            id,
            actor: object.get("actor").and_then(id_of).map(str::to_string),
            object: target,
        },
        Some("Like") => Undone::Like { id, object: target },
        Some("Announce") => Undone::Announce { id, object: target },
        Some("Block") => Undone::Block { object: target },
        _ => match id {
            Some(id) => Undone::Reference(id),
            None => Undone::Other,
        },
    }
}

impl Activity {
    /// One readable log line for the activity: type, what it is about, who sent it and its
    /// id (`Like https://blog/ap/posts/a.json by https://m.example/users/ann (id …)`). Remote
    /// text is escaped, so no line break or terminal control from it reaches the log.
    pub fn summary(&self) -> String {
        let (kind, object) = match &self.kind {
            Kind::Follow { object } => ("Follow".to_string(), Some(object.as_str())),
            Kind::Undo(undone) => {
                let (what, object) = match undone {
                    Undone::Follow { object, .. } => ("Follow", object.as_deref()),
                    Undone::Like { object, .. } => ("Like", object.as_deref()),
                    Undone::Announce { object, .. } => ("Announce", object.as_deref()),
                    Undone::Block { object } => ("Block", object.as_deref()),
                    Undone::Reference(id) => ("activity", Some(id.as_str())),
                    Undone::Other => ("other activity", None),
                };
                (format!("Undo {what}"), object)
            }
            Kind::Create(note) => ("Create".to_string(), Some(note.id.as_str())),
            Kind::Update(Updated::Note(note)) => ("Update".to_string(), Some(note.id.as_str())),
            Kind::Update(Updated::Actor(actor)) => ("Update actor".to_string(), id_of(actor)),
            Kind::Update(Updated::Other) => ("Update".to_string(), None),
            Kind::Delete { object } => ("Delete".to_string(), Some(object.as_str())),
            Kind::Like { object } => ("Like".to_string(), Some(object.as_str())),
            Kind::Announce { object } => ("Announce".to_string(), Some(object.as_str())),
            Kind::Move { object, .. } => ("Move".to_string(), Some(object.as_str())),
            Kind::Block { object } => ("Block".to_string(), Some(object.as_str())),
            Kind::QuoteRequest { object, .. } => {
                ("QuoteRequest".to_string(), Some(object.as_str()))
            }
            Kind::Flag { objects, .. } => ("Flag".to_string(), objects.first().map(String::as_str)),
            Kind::Other(kind) => (kind.escape_debug().to_string(), None),
        };
        let mut line = kind;
        if let Some(object) = object {
            line.push(' ');
            line.push_str(&object.escape_debug().to_string());
        }
        line.push_str(" by ");
        line.push_str(&self.actor.escape_debug().to_string());
        match &self.id {
            Some(id) => line.push_str(&format!(" (id {})", id.escape_debug())),
            None => line.push_str(" (no id)"),
        }
        line
    }

    pub fn parse(json: &Value) -> Result<Activity, ActivityError> {
        if !json.is_object() {
            return Err(ActivityError::NotAnObject);
        }
        let kind = type_of(json).ok_or(ActivityError::NoType)?.to_string();
        let actor = json
            .get("actor")
            .and_then(id_of)
            .ok_or(ActivityError::NoActor)?
            .to_string();
        let object = json.get("object").unwrap_or(&Value::Null);
        let object_id = id_of(object).map(str::to_string);
        let other = || Kind::Other(kind.clone());
        let kind = match (kind.as_str(), object_id) {
            ("Follow", Some(object)) => Kind::Follow { object },
            ("Undo", _) => Kind::Undo(undone(object)),
            ("Create", _) => note(object).map(Kind::Create).unwrap_or_else(other),
            ("Update", _) => Kind::Update(match note(object) {
                Some(n) => Updated::Note(n),
                None if type_of(object).is_some_and(|t| ACTOR_TYPES.contains(&t)) => {
                    Updated::Actor(object.clone())
                }
                None => Updated::Other,
            }),
            ("Delete", Some(object)) => Kind::Delete { object },
            ("Like", Some(object)) => Kind::Like { object },
            ("Announce", Some(object)) => Kind::Announce { object },
            ("Move", Some(object)) => match json.get("target").and_then(id_of) {
                Some(target) => Kind::Move {
                    object,
                    target: target.to_string(),
                },
                None => other(),
            },
            ("Block", Some(object)) => Kind::Block { object },
            ("QuoteRequest", Some(object)) => Kind::QuoteRequest {
                object,
                instrument: json.get("instrument").and_then(id_of).map(str::to_string),
            },
            ("Flag", _) => Kind::Flag {
                objects: ids_of(object),
                content: string(json, "content").unwrap_or_default(),
            },
            _ => other(),
        };
        Ok(Activity {
            id: string(json, "id"),
            actor,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ALICE: &str = "https://m.example/users/alice";
    const BLOG: &str = "https://blog.example/ap/users/blog.json";

    #[test]
    fn reads_a_mastodon_reply() {
        let json = json!({
            "@context": ["https://www.w3.org/ns/activitystreams"],
            "id": "https://m.example/users/alice/statuses/1/activity",
            "type": "Create",
            "actor": ALICE,
            "object": {
                "id": "https://m.example/users/alice/statuses/1",
                "type": "Note",
                "summary": null,
                "inReplyTo": "https://blog.example/ap/posts/a.json",
                "published": "2026-02-01T10:00:00Z",
                "url": "https://m.example/@alice/1",
                "attributedTo": ALICE,
                "to": [AS_PUBLIC],
                "cc": ["https://m.example/users/alice/followers", BLOG],
                "content": "<p>Hi</p>",
                "contentMap": { "en": "<p>Hi</p>" }
            }
        });
        let activity = Activity::parse(&json).unwrap();
        assert_eq!(activity.actor, ALICE);
        let Kind::Create(note) = activity.kind else {
            panic!("not a Create: {activity:?}")
        };
        assert_eq!(note.id, "https://m.example/users/alice/statuses/1");
        assert_eq!(
            note.in_reply_to.as_deref(),
            Some("https://blog.example/ap/posts/a.json")
        );
        assert_eq!(note.attributed_to.as_deref(), Some(ALICE));
        assert_eq!(note.url.as_deref(), Some("https://m.example/@alice/1"));
        assert_eq!(note.content, "<p>Hi</p>");
        assert_eq!(note.summary, None);
        assert!(note.public);
        assert_eq!(
            note.published.unwrap().to_rfc3339(),
            "2026-02-01T10:00:00+00:00"
        );
    }

    #[test]
    fn a_direct_message_is_not_public() {
        let json = json!({
            "type": "Create", "actor": ALICE,
            "object": { "id": "x", "type": "Note", "to": [BLOG], "contentMap": { "fr": "<p>Salut</p>" } }
        });
        let Kind::Create(note) = Activity::parse(&json).unwrap().kind else {
            panic!()
        };
        assert!(!note.public);
        assert_eq!(note.content, "<p>Salut</p>");
    }

    #[test]
    fn undo_of_embedded_and_referenced_activities() {
        let undo = |object: Value| {
            Activity::parse(&json!({ "type": "Undo", "actor": ALICE, "object": object }))
                .unwrap()
                .kind
        };
        assert_eq!(
            undo(json!({ "id": "f1", "type": "Follow", "actor": ALICE, "object": BLOG })),
            Kind::Undo(Undone::Follow {
                id: Some("f1".into()),
                actor: Some(ALICE.into()),
                object: Some(BLOG.into())
            })
        );
        assert_eq!(
            undo(json!({ "id": "l1", "type": "Like", "object": { "id": "p" } })),
            Kind::Undo(Undone::Like {
                id: Some("l1".into()),
                object: Some("p".into())
            })
        );
        assert_eq!(
            undo(json!("l1")),
            Kind::Undo(Undone::Reference("l1".into()))
        );
        assert_eq!(undo(json!({ "type": "Dance" })), Kind::Undo(Undone::Other));
    }

    #[test]
    fn summaries_are_one_readable_escaped_line() {
        let like = Activity::parse(&json!({
            "id": "https://m.example/l/1\n\u{1b}[31mfake", "type": "Like", "actor": ALICE,
            "object": "https://blog.example/ap/posts/a.json"
        }))
        .unwrap();
        assert_eq!(
            like.summary(),
            format!("Like https://blog.example/ap/posts/a.json by {ALICE} (id https://m.example/l/1\\n\\u{{1b}}[31mfake)")
        );
        let undo = Activity::parse(&json!({
            "type": "Undo", "actor": ALICE,
            "object": { "type": "Follow", "actor": ALICE, "object": "https://blog.example/ap/users/blog.json" }
        }))
        .unwrap();
        assert_eq!(
            undo.summary(),
            format!("Undo Follow https://blog.example/ap/users/blog.json by {ALICE} (no id)")
        );
    }

    #[test]
    fn links_objects_and_arrays_all_give_ids() {
        let json = json!({
            "id": "a1", "type": ["Announce"], "actor": { "id": ALICE, "type": "Person" },
            "object": { "id": "https://blog.example/ap/posts/a.json", "type": "Note" }
        });
        let activity = Activity::parse(&json).unwrap();
        assert_eq!(activity.actor, ALICE);
        assert_eq!(
            activity.kind,
            Kind::Announce {
                object: "https://blog.example/ap/posts/a.json".into()
            }
        );
        assert_eq!(
            href_of(&json!([
                { "type": "Link", "mediaType": "video/mp4", "href": "v.mp4" },
                { "type": "Link", "mediaType": "text/html", "href": "page" }
            ])),
            Some("page")
        );
        assert_eq!(
            first_id(&json!([{ "type": "Person", "id": "p" }, "g"])),
            Some("p")
        );
    }

    #[test]
    fn move_needs_a_target_and_update_tells_notes_from_actors() {
        let parse = |j: Value| Activity::parse(&j).unwrap().kind;
        assert_eq!(
            parse(json!({ "type": "Move", "actor": ALICE, "object": ALICE, "target": "n" })),
            Kind::Move {
                object: ALICE.into(),
                target: "n".into()
            }
        );
        assert_eq!(
            parse(json!({ "type": "Move", "actor": ALICE, "object": ALICE })),
            Kind::Other("Move".into())
        );
        assert!(matches!(
            parse(
                json!({ "type": "Update", "actor": ALICE, "object": { "id": ALICE, "type": "Person" } })
            ),
            Kind::Update(Updated::Actor(_))
        ));
        assert!(matches!(
            parse(
                json!({ "type": "Update", "actor": ALICE, "object": { "id": "n", "type": "Note" } })
            ),
            Kind::Update(Updated::Note(_))
        ));
    }

    #[test]
    fn a_quote_post_names_what_it_quotes_under_any_of_its_keys() {
        let quoted = |object: Value| {
            let Kind::Create(note) =
                Activity::parse(&json!({ "type": "Create", "actor": ALICE, "object": object }))
                    .unwrap()
                    .kind
            else {
                panic!("not a Create")
            };
            (note.quote, note.quote_authorization)
        };
        let post = "https://blog.example/ap/posts/a.json";
        let stamp = "https://blog.example/ap/quote_authorizations/t";
        assert_eq!(
            quoted(
                json!({ "id": "n", "type": "Note", "quote": post, "quoteAuthorization": stamp })
            ),
            (Some(post.into()), Some(stamp.into()))
        );
        assert_eq!(
            quoted(json!({ "id": "n", "type": "Note", "_misskey_quote": post })),
            (Some(post.into()), None)
        );
        assert_eq!(
            quoted(json!({ "id": "n", "type": "Note", "quoteUri": { "id": post } })),
            (Some(post.into()), None)
        );
        assert_eq!(quoted(json!({ "id": "n", "type": "Note" })), (None, None));
    }

    #[test]
    fn rejects_what_is_not_an_activity() {
        assert_eq!(
            Activity::parse(&json!([1])),
            Err(ActivityError::NotAnObject)
        );
        assert_eq!(
            Activity::parse(&json!({ "actor": ALICE })),
            Err(ActivityError::NoType)
        );
        assert_eq!(
            Activity::parse(&json!({ "type": "Like" })),
            Err(ActivityError::NoActor)
        );
    }
}
