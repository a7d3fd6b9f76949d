//! Remote replies to our posts and to other stored replies.

use chrono::{DateTime, Utc};

use super::blocks::not_blocked;
use super::sql::{params, Row};
use super::{host_of, Store, StoreError};
use crate::interactions::Reply;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyState {
    Visible,
    /// Waits for `relais moderate approve` (when `inbox.approve_replies`).
    Pending,
    Hidden,
}

impl ReplyState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyState::Visible => "visible",
            ReplyState::Pending => "pending",
            ReplyState::Hidden => "hidden",
        }
    }

    fn parse(text: &str) -> ReplyState {
        match text {
            "visible" => ReplyState::Visible,
            "pending" => ReplyState::Pending,
            _ => ReplyState::Hidden,
        }
    }
}

/// A reply as stored, with what moderation needs.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReply {
    /// Local row id, what `relais moderate` shows and takes.
    pub id: i64,
    /// Object id of the post the thread belongs to.
    pub root_id: String,
    pub state: ReplyState,
    pub updated: Option<DateTime<Utc>>,
    pub reply: Reply,
}

#[derive(Debug, Clone)]
pub struct NewReply<'a> {
    /// Already sanitized.
    pub reply: &'a Reply,
    pub root_id: &'a str,
    pub state: ReplyState,
}

pub(super) const COLUMNS: &str = "r.id, r.root_id, r.state, r.updated, r.object_id, r.url, \
    r.in_reply_to, r.author_id, r.author_name, r.author_handle, r.author_url, r.author_avatar, \
    r.content, r.published";

pub(super) fn from_row(row: &Row) -> Result<StoredReply, StoreError> {
    let state: String = row.get(2)?;
    Ok(StoredReply {
        id: row.get(0)?,
        root_id: row.get(1)?,
        state: ReplyState::parse(&state),
        updated: row.get(3)?,
        reply: Reply {
            id: row.get(4)?,
            url: row.get(5)?,
            in_reply_to: row.get(6)?,
            author_id: row.get(7)?,
            author_name: row.get(8)?,
            author_handle: row.get(9)?,
            author_url: row.get(10)?,
            author_avatar: row.get(11)?,
            content: row.get(12)?,
            published: row.get(13)?,
            depth: 0,
        },
    })
}

impl Store {
    /// Stores a new reply; false when a reply with this object id is already stored.
    pub fn insert_reply(&self, new: &NewReply) -> Result<bool, StoreError> {
        let r = new.reply;
        let host = host_of(&r.author_id).unwrap_or_default();
        self.with_conn(|c| {
            c.execute(
                "INSERT INTO replies (object_id, in_reply_to, root_id, author_id, author_host, \
                 author_name, author_handle, author_url, author_avatar, content, url, published, \
                 state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                 ON CONFLICT (object_id) DO NOTHING",
                params![
                    r.id,
                    r.in_reply_to,
                    new.root_id,
                    r.author_id,
                    host,
                    r.author_name,
                    r.author_handle,
                    r.author_url,
                    r.author_avatar,
                    r.content,
                    r.url,
                    r.published,
                    new.state.as_str(),
                ],
            )
            .map(|n| n == 1)
        })
    }

    /// Replaces a reply's content, only when `author_id` wrote it. True when updated.
    pub fn update_reply(
        &self,
        object_id: &str,
        author_id: &str,
        content: &str,
        updated: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            c.execute(
                "UPDATE replies SET content = ?3, updated = ?4 \
                 WHERE object_id = ?1 AND author_id = ?2",
                params![object_id, author_id, content, updated],
            )
            .map(|n| n > 0)
        })
    }

    /// Deletes a reply, only when `author_id` wrote it. True when deleted.
    pub fn delete_reply(&self, object_id: &str, author_id: &str) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            c.execute(
                "DELETE FROM replies WHERE object_id = ?1 AND author_id = ?2",
                params![object_id, author_id],
            )
            .map(|n| n > 0)
        })
    }

    /// The post a stored reply's thread belongs to.
    pub fn reply_root(&self, object_id: &str) -> Result<Option<String>, StoreError> {
        self.with_conn(|c| {
            c.query_opt(
                "SELECT root_id FROM replies WHERE object_id = ?1",
                params![object_id],
                |r| r.get(0),
            )
        })
    }

    pub fn reply(&self, row_id: i64) -> Result<Option<StoredReply>, StoreError> {
        self.with_conn(|c| {
            c.query_opt(
                &format!("SELECT {COLUMNS} FROM replies r WHERE r.id = ?1"),
                params![row_id],
                from_row,
            )
        })
    }

    pub fn reply_by_object(&self, object_id: &str) -> Result<Option<StoredReply>, StoreError> {
        self.with_conn(|c| {
            c.query_opt(
                &format!("SELECT {COLUMNS} FROM replies r WHERE r.object_id = ?1"),
                params![object_id],
                from_row,
            )
        })
    }

    /// Every reply, oldest first, optionally of one state only: the moderation list.
    pub fn replies(&self, state: Option<ReplyState>) -> Result<Vec<StoredReply>, StoreError> {
        self.with_conn(|c| {
            c.query_all(
                &format!(
                    "SELECT {COLUMNS} FROM replies r WHERE CAST(?1 AS TEXT) IS NULL \
                     OR r.state = ?1 ORDER BY r.published, r.id"
                ),
                params![state.map(ReplyState::as_str)],
                from_row,
            )
        })
    }

    /// Sets a reply's state by row id; true when such a reply exists.
    pub fn set_reply_state(&self, row_id: i64, state: ReplyState) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            c.execute(
                "UPDATE replies SET state = ?2 WHERE id = ?1",
                params![row_id, state.as_str()],
            )
            .map(|n| n > 0)
        })
    }

    /// Ids of the visible, unblocked direct answers to `object_id`, oldest first: a page of
    /// its replies collection.
    pub fn reply_ids_to(
        &self,
        object_id: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<String>, StoreError> {
        self.with_conn(|c| {
            c.query_all(
                &format!(
                    "SELECT r.object_id FROM replies r WHERE r.in_reply_to = ?1 \
                     AND r.state = 'visible' AND {} ORDER BY r.published, r.id \
                     LIMIT ?2 OFFSET ?3",
                    not_blocked("r.author_host", "r.author_id")
                ),
                params![object_id, limit, offset],
                |r| r.get(0),
            )
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::test_stores;

    pub(crate) fn reply(id: &str, parent: &str, author: &str, minute: u32) -> Reply {
        let host = host_of(author).unwrap();
        Reply {
            id: id.into(),
            url: format!("{id}/page"),
            in_reply_to: parent.into(),
            author_id: author.into(),
            author_name: "Alice".into(),
            author_handle: format!("@alice@{host}"),
            author_url: format!("https://{host}/@alice"),
            author_avatar: None,
            content: "<p>Nice post</p>".into(),
            published: DateTime::parse_from_rfc3339(&format!("2026-02-01T10:{minute:02}:00Z"))
                .unwrap()
                .with_timezone(&Utc),
            depth: 0,
        }
    }

    const POST: &str = "https://blog.example/ap/posts/a.json";
    const ALICE: &str = "https://m.example/users/alice";

    fn insert(store: &Store, r: &Reply, state: ReplyState) -> bool {
        store
            .insert_reply(&NewReply {
                reply: r,
                root_id: POST,
                state,
            })
            .unwrap()
    }

    #[test]
    fn reply_round_trips_once() {
        for store in test_stores() {
            let r = reply("https://m.example/notes/1", POST, ALICE, 1);
            assert!(insert(&store, &r, ReplyState::Visible));
            assert!(!insert(&store, &r, ReplyState::Visible));
            let stored = store.reply_by_object(&r.id).unwrap().unwrap();
            assert_eq!(stored.reply, r);
            assert_eq!(stored.root_id, POST);
            assert_eq!(store.reply_root(&r.id).unwrap().as_deref(), Some(POST));
            assert_eq!(store.reply(stored.id).unwrap(), Some(stored));
        }
    }

    #[test]
    fn only_the_author_updates_or_deletes() {
        for store in test_stores() {
            let r = reply("https://m.example/notes/1", POST, ALICE, 1);
            insert(&store, &r, ReplyState::Visible);
            let later = r.published + chrono::Duration::minutes(5);
            assert!(!store
                .update_reply(&r.id, "https://m.example/users/mallory", "<p>x</p>", later)
                .unwrap());
            assert!(store
                .update_reply(&r.id, ALICE, "<p>edited</p>", later)
                .unwrap());
            let stored = store.reply_by_object(&r.id).unwrap().unwrap();
            assert_eq!(stored.reply.content, "<p>edited</p>");
            assert_eq!(stored.updated, Some(later));
            assert!(!store
                .delete_reply(&r.id, "https://m.example/users/mallory")
                .unwrap());
            assert!(store.delete_reply(&r.id, ALICE).unwrap());
            assert_eq!(store.reply_by_object(&r.id).unwrap(), None);
        }
    }

    #[test]
    fn replies_collection_lists_visible_direct_answers() {
        for store in test_stores() {
            let first = reply("https://m.example/notes/1", POST, ALICE, 1);
            let pending = reply("https://m.example/notes/2", POST, ALICE, 2);
            let nested = reply("https://m.example/notes/3", &first.id, ALICE, 3);
            let later = reply(
                "https://o.example/notes/4",
                POST,
                "https://o.example/u/b",
                4,
            );
            insert(&store, &later, ReplyState::Visible);
            insert(&store, &first, ReplyState::Visible);
            insert(&store, &pending, ReplyState::Pending);
            insert(&store, &nested, ReplyState::Visible);
            assert_eq!(
                store.reply_ids_to(POST, 0, 10).unwrap(),
                vec![first.id.clone(), later.id.clone()]
            );
            assert_eq!(store.reply_ids_to(POST, 1, 10).unwrap(), vec![later.id]);
            assert_eq!(
                store.reply_ids_to(&first.id, 0, 10).unwrap(),
                vec![nested.id]
            );
            let pending_rows = store.replies(Some(ReplyState::Pending)).unwrap();
            assert_eq!(pending_rows.len(), 1);
            assert!(store
                .set_reply_state(pending_rows[0].id, ReplyState::Visible)
                .unwrap());
            assert_eq!(store.reply_ids_to(POST, 0, 10).unwrap().len(), 3);
            assert!(!store.set_reply_state(9999, ReplyState::Hidden).unwrap());
        }
    }
}
