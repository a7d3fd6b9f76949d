//! Quote posts (FEP-044f, as Mastodon 4.5 does them) after the authorization: an authorized
//! quote is shown as "quoted by", an unauthorized one is not, and a publish that forbids
//! quotes or deletes the post revokes the stamps (a `Delete` to the quoting server, the
//! stamp's URL then 404). The real `relais inbox`, `build` and `publish`, a Mastodon-like
//! peer on loopback.

use crate::common;

use crate::common::peer::{Blog, Peer};
use serde_json::{json, Value};

const AS_PUBLIC: &str = "https://www.w3.org/ns/activitystreams#Public";

/// Mastodon's `QuoteRequest`, sent by the peer's `user` for its status `n`; returns the
/// stamp URL of the blog's `Accept`.
async fn authorized(peer: &Peer, blog: &Blog, user: &str, n: u32, post: &str) -> String {
    let me = peer.actor(user);
    let request = json!({
        "@context": ["https://www.w3.org/ns/activitystreams",
                     { "QuoteRequest": "https://w3id.org/fep/044f#QuoteRequest" }],
        "id": format!("{me}#quote_requests/{n}"),
        "type": "QuoteRequest",
        "actor": me,
        "instrument": format!("{me}/statuses/{n}"),
        "object": post,
    });
    peer.send(user, &format!("{}/ap/inbox", blog.base), &request)
        .await
        .unwrap();
    let request_id = request["id"].clone();
    peer.wait_for("the Accept", |p| {
        p.received_of("Accept")
            .iter()
            .any(|a| a["object"]["id"] == request_id)
    })
    .await;
    let accept = peer
        .received_of("Accept")
        .into_iter()
        .find(|a| a["object"]["id"] == request_id)
        .unwrap();
    accept["result"].as_str().unwrap().to_string()
}

/// The quote post itself, as Mastodon 4.5 serializes it.
fn quote_post(peer: &Peer, user: &str, n: u32, post: &str, stamp: &str) -> Value {
    let me = peer.actor(user);
    let status = format!("{me}/statuses/{n}");
    json!({
        "@context": ["https://www.w3.org/ns/activitystreams",
                     { "quote": "https://w3id.org/fep/044f#quote",
                       "quoteUri": "http://fedibird.com/ns#quoteUri",
                       "_misskey_quote": "https://misskey-hub.net/ns#_misskey_quote",
                       "quoteAuthorization": { "@id": "https://w3id.org/fep/044f#quoteAuthorization", "@type": "@id" } }],
        "id": format!("{status}/activity"),
        "type": "Create",
        "actor": me,
        "to": [AS_PUBLIC],
        "object": {
            "id": status, "type": "Note", "attributedTo": me,
            "url": format!("{}/@{user}/{n}", peer.base),
            "to": [AS_PUBLIC], "cc": [format!("{me}/followers")],
            "content": "<p>Worth reading</p>",
            "quote": post, "quoteUri": post, "_misskey_quote": post,
            "quoteAuthorization": stamp,
        }
    })
}

async fn status_of(url: &str) -> u16 {
    reqwest::get(url).await.unwrap().status().as_u16()
}

fn quoted_by(blog: &Blog, post: &str) -> Vec<String> {
    blog.store()
        .post_interactions(post)
        .unwrap()
        .quotes
        .into_iter()
        .map(|q| q.url)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn quotes_are_shown_and_revoked_when_forbidden_or_deleted() {
    let peer = Peer::start(&["q", "r", "sneaky"]).await;
    let blog = Blog::start("").await;
    common::write(
        blog.path(),
        "content/posts/two.md",
        "+++\ntitle = \"Two\"\ndate = 2026-01-02\n+++\n\nSecond post.\n",
    );
    common::build_site(blog.path());
    // The first publish records the posts as published.
    common::assert_success(&blog.relais("publish", &[]), "relais publish");
    let hello = format!("{}/ap/posts/hello.json", blog.base);
    let two = format!("{}/ap/posts/two.json", blog.base);

    let stamp_q = authorized(&peer, &blog, "q", 1, &hello).await;
    let stamp_r = authorized(&peer, &blog, "r", 2, &two).await;
    assert_eq!(status_of(&stamp_q).await, 200);

    let inbox = format!("{}/ap/inbox", blog.base);
    peer.send("q", &inbox, &quote_post(&peer, "q", 1, &hello, &stamp_q))
        .await
        .unwrap();
    peer.send("r", &inbox, &quote_post(&peer, "r", 2, &two, &stamp_r))
        .await
        .unwrap();
    // Without a request of its own, a quote showing someone else's stamp is not shown.
    peer.send(
        "sneaky",
        &inbox,
        &quote_post(&peer, "sneaky", 3, &hello, &stamp_q),
    )
    .await
    .unwrap();
    assert_eq!(
        quoted_by(&blog, &hello),
        vec![format!("{}/@q/1", peer.base)]
    );
    assert_eq!(quoted_by(&blog, &two), vec![format!("{}/@r/2", peer.base)]);
    let shown: Value = reqwest::get(format!("{}/ap/interactions?post={hello}", blog.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        shown["quotes"][0]["url"],
        format!("{}/@q/1", peer.base),
        "{shown}"
    );
    // The next build shows the quote under the post.
    common::build_site(blog.path());
    let page = std::fs::read_to_string(blog.path().join("public/posts/hello/index.html")).unwrap();
    let quoted = page
        .split("class=\"quoted-by\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no quoted-by list in {page}"));
    assert!(
        quoted.contains(&format!("href=\"{}/@q/1\"", peer.base)),
        "{quoted}"
    );

    // hello now forbids quotes; two is deleted.
    common::write(
        blog.path(),
        "content/posts/hello.md",
        "+++\ntitle = \"Hello\"\ndate = 2026-01-01\nquotes = \"nobody\"\n+++\n\nFirst post.\n",
    );
    std::fs::remove_file(blog.path().join("content/posts/two.md")).unwrap();
    common::build_site(blog.path());
    common::assert_success(&blog.relais("publish", &[]), "relais publish");

    peer.wait_for("two stamp deletions", |p| {
        p.received_of("Delete")
            .iter()
            .filter(|d| d["id"].as_str().is_some_and(|id| id.ends_with("#delete")))
            .count()
            == 2
    })
    .await;
    let mut revoked: Vec<String> = peer
        .received_of("Delete")
        .iter()
        .filter(|d| d["id"].as_str().is_some_and(|id| id.ends_with("#delete")))
        .map(|d| {
            assert_eq!(d["actor"], blog.actor());
            assert_eq!(d["id"], format!("{}#delete", d["object"].as_str().unwrap()));
            d["object"].as_str().unwrap().to_string()
        })
        .collect();
    revoked.sort();
    let mut expected = vec![stamp_q.clone(), stamp_r.clone()];
    expected.sort();
    assert_eq!(revoked, expected);
    assert_eq!(status_of(&stamp_q).await, 404);
    assert_eq!(status_of(&stamp_r).await, 404);
    assert!(quoted_by(&blog, &hello).is_empty());
}
