//! Who receives an activity: the accepted followers of its audience, one request per remote
//! server that has a shared inbox, else one per personal inbox (as Mastodon's
//! `inboxes_for_delivery` does).

use std::collections::{BTreeMap, HashMap};

use crate::store::queue::Recipient;
use crate::store::DeliveryFollower;

/// Followers grouped by the actor they follow.
#[derive(Debug)]
pub struct FollowerIndex<'a> {
    by_actor: HashMap<&'a str, Vec<&'a DeliveryFollower>>,
}

impl<'a> FollowerIndex<'a> {
    pub fn new(followers: &'a [DeliveryFollower]) -> FollowerIndex<'a> {
        let mut by_actor: HashMap<&str, Vec<&DeliveryFollower>> = HashMap::new();
        for follower in followers {
            by_actor
                .entry(follower.actor_name.as_str())
                .or_default()
                .push(follower);
        }
        FollowerIndex { by_actor }
    }

    /// The inboxes of the followers of every actor in `audience`, each once, sorted.
    pub fn recipients(&self, audience: &[String]) -> Vec<Recipient> {
        // inbox → the follower it belongs to, when it is a personal inbox of one follower.
        let mut inboxes: BTreeMap<&str, Option<&str>> = BTreeMap::new();
        for actor in audience {
            for follower in self.by_actor.get(actor.as_str()).into_iter().flatten() {
                match &follower.shared_inbox {
                    Some(shared) => {
                        inboxes.insert(shared, None);
                    }
                    None => {
                        let owner = Some(follower.follower_id.as_str());
                        inboxes
                            .entry(&follower.inbox)
                            .and_modify(|known| {
                                if *known != owner {
                                    *known = None;
                                }
                            })
                            .or_insert(owner);
                    }
                }
            }
        }
        inboxes
            .into_iter()
            .map(|(inbox, follower_id)| Recipient {
                inbox: inbox.to_string(),
                follower_id: follower_id.map(str::to_string),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follower(actor: &str, id: &str, shared: Option<&str>) -> DeliveryFollower {
        DeliveryFollower {
            actor_name: actor.into(),
            follower_id: id.into(),
            inbox: format!("{id}/inbox"),
            shared_inbox: shared.map(str::to_string),
        }
    }

    #[test]
    fn one_request_per_shared_inbox_else_per_personal_inbox() {
        let followers = vec![
            follower(
                "blog",
                "https://m.example/u/1",
                Some("https://m.example/inbox"),
            ),
            follower(
                "blog",
                "https://m.example/u/2",
                Some("https://m.example/inbox"),
            ),
            follower(
                "alice",
                "https://m.example/u/3",
                Some("https://m.example/inbox"),
            ),
            follower("alice", "https://solo.example/me", None),
            follower("blog", "https://solo.example/me", None),
            follower(
                "carol",
                "https://other.example/u/9",
                Some("https://other.example/inbox"),
            ),
        ];
        let index = FollowerIndex::new(&followers);
        let got = index.recipients(&["alice".to_string(), "blog".to_string()]);
        assert_eq!(
            got,
            vec![
                Recipient {
                    inbox: "https://m.example/inbox".into(),
                    follower_id: None
                },
                Recipient {
                    inbox: "https://solo.example/me/inbox".into(),
                    follower_id: Some("https://solo.example/me".into())
                },
            ]
        );
        assert_eq!(index.recipients(&["blog".to_string()]).len(), 2);
        assert!(index.recipients(&["nobody".to_string()]).is_empty());
    }

    #[test]
    fn a_personal_inbox_shared_by_two_actors_names_no_follower() {
        let mut odd = follower("blog", "https://x.example/b", None);
        odd.inbox = "https://x.example/a/inbox".into();
        let followers = vec![follower("blog", "https://x.example/a", None), odd];
        let got = FollowerIndex::new(&followers).recipients(&["blog".to_string()]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].follower_id, None);
    }
}
