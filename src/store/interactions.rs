//! What the build shows under each post: visible replies, threaded, and who liked or boosted.

use super::blocks::not_blocked;
use super::replies::{from_row, COLUMNS};
use super::sql::{params, Conn};
use super::{Store, StoreError};
use crate::interactions::{thread, Interactions, PostInteractions, QuotedBy, Reactor};

fn quoted_by(c: &Conn, post_id: &str) -> Result<Vec<QuotedBy>, StoreError> {
    let sql = format!(
        "SELECT q.actor_id, a.name, a.url, a.avatar, q.url FROM received_quotes q \
         LEFT JOIN remote_actors a ON a.id = q.actor_id \
         WHERE q.post_id = ?1 AND {} ORDER BY q.created_at, q.quote_id",
        not_blocked("q.actor_host", "q.actor_id")
    );
    c.query_all(&sql, params![post_id], |r| {
        let actor_id: String = r.get(0)?;
        let name: Option<String> = r.get(1)?;
        let actor_url: Option<String> = r.get(2)?;
        Ok(QuotedBy {
            name: name.unwrap_or_else(|| actor_id.clone()),
            actor_url: actor_url.unwrap_or_else(|| actor_id.clone()),
            avatar: r.get(3)?,
            url: r.get(4)?,
            actor_id,
        })
    })
}

fn reactors(c: &Conn, post_id: &str, kind: &str) -> Result<Vec<Reactor>, StoreError> {
    let sql = format!(
        "SELECT x.actor_id, a.name, a.url, a.avatar FROM reactions x \
         LEFT JOIN remote_actors a ON a.id = x.actor_id \
         WHERE x.object_id = ?1 AND x.kind = ?2 AND {} ORDER BY x.created_at, x.actor_id",
        not_blocked("x.actor_host", "x.actor_id")
    );
    c.query_all(&sql, params![post_id, kind], |r| {
        let actor_id: String = r.get(0)?;
        // An actor whose document is no longer cached is still counted, shown by its id.
        let name: Option<String> = r.get(1)?;
        let url: Option<String> = r.get(2)?;
        Ok(Reactor {
            name: name.unwrap_or_else(|| actor_id.clone()),
            url: url.unwrap_or_else(|| actor_id.clone()),
            avatar: r.get(3)?,
            actor_id,
        })
    })
}

fn post_interactions(c: &Conn, post_id: &str) -> Result<PostInteractions, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM replies r WHERE r.root_id = ?1 AND r.state = 'visible' AND {}",
        not_blocked("r.author_host", "r.author_id")
    );
    let replies = c.query_all(&sql, params![post_id], |r| from_row(r).map(|s| s.reply))?;
    Ok(PostInteractions {
        replies: thread(post_id, replies),
        likes: reactors(c, post_id, "Like")?,
        boosts: reactors(c, post_id, "Announce")?,
        quotes: quoted_by(c, post_id)?,
    })
}

impl Store {
    /// Interactions of the given posts (object ids). Posts without any are left out.
    pub fn interactions(&self, post_ids: &[String]) -> Result<Interactions, StoreError> {
        // A big site has few posts with interactions: asking only for those keeps a build
        // of 10k posts from running four queries per post (0.7 s).
        let with_any: std::collections::HashSet<String> =
            self.ids_with_interactions()?.into_iter().collect();
        self.with_conn(|c| {
            let mut all = Interactions::new();
            for id in post_ids.iter().filter(|id| with_any.contains(id.as_str())) {
                let found = post_interactions(c, id)?;
                if found != PostInteractions::default() {
                    all.insert(id.clone(), found);
                }
            }
            Ok(all)
        })
    }

    /// Every post id that has a visible reply, a reaction or a quote.
    fn ids_with_interactions(&self) -> Result<Vec<String>, StoreError> {
        self.with_conn(|c| {
            c.query_all(
                "SELECT root_id FROM replies WHERE state = 'visible' \
                 UNION SELECT object_id FROM reactions UNION SELECT post_id FROM received_quotes",
                params![],
                |r| r.get(0),
            )
        })
    }

    /// Interactions of every post that has any: what a build elsewhere fetches from the
    /// inbox's public endpoint.
    pub fn all_interactions(&self) -> Result<Interactions, StoreError> {
        let ids = self.ids_with_interactions()?;
        self.interactions(&ids)
    }

    /// Interactions of one post, empty when it has none.
    pub fn post_interactions(&self, post_id: &str) -> Result<PostInteractions, StoreError> {
        self.with_conn(|c| post_interactions(c, post_id))
    }

    /// A number that moves whenever anything pages show of interactions may have changed
    /// (a reply, a reaction, a quote, an actor's name or avatar, a block): a build that
    /// finds it where the last build left it needs no interactions read again. A store that
    /// never held a reply, reaction or quote shows what no store shows, and has the same
    /// stamp, [`NO_INTERACTIONS`]: `relais serve` creates its store after its first build,
    /// which would otherwise make the first edit rebuild the whole site.
    pub fn interactions_stamp(&self) -> Result<i64, StoreError> {
        let changes = self.with_conn(|c| {
            if c.is_postgres() {
                // A sequence's last value, whichever session moved it.
                c.query_row(
                    "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM interaction_changes",
                    params![],
                    |r| r.get(0),
                )
            } else {
                c.query_row(
                    "SELECT n FROM interaction_changes WHERE id = 1",
                    params![],
                    |r| r.get(0),
                )
            }
        })?;
        if changes != 0 {
            return Ok(changes);
        }
        // Never moved since migration 6: empty, or a store from before it, holding some.
        let empty: bool = self.with_conn(|c| {
            c.query_row(
                "SELECT NOT EXISTS (SELECT 1 FROM replies) AND NOT EXISTS (SELECT 1 FROM reactions) \
                 AND NOT EXISTS (SELECT 1 FROM received_quotes)",
                params![],
                |r| r.get(0),
            )
        })?;
        Ok(if empty { NO_INTERACTIONS } else { 0 })
    }
}

/// The interactions stamp of a site without a store, and of a store that never held any.
pub const NO_INTERACTIONS: i64 = -1;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::actors::tests::actor;
    use crate::store::reactions::ReactionKind;
    use crate::store::replies::tests::reply;
    use crate::store::test_stores;
    use crate::store::{BlockSource, NewReply, ReplyState};

    const POST: &str = "https://blog.example/ap/posts/a.json";
    const OTHER: &str = "https://blog.example/ap/posts/b.json";

    fn insert(store: &Store, id: &str, parent: &str, author: &str, minute: u32, state: ReplyState) {
        store
            .insert_reply(&NewReply {
                reply: &reply(id, parent, author, minute),
                root_id: POST,
                state,
            })
            .unwrap();
    }

    #[test]
    fn the_stamp_moves_with_every_change_pages_show() {
        for store in test_stores() {
            let mut last = store.interactions_stamp().unwrap();
            assert_eq!(
                last, NO_INTERACTIONS,
                "a new store shows what no store shows"
            );
            let mut moved = |what: &str| {
                let now = store.interactions_stamp().unwrap();
                assert_ne!(now, last, "{what}");
                last = now;
            };
            insert(
                &store,
                "https://m.example/r/1",
                POST,
                "https://m.example/users/alice",
                1,
                ReplyState::Visible,
            );
            moved("a reply");
            store
                .add_reaction(
                    "https://m.example/l/1",
                    "https://m.example/users/bob",
                    POST,
                    ReactionKind::Like,
                )
                .unwrap();
            moved("a like");
            store
                .cache_actor(&actor("https://m.example/users/bob"))
                .unwrap();
            moved("an actor's profile");
            store
                .block_domain("m.example", BlockSource::Moderation)
                .unwrap();
            moved("a block");
            let same = store.interactions_stamp().unwrap();
            store.followers(None).unwrap();
            assert_eq!(store.interactions_stamp().unwrap(), same, "a read");
        }
    }

    #[test]
    fn a_store_from_before_the_counter_with_replies_is_not_an_empty_one() {
        for store in test_stores() {
            insert(
                &store,
                "https://m.example/r/1",
                POST,
                "https://m.example/users/alice",
                1,
                ReplyState::Visible,
            );
            // As migration 6 leaves a store that already held replies.
            store
                .with_conn(|c| {
                    c.execute_batch(if c.is_postgres() {
                        "SELECT setval('interaction_changes', 1, false)"
                    } else {
                        "UPDATE interaction_changes SET n = 0"
                    })
                })
                .unwrap();
            let stamp = store.interactions_stamp().unwrap();
            assert_ne!(stamp, NO_INTERACTIONS);
        }
    }

    #[test]
    fn all_interactions_lists_every_post_with_something_shown() {
        for store in test_stores() {
            assert!(store.all_interactions().unwrap().is_empty());
            let alice = "https://m.example/users/alice";
            insert(
                &store,
                "https://m.example/n/1",
                POST,
                alice,
                1,
                ReplyState::Visible,
            );
            store
                .add_reaction("https://m.example/like/1", alice, OTHER, ReactionKind::Like)
                .unwrap();
            let all = store.all_interactions().unwrap();
            assert_eq!(all.len(), 2);
            assert_eq!(all[POST].replies.len(), 1);
            assert_eq!(all[OTHER].likes.len(), 1);
        }
    }

    #[test]
    fn threads_visible_replies_and_drops_hidden_pending_and_blocked() {
        for store in test_stores() {
            let alice = "https://m.example/users/alice";
            let eve = "https://bad.example/users/eve";
            insert(
                &store,
                "https://m.example/n/1",
                POST,
                alice,
                1,
                ReplyState::Visible,
            );
            insert(
                &store,
                "https://m.example/n/2",
                POST,
                alice,
                2,
                ReplyState::Pending,
            );
            insert(
                &store,
                "https://m.example/n/3",
                "https://m.example/n/1",
                alice,
                3,
                ReplyState::Visible,
            );
            insert(
                &store,
                "https://m.example/n/4",
                POST,
                alice,
                4,
                ReplyState::Hidden,
            );
            insert(
                &store,
                "https://m.example/n/5",
                "https://m.example/n/4",
                alice,
                5,
                ReplyState::Visible,
            );
            insert(
                &store,
                "https://bad.example/n/6",
                POST,
                eve,
                6,
                ReplyState::Visible,
            );
            store
                .block_domain("bad.example", BlockSource::Config)
                .unwrap();

            let found = store.post_interactions(POST).unwrap();
            let got: Vec<(&str, usize)> = found
                .replies
                .iter()
                .map(|r| (r.id.as_str(), r.depth))
                .collect();
            assert_eq!(
                got,
                vec![("https://m.example/n/1", 0), ("https://m.example/n/3", 1)]
            );
        }
    }

    #[test]
    fn reactions_carry_the_cached_actor_and_skip_blocked_actors() {
        for store in test_stores() {
            let alice = actor("https://m.example/users/alice");
            store.cache_actor(&alice).unwrap();
            let uncached = "https://o.example/users/bob";
            let blocked = "https://o.example/users/eve";
            store
                .add_reaction("https://m.example/l/1", &alice.id, POST, ReactionKind::Like)
                .unwrap();
            store
                .add_reaction("https://o.example/l/2", uncached, POST, ReactionKind::Like)
                .unwrap();
            store
                .add_reaction("https://o.example/l/3", blocked, POST, ReactionKind::Like)
                .unwrap();
            store
                .add_reaction(
                    "https://m.example/b/1",
                    &alice.id,
                    OTHER,
                    ReactionKind::Announce,
                )
                .unwrap();
            store.block_actor(blocked, BlockSource::Moderation).unwrap();

            let all = store
                .interactions(&[
                    POST.to_string(),
                    OTHER.to_string(),
                    "https://blog.example/ap/posts/none.json".to_string(),
                ])
                .unwrap();
            assert_eq!(all.len(), 2, "posts without interactions are left out");
            let likes = &all[POST].likes;
            assert_eq!(likes.len(), 2);
            assert!(likes.iter().any(|r| r.actor_id == alice.id
                && r.name == alice.name
                && r.url == alice.url
                && r.avatar == alice.avatar));
            assert!(likes
                .iter()
                .any(|r| r.actor_id == uncached && r.url == uncached));
            assert!(all[POST].boosts.is_empty());
            assert_eq!(all[OTHER].boosts.len(), 1);
            assert!(all[OTHER].likes.is_empty());
        }
    }

    #[test]
    fn purging_a_domain_empties_its_interactions() {
        for store in test_stores() {
            let eve = "https://bad.example/users/eve";
            insert(
                &store,
                "https://bad.example/n/1",
                POST,
                eve,
                1,
                ReplyState::Visible,
            );
            store
                .add_reaction("https://bad.example/l/1", eve, POST, ReactionKind::Like)
                .unwrap();
            let purged = store.purge_domain("bad.example").unwrap();
            assert_eq!(purged.replies_hidden, 1);
            assert_eq!(purged.reactions, 1);
            assert_eq!(
                store.post_interactions(POST).unwrap(),
                PostInteractions::default()
            );
            assert_eq!(store.replies(Some(ReplyState::Hidden)).unwrap().len(), 1);
        }
    }
}
