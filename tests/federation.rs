//! The fediverse documents `relais build` writes for `example-site/`, read back from the
//! output folder: every document parses, names itself by its URL, and carries what Mastodon
//! reads, consistently with the rest of the output (pages, tags, files, host rules). The rules
//! Mastodon enforces are in `tests/mastodon_rules.rs`; this file checks shapes and links.

use crate::common;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common::*;
use chrono::DateTime;
use relais::content::plain_text;
use serde_json::Value;

static SITE: OnceLock<Built> = OnceLock::new();

/// The example site with a configured icon and header for the site actor and an avatar for
/// one author, so that `icon` and `image` are emitted for some actors and not for others.
fn site() -> &'static Built {
    build_once(&SITE, "federation-example", |site| {
        let config = fs::read_to_string(site.join("config.toml")).unwrap();
        let config = config
            .replacen(
                "[fediverse]\n",
                "[fediverse]\nicon = \"/avatar.png\"\nimage = \"/header.png\"\n",
                1,
            )
            .replacen(
                "id = \"maren\"\n",
                "id = \"maren\"\navatar = \"/avatar.png\"\n",
                1,
            );
        assert!(config.contains("icon = ") && config.contains("avatar = "));
        fs::write(site.join("config.toml"), config).unwrap();
        write(site, "static/avatar.png", PNG);
        write(site, "static/header.png", PNG);
    })
}

/// Actor names with an icon in the prepared config.
const WITH_ICON: [&str; 2] = ["notes", "maren"];

/// Front matter and body of a post's source.
struct Source {
    path: PathBuf,
    front: Value,
    body: String,
}

fn post_source(site: &Path, slug: &str) -> Source {
    let posts = site.join("content/posts");
    let path = [
        posts.join(format!("{slug}.md")),
        posts.join(slug).join("index.md"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .unwrap_or_else(|| panic!("no source for {slug}"));
    let text = fs::read_to_string(&path).unwrap();
    let (fence, parse): (&str, fn(&str) -> Value) = if text.starts_with("+++") {
        ("+++", |s| {
            serde_json::to_value(toml::from_str::<toml::Table>(s).unwrap()).unwrap()
        })
    } else {
        ("---", |s| serde_norway::from_str(s).unwrap())
    };
    let rest = &text[fence.len()..];
    let end = rest.find(&format!("\n{fence}")).unwrap();
    Source {
        front: parse(&rest[..end]),
        body: rest[end + fence.len() + 1..].to_string(),
        path,
    }
}

fn slug_of(object_path: &str) -> &str {
    object_path
        .strip_prefix("/ap/posts/")
        .and_then(|p| p.strip_suffix(".json"))
        .unwrap()
}

/// The published posts, as the HTML output has them: `/posts/<slug>/index.html`.
fn published_slugs(public: &Path) -> BTreeSet<String> {
    fs::read_dir(public.join("posts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("index.html").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn rfc3339(value: &Value) -> DateTime<chrono::FixedOffset> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a string"));
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn every_document_parses_and_is_named_by_its_url() {
    let public = &site().public;
    let documents = json_documents(public);
    let mut without_id = Vec::new();
    for (path, doc) in &documents {
        match doc.get("id") {
            Some(id) => assert_eq!(
                id.as_str(),
                Some(format!("{BASE_URL}{path}").as_str()),
                "{path}"
            ),
            None => without_id.push(path.as_str()),
        }
    }
    // JRD and NodeInfo documents have no `id`; every ActivityStreams document has one.
    without_id.sort();
    assert_eq!(
        without_id,
        [
            "/.well-known/nodeinfo",
            "/nodeinfo/2.1.json",
            "/webfinger/maren.json",
            "/webfinger/notes.json",
            "/webfinger/theo.json",
        ]
    );

    let actors: BTreeSet<String> = actor_documents(public)
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    assert_eq!(
        actors,
        BTreeSet::from(
            [
                "/ap/users/maren.json",
                "/ap/users/notes.json",
                "/ap/users/theo.json"
            ]
            .map(String::from)
        )
    );
    let objects: BTreeSet<String> = post_objects(public)
        .iter()
        .map(|(path, _)| slug_of(path).to_string())
        .collect();
    let slugs = published_slugs(public);
    assert_eq!(objects, slugs, "one object per published post");
    assert!(!slugs.contains("notes-on-a-draft"), "drafts are not built");
}

#[test]
fn nodeinfo_points_at_its_document() {
    let public = &site().public;
    let links = read_json(&public.join(".well-known/nodeinfo"));
    assert_eq!(
        links["links"][0]["rel"],
        "http://nodeinfo.diaspora.software/ns/schema/2.1"
    );
    let href = text(&links["links"][0], "href");
    let nodeinfo = read_json(&public.join(site_path(href).unwrap().trim_start_matches('/')));
    assert_eq!(nodeinfo["version"], "2.1");
    assert_eq!(nodeinfo["protocols"], serde_json::json!(["activitypub"]));
    assert_eq!(nodeinfo["usage"]["users"]["total"], 3);
    assert_eq!(
        nodeinfo["usage"]["localPosts"],
        published_slugs(public).len()
    );
}

#[test]
fn actors_link_to_what_the_site_serves() {
    let built = site();
    let host = StaticHost::new(&built.public);
    let public_pem = fs::read_to_string(built.site.join("relais-key.pub.pem")).unwrap();
    for (path, actor) in actor_documents(&built.public) {
        let name = path
            .trim_start_matches("/ap/users/")
            .trim_end_matches(".json");
        let id = text(&actor, "id");

        // Static collections are files here; inboxes and followers go to the inbox service.
        for key in ["outbox", "following", "featured"] {
            let answer = host.get(text(&actor, key));
            assert_eq!(answer.json()["id"], actor[key], "{name} {key}");
        }
        for url in [
            text(&actor, "inbox"),
            text(&actor, "followers"),
            text(&actor["endpoints"], "sharedInbox"),
        ] {
            let forwarded = format!("{INBOX_SERVICE}{}", site_path(url).unwrap());
            assert_eq!(host.get(url), Answer::Proxied(forwarded), "{name}: {url}");
        }

        assert_eq!(actor["publicKey"]["id"], format!("{id}#main-key"));
        assert_eq!(actor["publicKey"]["owner"], id);
        let pem = text(&actor["publicKey"], "publicKeyPem");
        assert_eq!(pem, public_pem, "{name}: the committed public key");
        common::rsa_spki_pem(pem)
            .unwrap_or_else(|e| panic!("{name}: publicKeyPem is not SPKI: {e}"));

        // The oldest post's date, so Mastodon shows "joined" no later than the first post.
        rfc3339(&actor["published"]);

        for field in actor["attachment"].as_array().unwrap() {
            assert_eq!(field["type"], "PropertyValue", "{name}");
            assert!(!text(field, "name").is_empty());
            let value = text(field, "value");
            // Mastodon verifies a link field when the linked page links back with rel=me.
            assert!(
                value.starts_with("<a href=\"https://") && value.contains(" me\""),
                "{value}"
            );
        }
        assert_eq!(
            actor["attachment"].as_array().unwrap().is_empty(),
            name != "notes",
            "only the site actor has profile links in the example"
        );

        match actor.get("icon") {
            Some(icon) => {
                assert!(WITH_ICON.contains(&name), "{name} has no icon configured");
                assert_eq!(icon["type"], "Image");
                assert_eq!(icon["mediaType"], "image/png");
                assert!(matches!(host.get(text(icon, "url")), Answer::File { .. }));
            }
            None => assert!(!WITH_ICON.contains(&name), "{name} lost its icon"),
        }
        assert_eq!(actor.get("image").is_some(), name == "notes", "{name}");
    }
}

/// Keys of Mastodon's own actor (`tests/fixtures/mastodon_actor.json`, the shape of
/// `app/serializers/activitypub/actor_serializer.rb`) that Mastodon reads when it meets a
/// remote actor, with the reader. Ours must have each of them.
const ACTOR_KEYS_MASTODON_READS: &[(&str, &str)] = &[
    (
        "@context",
        "app/helpers/jsonld_helper.rb#supported_context?",
    ),
    (
        "id",
        "app/services/activitypub/fetch_remote_actor_service.rb#call",
    ),
    (
        "type",
        "app/services/activitypub/fetch_remote_actor_service.rb#expected_type?",
    ),
    (
        "preferredUsername",
        "app/services/activitypub/fetch_remote_actor_service.rb#call",
    ),
    (
        "inbox",
        "app/services/activitypub/process_account_service.rb#call",
    ),
    (
        "outbox",
        "process_account_service.rb#set_immediate_protocol_attributes!",
    ),
    (
        "endpoints",
        "process_account_service.rb#set_immediate_protocol_attributes! (sharedInbox)",
    ),
    (
        "followers",
        "process_account_service.rb#set_immediate_protocol_attributes!",
    ),
    ("following", "process_account_service.rb#collection_info"),
    ("url", "process_account_service.rb#url"),
    (
        "published",
        "process_account_service.rb#set_immediate_protocol_attributes! (created_at)",
    ),
    (
        "featured",
        "process_account_service.rb#set_immediate_attributes!",
    ),
    (
        "name",
        "process_account_service.rb#set_immediate_attributes!",
    ),
    (
        "summary",
        "process_account_service.rb#set_immediate_attributes!",
    ),
    (
        "manuallyApprovesFollowers",
        "process_account_service.rb#set_immediate_attributes!",
    ),
    ("attachment", "process_account_service.rb#property_values"),
    (
        "discoverable",
        "process_account_service.rb#set_immediate_attributes!",
    ),
    (
        "indexable",
        "process_account_service.rb#set_immediate_attributes!",
    ),
    ("publicKey", "process_account_service.rb#public_key"),
    (
        "icon",
        "process_account_service.rb#image_url (only when an icon is configured)",
    ),
    (
        "image",
        "process_account_service.rb#image_url (only when a header is configured)",
    ),
];

/// Keys of Mastodon's own actor that Mastodon reads but that have nothing to say for a blog.
const ACTOR_KEYS_LEFT_OUT: &[(&str, &str)] = &[
    (
        "featuredTags",
        "no featured hashtags (process_account_service.rb#check_featured_tags_collection!)",
    ),
    (
        "memorial",
        "a site is not a memorial account; absent means false",
    ),
    (
        "tag",
        "only custom emoji are read from an actor's tags (process_account_service.rb#process_tags)",
    ),
];

/// Classifies every key of a Mastodon document, so that a new key in the fixture forces a
/// decision, and returns those ours must have.
fn keys_ours_must_have<'k>(
    fixture: &Value,
    read: &[(&'k str, &str)],
    left_out: &[(&str, &str)],
) -> Vec<&'k str> {
    for key in fixture.as_object().unwrap().keys() {
        assert!(
            read.iter().chain(left_out).any(|(k, _)| k == key),
            "Mastodon's document has {key:?}: list it as read or left out"
        );
    }
    read.iter().map(|(k, _)| *k).collect()
}

#[test]
fn actors_have_every_key_mastodon_reads_from_its_own_actors() {
    let fixture: Value =
        serde_json::from_str(include_str!("fixtures/mastodon_actor.json")).unwrap();
    let needed = keys_ours_must_have(&fixture, ACTOR_KEYS_MASTODON_READS, ACTOR_KEYS_LEFT_OUT);
    let site_actor = read_json(&site().public.join("ap/users/notes.json"));
    for key in needed {
        assert!(
            site_actor.get(key).is_some(),
            "the actor lacks {key:?}, read by Mastodon's {}",
            ACTOR_KEYS_MASTODON_READS
                .iter()
                .find(|(k, _)| *k == key)
                .unwrap()
                .1
        );
    }
    // Nested keys Mastodon reads from the same objects.
    assert!(site_actor["endpoints"]["sharedInbox"].is_string());
    for key in ["id", "owner", "publicKeyPem"] {
        assert!(site_actor["publicKey"][key].is_string(), "publicKey.{key}");
    }
    assert!(site_actor["icon"]["url"].is_string());
}

/// Keys of Mastodon's own status (`tests/fixtures/mastodon_note.json`, the shape of
/// `app/serializers/activitypub/note_serializer.rb`) that Mastodon reads from a remote one.
const NOTE_KEYS_MASTODON_READS: &[(&str, &str)] = &[
    (
        "@context",
        "app/helpers/jsonld_helper.rb#supported_context?",
    ),
    ("id", "app/lib/activitypub/parser/status_parser.rb#uri"),
    (
        "type",
        "app/lib/activitypub/activity.rb SUPPORTED_TYPES / CONVERTED_TYPES",
    ),
    ("url", "status_parser.rb#url"),
    ("published", "status_parser.rb#created_at"),
    (
        "attributedTo",
        "app/services/activitypub/fetch_remote_status_service.rb#trustworthy_attribution?",
    ),
    ("to", "status_parser.rb#visibility"),
    ("cc", "status_parser.rb#visibility"),
    ("sensitive", "status_parser.rb#sensitive"),
    ("content", "status_parser.rb#text"),
    ("contentMap", "status_parser.rb#language"),
    (
        "attachment",
        "app/lib/activitypub/activity/create.rb#process_attachments",
    ),
    ("tag", "create.rb#process_tags"),
    (
        "replies",
        "app/services/activitypub/fetch_replies_service.rb",
    ),
];

/// Keys of Mastodon's own status that do not apply to a blog post.
const NOTE_KEYS_LEFT_OUT: &[(&str, &str)] = &[
    (
        "summary",
        "only with a content warning (status_parser.rb#spoiler_text); checked below",
    ),
    (
        "updated",
        "only on an edited post (status_parser.rb#edited_at); checked below",
    ),
    ("inReplyTo", "a post is never a reply"),
    ("inReplyToAtomUri", "a post is never a reply"),
    (
        "atomUri",
        "OStatus id of Mastodon's own statuses, a fallback lookup only",
    ),
    (
        "conversation",
        "threads a reply into a conversation; a post starts its own",
    ),
    (
        "context",
        "threads a reply into a conversation; a post starts its own",
    ),
    (
        "likes",
        "counts only (status_parser.rb#favourites_count); the inbox service has them",
    ),
    (
        "shares",
        "counts only (status_parser.rb#reblogs_count); the inbox service has them",
    ),
    (
        "interactionPolicy",
        "quote policy; absent means Mastodon's default",
    ),
];

#[test]
fn posts_have_every_key_mastodon_reads_from_its_own_statuses() {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/mastodon_note.json")).unwrap();
    let needed = keys_ours_must_have(&fixture, NOTE_KEYS_MASTODON_READS, NOTE_KEYS_LEFT_OUT);
    let objects = post_objects(&site().public);
    assert!(objects.iter().any(|(_, o)| o["type"] == "Note"));
    for (path, object) in objects {
        for key in &needed {
            assert!(object.get(*key).is_some(), "{path} lacks {key:?}");
        }
        let source = post_source(&site().site, slug_of(&path));
        assert_eq!(
            object.get("updated").is_some(),
            source.front.get("updated").is_some(),
            "{path}: `updated` exactly when the post says so"
        );
        // On a Note, Mastodon shows `summary` as a content warning: only a warning goes there.
        let article = object["type"] == "Article";
        assert_eq!(
            object.get("summary").is_some(),
            source.front.get("content_warning").is_some()
                || (article && source.front.get("summary").is_some()),
            "{path}"
        );
    }
}

#[test]
fn webfinger_answers_name_their_actor() {
    let public = &site().public;
    for (path, jrd) in files_under(public, "/webfinger")
        .into_iter()
        .map(|(path, file)| (path, read_json(&file)))
    {
        let name = path
            .trim_start_matches("/webfinger/")
            .trim_end_matches(".json");
        assert_eq!(jrd["subject"], format!("acct:{name}@{HOST}"));
        let actor_id = format!("{BASE_URL}/ap/users/{name}.json");
        let links = jrd["links"].as_array().unwrap();
        let self_link = links.iter().find(|l| l["rel"] == "self").unwrap();
        assert_eq!(self_link["type"], "application/activity+json");
        assert_eq!(self_link["href"], actor_id);
        let actor = read_json(&public.join(format!("ap/users/{name}.json")));
        assert_eq!(actor["id"], actor_id);
        assert_eq!(
            host_of(&actor_id),
            HOST,
            "the actor lives on the WebFinger host"
        );
        let profile = links
            .iter()
            .find(|l| l["rel"] == "http://webfinger.net/rel/profile-page")
            .unwrap();
        assert_eq!(profile["href"], actor["url"]);
        assert!(jrd["aliases"]
            .as_array()
            .unwrap()
            .contains(&Value::from(actor_id)));
    }
}

/// Lines of Markdown that are plain prose: they must reach the Note word for word.
fn prose_lines(markdown: &str) -> Vec<String> {
    let mut in_code = false;
    markdown
        .lines()
        .filter(|line| {
            if line.starts_with("```") {
                in_code = !in_code;
                return false;
            }
            !in_code
                && line.starts_with(|c: char| c.is_ascii_uppercase())
                && !line.contains(['*', '`', '[', ']', '|', '_', '~', '<', '!'])
        })
        .map(squash_spaces)
        .collect()
}

#[test]
fn post_objects_carry_the_post() {
    let built = site();
    let host = StaticHost::new(&built.public);
    let actors: HashMap<String, Value> = actor_documents(&built.public)
        .into_iter()
        .map(|(_, actor)| (text(&actor, "id").to_string(), actor))
        .collect();
    let mut seen_kinds = BTreeSet::new();
    for (path, object) in post_objects(&built.public) {
        let slug = slug_of(&path);
        let source = post_source(&built.site, slug);
        let front = &source.front;
        let title = front["title"].as_str().unwrap();
        let permalink = format!("{BASE_URL}/posts/{slug}/");

        let actor = &actors[text(&object, "attributedTo")];
        let author = front["authors"][0].as_str().unwrap();
        assert_eq!(actor["preferredUsername"], author, "{path}: first author");
        assert_eq!(object["to"], serde_json::json!([AS_PUBLIC]), "{path}");
        let cc: Vec<&str> = object["cc"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(cc.contains(&text(actor, "followers")), "{path}: {cc:?}");
        assert!(cc.contains(&format!("{BASE_URL}/ap/users/notes/followers").as_str()));
        rfc3339(&object["published"]);
        if object.get("updated").is_some() {
            assert!(rfc3339(&object["updated"]) > rfc3339(&object["published"]));
        }

        assert_eq!(object["url"], permalink.as_str());
        assert!(matches!(host.get(&permalink), Answer::File { .. }));
        assert_eq!(
            object["replies"],
            format!("{BASE_URL}/ap/posts/{slug}/replies").as_str()
        );
        assert!(matches!(
            host.get(text(&object, "replies")),
            Answer::Proxied(_)
        ));

        let content = text(&object, "content");
        let plain = plain_text(content);
        let kind = text(&object, "type");
        seen_kinds.insert(kind.to_string());
        match front.get("federate_as").and_then(Value::as_str) {
            Some("Article") => {
                assert_eq!(kind, "Article", "{path}");
                assert_eq!(object["name"], title);
            }
            _ => {
                // The default Note: title, the whole text, then the permalink.
                assert_eq!(kind, "Note", "{path}");
                assert!(plain.starts_with(title), "{path}: {plain}");
                assert!(
                    content.contains(&format!("<a href=\"{permalink}\">")),
                    "{path}"
                );
            }
        }
        let lines = prose_lines(&source.body);
        assert!(
            !lines.is_empty(),
            "{}: no prose to look for",
            source.path.display()
        );
        for line in lines {
            assert!(
                plain.contains(&line),
                "{path}: {line:?} missing from {plain}"
            );
        }
        assert!(
            !content.contains("href=\"/") && !content.contains("src=\"/"),
            "{path}: links in federated HTML are absolute"
        );
        assert_eq!(object["contentMap"], serde_json::json!({ "en": content }));

        let tags = object["tag"].as_array().unwrap();
        assert_eq!(
            tags.len(),
            front["tags"].as_array().unwrap().len(),
            "{path}"
        );
        for tag in tags {
            assert_eq!(tag["type"], "Hashtag");
            let name = text(tag, "name");
            assert!(name.starts_with('#') && !name.contains(' '), "{name}");
            let href = text(tag, "href");
            let page = built
                .public
                .join(site_path(href).unwrap().trim_start_matches('/'))
                .join("index.html");
            assert!(page.is_file(), "{path}: tag page {href} is not built");
            if kind == "Note" {
                assert!(
                    content.contains(&format!("href=\"{href}\"")),
                    "{path}: {href}"
                );
            }
        }

        let attachments = object["attachment"].as_array().unwrap();
        assert!(attachments.len() <= 4);
        let mut urls = BTreeSet::new();
        for attachment in attachments {
            assert_eq!(attachment["type"], "Image");
            assert_eq!(attachment["mediaType"], "image/png");
            assert!(
                !text(attachment, "name").trim().is_empty(),
                "{path}: alt text"
            );
            let url = text(attachment, "url");
            assert!(urls.insert(url), "{path}: {url} attached twice");
            assert!(matches!(host.get(url), Answer::File { .. }), "{url}");
        }
        // Only the harbour post has an image, both as its cover and in its text.
        let expected = usize::from(slug == "harbour-at-dawn");
        assert_eq!(attachments.len(), expected, "{path}");

        match front.get("content_warning").and_then(Value::as_str) {
            Some(warning) => {
                assert_eq!(object["sensitive"], true, "{path}");
                assert_eq!(object["summary"], warning, "{path}");
            }
            None => assert_eq!(object["sensitive"], false, "{path}"),
        }
    }
    assert_eq!(
        seen_kinds,
        BTreeSet::from(["Article".to_string(), "Note".to_string()])
    );
}

/// The Creates of an outbox, following `first` and `next`.
fn outbox_items(host: &StaticHost, outbox_url: &str) -> (Value, Vec<Value>) {
    let outbox = host.get(outbox_url).json();
    let mut items = Vec::new();
    let mut next = outbox
        .get("first")
        .and_then(Value::as_str)
        .map(String::from);
    let mut pages = 0;
    while let Some(url) = next {
        let page = host.get(&url).json();
        assert_eq!(page["type"], "OrderedCollectionPage");
        assert_eq!(page["partOf"], outbox["id"]);
        items.extend(page["orderedItems"].as_array().unwrap().iter().cloned());
        next = page.get("next").and_then(Value::as_str).map(String::from);
        pages += 1;
        assert!(pages < 100, "outbox pages loop");
    }
    (outbox, items)
}

#[test]
fn outboxes_list_each_post_once_newest_first() {
    let public = &site().public;
    let host = StaticHost::new(public);
    let objects: HashMap<String, Value> = post_objects(public)
        .into_iter()
        .map(|(_, o)| (text(&o, "id").to_string(), o))
        .collect();
    let mut by_authors = 0;
    for (path, actor) in actor_documents(public) {
        let (outbox, items) = outbox_items(&host, text(&actor, "outbox"));
        assert_eq!(outbox["type"], "OrderedCollection");
        let expected: BTreeSet<&str> = objects
            .values()
            .filter(|o| path == "/ap/users/notes.json" || o["attributedTo"] == actor["id"])
            .map(|o| text(o, "id"))
            .collect();
        assert_eq!(outbox["totalItems"], expected.len(), "{path}");
        let listed: Vec<&str> = items.iter().map(|c| text(&c["object"], "id")).collect();
        assert_eq!(
            listed.iter().copied().collect::<BTreeSet<_>>(),
            expected,
            "{path}"
        );
        assert_eq!(listed.len(), expected.len(), "{path}: a post listed twice");
        let dates: Vec<_> = items.iter().map(|c| rfc3339(&c["published"])).collect();
        assert!(
            dates.windows(2).all(|w| w[0] >= w[1]),
            "{path}: not newest first: {dates:?}"
        );
        for create in &items {
            assert_eq!(create["type"], "Create");
            let object = &objects[text(&create["object"], "id")];
            assert_eq!(&create["object"], &{
                let mut o = object.clone();
                o.as_object_mut().unwrap().remove("@context");
                o
            });
            assert_eq!(create["actor"], object["attributedTo"]);
            assert_eq!(create["published"], object["published"]);
        }
        if path != "/ap/users/notes.json" {
            by_authors += expected.len();
        }
    }
    assert_eq!(by_authors, objects.len(), "every post belongs to an author");
}

#[test]
fn post_pages_link_their_object() {
    let public = &site().public;
    for slug in published_slugs(public) {
        let html = fs::read_to_string(public.join(format!("posts/{slug}/index.html"))).unwrap();
        let link = html
            .split("<link ")
            .skip(1)
            .map(|rest| &rest[..rest.find('>').unwrap()])
            .find(|tag| tag.contains("rel=\"alternate\"") && tag.contains("activity+json"))
            .unwrap_or_else(|| panic!("{slug}: no alternate link to the object"));
        assert!(
            link.contains("type=\"application/activity+json\""),
            "{link}"
        );
        let object_id = format!("{BASE_URL}/ap/posts/{slug}.json");
        assert!(link.contains(&format!("href=\"{object_id}\"")), "{link}");
        assert!(public.join(format!("ap/posts/{slug}.json")).is_file());
    }
}

#[test]
fn host_rules_type_and_route_the_documents() {
    let public = &site().public;
    let host = StaticHost::new(public);
    let content_type = |pattern: &str| {
        host.headers
            .iter()
            .find(|rule| rule.pattern == pattern)
            .and_then(|rule| {
                rule.headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("Content-Type"))
            })
            .map(|(_, value)| value.split(';').next().unwrap().trim().to_string())
    };
    assert_eq!(
        content_type("/ap/*").as_deref(),
        Some("application/activity+json")
    );
    assert_eq!(
        content_type("/webfinger/*").as_deref(),
        Some("application/jrd+json")
    );

    let acct_rules: Vec<&RedirectRule> = host
        .redirects
        .iter()
        .filter(|r| r.query.iter().any(|(_, v)| v.starts_with("acct:")))
        .collect();
    assert_eq!(acct_rules.len(), 3, "one per actor");
    for rule in acct_rules {
        assert_eq!(rule.from, "/.well-known/webfinger");
        assert_eq!(rule.status, 200);
        let resource = &rule.query[0].1;
        let file = public.join(rule.to.trim_start_matches('/'));
        assert!(file.is_file(), "{resource} routes to a missing {}", rule.to);
        assert_eq!(read_json(&file)["subject"], resource.as_str());
    }
}

/// The base64 lines of a PEM file.
fn pem_body_lines(pem: &str) -> Vec<&str> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && !l.trim().is_empty())
        .collect()
}

#[test]
fn no_private_key_material_is_published() {
    use base64::Engine as _;
    let built = site();
    let key_file = built.site.join("relais-key.pem");
    let pem = fs::read_to_string(&key_file).unwrap();
    assert!(pem.contains("PRIVATE KEY"));
    let lines = pem_body_lines(&pem);
    assert!(lines.len() > 10);
    let der = base64::engine::general_purpose::STANDARD
        .decode(lines.concat())
        .unwrap();

    let der_windows: std::collections::HashSet<&[u8]> = der.windows(32).collect();

    let files = files_under(&built.public, "/");
    assert!(
        files.iter().any(|(p, _)| p.ends_with(".png")),
        "binaries are scanned too"
    );
    for (path, file) in files {
        let bytes = fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("PRIVATE KEY"), "{path} holds a private key");
        for line in &lines {
            assert!(
                !text.contains(line),
                "{path} holds a line of the private key"
            );
        }
        assert!(
            !bytes.windows(32).any(|w| der_windows.contains(w)),
            "{path} holds private key bytes"
        );
    }

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", key_file.display());
    }
    let key = key_file.canonicalize().unwrap();
    assert!(!key.starts_with(built.public.canonicalize().unwrap()));
}

#[test]
fn output_holding_the_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    copy_example_site(&site);
    let out = relais_on("build", &site, &["--out", site.to_str().unwrap()]);
    assert!(!out.status.success(), "a build into the site dir must fail");
    assert!(
        stderr(&out).contains("relais-key.pem") && stderr(&out).contains("which is published"),
        "{}",
        stderr(&out)
    );
    assert!(!site.join("index.html").exists(), "nothing was written");
    assert!(!site.join("relais-key.pem").exists(), "no key was made");
}

#[test]
fn a_key_in_a_copied_folder_is_refused() {
    for folder in ["static", "content"] {
        let dir = tempfile::tempdir().unwrap();
        copy_example_site(dir.path());
        let config = dir.path().join("config.toml");
        let text = fs::read_to_string(&config).unwrap().replace(
            "[fediverse]\n",
            &format!("[fediverse]\nkey_path = \"{folder}/relais-key.pem\"\n"),
        );
        fs::write(&config, text).unwrap();
        let out = relais_on("build", dir.path(), &[]);
        assert!(
            !out.status.success(),
            "a key under {folder}/ must be refused"
        );
        assert!(
            stderr(&out).contains("which is published"),
            "{}",
            stderr(&out)
        );
        assert!(!dir.path().join("public").exists(), "nothing was written");
        assert!(
            !dir.path().join(folder).join("relais-key.pem").exists(),
            "no key was made"
        );
    }
}

#[test]
fn check_passes_on_the_clean_example() {
    let dir = tempfile::tempdir().unwrap();
    copy_example_site(dir.path());
    let out = relais_on("check", dir.path(), &[]);
    assert_success(&out, "relais check");
    assert!(warnings(&out).is_empty(), "{}", stderr(&out));
    assert!(stdout(&out).contains("nothing Mastodon would show badly"));
}

#[test]
fn check_fails_on_an_image_without_alt_text() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path();
    copy_example_site(site);
    write(
        site,
        "content/posts/no-alt/index.md",
        "+++\ntitle = \"No alt\"\ndate = 2025-04-01\n+++\n\nA picture.\n\n![](dot.png)\n",
    );
    write(site, "content/posts/no-alt/dot.png", PNG);
    let out = relais_on("check", site, &[]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let found = warnings(&out);
    assert!(
        found.iter().any(|w| w.starts_with(&format!(
            "{}: image /posts/no-alt/dot.png has no alt text",
            Path::new("content/posts/no-alt/index.md").display()
        ))),
        "{found:?}"
    );
    assert_eq!(found.len(), 1, "{found:?}");
}

#[test]
fn check_fails_on_an_edit_without_updated() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path();
    copy_example_site(site);
    assert_success(&relais_on("build", site, &[]), "relais build");
    assert_success(&relais_on("check", site, &[]), "relais check after a build");

    let rel = "content/posts/sourdough-log.md";
    let original = fs::read_to_string(site.join(rel)).unwrap();
    fs::write(site.join(rel), format!("{original}\nOne more loaf.\n")).unwrap();
    let out = relais_on("check", site, &[]);
    assert!(!out.status.success());
    let found = warnings(&out);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(&format!("{}: the post changed", Path::new(rel).display()))
            && found[0].contains("`updated`"),
        "{found:?}"
    );

    // Saying when it was edited is the fix.
    let dated = original.replacen(
        "date: 2025-01-26\n",
        "date: 2025-01-26\nupdated: 2025-02-01\n",
        1,
    );
    assert_ne!(dated, original);
    fs::write(site.join(rel), format!("{dated}\nOne more loaf.\n")).unwrap();
    assert_success(
        &relais_on("check", site, &[]),
        "relais check with `updated`",
    );
}
