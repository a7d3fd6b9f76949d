//! Replies, likes, boosts and quotes collected by the inbox, as the build shows them under
//! a post: the types the store returns and the site shows, in a module that depends on
//! neither (only on `chrono` and `serde`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A remote reply, already sanitized when it was stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// ActivityPub id of the reply object.
    pub id: String,
    /// Page to link to (the object's `url`, else its id).
    pub url: String,
    /// Id of the object it answers: one of our posts or another reply.
    pub in_reply_to: String,
    pub author_id: String,
    pub author_name: String,
    /// `@user@host`.
    pub author_handle: String,
    pub author_url: String,
    pub author_avatar: Option<String>,
    /// Sanitized HTML.
    pub content: String,
    pub published: DateTime<Utc>,
    /// Nesting level in the thread, filled by `thread`: 0 answers the post itself.
    #[serde(default)]
    pub depth: usize,
}

/// Someone who liked or boosted a post.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reactor {
    pub actor_id: String,
    pub name: String,
    pub url: String,
    pub avatar: Option<String>,
}

/// Someone who quoted a post, with our authorization (FEP-044f).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotedBy {
    pub actor_id: String,
    pub name: String,
    pub actor_url: String,
    pub avatar: Option<String>,
    /// The quoting post's page (its `url`, else its id).
    pub url: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PostInteractions {
    /// In thread order (each reply followed by its answers), depth set.
    pub replies: Vec<Reply>,
    pub likes: Vec<Reactor>,
    pub boosts: Vec<Reactor>,
    /// Authorized quotes, oldest first: shown as "quoted by".
    #[serde(default)]
    pub quotes: Vec<QuotedBy>,
}

/// Interactions of every post, keyed by the post's object id.
pub type Interactions = HashMap<String, PostInteractions>;

/// Orders the replies to `post_id` depth-first by date, each answer under what it answers,
/// and sets `depth`. Replies whose parent is unknown are dropped: they belong to no thread here.
pub fn thread(post_id: &str, mut replies: Vec<Reply>) -> Vec<Reply> {
    replies.sort_by(|a, b| a.published.cmp(&b.published).then(a.id.cmp(&b.id)));
    let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, r) in replies.iter().enumerate() {
        children.entry(r.in_reply_to.as_str()).or_default().push(i);
    }
    let mut order = Vec::with_capacity(replies.len());
    let mut seen = vec![false; replies.len()];
    // Explicit stack: a long reply chain must not overflow the call stack.
    let mut stack: Vec<(usize, usize)> = children
        .get(post_id)
        .map(|v| v.iter().rev().map(|&i| (i, 0)).collect())
        .unwrap_or_default();
    while let Some((i, depth)) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        order.push((i, depth));
        if let Some(kids) = children.get(replies[i].id.as_str()) {
            stack.extend(kids.iter().rev().map(|&k| (k, depth + 1)));
        }
    }
    order
        .into_iter()
        .map(|(i, depth)| Reply {
            depth,
            ..replies[i].clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(id: &str, parent: &str, minute: u32) -> Reply {
        Reply {
            id: id.into(),
            url: id.into(),
            in_reply_to: parent.into(),
            author_id: "https://m.example/users/a".into(),
            author_name: "A".into(),
            author_handle: "@a@m.example".into(),
            author_url: "https://m.example/@a".into(),
            author_avatar: None,
            content: "<p>hi</p>".into(),
            published: DateTime::parse_from_rfc3339(&format!("2026-01-01T10:{minute:02}:00Z"))
                .unwrap()
                .with_timezone(&Utc),
            depth: 0,
        }
    }

    #[test]
    fn threads_depth_first_by_date() {
        let post = "https://b.example/ap/posts/p.json";
        let replies = vec![
            reply("r3", "r1", 3),
            reply("r2", post, 2),
            reply("r1", post, 1),
            reply("orphan", "elsewhere", 0),
            reply("r4", "r3", 4),
        ];
        let threaded = thread(post, replies);
        let got: Vec<(&str, usize)> = threaded.iter().map(|r| (r.id.as_str(), r.depth)).collect();
        assert_eq!(got, vec![("r1", 0), ("r3", 1), ("r4", 2), ("r2", 0)]);
    }

    #[test]
    fn a_cycle_does_not_loop() {
        let replies = vec![reply("a", "b", 1), reply("b", "a", 2), reply("c", "p", 3)];
        let threaded = thread("p", replies);
        assert_eq!(threaded.len(), 1);
    }
}
