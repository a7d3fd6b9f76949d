//! A built site's feed (Atom, RSS 2.0 or JSON Feed) read into one neutral shape: what each
//! generator writes differs, what a post needs from it does not.

use std::path::{Path, PathBuf};

use atom_syndication as atom;
use chrono::{DateTime, FixedOffset};
use serde::Deserialize;

use crate::content::{escape_html, parse_date};

/// One post as a feed describes it. Every field may be missing: the post's page fills gaps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedEntry {
    /// The entry's link to its HTML page (absolute).
    pub url: String,
    pub title: Option<String>,
    pub published: Option<DateTime<FixedOffset>>,
    pub updated: Option<DateTime<FixedOffset>>,
    /// HTML.
    pub summary: Option<String>,
    /// HTML of the whole post, when the feed carries it.
    pub content: Option<String>,
    pub tags: Vec<String>,
    /// Names as the feed writes them.
    pub authors: Vec<String>,
    /// Lead image URL (media:thumbnail, JSON Feed `image`, an image enclosure).
    pub image: Option<String>,
    pub language: Option<String>,
}

/// A feed that cannot be read, named by its file.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not an Atom, RSS 2.0 or JSON Feed document: {message}")]
    Format { path: PathBuf, message: String },
}

/// Reads the entries of the feed file at `path`, whatever its format.
pub fn read_feed(path: &Path) -> Result<Vec<FeedEntry>, FeedError> {
    let bytes = std::fs::read(path).map_err(|source| FeedError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_feed(&bytes).map_err(|message| FeedError::Format {
        path: path.to_path_buf(),
        message,
    })
}

/// Parses feed bytes: JSON Feed when they open with `{`, else Atom, else RSS.
pub fn parse_feed(bytes: &[u8]) -> Result<Vec<FeedEntry>, String> {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') {
        return json_feed(trimmed);
    }
    match atom::Feed::read_from(trimmed.as_bytes()) {
        Ok(feed) => Ok(feed.entries().iter().map(atom_entry).collect()),
        Err(atom_error) => match rss::Channel::read_from(trimmed.as_bytes()) {
            Ok(channel) => {
                let language = channel.language().map(str::to_string);
                Ok(channel
                    .items()
                    .iter()
                    .map(|item| FeedEntry {
                        language: language.clone(),
                        ..rss_item(item)
                    })
                    .collect())
            }
            Err(rss_error) => Err(format!("as Atom: {atom_error}; as RSS: {rss_error}")),
        },
    }
}

/// Plain text as a paragraph of HTML.
fn text_paragraphs(text: &str) -> String {
    text.split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| format!("<p>{}</p>", escape_html(p)))
        .collect()
}

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn atom_text_html(text: &atom::Text) -> Option<String> {
    match text.r#type {
        atom::TextType::Text => non_empty(&text.value).map(|t| text_paragraphs(&t)),
        _ => non_empty(&text.value),
    }
}

fn atom_entry(entry: &atom::Entry) -> FeedEntry {
    let links = entry.links();
    let url = links
        .iter()
        .find(|l| l.rel() == "alternate")
        .or_else(|| links.first())
        .map(|l| l.href().to_string())
        .unwrap_or_else(|| entry.id().to_string());
    let title = match entry.title().r#type {
        atom::TextType::Text => non_empty(&entry.title().value),
        _ => non_empty(&crate::content::plain_text(&entry.title().value)),
    };
    let published = entry.published().copied();
    let updated = Some(*entry.updated()).filter(|u| Some(*u) != published && published.is_some());
    let content = entry.content().and_then(|c| {
        let value = c.value()?;
        match c.content_type() {
            Some("text") => non_empty(value).map(|t| text_paragraphs(&t)),
            _ => non_empty(value),
        }
    });
    let image = media_image(entry.extensions().get("media")).or_else(|| {
        links
            .iter()
            .find(|l| l.rel() == "enclosure" && l.mime_type().is_some_and(is_image_type))
            .map(|l| l.href().to_string())
    });
    FeedEntry {
        url,
        title,
        // An entry without `published` has only `updated`: that is its date.
        published: published.or(Some(*entry.updated())),
        updated,
        summary: entry.summary().and_then(atom_text_html),
        content,
        tags: entry
            .categories()
            .iter()
            .map(|c| c.label().unwrap_or(c.term()).to_string())
            .filter(|t| !t.trim().is_empty())
            .collect(),
        authors: entry
            .authors()
            .iter()
            .map(|a| a.name().to_string())
            .collect(),
        image,
        language: None,
    }
}

fn is_image_type(mime: &str) -> bool {
    mime.starts_with("image/")
}

/// `media:thumbnail url=` or `media:content medium="image" url=` (Media RSS, which
/// jekyll-feed and many RSS templates write).
fn media_image<E: MediaExtension>(
    media: Option<&std::collections::BTreeMap<String, Vec<E>>>,
) -> Option<String> {
    let media = media?;
    let thumbnail = media
        .get("thumbnail")
        .and_then(|list| list.iter().find_map(|e| e.attr("url")));
    let content = || {
        media.get("content").and_then(|list| {
            list.iter()
                .filter(|e| {
                    e.attr("medium").as_deref() == Some("image")
                        || e.attr("type").as_deref().is_some_and(is_image_type)
                })
                .find_map(|e| e.attr("url"))
        })
    };
    thumbnail.or_else(content)
}

/// The attribute access Atom's and RSS's extension types share.
trait MediaExtension {
    fn attr(&self, name: &str) -> Option<String>;
}

impl MediaExtension for atom::extension::Extension {
    fn attr(&self, name: &str) -> Option<String> {
        self.attrs().get(name).cloned()
    }
}

impl MediaExtension for rss::extension::Extension {
    fn attr(&self, name: &str) -> Option<String> {
        self.attrs().get(name).cloned()
    }
}

/// RFC 2822 as RSS writes it, else RFC 3339 as some generators write anyway.
fn rss_date(text: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc2822(text.trim())
        .ok()
        .or_else(|| parse_date(text))
}

fn rss_item(item: &rss::Item) -> FeedEntry {
    let url = item
        .link()
        .map(str::to_string)
        .or_else(|| {
            item.guid()
                .filter(|g| g.is_permalink())
                .map(|g| g.value().to_string())
        })
        .unwrap_or_default();
    let content = item.content().and_then(non_empty);
    let description = item.description().and_then(non_empty);
    let mut authors: Vec<String> = item
        .dublin_core_ext()
        .map(|dc| dc.creators().to_vec())
        .unwrap_or_default();
    if let Some(author) = item.author() {
        // RSS wants `email (Name)`; take the name when it is there.
        let name = author
            .split_once('(')
            .and_then(|(_, rest)| rest.strip_suffix(')'))
            .unwrap_or(author);
        authors.push(name.trim().to_string());
    }
    let image = media_image(item.extensions().get("media")).or_else(|| {
        item.enclosure()
            .filter(|e| is_image_type(e.mime_type()))
            .map(|e| e.url().to_string())
    });
    FeedEntry {
        url,
        title: item.title().and_then(non_empty),
        published: item.pub_date().and_then(rss_date),
        updated: None,
        // Without `content:encoded`, the description is all the feed has: Hugo's default
        // template puts the summary there, others the whole post; the page decides.
        summary: description,
        content,
        tags: item
            .categories()
            .iter()
            .map(|c| c.name().trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
        authors,
        image,
        language: None,
    }
}

/// JSON Feed 1.0 and 1.1 (`author` became `authors`).
#[derive(Debug, Deserialize)]
struct JsonFeed {
    version: Option<String>,
    language: Option<String>,
    #[serde(default)]
    items: Vec<JsonItem>,
}

#[derive(Debug, Deserialize)]
struct JsonItem {
    id: Option<serde_json::Value>,
    url: Option<String>,
    title: Option<String>,
    content_html: Option<String>,
    content_text: Option<String>,
    summary: Option<String>,
    image: Option<String>,
    banner_image: Option<String>,
    date_published: Option<String>,
    date_modified: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    authors: Vec<JsonAuthor>,
    author: Option<JsonAuthor>,
    language: Option<String>,
}

#[derive(Debug, Deserialize)]
struct JsonAuthor {
    name: Option<String>,
}

fn json_feed(text: &str) -> Result<Vec<FeedEntry>, String> {
    let feed: JsonFeed = serde_json::from_str(text).map_err(|e| format!("JSON Feed: {e}"))?;
    if !feed
        .version
        .as_deref()
        .is_some_and(|v| v.starts_with("https://jsonfeed.org/version/"))
    {
        return Err("JSON without a jsonfeed.org `version`".into());
    }
    Ok(feed
        .items
        .into_iter()
        .map(|item| {
            let url = item
                .url
                .or_else(|| {
                    item.id
                        .as_ref()
                        .and_then(|v| v.as_str().map(str::to_string))
                })
                .unwrap_or_default();
            let content = item
                .content_html
                .as_deref()
                .and_then(non_empty)
                .or_else(|| {
                    item.content_text
                        .as_deref()
                        .and_then(non_empty)
                        .map(|t| text_paragraphs(&t))
                });
            let published = item.date_published.as_deref().and_then(parse_date);
            let updated = item
                .date_modified
                .as_deref()
                .and_then(parse_date)
                .filter(|u| Some(*u) != published);
            FeedEntry {
                url,
                title: item.title.as_deref().and_then(non_empty),
                published,
                updated,
                summary: item
                    .summary
                    .as_deref()
                    .and_then(non_empty)
                    .map(|s| text_paragraphs(&s)),
                content,
                tags: item.tags,
                authors: item
                    .authors
                    .into_iter()
                    .chain(item.author)
                    .filter_map(|a| a.name)
                    .collect(),
                image: item.image.or(item.banner_image),
                language: item.language.or_else(|| feed.language.clone()),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atom_entry_with_content_categories_and_thumbnail() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:media="http://search.yahoo.com/mrss/">
  <title>T</title><id>https://b.example/</id><updated>2024-05-02T00:00:00Z</updated>
  <entry>
    <title type="html">Hello &amp;amp; welcome</title>
    <link href="https://b.example/posts/hello/" rel="alternate" type="text/html"/>
    <id>https://b.example/posts/hello/</id>
    <published>2024-05-01T10:00:00+02:00</published>
    <updated>2024-05-02T00:00:00Z</updated>
    <author><name>Ann</name></author>
    <category term="rust"/><category term="web" label="The Web"/>
    <summary type="html">&lt;p&gt;Short&lt;/p&gt;</summary>
    <content type="html">&lt;p&gt;Long &lt;img src="cat.png" alt="A cat"&gt;&lt;/p&gt;</content>
    <media:thumbnail xmlns:media="http://search.yahoo.com/mrss/" url="https://b.example/lead.jpg"/>
  </entry>
</feed>"#;
        let entries = parse_feed(xml.as_bytes()).unwrap();
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!(e.url, "https://b.example/posts/hello/");
        assert_eq!(e.title.as_deref(), Some("Hello & welcome"));
        assert_eq!(
            e.published.unwrap().to_rfc3339(),
            "2024-05-01T10:00:00+02:00"
        );
        assert_eq!(e.updated.unwrap().to_rfc3339(), "2024-05-02T00:00:00+00:00");
        assert_eq!(e.tags, ["rust", "The Web"]);
        assert_eq!(e.authors, ["Ann"]);
        assert_eq!(e.summary.as_deref(), Some("<p>Short</p>"));
        assert!(e.content.as_deref().unwrap().contains("cat.png"));
        assert_eq!(e.image.as_deref(), Some("https://b.example/lead.jpg"));
    }

    #[test]
    fn rss_item_with_only_a_description() {
        let xml = r#"<?xml version="1.0"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>
  <title>T</title><link>https://b.example/</link><description>d</description>
  <language>fr</language>
  <item>
    <title>Bonjour</title><link>https://b.example/posts/bonjour/</link>
    <pubDate>Wed, 01 May 2024 10:00:00 +0000</pubDate>
    <guid>https://b.example/posts/bonjour/</guid>
    <description>&lt;p&gt;Résumé&lt;/p&gt;</description>
    <category>notes</category>
    <author>ann@b.example (Ann)</author>
  </item>
</channel></rss>"#;
        let e = &parse_feed(xml.as_bytes()).unwrap()[0];
        assert_eq!(e.url, "https://b.example/posts/bonjour/");
        assert_eq!(
            e.published.unwrap().to_rfc3339(),
            "2024-05-01T10:00:00+00:00"
        );
        assert_eq!(e.summary.as_deref(), Some("<p>Résumé</p>"));
        assert_eq!(e.content, None);
        assert_eq!(e.tags, ["notes"]);
        assert_eq!(e.authors, ["Ann"]);
        assert_eq!(e.language.as_deref(), Some("fr"));
    }

    #[test]
    fn json_feed_items() {
        let json = r#"{"version":"https://jsonfeed.org/version/1.1","title":"T",
          "items":[{"id":"1","url":"https://b.example/p/","title":"P",
            "content_text":"One\n\nTwo & three","date_published":"2024-05-01T10:00:00Z",
            "date_modified":"2024-05-03T10:00:00Z","tags":["a"],"authors":[{"name":"Ann"}],
            "image":"https://b.example/i.png"}]}"#;
        let e = &parse_feed(json.as_bytes()).unwrap()[0];
        assert_eq!(e.url, "https://b.example/p/");
        assert_eq!(
            e.content.as_deref(),
            Some("<p>One</p><p>Two &amp; three</p>")
        );
        assert!(e.updated.is_some());
        assert_eq!(e.authors, ["Ann"]);
        assert_eq!(e.image.as_deref(), Some("https://b.example/i.png"));
    }

    #[test]
    fn junk_is_an_error() {
        assert!(parse_feed(b"<html></html>").is_err());
        assert!(parse_feed(b"{\"items\": []}").is_err());
    }
}
