//! Replying and mentioning from Markdown, end to end: `relais build` resolves
//! `in_reply_to` and `@user@host` against a Mastodon-like server on loopback (WebFinger,
//! actor and status documents), the built object carries `inReplyTo`, `cc` and `Mention`
//! tags with the mention linked as Mastodon links it, and `relais publish` delivers the
//! post to the followers and to the addressed accounts' server.

use crate::common;

use crate::common::peer::{Peer, GUARD};
use chrono::Utc;
use relais::store::{FollowState, NewFollower, RemoteActor, Store};
use serde_json::{json, Value};

const SITE_KEY: &str = include_str!("fixtures/site_key.pem");

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_with_mentions_is_addressed_and_delivered_to_the_people_it_names() {
    reply_with_mentions(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn people_on_a_blocked_server_are_named_but_not_delivered_to() {
    reply_with_mentions(true).await;
}

async fn reply_with_mentions(block_people: bool) {
    let people = Peer::start(&["kim", "lee"]).await;
    let readers = Peer::start(&["fan"]).await;
    let status = people.add_status(
        "kim",
        "1",
        json!({
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": format!("{}/statuses/1", people.actor("kim")),
            "type": "Note",
            "attributedTo": people.actor("kim"),
            "content": "<p>What do you think?</p>",
            "to": ["https://www.w3.org/ns/activitystreams#Public"],
        }),
    );

    let dir = tempfile::tempdir().unwrap();
    let site = dir.path();
    common::write(
        site,
        "config.toml",
        "title = \"Replying blog\"\nbase_url = \"https://blog.example\"\n\
         [inbox]\nallow_private_addresses = true\n",
    );
    common::write(site, "relais-key.pem", SITE_KEY);
    let date = Utc::now().format("%Y-%m-%d");
    let host = &people.host;
    common::write(
        site,
        "content/posts/answer.md",
        format!(
            "+++\ntitle = \"An answer\"\ndate = {date}\nin_reply_to = \"{status}\"\n+++\n\n\
             Thanks @lee@{host} and @ghost@{host}! Not in code: `@lee@{host}`.\n"
        ),
    );
    let built = common::relais_on("build", site, &[]);
    common::assert_success(&built, "relais build");
    let warnings = common::stderr(&built);
    assert!(
        warnings.contains(&format!("@ghost@{host} cannot be resolved")),
        "{warnings}"
    );
    assert!(!warnings.contains("@lee@"), "{warnings}");

    let object = common::read_json(&site.join("public/ap/posts/answer.json"));
    assert_eq!(object["inReplyTo"], status);
    let page = std::fs::read_to_string(site.join("public/posts/answer/index.html")).unwrap();
    assert!(
        page.contains(&format!(
            "In reply to <a class=\"u-in-reply-to\" href=\"{status}\">"
        )),
        "{page}"
    );
    // The mention is a link on the page as in the Note; the unresolved one stays text.
    assert!(
        page.contains(&format!(
            "<a href=\"{}/@lee\" class=\"u-url mention\">@<span>lee</span></a>",
            people.base
        )),
        "{page}"
    );
    assert!(page.contains(&format!("@ghost@{host}")), "{page}");
    let cc: Vec<&str> = object["cc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(cc.contains(&people.actor("kim").as_str()), "{cc:?}");
    assert!(cc.contains(&people.actor("lee").as_str()), "{cc:?}");
    let mentions: Vec<(&str, &str)> = object["tag"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["type"] == "Mention")
        .map(|t| (t["href"].as_str().unwrap(), t["name"].as_str().unwrap()))
        .collect();
    let kim_handle = format!("@kim@{host}");
    let lee_handle = format!("@lee@{host}");
    assert_eq!(
        mentions,
        vec![
            (people.actor("kim").as_str(), kim_handle.as_str()),
            (people.actor("lee").as_str(), lee_handle.as_str()),
        ]
    );
    let content = object["content"].as_str().unwrap();
    assert!(
        content.contains(&format!(
            "<a href=\"{}/@lee\" class=\"u-url mention\">@<span>lee</span></a>",
            people.base
        )),
        "{content}"
    );
    assert!(content.contains(&format!("@ghost@{host}")), "{content}");
    assert!(
        content.contains(&format!("<code>@lee@{host}</code>")),
        "{content}"
    );

    // One follower elsewhere; the people named are not followers.
    let fan = readers.actor("fan");
    let store = Store::open(&site.join("relais.db")).unwrap();
    store
        .upsert_follower(&NewFollower {
            actor_name: "blog",
            follower: &RemoteActor {
                id: fan.clone(),
                inbox: format!("{fan}/inbox"),
                shared_inbox: Some(readers.shared_inbox()),
                name: "Fan".into(),
                handle: format!("@fan@{}", readers.host),
                url: fan.clone(),
                avatar: None,
                public_key_pem: "unused".into(),
                key_id: format!("{fan}#main-key"),
                also_known_as: vec![],
                moved_to: None,
                fetched_at: "2027-01-01T00:00:00Z".parse().unwrap(),
            },
            follow_activity_id: &format!("{fan}#follows/1"),
            state: FollowState::Accepted,
        })
        .unwrap();
    if block_people {
        let blocked = common::relais_on("moderate", site, &["block-domain", &people.host]);
        common::assert_success(&blocked, "relais moderate block-domain");
    }
    let published = tokio::time::timeout(
        GUARD,
        tokio::task::spawn_blocking({
            let site = site.to_path_buf();
            move || common::relais_on("publish", &site, &[])
        }),
    )
    .await
    .unwrap()
    .unwrap();
    common::assert_success(&published, "relais publish");
    let text = common::stdout(&published);
    if block_people {
        // Only the follower's server: the people named live on a blocked one.
        assert!(text.contains(": 1 deliveries"), "{text}");
        assert!(people.received_of("Create").is_empty());
        let creates = readers.received_of("Create");
        assert_eq!(creates.len(), 1, "{creates:?}");
        return;
    }
    // The follower's server, and kim's and lee's (one shared inbox).
    assert!(text.contains(": 2 deliveries"), "{text}");
    for peer in [&people, &readers] {
        let creates = peer.received_of("Create");
        assert_eq!(creates.len(), 1, "{creates:?}");
        let object: &Value = &creates[0]["object"];
        assert_eq!(object["inReplyTo"], status);
    }
}
