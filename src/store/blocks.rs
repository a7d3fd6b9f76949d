//! What the owner blocked (domains, actors), reports sent to us (`Flag`) and remote actors
//! that blocked one of ours (`Block`).

use super::sql::{params, Conn, Row};
use super::{host_of, time, Store, StoreError};

/// Where a block comes from: `config.toml` (replaced at each start of the inbox) or
/// `relais moderate` (kept until lifted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockSource {
    Config,
    Moderation,
}

impl BlockSource {
    fn as_str(self) -> &'static str {
        match self {
            BlockSource::Config => "config",
            BlockSource::Moderation => "moderation",
        }
    }

    fn parse(text: &str) -> BlockSource {
        if text == "config" {
            BlockSource::Config
        } else {
            BlockSource::Moderation
        }
    }
}

/// A report (`Flag`) a remote server sent about our content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub id: i64,
    pub activity_id: Option<String>,
    pub actor_id: String,
    /// Ids of what is reported.
    pub objects: Vec<String>,
    /// The reporter's comment, plain text as sent.
    pub content: String,
    pub received_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone)]
pub struct NewFlag<'a> {
    pub activity_id: Option<&'a str>,
    pub actor_id: &'a str,
    pub objects: &'a [String],
    pub content: &'a str,
}

/// How many rows a domain purge removed or hid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub followers: usize,
    pub replies_hidden: usize,
    pub reactions: usize,
}

/// SQL condition: the host in `host_col` is not under a blocked domain and the actor in
/// `actor_col` is not blocked. A block of `example.com` covers `sub.example.com` too.
pub(super) fn not_blocked(host_col: &str, actor_col: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM blocked_domains b WHERE {host} = b.domain \
         OR substr({host}, length({host}) - length(b.domain)) = '.' || b.domain \
         OR substr({host}, 1, length(b.domain) + 1) = b.domain || ':') \
         AND NOT EXISTS (SELECT 1 FROM blocked_actors a WHERE a.actor_id = {actor})",
        host = host_col,
        actor = actor_col
    )
}

/// Block lists are matched on lowercase domains without a trailing dot.
pub fn normalize_domain(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn flag_from_row(row: &Row) -> Result<Flag, StoreError> {
    let objects: String = row.get(3)?;
    Ok(Flag {
        id: row.get(0)?,
        activity_id: row.get(1)?,
        actor_id: row.get(2)?,
        // Written by `add_flag` from a Vec<String>.
        objects: serde_json::from_str(&objects).unwrap_or_default(),
        content: row.get(4)?,
        received_at: row.get(5)?,
    })
}

impl Store {
    /// Blocks a domain and its subdomains; what is still queued for them is dropped.
    pub fn block_domain(&self, domain: &str, source: BlockSource) -> Result<(), StoreError> {
        let domain = normalize_domain(domain);
        self.with_conn(|c| {
            let tx = c.begin()?;
            tx.execute(
                "INSERT INTO blocked_domains (domain, source, created_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (domain) DO UPDATE SET source = \
                 CASE WHEN blocked_domains.source = 'moderation' THEN 'moderation' \
                 ELSE excluded.source END",
                params![domain, source.as_str(), time::now()],
            )?;
            drop_queued_for_domain(&tx, &domain)?;
            tx.commit()
        })
    }

    pub fn unblock_domain(&self, domain: &str) -> Result<bool, StoreError> {
        let domain = normalize_domain(domain);
        self.with_conn(|c| {
            c.execute(
                "DELETE FROM blocked_domains WHERE domain = ?1",
                params![domain],
            )
            .map(|n| n > 0)
        })
    }

    /// Blocks an actor; what is still queued for its own inbox is dropped (its server's
    /// shared inbox still serves the other followers there).
    pub fn block_actor(&self, actor_id: &str, source: BlockSource) -> Result<(), StoreError> {
        self.with_conn(|c| {
            let tx = c.begin()?;
            tx.execute(
                "INSERT INTO blocked_actors (actor_id, source, created_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (actor_id) DO UPDATE SET source = \
                 CASE WHEN blocked_actors.source = 'moderation' THEN 'moderation' \
                 ELSE excluded.source END",
                params![actor_id, source.as_str(), time::now()],
            )?;
            drop_queued_for_actor(&tx, actor_id)?;
            tx.commit()
        })
    }

    pub fn unblock_actor(&self, actor_id: &str) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            c.execute(
                "DELETE FROM blocked_actors WHERE actor_id = ?1",
                params![actor_id],
            )
            .map(|n| n > 0)
        })
    }

    /// Replaces the blocks that came from `config.toml` with its current lists.
    pub fn set_config_blocks(
        &self,
        domains: &[String],
        actors: &[String],
    ) -> Result<(), StoreError> {
        self.with_conn(|c| {
            let tx = c.begin()?;
            tx.execute(
                "DELETE FROM blocked_domains WHERE source = 'config'",
                params![],
            )?;
            tx.execute(
                "DELETE FROM blocked_actors WHERE source = 'config'",
                params![],
            )?;
            let at = time::now();
            for domain in domains {
                let domain = normalize_domain(domain);
                tx.execute(
                    "INSERT INTO blocked_domains VALUES (?1, 'config', ?2) ON CONFLICT DO NOTHING",
                    params![domain, at],
                )?;
                drop_queued_for_domain(&tx, &domain)?;
            }
            for actor in actors {
                tx.execute(
                    "INSERT INTO blocked_actors VALUES (?1, 'config', ?2) ON CONFLICT DO NOTHING",
                    params![actor, at],
                )?;
                drop_queued_for_actor(&tx, actor)?;
            }
            tx.commit()
        })
    }

    pub fn blocked_domains(&self) -> Result<Vec<(String, BlockSource)>, StoreError> {
        self.blocked("SELECT domain, source FROM blocked_domains ORDER BY domain")
    }

    pub fn blocked_actors(&self) -> Result<Vec<(String, BlockSource)>, StoreError> {
        self.blocked("SELECT actor_id, source FROM blocked_actors ORDER BY actor_id")
    }

    fn blocked(&self, sql: &str) -> Result<Vec<(String, BlockSource)>, StoreError> {
        self.with_conn(|c| {
            c.query_all(sql, params![], |r| {
                let source: String = r.get(1)?;
                Ok((r.get(0)?, BlockSource::parse(&source)))
            })
        })
    }

    /// Whether the actor, or the domain its id lives on, is blocked.
    pub fn is_blocked(&self, actor_id: &str) -> Result<bool, StoreError> {
        let host = host_of(actor_id).unwrap_or_default();
        self.with_conn(|c| {
            // Cached: every inbox request asks twice.
            c.query_row(
                &format!("SELECT NOT ({})", not_blocked("?1", "?2")),
                params![host, actor_id],
                |r| r.get(0),
            )
        })
    }

    /// Takes a domain's data off display and stops delivering to it: its followers and
    /// reactions are removed, its replies hidden (kept, so a lifted block can show them again
    /// with `approve`).
    pub fn purge_domain(&self, domain: &str) -> Result<Purged, StoreError> {
        let domain = normalize_domain(domain);
        self.with_conn(|c| {
            let tx = c.begin()?;
            let purged = Purged {
                followers: tx.execute(
                    &format!("DELETE FROM followers WHERE {}", under("follower_host")),
                    params![domain],
                )?,
                replies_hidden: tx.execute(
                    &format!(
                        "UPDATE replies SET state = 'hidden' WHERE state != 'hidden' AND {}",
                        under("author_host")
                    ),
                    params![domain],
                )?,
                reactions: tx.execute(
                    &format!("DELETE FROM reactions WHERE {}", under("actor_host")),
                    params![domain],
                )?,
            };
            tx.commit()?;
            Ok(purged)
        })
    }

    /// Records a report; a repeated activity id is recorded once. True when recorded.
    pub fn add_flag(&self, flag: &NewFlag) -> Result<bool, StoreError> {
        let objects = serde_json::Value::from(flag.objects.to_vec()).to_string();
        self.with_conn(|c| {
            c.execute(
                "INSERT INTO flags (activity_id, actor_id, objects, content, received_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                params![
                    flag.activity_id,
                    flag.actor_id,
                    objects,
                    flag.content,
                    time::now()
                ],
            )
            .map(|n| n == 1)
        })
    }

    pub fn flags(&self) -> Result<Vec<Flag>, StoreError> {
        self.with_conn(|c| {
            c.query_all(
                "SELECT id, activity_id, actor_id, objects, content, received_at FROM flags \
                 ORDER BY received_at, id",
                params![],
                flag_from_row,
            )
        })
    }

    /// A remote actor blocked one of ours: remembered so we do not deliver to it.
    pub fn record_remote_block(
        &self,
        actor_id: &str,
        actor_name: &str,
        activity_id: Option<&str>,
    ) -> Result<(), StoreError> {
        self.with_conn(|c| {
            c.execute(
                "INSERT INTO remote_blocks (actor_id, actor_name, activity_id, received_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (actor_id, actor_name) DO UPDATE SET \
                 activity_id = excluded.activity_id, received_at = excluded.received_at",
                params![actor_id, actor_name, activity_id, time::now()],
            )?;
            Ok(())
        })
    }

    pub fn remove_remote_block(
        &self,
        actor_id: &str,
        actor_name: &str,
    ) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            c.execute(
                "DELETE FROM remote_blocks WHERE actor_id = ?1 AND actor_name = ?2",
                params![actor_id, actor_name],
            )
            .map(|n| n > 0)
        })
    }

    /// (remote actor, our actor) pairs of blocks received.
    pub fn remote_blocks(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.with_conn(|c| {
            c.query_all(
                "SELECT actor_id, actor_name FROM remote_blocks ORDER BY received_at, actor_id",
                params![],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
    }
}

/// SQL condition: the host in `col` is the domain `?1`, one of its subdomains, or either
/// with a port.
fn under(col: &str) -> String {
    format!(
        "({col} = ?1 OR substr({col}, length({col}) - length(?1)) = '.' || ?1 \
         OR substr({col}, 1, length(?1) + 1) = ?1 || ':')"
    )
}

/// A blocked server must not get what was queued before the block: its pending deliveries
/// end as failed (those in flight right now cannot be called back).
fn drop_queued_for_domain(tx: &Conn, domain: &str) -> Result<usize, StoreError> {
    tx.execute(
        &format!(
            "UPDATE deliveries SET state = 'failed', last_error = 'blocked', finished_at = ?2 \
             WHERE state = 'pending' AND {}",
            under("host")
        ),
        params![domain, time::now_unix()],
    )
}

fn drop_queued_for_actor(tx: &Conn, actor_id: &str) -> Result<usize, StoreError> {
    tx.execute(
        "UPDATE deliveries SET state = 'failed', last_error = 'blocked', finished_at = ?2 \
         WHERE state = 'pending' AND (follower_id = ?1 \
         OR inbox = (SELECT inbox FROM remote_actors WHERE id = ?1))",
        params![actor_id, time::now_unix()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_stores;

    #[test]
    fn domain_blocks_cover_subdomains_and_ports_only() {
        for store in test_stores() {
            store
                .block_domain("Bad.Example.", BlockSource::Moderation)
                .unwrap();
            assert!(store.is_blocked("https://bad.example/users/a").unwrap());
            assert!(store.is_blocked("https://eu.bad.example/users/a").unwrap());
            assert!(store.is_blocked("http://bad.example:8080/users/a").unwrap());
            assert!(!store.is_blocked("https://notbad.example/users/a").unwrap());
            assert!(!store.is_blocked("https://bad.example.org/users/a").unwrap());
            assert!(store.unblock_domain("bad.example").unwrap());
            assert!(!store.is_blocked("https://bad.example/users/a").unwrap());
        }
    }

    #[test]
    fn config_blocks_are_replaced_but_moderation_blocks_stay() {
        for store in test_stores() {
            store
                .block_domain("kept.example", BlockSource::Moderation)
                .unwrap();
            store
                .set_config_blocks(
                    &["a.example".into(), "kept.example".into()],
                    &["https://m.example/users/x".into()],
                )
                .unwrap();
            assert!(store.is_blocked("https://m.example/users/x").unwrap());
            assert!(!store.is_blocked("https://m.example/users/y").unwrap());
            store.set_config_blocks(&[], &[]).unwrap();
            assert_eq!(
                store.blocked_domains().unwrap(),
                vec![("kept.example".to_string(), BlockSource::Moderation)]
            );
            assert!(store.blocked_actors().unwrap().is_empty());
        }
    }

    #[test]
    fn flags_are_recorded_once() {
        for store in test_stores() {
            let objects = vec!["https://blog.example/ap/posts/a.json".to_string()];
            let flag = NewFlag {
                activity_id: Some("https://m.example/flags/1"),
                actor_id: "https://m.example/actor",
                objects: &objects,
                content: "spam",
            };
            assert!(store.add_flag(&flag).unwrap());
            assert!(!store.add_flag(&flag).unwrap());
            let flags = store.flags().unwrap();
            assert_eq!(flags.len(), 1);
            assert_eq!(flags[0].objects, objects);
            assert_eq!(flags[0].content, "spam");
        }
    }
}
