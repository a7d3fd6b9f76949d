//! What templates see. Every page gets `config`, `fediverse`, `site`, `feeds`, `lang`,
//! `current_path` and `current_url`; then `paginator`, `post`, `page`, `tags` or `tag` +
//! `posts`. Listings carry light post views (no `content`, no `text`).

use std::sync::OnceLock;

use chrono::{DateTime, FixedOffset};
use serde_json::{json, Map, Value};
use tera::Context;

use super::dates;
use crate::config::{AuthorConfig, SiteConfig};
use crate::content::Document;
use crate::federation::urls::Urls;
use crate::interactions::{Interactions, PostInteractions, Reactor};
use crate::site::{feeds, Site};

const DESCRIPTION_CHARS: usize = 160;

pub struct Views<'a> {
    globals: Map<String, Value>,
    locale: chrono::Locale,
    urls: Urls,
    host: String,
    interactions: &'a Interactions,
    /// Each post's meta description, made once: a cold build lists a post on a home page,
    /// its tag pages and its neighbours' pages. Empty for views made without the site.
    descriptions: Vec<OnceLock<String>>,
    /// Every home page's number and path, which each home page lists (made once: at 10k
    /// posts, 1,000 pages of 1,000 entries).
    home_pages: OnceLock<Value>,
}

impl<'a> Views<'a> {
    pub fn new(site: &Site, interactions: &'a Interactions) -> Views<'a> {
        let config = &site.config;
        let urls = Urls::new(config);
        let host = config.host();
        let locale = dates::locale(&config.language);
        let mut globals = Map::new();
        globals.insert("dates".into(), dates::script_view(locale));
        globals.insert(
            "config".into(),
            json!({
                "title": config.title,
                "base_url": config.base_url,
                "description": config.description,
                "language": config.language,
                "paginate_by": config.paginate_by,
                "extra": config.extra,
                "highlight_css": config.highlight_theme.is_none(),
            }),
        );
        globals.insert("lang".into(), json!(config.language));
        let fediverse_authors: Vec<Value> = config
            .authors
            .iter()
            .filter(|a| a.actor)
            .map(|a| author_view(config, &urls, &host, a))
            .collect();
        globals.insert(
            "fediverse".into(),
            json!({
                "enabled": config.fediverse.enabled,
                "username": config.fediverse.username,
                "handle": Urls::handle(&config.fediverse.username, &host),
                "actor_url": urls.actor(&config.fediverse.username),
                "authors": fediverse_authors,
                "profile_links": config.fediverse.profile_links,
            }),
        );
        let pages: Vec<Value> = site
            .pages
            .iter()
            .map(|p| json!({"title": p.title, "path": p.path, "permalink": config.absolute(&p.path)}))
            .collect();
        let tags: Vec<Value> = site
            .tags
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "slug": t.slug,
                    "path": t.path(),
                    "permalink": config.absolute(&t.path()),
                    "count": t.posts.len(),
                })
            })
            .collect();
        globals.insert("site".into(), json!({"pages": pages, "tags": tags}));
        globals.insert(
            "feeds".into(),
            json!({
                "atom": config.absolute(feeds::ATOM_PATH),
                "rss": config.absolute(feeds::RSS_PATH),
            }),
        );
        Views {
            globals,
            locale,
            urls,
            host,
            interactions,
            descriptions: std::iter::repeat_with(OnceLock::new)
                .take(site.posts.len())
                .collect(),
            home_pages: OnceLock::new(),
        }
    }

    /// Views with the globals of an earlier [`Views::new`] of the same site and config
    /// (a patch renders a few pages without assembling the site).
    pub fn with_globals(
        config: &SiteConfig,
        globals: Map<String, Value>,
        interactions: &'a Interactions,
    ) -> Views<'a> {
        Views {
            globals,
            locale: dates::locale(&config.language),
            urls: Urls::new(config),
            host: config.host(),
            interactions,
            descriptions: Vec::new(),
            home_pages: OnceLock::new(),
        }
    }

    /// What every page sees (config, site, feeds...): an incremental build re-renders every
    /// page when it changes.
    pub fn globals(&self) -> &Map<String, Value> {
        &self.globals
    }

    /// Light view of post `index` (made on demand: a build may render only a few pages).
    /// `site` is the one these views were made for.
    fn listed(&self, site: &Site, index: usize) -> Option<Value> {
        let post = site.posts.get(index)?;
        let description = self.description_of(index, post);
        Some(self.document(&site.config, post, false, description))
    }

    /// The meta description of post `index`, `post`.
    fn description_of(&self, index: usize, post: &Document) -> String {
        match self.descriptions.get(index) {
            Some(cell) => cell.get_or_init(|| description(post)).clone(),
            None => description(post),
        }
    }

    fn base(&self, config: &SiteConfig, path: &str) -> PageContext {
        let mut context = PageContext(self.globals.clone());
        context.insert("current_path", json!(path));
        context.insert("current_url", json!(config.absolute(path)));
        context
    }

    pub fn home(&self, site: &Site, number: usize) -> PageContext {
        let per_page = site.config.paginate_by;
        let total = site.home_page_count();
        let path = Site::home_page_path(number);
        let mut context = self.base(&site.config, &path);
        let start = ((number - 1) * per_page).min(site.posts.len());
        let end = (start + per_page).min(site.posts.len());
        let posts: Vec<Value> = (start..end).filter_map(|i| self.listed(site, i)).collect();
        let link = |n: usize| (1..=total).contains(&n).then(|| Site::home_page_path(n));
        context.insert("paginator", json!({
                "number": number,
                "total_pages": total,
                "posts": posts,
                "previous": link(number.wrapping_sub(1)),
                "next": link(number + 1),
                "pages": self.home_pages.get_or_init(|| {
                    (1..=total).map(|n| json!({"number": n, "path": Site::home_page_path(n)})).collect()
                }),
            }),
        );
        context
    }

    /// List page `number` of section `index`: a paginator like the home page's, and the
    /// section (title, description, extra, subsections).
    pub fn section(&self, site: &Site, index: usize, number: usize) -> PageContext {
        let section = &site.sections[index];
        let path = section.page_path(number);
        let mut context = self.base(&site.config, &path);
        let total = section.page_count();
        let posts: Vec<Value> = section
            .page_posts(number)
            .iter()
            .filter_map(|&i| self.listed(site, i))
            .collect();
        let link = |n: usize| (1..=total).contains(&n).then(|| section.page_path(n));
        context.insert("paginator", json!({
                "number": number,
                "total_pages": total,
                "posts": posts,
                "previous": link(number.wrapping_sub(1)),
                "next": link(number + 1),
                "pages": (1..=total).map(|n| json!({"number": n, "path": section.page_path(n)})).collect::<Vec<_>>(),
            }),
        );
        let subsections: Vec<Value> = section
            .subsections
            .iter()
            .map(|&s| {
                let sub = &site.sections[s];
                json!({"title": sub.title, "path": sub.path, "permalink": site.config.absolute(&sub.path), "count": sub.posts.len()})
            })
            .collect();
        context.insert(
            "section",
            json!({
                "title": section.title,
                "description": section.description,
                "path": section.path,
                "permalink": site.config.absolute(&section.path),
                "extra": Value::Object(section.extra.0.clone()),
                "subsections": subsections,
                "count": section.posts.len(),
            }),
        );
        context
    }

    pub fn post(&self, site: &Site, index: usize) -> PageContext {
        let post = &site.posts[index];
        let mut context = self.base(&site.config, &post.path);
        let description = self.description_of(index, post);
        let mut view = self.document(&site.config, post, true, description);
        if let Some(map) = view.as_object_mut() {
            map.insert(
                "newer".into(),
                index
                    .checked_sub(1)
                    .and_then(|i| self.listed(site, i))
                    .unwrap_or(Value::Null),
            );
            map.insert(
                "older".into(),
                self.listed(site, index + 1).unwrap_or(Value::Null),
            );
        }
        // Zola's and Hugo's templates call every content page `page`.
        context.insert("page", view.clone());
        context.insert("post", view);
        context
    }

    pub fn page(&self, site: &Site, index: usize) -> PageContext {
        let page = &site.pages[index];
        let mut context = self.base(&site.config, &page.path);
        context.insert(
            "page",
            self.document(&site.config, page, true, description(page)),
        );
        context
    }

    pub fn tags(&self, site: &Site) -> PageContext {
        let mut context = self.base(&site.config, "/tags/");
        let tags = self
            .globals
            .get("site")
            .and_then(|s| s.get("tags"))
            .cloned();
        context.insert("tags", tags.unwrap_or(Value::Array(Vec::new())));
        context
    }

    pub fn tag(&self, site: &Site, index: usize) -> PageContext {
        let tag = &site.tags[index];
        let mut context = self.base(&site.config, &tag.path());
        context.insert(
            "tag",
            json!({
                "name": tag.name,
                "slug": tag.slug,
                "path": tag.path(),
                "permalink": site.config.absolute(&tag.path()),
                "count": tag.posts.len(),
            }),
        );
        let posts = tag
            .posts
            .iter()
            .filter_map(|&i| self.listed(site, i))
            .collect();
        context.insert("posts", Value::Array(posts));
        context
    }

    pub fn not_found(&self, site: &Site) -> PageContext {
        self.base(&site.config, "/404.html")
    }

    /// A document as templates see it. `full` adds the body and, for posts, interactions.
    fn document(
        &self,
        config: &SiteConfig,
        doc: &Document,
        full: bool,
        description: String,
    ) -> Value {
        let serialized = match full {
            true => serde_json::to_value(doc),
            // Lists show many posts: their bodies are not copied to be thrown away.
            false => serde_json::to_value(without_body(doc)),
        };
        let mut map = match serialized {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        if !full {
            map.remove("content");
            map.remove("text");
        } else if !config.resolved.accounts.is_empty() {
            // Mentions resolved before the build link to the account on the page too, with
            // the markup the federated Note carries.
            let (content, _) =
                crate::federation::mentions::link_mentions(&doc.content, &config.resolved);
            map.insert("content".into(), content.into());
        }
        map.insert("permalink".into(), config.absolute(&doc.path).into());
        map.insert("description".into(), description.into());
        insert_date(&mut map, "date", doc.date, self.locale);
        insert_date(&mut map, "updated", doc.updated, self.locale);
        let tag_list: Vec<Value> = doc
            .tags
            .iter()
            .map(|name| {
                let slug = slug::slugify(name);
                let path = format!("/tags/{slug}/");
                json!({"name": name, "slug": slug, "permalink": config.absolute(&path), "path": path})
            })
            .collect();
        map.insert("tag_list".into(), tag_list.into());
        let authors: Vec<&AuthorConfig> = doc
            .authors
            .iter()
            .filter_map(|id| config.author(id))
            .collect();
        map.insert("author_ids".into(), json!(doc.authors));
        // `authors` that name no `[[authors]]` id are free names (as Zola and Hugo write them).
        let author_names: Vec<&str> = doc
            .authors
            .iter()
            .map(|id| config.author(id).map_or(id.as_str(), |a| a.name.as_str()))
            .collect();
        map.insert("author_names".into(), json!(author_names));
        map.insert("extra".into(), Value::Object(doc.extra.0.clone()));
        map.insert(
            "authors".into(),
            authors
                .iter()
                .map(|a| author_view(config, &self.urls, &self.host, a))
                .collect::<Vec<_>>()
                .into(),
        );
        let creator = authors
            .iter()
            .find(|a| a.actor)
            .map_or(config.fediverse.username.as_str(), |a| a.id.as_str());
        map.insert("creator".into(), Urls::handle(creator, &self.host).into());
        if let Some(image) = &doc.image {
            map.insert(
                "image".into(),
                json!({
                    "src": image.src,
                    "alt": image.alt,
                    "media_type": image.media_type,
                    "url": config.absolute(&image.src),
                    "width": image.size.map(|(w, _)| w),
                    "height": image.size.map(|(_, h)| h),
                }),
            );
        }
        if doc.kind == crate::content::DocumentKind::Post {
            let object_url = self.urls.object(&doc.path);
            if full {
                let interactions = self
                    .interactions
                    .get(&object_url)
                    .cloned()
                    .unwrap_or_default();
                map.insert(
                    "interactions".into(),
                    interactions_view(&interactions, self.locale),
                );
                // Where the page script asks the inbox (same origin, via the host rules)
                // for replies and reactions newer than the build.
                let source = url::Url::parse_with_params(
                    &format!("{}{}", self.urls.base(), Urls::INTERACTIONS_PATH),
                    [("post", object_url.as_str())],
                )
                .map(|u| format!("{}?{}", u.path(), u.query().unwrap_or_default()))
                .unwrap_or_default();
                map.insert("interactions_source".into(), source.into());
            }
            map.insert("object_url".into(), object_url.into());
        }
        Value::Object(map)
    }
}

/// A template context built as JSON and handed to Tera whole, without another deep copy.
pub struct PageContext(Map<String, Value>);

impl PageContext {
    fn insert(&mut self, key: &str, value: Value) {
        self.0.insert(key.to_string(), value);
    }

    pub fn into_tera(self) -> tera::Result<Context> {
        Context::from_value(Value::Object(self.0))
    }
}

fn author_view(config: &SiteConfig, urls: &Urls, host: &str, author: &AuthorConfig) -> Value {
    json!({
        "id": author.id,
        "name": author.name,
        "summary": author.summary,
        "avatar": author.avatar.as_deref().map(|a| config.absolute(a)),
        "url": author.url.clone().unwrap_or_else(|| config.absolute("/")),
        "handle": author.actor.then(|| Urls::handle(&author.id, host)),
        "actor_url": author.actor.then(|| urls.actor(&author.id)),
        "profile_links": author.profile_links,
    })
}

fn interactions_view(interactions: &PostInteractions, locale: chrono::Locale) -> Value {
    let mut value = serde_json::to_value(interactions).unwrap_or_else(|_| json!({}));
    if let Some(replies) = value.get_mut("replies").and_then(Value::as_array_mut) {
        for (reply, original) in replies.iter_mut().zip(&interactions.replies) {
            if let Some(map) = reply.as_object_mut() {
                map.insert(
                    "published_display".into(),
                    dates::format(&original.published, dates::TIME_FORMAT, locale).into(),
                );
            }
        }
    }
    let reactors = |list: &[Reactor]| -> Vec<String> {
        list.iter()
            .map(|r| reactor_name(&r.name, &r.actor_id))
            .collect()
    };
    let quoters = interactions
        .quotes
        .iter()
        .map(|q| reactor_name(&q.name, &q.actor_id))
        .collect();
    for (key, shown) in [
        ("likes", reactors(&interactions.likes)),
        ("boosts", reactors(&interactions.boosts)),
        ("quotes", quoters),
    ] {
        if let Some(views) = value.get_mut(key).and_then(Value::as_array_mut) {
            for (view, name) in views.iter_mut().zip(shown) {
                if let Some(map) = view.as_object_mut() {
                    map.insert("initial".into(), initial(&name).into());
                    map.insert("display_name".into(), name.into());
                }
            }
        }
    }
    value
}

/// The name to show for someone who liked or boosted: their profile name, or, when their
/// profile could not be fetched (the name is then their actor URL, or empty), `user@host`
/// read from the URL. `interactions.js` does the same in `reactorName`. Quoters too.
fn reactor_name(name: &str, actor_id: &str) -> String {
    let name = name.trim();
    let lower = name.to_ascii_lowercase();
    if !name.is_empty() && !lower.starts_with("https://") && !lower.starts_with("http://") {
        return name.to_string();
    }
    let from = if name.is_empty() { actor_id } else { name };
    match url::Url::parse(from) {
        Ok(url) => {
            let host = url.host_str().unwrap_or_default();
            let user = url
                .path_segments()
                .and_then(|mut s| s.rfind(|p| !p.is_empty()))
                .map(|p| p.trim_start_matches('@'))
                .unwrap_or_default();
            match (user.is_empty(), host.is_empty()) {
                (false, false) => format!("{user}@{host}"),
                (true, false) => host.to_string(),
                _ => "someone".into(),
            }
        }
        Err(_) => "someone".into(),
    }
}

/// The letter shown in place of a missing avatar.
fn initial(name: &str) -> String {
    name.chars()
        .find(|c| c.is_alphanumeric())
        .map_or_else(|| "?".to_string(), |c| c.to_uppercase().collect())
}

fn insert_date(
    map: &mut Map<String, Value>,
    key: &str,
    date: Option<DateTime<FixedOffset>>,
    locale: chrono::Locale,
) {
    let (iso, display) = match date {
        Some(d) => (
            Value::from(d.to_rfc3339()),
            Value::from(dates::format(&d, dates::DATE_FORMAT, locale)),
        ),
        None => (Value::Null, Value::Null),
    };
    map.insert(format!("{key}_iso"), iso);
    map.insert(format!("{key}_display"), display);
}

/// `doc` without its body and extra values (which [`Views::document`] sets itself). Every
/// field is named, so that a new one is a compile error here until it is decided on.
fn without_body(doc: &Document) -> Document {
    let Document {
        kind,
        source,
        slug,
        path,
        title,
        untitled,
        date,
        updated,
        draft,
        tags,
        summary,
        authors,
        language,
        image,
        content_warning,
        federate_as,
        quotes,
        in_reply_to,
        content: _,
        text: _,
        images,
        assets,
        word_count,
        reading_minutes,
        source_hash,
        description,
        aliases,
        weight,
        extra: _,
        taxonomies,
        kept_fields,
    } = doc;
    Document {
        kind: *kind,
        source: source.clone(),
        slug: slug.clone(),
        path: path.clone(),
        title: title.clone(),
        untitled: *untitled,
        date: *date,
        updated: *updated,
        draft: *draft,
        tags: tags.clone(),
        summary: summary.clone(),
        authors: authors.clone(),
        language: language.clone(),
        image: image.clone(),
        content_warning: content_warning.clone(),
        federate_as: *federate_as,
        quotes: *quotes,
        in_reply_to: in_reply_to.clone(),
        content: String::new(),
        text: String::new(),
        images: images.clone(),
        assets: assets.clone(),
        word_count: *word_count,
        reading_minutes: *reading_minutes,
        source_hash: source_hash.clone(),
        description: description.clone(),
        aliases: aliases.clone(),
        weight: *weight,
        extra: crate::content::Extra::default(),
        taxonomies: taxonomies.clone(),
        kept_fields: kept_fields.clone(),
    }
}

/// Plain text for `<meta name="description">`: the summary without tags, else the start of
/// the text, cut at a word boundary.
fn description(doc: &Document) -> String {
    let flat = match (&doc.description, &doc.summary) {
        (Some(text), _) => text.split_whitespace().collect::<Vec<_>>().join(" "),
        (None, Some(html)) => crate::content::plain_text(html),
        (None, None) => doc.text.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    if flat.chars().count() <= DESCRIPTION_CHARS {
        return flat;
    }
    let cut: String = flat.chars().take(DESCRIPTION_CHARS).collect();
    match cut.rfind(' ') {
        Some(i) => format!("{}…", &cut[..i]),
        None => format!("{cut}…"),
    }
}

#[cfg(test)]
mod reactor_tests {
    use super::*;

    fn reactor(name: &str) -> Reactor {
        Reactor {
            actor_id: "https://h.example/users/bob".into(),
            name: name.into(),
            url: "https://h.example/@bob".into(),
            avatar: None,
        }
    }

    #[test]
    fn a_reactor_without_profile_is_named_from_the_url() {
        for name in ["https://h.example/users/bob", ""] {
            let r = reactor(name);
            let shown = reactor_name(&r.name, &r.actor_id);
            assert_eq!(shown, "bob@h.example");
            assert_eq!(initial(&shown), "B");
        }
        assert_eq!(
            reactor_name("Bob: the builder", "https://h.example/users/bob"),
            "Bob: the builder"
        );
        assert_eq!(initial("ève"), "È");
        assert_eq!(initial("…"), "?");
    }

    #[test]
    fn reply_times_use_the_site_pattern() {
        let interactions = PostInteractions {
            replies: vec![crate::interactions::Reply {
                id: "https://m.example/n/1".into(),
                url: "https://m.example/n/1".into(),
                in_reply_to: "x".into(),
                author_id: "https://m.example/users/a".into(),
                author_name: "A".into(),
                author_handle: "@a@m.example".into(),
                author_url: "https://m.example/@a".into(),
                author_avatar: None,
                content: String::new(),
                published: "2025-02-11T10:00:00Z".parse().unwrap(),
                depth: 0,
            }],
            likes: vec![reactor("https://h.example/users/bob")],
            boosts: vec![],
            quotes: vec![crate::interactions::QuotedBy {
                actor_id: "https://q.example/users/quinn".into(),
                name: String::new(),
                actor_url: "https://q.example/@quinn".into(),
                avatar: None,
                url: "https://q.example/@quinn/7".into(),
            }],
        };
        let view = interactions_view(&interactions, dates::locale("en"));
        assert_eq!(
            view["replies"][0]["published_display"],
            "11 February 2025, 10:00 UTC"
        );
        assert_eq!(view["likes"][0]["display_name"], "bob@h.example");
        assert_eq!(view["likes"][0]["initial"], "B");
        assert_eq!(view["quotes"][0]["display_name"], "quinn@q.example");
        assert_eq!(view["quotes"][0]["initial"], "Q");
    }
}
