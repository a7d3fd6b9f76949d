//! Moving accounts end to end, both ways, with the real binary (`relais inbox`,
//! `relais move`, `relais build`, `relais status`) and Mastodon-like servers on loopback
//! (`common::peer`) that handle a `Move` as Mastodon does: check its signature and the
//! target's `alsoKnownAs`, then have each local follower follow the target and unfollow
//! the mover.

use crate::common;

use crate::common::peer::{Blog, Peer};
use serde_json::{json, Value};

/// Mastodon's `MoveSerializer` shape, signed by the moving account (a peer user).
async fn send_move(from: &Peer, user: &str, target: &str, to_inbox: &str) {
    let me = from.actor(user);
    let activity = json!({
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": format!("{me}#moves/1"),
        "type": "Move",
        "target": target,
        "actor": me,
        "object": me,
    });
    let response = from.post(user, to_inbox, &activity).await;
    assert!(response.status().is_success());
}

#[tokio::test(flavor = "multi_thread")]
async fn followers_of_the_old_account_arrive_and_are_counted() {
    // The writer's old Mastodon account, and two servers where its followers live.
    let old = Peer::start(&["writer"]).await;
    let one = Peer::start(&["a1", "a2"]).await;
    let two = Peer::start(&["b1", "b2"]).await;
    let blog = Blog::start(&format!("also_known_as = [\"{}\"]", old.actor("writer"))).await;
    // Someone who found the blog on their own, before the move.
    two.follow("b2", &blog.actor()).await;
    for (peer, user) in [(&one, "a1"), (&one, "a2"), (&two, "b1")] {
        peer.already_follows(user, &old.actor("writer"));
    }
    // The blog's actor names the old account, as the README's first step has it.
    let actor: Value = reqwest::get(blog.actor())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(actor["alsoKnownAs"], json!([old.actor("writer")]));

    // Moving from Mastodon's settings: movedTo on the old account, then the Move to the
    // shared inbox of every server with followers (MoveDistributionWorker).
    old.set_profile("writer", "movedTo", json!(blog.actor()));
    for peer in [&one, &two] {
        send_move(&old, "writer", &blog.actor(), &peer.shared_inbox()).await;
    }
    let expected: Vec<String> = vec![
        one.actor("a1"),
        one.actor("a2"),
        two.actor("b1"),
        two.actor("b2"),
    ];
    blog.wait_for_followers(&expected).await;
    // Each follower was accepted and unfollowed the old account.
    one.wait_for("two Accepts", |p| p.received_of("Accept").len() == 2)
        .await;
    old.wait_for("three Undos", |p| p.received_of("Undo").len() == 3)
        .await;

    let status = blog.relais("status", &[]);
    common::assert_success(&status, "relais status");
    let text = common::stdout(&status);
    assert!(text.contains("Followers: 4 (blog 4)"), "{text}");
    assert!(
        text.contains(&format!(
            "Moved here: 3 of blog's followers arrived through the move of {}",
            old.actor("writer")
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn relais_move_sends_a_move_and_followers_follow_the_new_account() {
    let one = Peer::start(&["a1", "a2"]).await;
    let two = Peer::start(&["b1"]).await;
    let new_home = Peer::start(&["me", "stranger"]).await;
    let blog = Blog::start("").await;
    new_home.set_profile("me", "alsoKnownAs", json!([blog.actor()]));
    for (peer, user) in [(&one, "a1"), (&one, "a2"), (&two, "b1")] {
        peer.follow(user, &blog.actor()).await;
    }
    let mut followers = vec![one.actor("a1"), one.actor("a2"), two.actor("b1")];
    followers.sort();
    blog.wait_for_followers(&followers).await;

    // A target that does not name the blog: refused with the fix, nothing written.
    let refused = blog.relais("move", &["--to", &new_home.actor("stranger")]);
    assert!(!refused.status.success());
    let error = common::stderr(&refused);
    assert!(
        error.contains("does not list") && error.contains("alsoKnownAs"),
        "{error}"
    );
    assert!(error.contains("account alias"), "{error}");
    let config = std::fs::read_to_string(blog.path().join("config.toml")).unwrap();
    assert!(!config.contains("moved_to"), "{config}");

    let moved = blog.relais("move", &["--to", &new_home.actor("me")]);
    common::assert_success(&moved, "relais move");
    let text = common::stdout(&moved);
    // One request per server: both have a shared inbox.
    assert!(text.contains(": 2 deliveries"), "{text}");

    // Each server checked the Move and its users followed the new account...
    new_home
        .wait_for("three Follows", |p| p.received_of("Follow").len() == 3)
        .await;
    let mut refollowers: Vec<String> = new_home
        .received_of("Follow")
        .iter()
        .map(|f| {
            assert_eq!(f["object"], new_home.actor("me"));
            f["actor"].as_str().unwrap().to_string()
        })
        .collect();
    refollowers.sort();
    assert_eq!(refollowers, followers);
    for peer in [&one, &two] {
        let moves = peer.received_of("Move");
        assert_eq!(moves.len(), 1, "{moves:?}");
        assert_eq!(moves[0]["actor"], blog.actor());
        assert_eq!(moves[0]["object"], blog.actor());
        assert_eq!(moves[0]["target"], new_home.actor("me"));
        assert!(peer.moves()[0].starts_with("moved"), "{:?}", peer.moves());
    }
    // ...and unfollowed the old actor, whose inbox still answers.
    blog.wait_for_followers(&[]).await;

    // The next build publishes movedTo.
    common::build_site(blog.path());
    let actor = common::read_json(&blog.path().join("public/ap/users/blog.json"));
    assert_eq!(actor["movedTo"], new_home.actor("me"));
    let status = common::stdout(&blog.relais("status", &[]));
    assert!(
        status.contains(&format!(
            "Moved away: blog moved to {}",
            new_home.actor("me")
        )),
        "{status}"
    );
}
