//! The static ActivityStreams documents of a site: actors, outboxes, one object per post,
//! WebFinger answers and NodeInfo. Shapes follow what Mastodon reads (its
//! `app/lib/activitypub/parser/status_parser.rb` and `process_account_service.rb`).

use serde::ser::SerializeMap;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::config::{NoteContent, ObjectType, ProfileLink, QuotePolicy, SiteConfig};
use crate::content::{escape_html, media_type, Document, ImageRef};
use crate::federation::activities::{CreateOrUpdate, CreateOrUpdateType};
use crate::federation::mentions;
use crate::federation::urls::Urls;
use crate::federation::vocab::{context, ACTIVITY_JSON, AS_PUBLIC};
use crate::site::feeds::absolutize;

/// One actor of the site: the site itself or an author.
#[derive(Debug, Clone)]
pub struct ActorProfile {
    /// Username: `preferredUsername` and the WebFinger `acct:` name.
    pub name: String,
    pub kind: &'static str,
    pub display_name: String,
    /// Plain text; turned into a paragraph of HTML.
    pub summary: String,
    /// Profile page (HTML).
    pub url: String,
    pub icon: Option<String>,
    pub image: Option<String>,
    pub also_known_as: Vec<String>,
    /// The account this actor moved to (`Move` sent by `relais move`).
    pub moved_to: Option<String>,
    pub profile_links: Vec<ProfileLink>,
}

/// The actors of a site: the site actor first, then one per author that asked for one.
pub fn actors(config: &SiteConfig) -> Vec<ActorProfile> {
    let fedi = &config.fediverse;
    let home = format!("{}/", config.base_url);
    let mut actors = vec![ActorProfile {
        name: fedi.username.clone(),
        kind: fedi.actor_type.as_str(),
        display_name: fedi
            .display_name
            .clone()
            .unwrap_or_else(|| config.title.clone()),
        summary: fedi
            .summary
            .clone()
            .unwrap_or_else(|| config.description.clone()),
        url: home.clone(),
        icon: fedi.icon.as_deref().map(|p| config.absolute(p)),
        image: fedi.image.as_deref().map(|p| config.absolute(p)),
        also_known_as: fedi.also_known_as.clone(),
        moved_to: fedi.moved_to.clone(),
        profile_links: fedi.profile_links.clone(),
    }];
    actors.extend(config.authors.iter().filter(|a| a.actor).map(|a| {
        ActorProfile {
            name: a.id.clone(),
            kind: "Person",
            display_name: a.name.clone(),
            summary: a.summary.clone(),
            url: a
                .url
                .as_deref()
                .map(|u| config.absolute(u))
                .unwrap_or_else(|| home.clone()),
            icon: a.avatar.as_deref().map(|p| config.absolute(p)),
            image: None,
            also_known_as: a.also_known_as.clone(),
            moved_to: None,
            profile_links: a.profile_links.clone(),
        }
    }));
    actors
}

/// The actor a post is attributed to: its first author with an actor, else the site.
pub fn attributed_actor<'c>(config: &'c SiteConfig, post: &Document) -> &'c str {
    post.authors
        .iter()
        .find_map(|id| config.author(id).filter(|a| a.actor).map(|a| a.id.as_str()))
        .unwrap_or(&config.fediverse.username)
}

fn image_object(url: &str) -> Value {
    json!({ "type": "Image", "mediaType": media_type(url), "url": url })
}

/// Profile fields shown on a Mastodon profile; a link value is what Mastodon checks for rel=me.
fn profile_fields(links: &[ProfileLink]) -> Vec<Value> {
    links
        .iter()
        .map(|l| {
            let href = escape_html(&l.url);
            let shown = escape_html(
                l.url
                    .trim_start_matches("https://")
                    .trim_start_matches("http://"),
            );
            json!({
                "type": "PropertyValue",
                "name": l.name,
                "value": format!(
                    "<a href=\"{href}\" target=\"_blank\" rel=\"nofollow noopener noreferrer me\">{shown}</a>"
                ),
            })
        })
        .collect()
}

/// The actor document (`application/activity+json`).
pub fn actor_document(
    config: &SiteConfig,
    urls: &Urls,
    actor: &ActorProfile,
    public_key_pem: &str,
    published: Option<&str>,
) -> Value {
    let id = urls.actor(&actor.name);
    let mut doc = json!({
        "@context": context(),
        "id": id,
        "type": actor.kind,
        "preferredUsername": actor.name,
        "name": actor.display_name,
        "summary": if actor.summary.is_empty() {
            String::new()
        } else {
            format!("<p>{}</p>", escape_html(&actor.summary))
        },
        "url": actor.url,
        "inbox": urls.inbox(&actor.name),
        "outbox": urls.outbox(&actor.name),
        "followers": urls.followers(&actor.name),
        "following": urls.following(&actor.name),
        "featured": urls.featured(&actor.name),
        "endpoints": { "sharedInbox": urls.shared_inbox() },
        "publicKey": {
            "id": urls.key_id(&actor.name),
            "owner": id,
            "publicKeyPem": public_key_pem,
        },
        "manuallyApprovesFollowers": config.fediverse.manually_approves_followers,
        "discoverable": config.fediverse.discoverable,
        "indexable": config.fediverse.discoverable,
        "attachment": profile_fields(&actor.profile_links),
    });
    let obj = doc.as_object_mut().expect("json! object literal");
    if let Some(published) = published {
        obj.insert("published".into(), json!(published));
    }
    if let Some(icon) = &actor.icon {
        obj.insert("icon".into(), image_object(icon));
    }
    if let Some(image) = &actor.image {
        obj.insert("image".into(), image_object(image));
    }
    if !actor.also_known_as.is_empty() {
        obj.insert("alsoKnownAs".into(), json!(actor.also_known_as));
    }
    if let Some(target) = &actor.moved_to {
        obj.insert("movedTo".into(), json!(target));
    }
    doc
}

/// WebFinger answer (JRD) for one actor.
///
/// It carries no FEP-3b86 intent links (nor OStatus's `subscribe` template): an intent
/// names the endpoint on the subject's *home server* where that user, signed in, performs
/// an activity (FEP-3b86 §1 and §3.5). Nobody signs in to relais to follow, like or write
/// as the blog's actor, and an intent pointing at another server's `authorize_interaction`
/// would send a reader to act as that server's user instead. Intents matter on the
/// reader's side: the page's follow and reply buttons read the reader's own WebFinger.
pub fn webfinger_document(config: &SiteConfig, urls: &Urls, actor: &ActorProfile) -> Value {
    json!({
        "subject": format!("acct:{}@{}", actor.name, config.host()),
        "aliases": [urls.actor(&actor.name), actor.url],
        "links": [
            { "rel": "self", "type": ACTIVITY_JSON, "href": urls.actor(&actor.name) },
            { "rel": "http://webfinger.net/rel/profile-page", "type": "text/html", "href": actor.url },
        ]
    })
}

/// `/.well-known/nodeinfo`: points at the NodeInfo 2.1 document.
pub fn nodeinfo_links(urls: &Urls) -> Value {
    json!({
        "links": [{
            "rel": "http://nodeinfo.diaspora.software/ns/schema/2.1",
            "href": urls.nodeinfo(),
        }]
    })
}

pub fn nodeinfo_document(config: &SiteConfig, users: usize, posts: usize) -> Value {
    json!({
        "version": "2.1",
        "software": {
            "name": "relais",
            "version": env!("CARGO_PKG_VERSION"),
            "homepage": "https://github.com/relais-blog/relais",
        },
        "protocols": ["activitypub"],
        "services": { "inbound": [], "outbound": ["atom1.0", "rss2.0"] },
        "openRegistrations": false,
        "usage": { "users": { "total": users }, "localPosts": posts },
        "metadata": { "nodeName": config.title, "nodeDescription": config.description },
    })
}

/// A tag as Mastodon's hashtag parser accepts it: letters, digits and `_`, no spaces.
pub fn hashtag_name(tag: &str) -> String {
    tag.split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

pub fn tag_slug(tag: &str) -> String {
    slug::slugify(tag)
}

fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    // Cut at a word boundary so the excerpt does not end mid-word.
    let cut = match cut.rfind(char::is_whitespace) {
        Some(i) if i > max / 2 => cut[..i].to_string(),
        _ => cut,
    };
    format!("{}…", cut.trim_end())
}

/// What the Note carries before the link: the whole post, or its summary / an excerpt.
fn note_body(config: &SiteConfig, post: &Document, mode: NoteContent) -> String {
    match mode {
        NoteContent::Full => post.content.clone(),
        NoteContent::Excerpt => match &post.summary {
            Some(summary) => summary.clone(),
            None => format!(
                "<p>{}</p>",
                escape_html(&truncate_chars(
                    &post.text,
                    config
                        .fediverse
                        .excerpt_chars
                        .saturating_sub(title_chars(post) + 40)
                ))
            ),
        },
    }
}

/// Characters the title line takes in a Note: none for an untitled post.
fn title_chars(post: &Document) -> usize {
    if post.untitled {
        0
    } else {
        post.title.chars().count()
    }
}

fn hashtag_links(urls: &Urls, tags: &[String]) -> String {
    tags.iter()
        .map(|t| {
            format!(
                "<a href=\"{}\" class=\"mention hashtag\" rel=\"tag\">#<span>{}</span></a>",
                escape_html(&urls.tag_page(&tag_slug(t))),
                escape_html(&hashtag_name(t))
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The object type a post federates as: its own choice, else a Note for an untitled post
/// (an Article needs a name), else the site's.
pub fn object_type(config: &SiteConfig, post: &Document) -> ObjectType {
    match post.federate_as {
        Some(kind) => kind,
        None if post.untitled => ObjectType::Note,
        None => config.fediverse.object_type,
    }
}

/// The HTML a post's Note is made from, before tables and footnotes are reshaped: what
/// `check` looks at.
pub fn note_source_html(config: &SiteConfig, post: &Document) -> String {
    note_body(config, post, config.fediverse.note_content)
}

/// The HTML a Mastodon timeline shows for a post federated as a Note.
pub fn note_content(config: &SiteConfig, urls: &Urls, post: &Document) -> String {
    note_content_as(config, urls, post, config.fediverse.note_content)
}

fn note_content_as(config: &SiteConfig, urls: &Urls, post: &Document, mode: NoteContent) -> String {
    let permalink = config.absolute(&post.path);
    // An untitled post is a note: Mastodon shows just its text, as for a status.
    let mut html = if post.untitled {
        String::new()
    } else {
        format!("<p><strong>{}</strong></p>", escape_html(&post.title))
    };
    let body = super::note_markup::reshape(&note_body(config, post, mode), &permalink);
    html.push_str(&federated_html(config, &body));
    html.push_str(&format!(
        "<p><a href=\"{0}\">{0}</a></p>",
        escape_html(&permalink)
    ));
    if !post.tags.is_empty() {
        html.push_str(&format!("<p>{}</p>", hashtag_links(urls, &post.tags)));
    }
    html
}

/// Post HTML as other servers get it: root-relative `href` and `src` made absolute. Mastodon
/// turns a link without a scheme into plain text (`UNSUPPORTED_HREF_TRANSFORMER` in
/// `lib/sanitize_ext/sanitize_config.rb`); other servers would resolve it against themselves.
fn federated_html(config: &SiteConfig, html: &str) -> String {
    absolutize(html, &config.base_url)
}

fn rfc3339(date: &chrono::DateTime<chrono::FixedOffset>) -> String {
    date.with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One attachment per image file, at most [`MASTODON_MAX_ATTACHMENTS`]: a cover image that
/// is also shown in the text would otherwise be attached twice.
fn attachments(config: &SiteConfig, images: &[ImageRef]) -> Vec<Value> {
    let mut seen = std::collections::HashSet::new();
    images
        .iter()
        .filter(|img| seen.insert(config.absolute(&img.src)))
        .take(MASTODON_MAX_ATTACHMENTS)
        .map(|img| {
            json!({
                "type": "Image",
                "mediaType": img.media_type,
                "url": config.absolute(&img.src),
                "name": img.alt,
            })
        })
        .collect()
}

/// Mastodon keeps the first four attachments of a remote status and drops the rest.
pub const MASTODON_MAX_ATTACHMENTS: usize = 4;

/// The ActivityStreams object of a post (without `@context`: see `post_object_document`).
pub fn post_object(config: &SiteConfig, urls: &Urls, post: &Document) -> Value {
    let actor = attributed_actor(config, post);
    let id = urls.object(&post.path);
    let permalink = config.absolute(&post.path);
    let language = post
        .language
        .clone()
        .unwrap_or_else(|| config.language.clone());
    let kind = object_type(config, post);

    let mut tags: Vec<Value> = post
        .tags
        .iter()
        .map(|t| {
            json!({
                "type": "Hashtag",
                "href": urls.tag_page(&tag_slug(t)),
                "name": format!("#{}", hashtag_name(t)),
            })
        })
        .collect();
    tags.retain(|t| t["name"] != "#");

    let content = match kind {
        ObjectType::Note => note_content(config, urls, post),
        ObjectType::Article => federated_html(config, &post.content),
    };
    // Replies and mentions, as `relais build` resolved them beforehand.
    let (content, mut addressed) = mentions::link_mentions(&content, &config.resolved);
    let reply_to = post
        .in_reply_to
        .as_ref()
        .map(|url| (url, config.resolved.replies.get(url)));
    if let Some((_, Some(target))) = reply_to {
        if !addressed.iter().any(|a| a.id == target.author.id) {
            addressed.insert(0, &target.author);
        }
    }
    tags.extend(addressed.iter().map(|a| mentions::mention_tag(a)));
    let mut object = Map::new();
    object.insert("id".into(), json!(id));
    object.insert(
        "type".into(),
        json!(match kind {
            ObjectType::Note => "Note",
            ObjectType::Article => "Article",
        }),
    );
    object.insert("attributedTo".into(), json!(urls.actor(actor)));
    object.insert("to".into(), json!([AS_PUBLIC]));
    let mut cc = vec![urls.followers(actor)];
    if actor != config.fediverse.username {
        cc.push(urls.followers(&config.fediverse.username));
    }
    cc.extend(addressed.iter().map(|a| a.id.clone()));
    object.insert("cc".into(), json!(cc));
    if let Some((url, target)) = reply_to {
        // Unresolved: the URL as written, which its server may still recognise.
        let id = target.map_or(url.as_str(), |t| t.id.as_str());
        object.insert("inReplyTo".into(), json!(id));
    }
    object.insert("url".into(), json!(permalink));
    if let Some(date) = &post.date {
        object.insert("published".into(), json!(rfc3339(date)));
    }
    if let Some(updated) = &post.updated {
        object.insert("updated".into(), json!(rfc3339(updated)));
    }
    object.insert("mediaType".into(), json!("text/html"));
    object.insert("content".into(), json!(content));
    object.insert("contentMap".into(), json!({ language.clone(): content }));
    if kind == ObjectType::Article {
        object.insert("name".into(), json!(post.title));
        if let Some(summary) = &post.summary {
            object.insert("summary".into(), json!(federated_html(config, summary)));
        }
        // Ghost's convention: servers that only show Notes can show this preview instead.
        object.insert(
            "preview".into(),
            json!({
                "type": "Note",
                "attributedTo": urls.actor(actor),
                "content": note_content_as(config, urls, post, NoteContent::Excerpt),
            }),
        );
    }
    match &post.content_warning {
        Some(cw) => {
            object.insert("sensitive".into(), json!(true));
            // On a Note, Mastodon shows `summary` as the content warning.
            object.insert("summary".into(), json!(cw));
        }
        None => {
            object.insert("sensitive".into(), json!(false));
        }
    }
    object.insert("tag".into(), json!(tags));
    object.insert(
        "attachment".into(),
        json!(attachments(config, &post.images)),
    );
    object.insert("replies".into(), json!(urls.replies(&post.path)));
    object.insert(
        "interactionPolicy".into(),
        interaction_policy(urls, actor, quote_policy(config, post)),
    );
    Value::Object(object)
}

/// Who may quote `post`: its front matter's `quotes`, else `fediverse.quotes`.
pub fn quote_policy(config: &SiteConfig, post: &Document) -> QuotePolicy {
    post.quotes.unwrap_or(config.fediverse.quotes)
}

/// `interactionPolicy` as Mastodon 4.5 publishes it (FEP-044f over GoToSocial's vocabulary):
/// quotes approved automatically for the public, the actor's followers, or only the actor
/// itself, which is how Mastodon writes "nobody".
pub fn interaction_policy(urls: &Urls, actor: &str, policy: QuotePolicy) -> Value {
    let approved = match policy {
        QuotePolicy::Public => AS_PUBLIC.to_string(),
        QuotePolicy::Followers => urls.followers(actor),
        QuotePolicy::Nobody => urls.actor(actor),
    };
    json!({ "canQuote": { "automaticApproval": [approved] } })
}

/// The policy an `interactionPolicy` written by [`interaction_policy`] states; anything
/// else (or none) reads as `Nobody`, as Mastodon reads it.
pub fn read_quote_policy(urls: &Urls, actor: &str, object: &Value) -> QuotePolicy {
    let approved = &object["interactionPolicy"]["canQuote"]["automaticApproval"];
    let has = |id: &str| match approved {
        Value::Array(items) => items.iter().any(|i| i == id),
        Value::String(s) => s == id,
        _ => false,
    };
    if has(AS_PUBLIC) {
        QuotePolicy::Public
    } else if has(&urls.followers(actor)) {
        QuotePolicy::Followers
    } else {
        QuotePolicy::Nobody
    }
}

/// A post object as its own document, with `@context`.
pub fn post_object_document(config: &SiteConfig, urls: &Urls, post: &Document) -> Value {
    with_context(post_object(config, urls, post))
}

pub fn with_context(value: Value) -> Value {
    let mut doc = Map::new();
    doc.insert("@context".into(), context());
    if let Value::Object(fields) = value {
        doc.extend(fields);
    }
    Value::Object(doc)
}

/// The `Create` of a post, as the outbox lists it and delivery sends it.
pub fn create_activity(config: &SiteConfig, urls: &Urls, post: &Document) -> Value {
    create_of_object(config, urls, post, post_object(config, urls, post))
}

fn create_of_object(config: &SiteConfig, urls: &Urls, post: &Document, object: Value) -> Value {
    let published = object
        .get("published")
        .and_then(Value::as_str)
        .map(str::to_string);
    let activity = CreateOrUpdate::of_object(
        CreateOrUpdateType::Create,
        urls.create_activity(&post.path),
        published,
        object,
        || urls.actor(attributed_actor(config, post)),
        Vec::new,
    );
    activity.into_json()
}

/// One JSON document the build writes, at a site path such as `/ap/users/blog.json`.
#[derive(Debug, Clone)]
pub struct FederationFile {
    pub path: String,
    pub json: Value,
}

/// The outbox collection of an actor with `total` posts: counts and links to its pages.
pub fn outbox_collection(urls: &Urls, actor: &str, total: usize, page_size: usize) -> Value {
    let pages = total.div_ceil(page_size).max(1);
    let mut outbox = json!({
        "@context": context(),
        "id": urls.outbox(actor),
        "type": "OrderedCollection",
        "totalItems": total,
        "first": urls.outbox_page(actor, 1),
        "last": urls.outbox_page(actor, pages),
    });
    if total == 0 {
        outbox["orderedItems"] = json!([]);
        if let Some(map) = outbox.as_object_mut() {
            map.retain(|k, _| k != "first" && k != "last");
        }
    }
    outbox
}

/// Page `number` of `pages` of an actor's outbox, holding the Create activities of `chunk`.
pub fn outbox_page(
    config: &SiteConfig,
    urls: &Urls,
    actor: &str,
    number: usize,
    pages: usize,
    chunk: &[&Document],
) -> Value {
    let mut page = outbox_page_envelope(urls, actor, number, pages);
    page.insert(
        "orderedItems".into(),
        chunk
            .iter()
            .map(|p| create_activity(config, urls, p))
            .collect(),
    );
    Value::Object(page)
}

/// An outbox page without its items.
fn outbox_page_envelope(
    urls: &Urls,
    actor: &str,
    number: usize,
    pages: usize,
) -> Map<String, Value> {
    let mut page = Map::new();
    page.insert("@context".into(), context());
    page.insert("id".into(), json!(urls.outbox_page(actor, number)));
    page.insert("type".into(), json!("OrderedCollectionPage"));
    page.insert("partOf".into(), json!(urls.outbox(actor)));
    if number > 1 {
        page.insert("prev".into(), json!(urls.outbox_page(actor, number - 1)));
    }
    if number < pages {
        page.insert("next".into(), json!(urls.outbox_page(actor, number + 1)));
    }
    page
}

/// A post's object built and serialized once for the two documents that show it: its own
/// (with `@context`) and the `Create` its outbox page lists (a cold build built and
/// serialized every object twice: a tenth of its CPU at 10k posts).
pub struct SharedObject {
    /// The object, compact, without `@context`.
    object: Box<RawValue>,
    /// The post's `Create` without its `object`.
    create: Map<String, Value>,
    /// Whether `@context` comes first among the object's keys, as in its own document.
    context_first: bool,
}

impl SharedObject {
    pub fn of(config: &SiteConfig, urls: &Urls, post: &Document) -> SharedObject {
        let object = post_object(config, urls, post);
        let context_first = object
            .as_object()
            .and_then(|fields| fields.keys().next())
            .is_none_or(|first| first.as_str() > "@context");
        // Serializing a `Value` cannot fail: its keys are strings.
        let serialized =
            serde_json::value::to_raw_value(&object).unwrap_or_else(|_| RawValue::NULL.to_owned());
        // The Create takes its addressing from the object; it is built around it, then
        // keeps only its own fields.
        let mut create = match create_of_object(config, urls, post, object) {
            Value::Object(fields) => fields,
            _ => Map::new(),
        };
        create.remove("object");
        SharedObject {
            object: serialized,
            create,
            context_first,
        }
    }

    /// The bytes of the object's own document: `document_bytes(&post_object_document(..))`.
    pub fn document_bytes(&self) -> Vec<u8> {
        let object = self.object.get();
        match object.strip_prefix('{') {
            Some(rest) if self.context_first => {
                let context = serde_json::to_string(&context()).unwrap_or_default();
                let mut bytes = Vec::with_capacity(object.len() + context.len() + 16);
                bytes.extend_from_slice(b"{\"@context\":");
                bytes.extend_from_slice(context.as_bytes());
                if rest != "}" {
                    bytes.push(b',');
                }
                bytes.extend_from_slice(rest.as_bytes());
                bytes
            }
            _ => {
                let value: Value = serde_json::from_str(object).unwrap_or(Value::Null);
                super::document_bytes(&with_context(value))
            }
        }
    }
}

/// The bytes of [`outbox_page`] (through `document_bytes`), from the posts' shared objects.
pub fn outbox_page_bytes(
    urls: &Urls,
    actor: &str,
    number: usize,
    pages: usize,
    items: &[&SharedObject],
) -> Vec<u8> {
    let page = outbox_page_envelope(urls, actor, number, pages);
    let items: Vec<WithEntry<'_, RawValue>> = items
        .iter()
        .map(|item| WithEntry {
            fields: &item.create,
            key: "object",
            value: &*item.object,
        })
        .collect();
    let page = WithEntry {
        fields: &page,
        key: "orderedItems",
        value: &items,
    };
    serde_json::to_vec(&page).unwrap_or_default()
}

/// A JSON object's fields with one more entry, serialized where a `Value` map (sorted by
/// key) would put it: the same bytes as inserting it, without building it as a `Value`.
struct WithEntry<'a, T: ?Sized> {
    fields: &'a Map<String, Value>,
    key: &'a str,
    value: &'a T,
}

impl<T: Serialize + ?Sized> Serialize for WithEntry<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len() + 1))?;
        let mut pending = true;
        for (key, value) in self.fields {
            if pending && key.as_str() >= self.key {
                map.serialize_entry(self.key, self.value)?;
                pending = false;
            }
            if key != self.key {
                map.serialize_entry(key, value)?;
            }
        }
        if pending {
            map.serialize_entry(self.key, self.value)?;
        }
        map.end()
    }
}

fn ordered_collection(id: String, items: Vec<Value>) -> Value {
    json!({
        "@context": context(),
        "id": id,
        "type": "OrderedCollection",
        "totalItems": items.len(),
        "orderedItems": items,
    })
}

/// The (always empty) collection of accounts an actor follows. It has a `first` page because
/// Mastodon reads a collection without one as hidden (`following_private?` in
/// `app/services/activitypub/process_account_service.rb`) and then hides the actor's
/// followers too.
fn following_collection(id: String) -> Value {
    let mut collection = ordered_collection(id.clone(), Vec::new());
    collection["first"] = json!({
        "type": "OrderedCollectionPage",
        "partOf": id,
        "orderedItems": [],
    });
    collection
}

/// One document of the federation stage, before it is built: documents that depend on the
/// body of posts (outbox pages, objects) name the posts they hold, so an incremental build
/// renders them only when one of those posts changed.
#[derive(Debug, Clone)]
pub enum PlannedDocument {
    /// Cheap documents (actors, WebFinger, collections, NodeInfo), built at once.
    Ready(FederationFile),
    /// Page `number` of `pages` of `actor`'s outbox; `posts` index the site's posts.
    OutboxPage {
        path: String,
        actor: String,
        number: usize,
        pages: usize,
        posts: Vec<usize>,
    },
    /// The object of post `post` (an index into the site's posts).
    Object { path: String, post: usize },
}

impl PlannedDocument {
    pub fn path(&self) -> &str {
        match self {
            PlannedDocument::Ready(file) => &file.path,
            PlannedDocument::OutboxPage { path, .. } | PlannedDocument::Object { path, .. } => path,
        }
    }

    /// Indices of the posts whose body this document shows.
    pub fn posts(&self) -> &[usize] {
        match self {
            PlannedDocument::Ready(_) => &[],
            PlannedDocument::OutboxPage { posts, .. } => posts,
            PlannedDocument::Object { post, .. } => std::slice::from_ref(post),
        }
    }

    /// The document's JSON; `posts` must be the slice the plan was made from.
    pub fn build(&self, config: &SiteConfig, urls: &Urls, posts: &[Document]) -> Value {
        match self {
            PlannedDocument::Ready(file) => file.json.clone(),
            PlannedDocument::OutboxPage {
                actor,
                number,
                pages,
                posts: chunk,
                ..
            } => {
                let chunk: Vec<&Document> = chunk.iter().filter_map(|&i| posts.get(i)).collect();
                outbox_page(config, urls, actor, *number, *pages, &chunk)
            }
            PlannedDocument::Object { post, .. } => match posts.get(*post) {
                Some(post) => post_object_document(config, urls, post),
                None => Value::Null,
            },
        }
    }
}

/// Everything the federation stage writes for a site. `posts` are the published posts,
/// newest first.
pub fn site_documents(
    config: &SiteConfig,
    posts: &[Document],
    public_key_pem: &str,
) -> Vec<FederationFile> {
    let urls = Urls::new(config);
    site_document_plan(config, posts, public_key_pem)
        .into_iter()
        .map(|planned| FederationFile {
            path: planned.path().to_string(),
            json: planned.build(config, &urls, posts),
        })
        .collect()
}

/// The plan of [`site_documents`]: what it writes, in the same order, with the body-dependent
/// documents left to build.
pub fn site_document_plan(
    config: &SiteConfig,
    posts: &[Document],
    public_key_pem: &str,
) -> Vec<PlannedDocument> {
    let urls = Urls::new(config);
    let actors = actors(config);
    let mut files = Vec::new();
    let ready = |path: String, json: Value| PlannedDocument::Ready(FederationFile { path, json });
    let oldest = posts
        .iter()
        .filter_map(|p| p.date)
        .min()
        .map(|d| rfc3339(&d));
    let page_size = config.fediverse.outbox_page_size;

    for actor in &actors {
        let own: Vec<usize> = if actor.name == config.fediverse.username {
            (0..posts.len()).collect()
        } else {
            (0..posts.len())
                .filter(|&i| attributed_actor(config, &posts[i]) == actor.name)
                .collect()
        };
        files.push(ready(
            Urls::actor_path(&actor.name),
            actor_document(config, &urls, actor, public_key_pem, oldest.as_deref()),
        ));
        files.push(ready(
            Urls::webfinger_file_path(&actor.name),
            webfinger_document(config, &urls, actor),
        ));
        files.push(ready(
            Urls::outbox_path(&actor.name),
            outbox_collection(&urls, &actor.name, own.len(), page_size),
        ));
        let pages = own.len().div_ceil(page_size).max(1);
        for (index, chunk) in own.chunks(page_size).enumerate() {
            files.push(PlannedDocument::OutboxPage {
                path: Urls::outbox_page_path(&actor.name, index + 1),
                actor: actor.name.clone(),
                number: index + 1,
                pages,
                posts: chunk.to_vec(),
            });
        }
        // Mastodon pins only statuses of the collection's owner and, of embedded objects,
        // only Notes (`process_note_items` in
        // `app/services/activitypub/fetch_featured_collection_service.rb`): ids of the
        // actor's own posts pass for Articles too.
        let pinned: Vec<Value> = own
            .iter()
            .map(|&i| &posts[i])
            .filter(|p| {
                config.fediverse.pinned.contains(&p.slug)
                    && attributed_actor(config, p) == actor.name
            })
            .map(|p| json!(urls.object(&p.path)))
            .collect();
        files.push(ready(
            Urls::featured_path(&actor.name),
            ordered_collection(urls.featured(&actor.name), pinned),
        ));
        files.push(ready(
            Urls::following_path(&actor.name),
            following_collection(urls.following(&actor.name)),
        ));
    }
    for (post, doc) in posts.iter().enumerate() {
        files.push(PlannedDocument::Object {
            path: Urls::object_path(&doc.path),
            post,
        });
    }
    files.push(ready(
        Urls::NODEINFO_WELL_KNOWN_PATH.to_string(),
        nodeinfo_links(&urls),
    ));
    files.push(ready(
        Urls::NODEINFO_PATH.to_string(),
        nodeinfo_document(config, actors.len(), posts.len()),
    ));
    files
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::content::DocumentKind;
    use std::path::{Path, PathBuf};

    pub(crate) fn config(extra: &str) -> SiteConfig {
        SiteConfig::parse(
            &format!(
                "title = \"Field Notes\"\nbase_url = \"https://blog.example\"\n\
                 description = \"Notes from the field\"\n\
                 [[authors]]\nid = \"ann\"\nname = \"Ann Author\"\n\
                 [[authors]]\nid = \"bob\"\nname = \"Bob\"\nactor = false\n{extra}"
            ),
            Path::new("config.toml"),
        )
        .unwrap()
    }

    pub(crate) fn post(slug: &str, authors: &[&str]) -> Document {
        Document {
            kind: DocumentKind::Post,
            source: PathBuf::from(format!("content/posts/{slug}.md")),
            slug: slug.into(),
            path: format!("/posts/{slug}/"),
            title: format!("Title of {slug}"),
            untitled: false,
            date: Some(chrono::DateTime::parse_from_rfc3339("2026-03-01T10:00:00+02:00").unwrap()),
            updated: None,
            draft: false,
            tags: vec!["rust".into(), "open web".into()],
            summary: None,
            authors: authors.iter().map(|a| a.to_string()).collect(),
            language: None,
            image: None,
            content_warning: None,
            federate_as: None,
            quotes: None,
            in_reply_to: None,
            content: "<p>Hello <em>world</em>.</p>".into(),
            text: "Hello world.".into(),
            images: vec![ImageRef {
                src: format!("/posts/{slug}/cat.png"),
                alt: "A cat asleep".into(),
                media_type: "image/png".into(),
                size: None,
            }],
            assets: vec![],
            word_count: 2,
            reading_minutes: 1,
            source_hash: "h".into(),
            description: None,
            aliases: Vec::new(),
            weight: None,
            extra: Default::default(),
            taxonomies: Default::default(),
            kept_fields: Vec::new(),
        }
    }

    #[test]
    fn shared_objects_give_the_bytes_of_the_documents_built_as_values() {
        // Articles, notes, several authors, a content warning, a reply: the shared path
        // must write exactly what the `Value` path (patches, spliced pages) writes.
        for extra in ["", "[fediverse]\nobject_type = \"Article\"\n"] {
            let c = config(extra);
            let u = Urls::new(&c);
            let mut warned = post("warned", &["ann"]);
            warned.content_warning = Some("spoilers \"quoted\"".into());
            let mut reply = post("reply", &["ann", "bob"]);
            reply.in_reply_to = Some("https://m.example/@x/1".into());
            let posts = [post("hello", &[]), warned, reply];
            let shared: Vec<SharedObject> =
                posts.iter().map(|p| SharedObject::of(&c, &u, p)).collect();
            for (p, s) in posts.iter().zip(&shared) {
                assert_eq!(
                    String::from_utf8(s.document_bytes()).unwrap(),
                    String::from_utf8(crate::federation::document_bytes(&post_object_document(
                        &c, &u, p
                    )))
                    .unwrap()
                );
            }
            for (number, pages) in [(1, 1), (1, 3), (2, 3), (3, 3)] {
                let chunk: Vec<&Document> = posts.iter().collect();
                let items: Vec<&SharedObject> = shared.iter().collect();
                assert_eq!(
                    String::from_utf8(outbox_page_bytes(&u, "blog", number, pages, &items))
                        .unwrap(),
                    String::from_utf8(crate::federation::document_bytes(&outbox_page(
                        &c, &u, "blog", number, pages, &chunk
                    )))
                    .unwrap()
                );
            }
            assert_eq!(
                outbox_page_bytes(&u, "blog", 1, 1, &[]),
                crate::federation::document_bytes(&outbox_page(&c, &u, "blog", 1, 1, &[]))
            );
        }
    }

    #[test]
    fn an_entry_goes_where_a_sorted_map_puts_it() {
        let fields: Map<String, Value> = serde_json::from_str(r#"{"a":1,"c":3,"e":5}"#).unwrap();
        for (key, expected) in [
            ("0", r#"{"0":0,"a":1,"c":3,"e":5}"#),
            ("b", r#"{"a":1,"b":0,"c":3,"e":5}"#),
            ("c", r#"{"a":1,"c":0,"e":5}"#),
            ("z", r#"{"a":1,"c":3,"e":5,"z":0}"#),
        ] {
            let with = WithEntry {
                fields: &fields,
                key,
                value: &0,
            };
            assert_eq!(serde_json::to_string(&with).unwrap(), expected);
        }
    }

    #[test]
    fn note_carries_title_text_link_and_hashtags() {
        let c = config("");
        let u = Urls::new(&c);
        let o = post_object(&c, &u, &post("hello", &[]));
        assert_eq!(o["type"], "Note");
        assert_eq!(o["id"], "https://blog.example/ap/posts/hello.json");
        assert_eq!(o["url"], "https://blog.example/posts/hello/");
        assert_eq!(o["attributedTo"], "https://blog.example/ap/users/blog.json");
        assert_eq!(o["to"], json!([AS_PUBLIC]));
        assert_eq!(
            o["cc"],
            json!(["https://blog.example/ap/users/blog/followers"])
        );
        assert_eq!(o["published"], "2026-03-01T08:00:00Z");
        let content = o["content"].as_str().unwrap();
        assert!(content
            .starts_with("<p><strong>Title of hello</strong></p><p>Hello <em>world</em>.</p>"));
        assert!(content.contains("<a href=\"https://blog.example/posts/hello/\">"));
        assert!(content.contains("#<span>OpenWeb</span>"));
        assert_eq!(o["contentMap"]["en"], o["content"]);
        assert_eq!(o["tag"][1]["name"], "#OpenWeb");
        assert_eq!(o["tag"][1]["href"], "https://blog.example/tags/open-web/");
        assert_eq!(o["attachment"][0]["name"], "A cat asleep");
        assert_eq!(
            o["attachment"][0]["url"],
            "https://blog.example/posts/hello/cat.png"
        );
        assert_eq!(o["replies"], "https://blog.example/ap/posts/hello/replies");
        assert_eq!(o["sensitive"], false);
    }

    #[test]
    fn author_posts_belong_to_the_author_actor() {
        let c = config("");
        let u = Urls::new(&c);
        let o = post_object(&c, &u, &post("a", &["ann"]));
        assert_eq!(o["attributedTo"], "https://blog.example/ap/users/ann.json");
        assert_eq!(
            o["cc"],
            json!([
                "https://blog.example/ap/users/ann/followers",
                "https://blog.example/ap/users/blog/followers"
            ])
        );
        // Bob asked for no actor of his own: the site speaks for him.
        let o = post_object(&c, &u, &post("b", &["bob"]));
        assert_eq!(o["attributedTo"], "https://blog.example/ap/users/blog.json");
    }

    #[test]
    fn quote_policy_by_site_and_post() {
        let c = config("");
        let urls = u(&c);
        let o = post_object(&c, &urls, &post("hello", &[]));
        assert_eq!(
            o["interactionPolicy"],
            json!({ "canQuote": { "automaticApproval": [AS_PUBLIC] } })
        );
        let followers = config("[fediverse]\nquotes = \"followers\"\n");
        let o = post_object(&followers, &u(&followers), &post("hello", &[]));
        assert_eq!(
            o["interactionPolicy"]["canQuote"]["automaticApproval"],
            json!(["https://blog.example/ap/users/blog/followers"])
        );
        let mut closed = post("hello", &[]);
        closed.quotes = Some(QuotePolicy::Nobody);
        let o = post_object(&followers, &u(&followers), &closed);
        assert_eq!(
            o["interactionPolicy"]["canQuote"]["automaticApproval"],
            json!(["https://blog.example/ap/users/blog.json"])
        );
        for policy in [
            QuotePolicy::Public,
            QuotePolicy::Followers,
            QuotePolicy::Nobody,
        ] {
            let doc = json!({ "interactionPolicy": interaction_policy(&urls, "blog", policy) });
            assert_eq!(read_quote_policy(&urls, "blog", &doc), policy);
        }
        assert_eq!(
            read_quote_policy(&urls, "blog", &json!({})),
            QuotePolicy::Nobody
        );
    }

    #[test]
    fn content_warning_is_sensitive_summary() {
        let c = config("");
        let mut p = post("cw", &[]);
        p.content_warning = Some("spoilers".into());
        let o = post_object(&c, &u(&c), &p);
        assert_eq!(o["sensitive"], true);
        assert_eq!(o["summary"], "spoilers");
    }

    fn u(c: &SiteConfig) -> Urls {
        Urls::new(c)
    }

    #[test]
    fn article_keeps_full_content_and_a_note_preview() {
        let c = config("[fediverse]\nobject_type = \"Article\"\nnote_content = \"full\"\n");
        let mut p = post("long", &[]);
        p.text = "word ".repeat(400);
        let o = post_object(&c, &u(&c), &p);
        assert_eq!(o["type"], "Article");
        assert_eq!(o["name"], "Title of long");
        assert_eq!(o["content"], "<p>Hello <em>world</em>.</p>");
        assert_eq!(o["preview"]["type"], "Note");
        let preview = o["preview"]["content"].as_str().unwrap();
        assert!(preview.contains("…"), "{preview}");
    }

    #[test]
    fn an_untitled_post_is_a_note_of_just_its_text() {
        let c = config("[fediverse]\nobject_type = \"Article\"\n");
        let mut p = post("short", &[]);
        p.untitled = true;
        p.title = "Hello world.".into();
        let o = post_object(&c, &u(&c), &p);
        assert_eq!(o["type"], "Note");
        assert!(o.get("name").is_none(), "{o}");
        let content = o["content"].as_str().unwrap();
        assert!(
            content.starts_with("<p>Hello <em>world</em>.</p>"),
            "{content}"
        );
        assert!(!content.contains("<strong>"), "{content}");
    }

    #[test]
    fn excerpt_notes_fit_the_budget() {
        let c = config("[fediverse]\nnote_content = \"excerpt\"\nexcerpt_chars = 500\n");
        let mut p = post("long", &[]);
        p.text = "lorem ipsum ".repeat(200);
        let o = post_object(&c, &u(&c), &p);
        let body = o["content"].as_str().unwrap();
        let excerpt = body.split("<p>").nth(2).unwrap();
        assert!(excerpt.chars().count() < 500, "{}", excerpt.chars().count());
    }

    #[test]
    fn actor_has_what_mastodon_requires() {
        let c = config("[fediverse]\nicon = \"/avatar.png\"\nalso_known_as = [\"https://old.example/users/me\"]\n[[fediverse.profile_links]]\nname = \"Site\"\nurl = \"https://blog.example/\"\n");
        let actors = actors(&c);
        assert_eq!(actors.len(), 2, "site + ann (bob has no actor)");
        let a = actor_document(&c, &u(&c), &actors[0], "PEM", Some("2026-01-01T00:00:00Z"));
        assert_eq!(a["id"], "https://blog.example/ap/users/blog.json");
        assert_eq!(a["type"], "Person");
        assert_eq!(a["preferredUsername"], "blog");
        assert_eq!(a["inbox"], "https://blog.example/ap/users/blog/inbox");
        assert_eq!(
            a["endpoints"]["sharedInbox"],
            "https://blog.example/ap/inbox"
        );
        assert_eq!(
            a["publicKey"]["id"],
            "https://blog.example/ap/users/blog.json#main-key"
        );
        assert_eq!(a["publicKey"]["owner"], a["id"]);
        assert_eq!(a["icon"]["url"], "https://blog.example/avatar.png");
        assert_eq!(a["icon"]["mediaType"], "image/png");
        assert_eq!(a["alsoKnownAs"][0], "https://old.example/users/me");
        assert_eq!(a["attachment"][0]["type"], "PropertyValue");
        assert!(a["attachment"][0]["value"]
            .as_str()
            .unwrap()
            .contains("rel=\"nofollow noopener noreferrer me\""));
    }

    #[test]
    fn webfinger_self_link_is_the_actor_id() {
        let c = config("");
        let actor = &actors(&c)[1];
        let wf = webfinger_document(&c, &u(&c), actor);
        assert_eq!(wf["subject"], "acct:ann@blog.example");
        assert_eq!(wf["links"][0]["rel"], "self");
        assert_eq!(wf["links"][0]["type"], ACTIVITY_JSON);
        assert_eq!(
            wf["links"][0]["href"],
            "https://blog.example/ap/users/ann.json"
        );
    }

    #[test]
    fn webfinger_publishes_no_intent_a_blog_actor_cannot_honour() {
        let c = config("[fediverse]\nalso_known_as = [\"https://m.example/users/me\"]\nmoved_to = \"https://m.example/users/me\"\n");
        for actor in actors(&c) {
            let wf = webfinger_document(&c, &u(&c), &actor);
            let rels: Vec<&str> = wf["links"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["rel"].as_str().unwrap())
                .collect();
            assert_eq!(rels, vec!["self", "http://webfinger.net/rel/profile-page"]);
        }
    }

    #[test]
    fn outbox_pages_newest_first_with_links() {
        let c = config("[fediverse]\noutbox_page_size = 2\n");
        let posts: Vec<Document> = (0..5).map(|i| post(&format!("p{i}"), &[])).collect();
        let files: Vec<FederationFile> = site_documents(&c, &posts, "PEM")
            .into_iter()
            .filter(|f| f.path.starts_with("/ap/users/blog/outbox"))
            .collect();
        assert_eq!(files.len(), 4);
        assert_eq!(files[0].path, "/ap/users/blog/outbox.json");
        assert_eq!(files[0].json["totalItems"], 5);
        assert_eq!(
            files[0].json["first"],
            "https://blog.example/ap/users/blog/outbox/page-1.json"
        );
        assert_eq!(files[1].json["orderedItems"][0]["type"], "Create");
        assert_eq!(
            files[1].json["orderedItems"][0]["object"]["id"],
            "https://blog.example/ap/posts/p0.json"
        );
        assert_eq!(
            files[1].json["next"],
            "https://blog.example/ap/users/blog/outbox/page-2.json"
        );
        assert!(files[3].json.get("next").is_none());
        assert_eq!(files[3].json["orderedItems"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn every_document_id_matches_its_path() {
        let c = config("");
        let posts = vec![post("a", &["ann"]), post("b", &[])];
        for file in site_documents(&c, &posts, "PEM") {
            if let Some(id) = file.json.get("id") {
                assert_eq!(
                    id.as_str().unwrap(),
                    format!("https://blog.example{}", file.path)
                );
            }
        }
    }

    #[test]
    fn root_relative_links_are_made_absolute() {
        let mut p = post("links", &[]);
        p.content = "<p><a href=\"/about/\">about</a> <img src=\"/posts/links/cat.png\" alt=\"\"> \
                     <a href=\"//cdn.example/x\">cdn</a></p>"
            .into();
        for extra in ["", "[fediverse]\nobject_type = \"Article\"\n"] {
            let c = config(extra);
            let o = post_object(&c, &u(&c), &p);
            let content = o["content"].as_str().unwrap();
            assert!(
                content.contains("<a href=\"https://blog.example/about/\">"),
                "{content}"
            );
            assert!(content.contains("src=\"https://blog.example/posts/links/cat.png\""));
            assert!(content.contains("href=\"//cdn.example/x\""), "{content}");
            assert_eq!(o["contentMap"]["en"], o["content"]);
        }
    }

    #[test]
    fn each_image_is_attached_once_and_at_most_four() {
        let c = config("");
        let mut p = post("pics", &[]);
        let image = |n: usize| ImageRef {
            src: format!("/posts/pics/{n}.png"),
            alt: format!("picture {n}"),
            media_type: "image/png".into(),
            size: None,
        };
        p.images = vec![image(0), image(0), image(1)];
        let o = post_object(&c, &u(&c), &p);
        let urls: Vec<&str> = o["attachment"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["url"].as_str().unwrap())
            .collect();
        assert_eq!(
            urls,
            [
                "https://blog.example/posts/pics/0.png",
                "https://blog.example/posts/pics/1.png"
            ]
        );
        p.images = (0..6).map(image).collect();
        let o = post_object(&c, &u(&c), &p);
        assert_eq!(o["attachment"].as_array().unwrap().len(), 4);
        assert_eq!(o["attachment"][3]["name"], "picture 3");
    }

    #[test]
    fn featured_lists_the_ids_of_the_actors_own_pinned_posts() {
        let c = config("[fediverse]\npinned = [\"a\", \"b\", \"c\"]\n");
        let posts = vec![post("a", &["ann"]), post("b", &[]), post("d", &[])];
        let files = site_documents(&c, &posts, "PEM");
        let featured = |name: &str| {
            files
                .iter()
                .find(|f| f.path == format!("/ap/users/{name}/featured.json"))
                .unwrap()
                .json
                .clone()
        };
        assert_eq!(
            featured("ann")["orderedItems"],
            json!(["https://blog.example/ap/posts/a.json"])
        );
        // The site actor's outbox has every post, but it can pin only its own.
        assert_eq!(
            featured("blog")["orderedItems"],
            json!(["https://blog.example/ap/posts/b.json"])
        );
        assert_eq!(featured("blog")["totalItems"], 1);
    }

    #[test]
    fn following_has_a_first_page_so_mastodon_shows_it() {
        let c = config("");
        let files = site_documents(&c, &[], "PEM");
        let following = files
            .iter()
            .find(|f| f.path == "/ap/users/blog/following.json")
            .unwrap();
        assert_eq!(following.json["totalItems"], 0);
        assert_eq!(following.json["first"]["type"], "OrderedCollectionPage");
        assert_eq!(following.json["first"]["partOf"], following.json["id"]);
    }

    #[test]
    fn hashtag_names_have_no_spaces() {
        assert_eq!(hashtag_name("open web"), "OpenWeb");
        assert_eq!(hashtag_name("rust"), "Rust");
        assert_eq!(hashtag_name("c++"), "C");
        assert_eq!(hashtag_name("été"), "Été");
    }
}
