//! What was published: the last state of every post sent to followers, so that a post is
//! sent once and only its edits and its removal are sent again.

use super::queue::QueueTx;
use super::sql::params;
use super::{Store, StoreError};

/// What was last sent for one post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedRecord {
    pub object_id: String,
    /// Our actor the post is attributed to: who signs its `Update` and `Delete`.
    pub actor_name: String,
    pub content_hash: String,
    /// The `updated` followers last received (whole seconds), if any.
    pub updated: Option<chrono::DateTime<chrono::Utc>>,
    /// The last `Create`, `Update` or `Delete` queued for the post; `None` when the post was
    /// recorded without being sent (older than the first publish window).
    pub last_activity_id: Option<String>,
    /// When that activity was made (Unix seconds): later ids of the post must differ.
    pub last_activity_at: i64,
    pub deleted: bool,
}

impl QueueTx<'_> {
    pub fn published_records(&self) -> Result<Vec<PublishedRecord>, StoreError> {
        self.conn().query_all(
            "SELECT object_id, actor_name, content_hash, updated, last_activity_id, \
             last_activity_at, deleted FROM published_posts ORDER BY object_id",
            params![],
            |r| {
                Ok(PublishedRecord {
                    object_id: r.get(0)?,
                    actor_name: r.get(1)?,
                    content_hash: r.get(2)?,
                    updated: r.get(3)?,
                    last_activity_id: r.get(4)?,
                    last_activity_at: r.get(5)?,
                    deleted: r.get(6)?,
                })
            },
        )
    }

    pub fn record_published(&self, record: &PublishedRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO published_posts (object_id, actor_name, content_hash, updated, \
                 last_activity_id, last_activity_at, deleted) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (object_id) DO UPDATE SET actor_name = excluded.actor_name, \
                 content_hash = excluded.content_hash, updated = excluded.updated, \
                 last_activity_id = excluded.last_activity_id, \
                 last_activity_at = excluded.last_activity_at, deleted = excluded.deleted",
            params![
                record.object_id,
                record.actor_name,
                record.content_hash,
                record.updated,
                record.last_activity_id,
                record.last_activity_at,
                record.deleted,
            ],
        )?;
        Ok(())
    }
}

impl Store {
    /// Posts followers have (or were recorded as having) and posts deleted since.
    pub fn published_post_counts(&self) -> Result<(u64, u64), StoreError> {
        self.with_conn(|c| {
            c.query_row(
                "SELECT COUNT(*) FILTER (WHERE deleted = 0), COUNT(*) FILTER (WHERE deleted = 1) \
                 FROM published_posts",
                params![],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::queue::tests::NOW;
    use crate::store::test_stores;

    #[test]
    fn published_records_round_trip() {
        for store in test_stores() {
            let mut record = PublishedRecord {
                object_id: "https://b/ap/posts/a.json".into(),
                actor_name: "blog".into(),
                content_hash: "h1".into(),
                updated: None,
                last_activity_id: Some("https://b/ap/posts/a.json#create".into()),
                last_activity_at: NOW,
                deleted: false,
            };
            store
                .queue_transaction(|q| q.record_published(&record))
                .unwrap();
            record.content_hash = "h2".into();
            record.updated = Some("2027-01-15T08:00:00Z".parse().unwrap());
            record.deleted = true;
            store
                .queue_transaction(|q| q.record_published(&record))
                .unwrap();
            let records = store.queue_transaction(|q| q.published_records()).unwrap();
            assert_eq!(records, vec![record]);
        }
    }
}
