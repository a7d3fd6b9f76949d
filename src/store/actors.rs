//! Cache of remote actors: their inboxes, how to show them and the key they sign with.

use super::sql::{params, Row};
use super::{Store, StoreError};

/// What we keep of a remote actor document.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteActor {
    pub id: String,
    pub inbox: String,
    pub shared_inbox: Option<String>,
    /// Display name, else the username.
    pub name: String,
    /// `@user@host`.
    pub handle: String,
    /// Profile page, else the id.
    pub url: String,
    pub avatar: Option<String>,
    pub public_key_pem: String,
    pub key_id: String,
    pub also_known_as: Vec<String>,
    pub moved_to: Option<String>,
    /// When it was fetched (whole seconds).
    pub fetched_at: chrono::DateTime<chrono::Utc>,
}

const COLUMNS: &str = "id, inbox, shared_inbox, name, handle, url, avatar, public_key_pem, \
                       key_id, also_known_as, moved_to, fetched_at";

fn from_row(row: &Row) -> Result<RemoteActor, StoreError> {
    let aka: String = row.get(9)?;
    Ok(RemoteActor {
        id: row.get(0)?,
        inbox: row.get(1)?,
        shared_inbox: row.get(2)?,
        name: row.get(3)?,
        handle: row.get(4)?,
        url: row.get(5)?,
        avatar: row.get(6)?,
        public_key_pem: row.get(7)?,
        key_id: row.get(8)?,
        // Written by `cache_actor` from a Vec<String>; unreadable means an empty list.
        also_known_as: serde_json::from_str(&aka).unwrap_or_default(),
        moved_to: row.get(10)?,
        fetched_at: row.get(11)?,
    })
}

impl Store {
    /// Inserts or refreshes an actor.
    pub fn cache_actor(&self, actor: &RemoteActor) -> Result<(), StoreError> {
        let aka = serde_json::Value::from(actor.also_known_as.clone()).to_string();
        self.with_conn(|c| {
            c.execute(
                &format!(
                    "INSERT INTO remote_actors ({COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
                     ON CONFLICT (id) DO UPDATE SET inbox = excluded.inbox, \
                     shared_inbox = excluded.shared_inbox, name = excluded.name, \
                     handle = excluded.handle, url = excluded.url, avatar = excluded.avatar, \
                     public_key_pem = excluded.public_key_pem, key_id = excluded.key_id, \
                     also_known_as = excluded.also_known_as, moved_to = excluded.moved_to, \
                     fetched_at = excluded.fetched_at"
                ),
                params![
                    actor.id,
                    actor.inbox,
                    actor.shared_inbox,
                    actor.name,
                    actor.handle,
                    actor.url,
                    actor.avatar,
                    actor.public_key_pem,
                    actor.key_id,
                    aka,
                    actor.moved_to,
                    actor.fetched_at,
                ],
            )?;
            Ok(())
        })
    }

    pub fn cached_actor(&self, id: &str) -> Result<Option<RemoteActor>, StoreError> {
        self.with_conn(|c| {
            c.query_opt(
                &format!("SELECT {COLUMNS} FROM remote_actors WHERE id = ?1"),
                params![id],
                from_row,
            )
        })
    }

    /// The actor whose key has this id (`keyId` of a signature).
    pub fn cached_actor_by_key(&self, key_id: &str) -> Result<Option<RemoteActor>, StoreError> {
        self.with_conn(|c| {
            c.query_opt(
                &format!("SELECT {COLUMNS} FROM remote_actors WHERE key_id = ?1 LIMIT 1"),
                params![key_id],
                from_row,
            )
        })
    }

    /// Removes everything an actor left here: its follows, replies, reactions and cache entry
    /// (the answer to `Delete` of an actor).
    pub fn delete_actor_data(&self, actor_id: &str) -> Result<(), StoreError> {
        self.with_conn(|c| {
            let tx = c.begin()?;
            tx.execute(
                "DELETE FROM followers WHERE follower_id = ?1",
                params![actor_id],
            )?;
            tx.execute(
                "DELETE FROM replies WHERE author_id = ?1",
                params![actor_id],
            )?;
            tx.execute(
                "DELETE FROM reactions WHERE actor_id = ?1",
                params![actor_id],
            )?;
            tx.execute("DELETE FROM remote_actors WHERE id = ?1", params![actor_id])?;
            tx.commit()
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::test_stores;

    pub(crate) fn actor(id: &str) -> RemoteActor {
        let host = crate::store::host_of(id).unwrap();
        RemoteActor {
            id: id.into(),
            inbox: format!("{id}/inbox"),
            shared_inbox: Some(format!("https://{host}/inbox")),
            name: "Alice".into(),
            handle: format!("@alice@{host}"),
            url: format!("https://{host}/@alice"),
            avatar: Some(format!("https://{host}/a.png")),
            public_key_pem: "PEM".into(),
            key_id: format!("{id}#main-key"),
            also_known_as: vec!["https://old.example/users/alice".into()],
            moved_to: None,
            fetched_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn cache_round_trips_and_refreshes() {
        for store in test_stores() {
            let mut a = actor("https://m.example/users/alice");
            store.cache_actor(&a).unwrap();
            assert_eq!(store.cached_actor(&a.id).unwrap(), Some(a.clone()));
            a.public_key_pem = "NEW".into();
            a.also_known_as.clear();
            store.cache_actor(&a).unwrap();
            assert_eq!(
                store.cached_actor_by_key(&a.key_id).unwrap(),
                Some(a.clone())
            );
            assert_eq!(
                store.cached_actor("https://m.example/users/bob").unwrap(),
                None
            );
        }
    }
}
