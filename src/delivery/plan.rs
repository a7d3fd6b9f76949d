//! What to send: the posts of the latest build compared with what followers already have.
//!
//! A new post becomes a `Create`; a post whose object changed becomes an `Update`; a post
//! that is gone becomes a `Delete` of a `Tombstone`. The shapes are those Mastodon sends and
//! reads (`ActivityPub::Activity::Create`, `Update`, `Delete`): `@context`, `id`, `type`,
//! `actor`, `published`, `to` (public), `cc` (followers) and `object`.
//!
//! A post attributed to an author's actor is also `Announce`d by the site actor: Mastodon
//! drops a `Create` from an actor no local account follows (`related_to_local_activity?`),
//! so the site's followers see author posts only as the site actor's boosts.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::federation::activities::{
    Announce, AnnounceType, CreateOrUpdate, CreateOrUpdateType, Delete, DeleteType, Tombstone,
    TombstoneType, WithContext,
};
use crate::federation::urls::Urls;
use crate::federation::vocab::AS_PUBLIC;
use crate::store::time::{self, rfc3339};
use crate::store::PublishedRecord;

/// A post as the build published it.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedPost {
    pub object_id: String,
    /// Our actor the post is attributed to.
    pub actor_name: String,
    /// The ActivityStreams object, without `@context`.
    pub object: Value,
    /// See [`content_hash`].
    pub content_hash: String,
    pub updated: Option<DateTime<Utc>>,
    pub published: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityKind {
    Create,
    Announce,
    Update,
    Delete,
}

impl ActivityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityKind::Create => "Create",
            ActivityKind::Announce => "Announce",
            ActivityKind::Update => "Update",
            ActivityKind::Delete => "Delete",
        }
    }
}

/// One activity to send.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedActivity {
    pub kind: ActivityKind,
    pub id: String,
    pub object_id: String,
    /// Our actor that sends and signs it.
    pub actor_name: String,
    /// Our actors whose followers receive it.
    pub audience: Vec<String>,
    /// The activity, with `@context`.
    pub json: Value,
}

/// The result of planning: activities to queue and the new state of every post touched.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub activities: Vec<PlannedActivity>,
    pub records: Vec<PublishedRecord>,
    /// Posts recorded without being sent: older than the first publish window.
    pub skipped_old: usize,
}

impl Plan {
    pub fn count(&self, kind: ActivityKind) -> usize {
        self.activities.iter().filter(|a| a.kind == kind).count()
    }
}

#[derive(Debug, Clone)]
pub struct PlanContext<'a> {
    pub urls: &'a Urls,
    /// `fediverse.username`.
    pub site_actor: &'a str,
    pub now: DateTime<Utc>,
    /// On the first publish (nothing recorded yet), older posts are recorded, not sent.
    pub first_publish_max_age: chrono::Duration,
}

/// SHA-256 of the object's canonical JSON (keys sorted at every level), so that only a
/// change of what followers see counts, not the order the build wrote fields in.
pub fn content_hash(object: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(object, &mut canonical);
    format!("{:x}", Sha256::digest(canonical.as_bytes()))
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut fields: Vec<(&String, &Value)> = map.iter().collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, field)) in fields.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                write_canonical(field, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Compares `posts` with `records` (what was last sent) and says what to send now.
pub fn plan(posts: &[PublishedPost], records: &[PublishedRecord], ctx: &PlanContext) -> Plan {
    let known: HashMap<&str, &PublishedRecord> =
        records.iter().map(|r| (r.object_id.as_str(), r)).collect();
    let first_publish = records.is_empty();
    let oldest_sent = ctx.now - ctx.first_publish_max_age;
    let mut planner = Planner {
        ctx,
        plan: Plan::default(),
    };

    // Oldest first, so that timelines receive posts in the order they were written.
    let mut ordered: Vec<&PublishedPost> = posts.iter().collect();
    ordered.sort_by(|a, b| (a.published, &a.object_id).cmp(&(b.published, &b.object_id)));
    let mut current = HashSet::with_capacity(posts.len());
    for post in ordered {
        if !current.insert(post.object_id.as_str()) {
            continue;
        }
        match known.get(post.object_id.as_str()) {
            None if first_publish && post.published.is_none_or(|p| p < oldest_sent) => {
                planner.record_unsent(post);
            }
            None => planner.create(post, None),
            Some(record) if record.deleted => planner.create(post, Some(record)),
            Some(record) if record.content_hash != post.content_hash => {
                planner.update(post, record)
            }
            Some(_) => {}
        }
    }
    for record in records {
        if !record.deleted && !current.contains(record.object_id.as_str()) {
            planner.delete(record);
        }
    }
    planner.plan
}

struct Planner<'a> {
    ctx: &'a PlanContext<'a>,
    plan: Plan,
}

impl Planner<'_> {
    /// The time of a new activity about a post: now, but always after the post's previous
    /// activity, so ids made from it never repeat.
    fn activity_time(&self, previous: Option<&PublishedRecord>) -> i64 {
        let now = self.ctx.now.timestamp();
        match previous {
            Some(record) => now.max(record.last_activity_at + 1),
            None => now,
        }
    }

    fn audience(&self, actor_name: &str) -> Vec<String> {
        let mut audience = vec![actor_name.to_string()];
        if actor_name != self.ctx.site_actor {
            audience.push(self.ctx.site_actor.to_string());
        }
        audience
    }

    fn record_unsent(&mut self, post: &PublishedPost) {
        self.plan.skipped_old += 1;
        self.plan.records.push(PublishedRecord {
            object_id: post.object_id.clone(),
            actor_name: post.actor_name.clone(),
            content_hash: post.content_hash.clone(),
            updated: post.updated,
            last_activity_id: None,
            last_activity_at: 0,
            deleted: false,
        });
    }

    /// `previous` is the record of a post that was deleted and is back.
    fn create(&mut self, post: &PublishedPost, previous: Option<&PublishedRecord>) {
        let at = self.activity_time(previous);
        // The first Create has the id the outbox lists; a post back from deletion gets a new one.
        let suffix = |kind: &str| match previous {
            None => format!("#{kind}"),
            Some(_) => format!("#{kind}-{at}"),
        };
        let id = format!("{}{}", post.object_id, suffix("create"));
        let published = post
            .published
            .map(|p| rfc3339(&p))
            .unwrap_or_else(|| rfc3339(&self.ctx.now));
        let json = WithContext::full(CreateOrUpdate::of_object(
            CreateOrUpdateType::Create,
            id.clone(),
            Some(published.clone()),
            post.object.clone(),
            || self.ctx.urls.actor(&post.actor_name),
            || self.followers_cc(&post.actor_name),
        ))
        .to_value();
        self.plan.activities.push(PlannedActivity {
            kind: ActivityKind::Create,
            id: id.clone(),
            object_id: post.object_id.clone(),
            actor_name: post.actor_name.clone(),
            audience: self.audience(&post.actor_name),
            json,
        });
        if post.actor_name != self.ctx.site_actor {
            let site = self.ctx.site_actor;
            let announce_id = format!("{}{}", post.object_id, suffix("announce"));
            let json = WithContext::full(Announce {
                id: announce_id.clone(),
                kind: AnnounceType::Announce,
                actor: self.ctx.urls.actor(site),
                published: published.clone(),
                to: vec![AS_PUBLIC.to_string()],
                cc: vec![
                    self.ctx.urls.followers(site),
                    self.ctx.urls.actor(&post.actor_name),
                ],
                object: post.object_id.clone(),
            })
            .to_value();
            self.plan.activities.push(PlannedActivity {
                kind: ActivityKind::Announce,
                id: announce_id,
                object_id: post.object_id.clone(),
                actor_name: site.to_string(),
                audience: vec![site.to_string()],
                json,
            });
        }
        self.plan.records.push(PublishedRecord {
            object_id: post.object_id.clone(),
            actor_name: post.actor_name.clone(),
            content_hash: post.content_hash.clone(),
            updated: post.updated,
            last_activity_id: Some(id),
            last_activity_at: at,
            deleted: false,
        });
    }

    /// Mastodon applies an edit only when the object's `updated` is later than the last
    /// one it saw; a changed post whose `updated` did not move is sent as updated now.
    fn update(&mut self, post: &PublishedPost, record: &PublishedRecord) {
        let at = self.activity_time(Some(record));
        let updated = match (post.updated, record.updated) {
            (Some(own), Some(sent)) if own > sent => own,
            (Some(own), None) => own,
            _ => timestamp(at),
        };
        let updated_text = rfc3339(&updated);
        let mut object = post.object.clone();
        if let Value::Object(fields) = &mut object {
            fields.insert("updated".into(), Value::from(updated_text.clone()));
        }
        let id = format!("{}#updates/{at}", post.object_id);
        let json = WithContext::full(CreateOrUpdate::of_object(
            CreateOrUpdateType::Update,
            id.clone(),
            Some(updated_text.clone()),
            object,
            || self.ctx.urls.actor(&post.actor_name),
            || self.followers_cc(&post.actor_name),
        ))
        .to_value();
        self.plan.activities.push(PlannedActivity {
            kind: ActivityKind::Update,
            id: id.clone(),
            object_id: post.object_id.clone(),
            actor_name: post.actor_name.clone(),
            audience: self.audience(&post.actor_name),
            json,
        });
        self.plan.records.push(PublishedRecord {
            object_id: post.object_id.clone(),
            actor_name: post.actor_name.clone(),
            content_hash: post.content_hash.clone(),
            updated: Some(updated),
            last_activity_id: Some(id),
            last_activity_at: at,
            deleted: false,
        });
    }

    fn delete(&mut self, record: &PublishedRecord) {
        let at = self.activity_time(Some(record));
        let id = format!("{}#delete-{at}", record.object_id);
        let now = rfc3339(&timestamp(at));
        let json = WithContext::full(Delete {
            id: id.clone(),
            kind: DeleteType::Delete,
            actor: self.ctx.urls.actor(&record.actor_name),
            published: Some(now.clone()),
            to: vec![AS_PUBLIC.to_string()],
            cc: Some(self.followers_cc(&record.actor_name)),
            object: Tombstone {
                id: record.object_id.clone(),
                kind: TombstoneType::Tombstone,
                deleted: now,
            },
        })
        .to_value();
        self.plan.activities.push(PlannedActivity {
            kind: ActivityKind::Delete,
            id: id.clone(),
            object_id: record.object_id.clone(),
            actor_name: record.actor_name.clone(),
            audience: self.audience(&record.actor_name),
            json,
        });
        self.plan.records.push(PublishedRecord {
            last_activity_id: Some(id),
            last_activity_at: at,
            deleted: true,
            ..record.clone()
        });
    }

    fn followers_cc(&self, actor_name: &str) -> Vec<String> {
        self.audience(actor_name)
            .iter()
            .map(|name| self.ctx.urls.followers(name))
            .collect()
    }
}

fn timestamp(unix: i64) -> DateTime<Utc> {
    time::from_unix(unix).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SiteConfig;
    use serde_json::json;
    use std::path::Path;

    fn urls() -> Urls {
        let config = SiteConfig::parse(
            "title = \"T\"\nbase_url = \"https://blog.example\"\n",
            Path::new("config.toml"),
        )
        .unwrap();
        Urls::new(&config)
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn post(urls: &Urls, slug: &str, actor: &str, published: &str, content: &str) -> PublishedPost {
        let object_id = urls.object(&format!("/posts/{slug}/"));
        let mut cc = vec![urls.followers(actor)];
        if actor != "blog" {
            cc.push(urls.followers("blog"));
        }
        let object = json!({
            "id": object_id,
            "type": "Note",
            "attributedTo": urls.actor(actor),
            "to": [AS_PUBLIC],
            "cc": cc,
            "published": published,
            "content": content,
        });
        PublishedPost {
            content_hash: content_hash(&object),
            object_id,
            actor_name: actor.into(),
            object,
            updated: None,
            published: Some(at(published)),
        }
    }

    fn ctx<'a>(urls: &'a Urls, now: &str) -> PlanContext<'a> {
        PlanContext {
            urls,
            site_actor: "blog",
            now: at(now),
            first_publish_max_age: chrono::Duration::days(7),
        }
    }

    /// The state after `plan` is stored: the old records updated by the new ones.
    fn apply(records: &[PublishedRecord], plan: &Plan) -> Vec<PublishedRecord> {
        let mut by_id: HashMap<String, PublishedRecord> = records
            .iter()
            .map(|r| (r.object_id.clone(), r.clone()))
            .collect();
        for r in &plan.records {
            by_id.insert(r.object_id.clone(), r.clone());
        }
        let mut all: Vec<_> = by_id.into_values().collect();
        all.sort_by(|a, b| a.object_id.cmp(&b.object_id));
        all
    }

    #[test]
    fn hash_ignores_key_order_but_not_content() {
        let a = json!({"a": 1, "b": {"x": [1, 2], "y": "z"}});
        let b: Value = serde_json::from_str(r#"{"b": {"y": "z", "x": [1, 2]}, "a": 1}"#).unwrap();
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(
            content_hash(&a),
            content_hash(&json!({"a": 1, "b": {"x": [2, 1], "y": "z"}}))
        );
    }

    #[test]
    fn first_publish_sends_only_recent_posts() {
        let u = urls();
        let posts = vec![
            post(&u, "old", "blog", "2027-01-01T00:00:00Z", "old"),
            post(&u, "new", "blog", "2027-01-09T00:00:00Z", "new"),
        ];
        let plan = plan(&posts, &[], &ctx(&u, "2027-01-10T00:00:00Z"));
        assert_eq!(plan.skipped_old, 1);
        assert_eq!(plan.activities.len(), 1);
        let create = &plan.activities[0];
        assert_eq!(create.kind, ActivityKind::Create);
        assert_eq!(create.id, "https://blog.example/ap/posts/new.json#create");
        assert_eq!(create.audience, vec!["blog".to_string()]);
        assert_eq!(plan.records.len(), 2);
        let old = plan
            .records
            .iter()
            .find(|r| r.object_id.ends_with("old.json"))
            .unwrap();
        assert_eq!(old.last_activity_id, None);
        assert!(!old.deleted);
    }

    #[test]
    fn create_has_mastodons_shape() {
        let u = urls();
        let posts = vec![post(
            &u,
            "hello",
            "blog",
            "2027-01-09T10:00:00Z",
            "<p>Hi</p>",
        )];
        let plan = plan(&posts, &[], &ctx(&u, "2027-01-10T00:00:00Z"));
        let json = &plan.activities[0].json;
        assert_eq!(json["@context"][0], "https://www.w3.org/ns/activitystreams");
        assert_eq!(json["type"], "Create");
        assert_eq!(json["actor"], "https://blog.example/ap/users/blog.json");
        assert_eq!(json["published"], "2027-01-09T10:00:00Z");
        assert_eq!(json["to"], json!([AS_PUBLIC]));
        assert_eq!(
            json["cc"],
            json!(["https://blog.example/ap/users/blog/followers"])
        );
        assert_eq!(json["object"], posts[0].object);
        assert!(json["object"].get("@context").is_none());
    }

    #[test]
    fn author_posts_are_announced_by_the_site_actor() {
        let u = urls();
        let posts = vec![post(&u, "hers", "alice", "2027-01-09T10:00:00Z", "x")];
        let plan = plan(&posts, &[], &ctx(&u, "2027-01-10T00:00:00Z"));
        let kinds: Vec<ActivityKind> = plan.activities.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, vec![ActivityKind::Create, ActivityKind::Announce]);
        let create = &plan.activities[0];
        assert_eq!(create.actor_name, "alice");
        assert_eq!(
            create.audience,
            vec!["alice".to_string(), "blog".to_string()]
        );
        let announce = &plan.activities[1];
        assert_eq!(announce.actor_name, "blog");
        assert_eq!(announce.audience, vec!["blog".to_string()]);
        assert_eq!(announce.json["actor"], u.actor("blog"));
        assert_eq!(announce.json["object"], posts[0].object_id);
        assert_eq!(
            announce.json["cc"],
            json!([u.followers("blog"), u.actor("alice")])
        );
    }

    #[test]
    fn unchanged_posts_send_nothing_and_new_ones_go_whatever_their_age() {
        let u = urls();
        let mut posts = vec![post(&u, "a", "blog", "2027-01-09T00:00:00Z", "a")];
        let first = plan(&posts, &[], &ctx(&u, "2027-01-10T00:00:00Z"));
        let state = apply(&[], &first);
        let again = plan(&posts, &state, &ctx(&u, "2027-01-11T00:00:00Z"));
        assert_eq!(again, Plan::default());
        // Not the first publish any more: a back-dated post is still new to followers.
        posts.push(post(&u, "backdated", "blog", "2020-01-01T00:00:00Z", "b"));
        let later = plan(&posts, &state, &ctx(&u, "2027-01-11T00:00:00Z"));
        assert_eq!(later.activities.len(), 1);
        assert_eq!(later.activities[0].kind, ActivityKind::Create);
        assert_eq!(later.skipped_old, 0);
    }

    #[test]
    fn an_edit_is_an_update_with_a_later_updated_each_time() {
        let u = urls();
        let mut posts = vec![post(&u, "a", "alice", "2027-01-09T00:00:00Z", "v1")];
        let now = "2027-01-10T00:00:00Z";
        let mut state = apply(&[], &plan(&posts, &[], &ctx(&u, now)));

        posts[0] = post(&u, "a", "alice", "2027-01-09T00:00:00Z", "v2");
        let edit = plan(&posts, &state, &ctx(&u, now));
        assert_eq!(edit.activities.len(), 1);
        let update = &edit.activities[0];
        assert_eq!(update.kind, ActivityKind::Update);
        assert_eq!(
            update.audience,
            vec!["alice".to_string(), "blog".to_string()]
        );
        assert_eq!(update.json["actor"], u.actor("alice"));
        assert_eq!(update.json["object"]["content"], "v2");
        // Same second as the Create: the Update still comes strictly later.
        let first_stamp = at(now).timestamp() + 1;
        assert_eq!(
            update.id,
            format!("{}#updates/{first_stamp}", posts[0].object_id)
        );
        assert_eq!(update.json["object"]["updated"], "2027-01-10T00:00:01Z");
        assert_eq!(update.json["published"], "2027-01-10T00:00:01Z");
        state = apply(&state, &edit);

        posts[0] = post(&u, "a", "alice", "2027-01-09T00:00:00Z", "v3");
        let second = plan(&posts, &state, &ctx(&u, now));
        assert_eq!(
            second.activities[0].json["object"]["updated"],
            "2027-01-10T00:00:02Z"
        );
        assert_ne!(second.activities[0].id, edit.activities[0].id);
    }

    #[test]
    fn an_edit_keeps_the_authors_updated_date_when_it_moved_forward() {
        let u = urls();
        let mut posts = vec![post(&u, "a", "blog", "2027-01-09T00:00:00Z", "v1")];
        let state = apply(&[], &plan(&posts, &[], &ctx(&u, "2027-01-10T00:00:00Z")));
        let mut edited = post(&u, "a", "blog", "2027-01-09T00:00:00Z", "v2");
        edited.object["updated"] = json!("2027-01-12T09:30:00Z");
        edited.content_hash = content_hash(&edited.object);
        edited.updated = Some(at("2027-01-12T09:30:00Z"));
        posts[0] = edited;
        let edit = plan(&posts, &state, &ctx(&u, "2027-01-12T10:00:00Z"));
        assert_eq!(
            edit.activities[0].json["object"]["updated"],
            "2027-01-12T09:30:00Z"
        );
        assert_eq!(edit.records[0].updated, Some(at("2027-01-12T09:30:00Z")));
    }

    #[test]
    fn a_removed_post_is_deleted_once_and_can_come_back() {
        let u = urls();
        let posts = vec![
            post(&u, "keep", "blog", "2027-01-09T00:00:00Z", "k"),
            post(&u, "gone", "alice", "2027-01-09T00:00:00Z", "g"),
        ];
        let state = apply(&[], &plan(&posts, &[], &ctx(&u, "2027-01-10T00:00:00Z")));
        let removal = plan(&posts[..1], &state, &ctx(&u, "2027-01-11T00:00:00Z"));
        assert_eq!(removal.activities.len(), 1);
        let delete = &removal.activities[0];
        assert_eq!(delete.kind, ActivityKind::Delete);
        assert_eq!(delete.actor_name, "alice");
        assert_eq!(
            delete.audience,
            vec!["alice".to_string(), "blog".to_string()]
        );
        assert_eq!(delete.json["actor"], u.actor("alice"));
        assert_eq!(delete.json["to"], json!([AS_PUBLIC]));
        assert_eq!(delete.json["object"]["type"], "Tombstone");
        assert_eq!(delete.json["object"]["id"], posts[1].object_id);
        let state = apply(&state, &removal);
        assert!(plan(&posts[..1], &state, &ctx(&u, "2027-01-12T00:00:00Z"))
            .activities
            .is_empty());

        let back = plan(&posts, &state, &ctx(&u, "2027-01-13T00:00:00Z"));
        let kinds: Vec<ActivityKind> = back.activities.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, vec![ActivityKind::Create, ActivityKind::Announce]);
        assert_ne!(
            back.activities[0].id,
            format!("{}#create", posts[1].object_id)
        );
        assert!(!back.records[0].deleted);
    }
}
