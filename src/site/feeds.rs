//! Atom and RSS feeds, `sitemap.xml` and `robots.txt`.

use atom_syndication as atom;
use chrono::{DateTime, FixedOffset};

use super::Site;
use crate::content::Document;

/// Feeds carry the newest posts only: readers poll them often and full bodies are heavy.
pub const FEED_LIMIT: usize = 20;
pub const ATOM_PATH: &str = "/atom.xml";
pub const RSS_PATH: &str = "/rss.xml";
pub const SITEMAP_PATH: &str = "/sitemap.xml";
pub const ROBOTS_PATH: &str = "/robots.txt";

fn feed_posts(site: &Site) -> impl Iterator<Item = &Document> {
    site.posts.iter().take(FEED_LIMIT)
}

/// Newest change among the feed's posts; the epoch for an empty site, so that output stays
/// the same from one build to the next.
fn last_change(site: &Site) -> DateTime<FixedOffset> {
    feed_posts(site)
        .filter_map(|p| p.updated.or(p.date))
        .max()
        .unwrap_or_default()
}

fn author_names(site: &Site, doc: &Document) -> Vec<String> {
    doc.authors
        .iter()
        .filter_map(|id| site.config.author(id))
        .map(|a| a.name.clone())
        .collect()
}

/// Makes root-relative `href` and `src` attributes absolute: feed readers have no page URL
/// to resolve them against.
pub fn absolutize(html: &str, base_url: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    // memchr's SIMD search: `str::find` with a three-byte needle took a quarter of the time
    // a cold build spends on post objects.
    let attribute = memchr::memmem::Finder::new("=\"/");
    while let Some(i) = attribute.find(rest.as_bytes()) {
        let (before, after) = rest.split_at(i + 2);
        out.push_str(before);
        let is_attr = before.ends_with("href=\"") || before.ends_with("src=\"");
        if is_attr && !after.starts_with("//") {
            out.push_str(base_url);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

pub fn atom(site: &Site) -> String {
    let config = &site.config;
    let entries = feed_posts(site)
        .map(|post| {
            let permalink = config.absolute(&post.path);
            let date = post.date.unwrap_or_default();
            atom::Entry {
                title: atom::Text::plain(post.title.clone()),
                id: permalink.clone(),
                updated: post.updated.unwrap_or(date),
                published: post.date,
                authors: author_names(site, post)
                    .into_iter()
                    .map(|name| atom::Person {
                        name,
                        ..Default::default()
                    })
                    .collect(),
                links: vec![atom::Link {
                    href: permalink,
                    rel: "alternate".into(),
                    mime_type: Some("text/html".into()),
                    ..Default::default()
                }],
                categories: post
                    .tags
                    .iter()
                    .map(|t| atom::Category {
                        term: t.clone(),
                        ..Default::default()
                    })
                    .collect(),
                summary: post
                    .summary
                    .as_ref()
                    .map(|s| atom::Text::html(absolutize(s, &config.base_url))),
                content: Some(atom::Content {
                    value: Some(absolutize(&post.content, &config.base_url)),
                    content_type: Some("html".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect();
    let feed = atom::Feed {
        title: atom::Text::plain(config.title.clone()),
        id: config.absolute("/"),
        updated: last_change(site),
        subtitle: (!config.description.is_empty())
            .then(|| atom::Text::plain(config.description.clone())),
        lang: Some(config.language.clone()),
        authors: vec![atom::Person {
            name: config
                .authors
                .first()
                .map_or_else(|| config.title.clone(), |a| a.name.clone()),
            ..Default::default()
        }],
        links: vec![
            atom::Link {
                href: config.absolute(ATOM_PATH),
                rel: "self".into(),
                mime_type: Some("application/atom+xml".into()),
                ..Default::default()
            },
            atom::Link {
                href: config.absolute("/"),
                rel: "alternate".into(),
                mime_type: Some("text/html".into()),
                ..Default::default()
            },
        ],
        entries,
        ..Default::default()
    };
    feed.to_string()
}

pub fn rss(site: &Site) -> String {
    let config = &site.config;
    let items = feed_posts(site)
        .map(|post| {
            let permalink = config.absolute(&post.path);
            rss::Item {
                title: Some(post.title.clone()),
                link: Some(permalink.clone()),
                guid: Some(rss::Guid {
                    value: permalink,
                    permalink: true,
                }),
                pub_date: post.date.map(|d| d.to_rfc2822()),
                description: Some(absolutize(
                    post.summary.as_deref().unwrap_or(&post.content),
                    &config.base_url,
                )),
                content: Some(absolutize(&post.content, &config.base_url)),
                categories: post
                    .tags
                    .iter()
                    .map(|t| rss::Category {
                        name: t.clone(),
                        domain: None,
                    })
                    .collect(),
                dublin_core_ext: {
                    let names = author_names(site, post);
                    (!names.is_empty()).then(|| rss::extension::dublincore::DublinCoreExtension {
                        creators: names,
                        ..Default::default()
                    })
                },
                ..Default::default()
            }
        })
        .collect();
    let channel = rss::Channel {
        title: config.title.clone(),
        link: config.absolute("/"),
        description: if config.description.is_empty() {
            config.title.clone()
        } else {
            config.description.clone()
        },
        language: Some(config.language.clone()),
        last_build_date: Some(last_change(site).to_rfc2822()),
        items,
        ..Default::default()
    };
    channel.to_string()
}

/// Every HTML page of the site, with the last change of posts and dated pages.
pub fn sitemap(site: &Site) -> String {
    let mut urls: Vec<(String, Option<DateTime<FixedOffset>>)> = Vec::new();
    for n in 1..=site.home_page_count() {
        let newest = site.posts.get((n - 1) * site.config.paginate_by);
        urls.push((
            Site::home_page_path(n),
            newest.and_then(|p| p.updated.or(p.date)),
        ));
    }
    for doc in site.posts.iter().chain(&site.pages) {
        urls.push((doc.path.clone(), doc.updated.or(doc.date)));
    }
    for i in site.listed_sections() {
        let section = &site.sections[i];
        let newest = section.posts.iter().filter_map(|&p| site.posts.get(p));
        let lastmod = newest.filter_map(|p| p.updated.or(p.date)).max();
        urls.push((section.path.clone(), lastmod));
    }
    if !site.tags.is_empty() {
        urls.push(("/tags/".into(), None));
    }
    for tag in &site.tags {
        let newest = tag.posts.first().and_then(|&i| site.posts.get(i));
        urls.push((tag.path(), newest.and_then(|p| p.updated.or(p.date))));
    }
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
    );
    for (path, lastmod) in urls {
        xml.push_str("  <url><loc>");
        xml.push_str(&escape_xml(&site.config.absolute(&path)));
        xml.push_str("</loc>");
        if let Some(date) = lastmod {
            xml.push_str("<lastmod>");
            xml.push_str(&date.to_rfc3339());
            xml.push_str("</lastmod>");
        }
        xml.push_str("</url>\n");
    }
    xml.push_str("</urlset>\n");
    xml
}

pub fn robots(site: &Site) -> String {
    format!(
        "User-agent: *\nAllow: /\n\nSitemap: {}\n",
        site.config.absolute(SITEMAP_PATH)
    )
}

fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, post};
    use super::super::{LoadOptions, Site};
    use super::*;
    use quick_xml::events::Event;
    use std::path::Path;

    #[test]
    fn absolutize_makes_root_relative_links_and_sources_absolute_only() {
        let html = "<p><a href=\"/posts/a/\">a</a> <img src=\"/i/b.png\" alt=\"x\"> \
                    <a href=\"//cdn.example/c\">c</a> <a title=\"/not-a-link\">d</a> \
                    <a href=\"https://other.example/e\">é</a> data-x=\"/f\"</p>";
        assert_eq!(
            absolutize(html, "https://blog.example"),
            "<p><a href=\"https://blog.example/posts/a/\">a</a> \
             <img src=\"https://blog.example/i/b.png\" alt=\"x\"> \
             <a href=\"//cdn.example/c\">c</a> <a title=\"/not-a-link\">d</a> \
             <a href=\"https://other.example/e\">é</a> data-x=\"/f\"</p>"
        );
        assert_eq!(absolutize("", "https://blog.example"), "");
        assert_eq!(absolutize("=\"/", "https://b"), "=\"/");
    }

    fn site(n: usize) -> Site {
        let posts = (1..=n)
            .map(|i| {
                let mut p = post(
                    &format!("p{i}"),
                    &format!("2024-01-{i:02}T10:00:00+02:00"),
                    &["rust"],
                );
                p.authors = vec!["ada".into()];
                p.content = format!("<p><img src=\"/posts/p{i}/a.png\" alt=\"x\"> &amp; <a href=\"//cdn.example/x\">cdn</a></p>");
                p
            })
            .collect();
        Site::assemble(
            Path::new("/nowhere"),
            config(),
            posts,
            Vec::new(),
            LoadOptions::default(),
        )
        .unwrap()
    }

    /// Texts of every element named `name`, checking that the document is well-formed.
    fn texts(xml: &str, name: &[u8]) -> Vec<String> {
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut out = Vec::new();
        let mut inside = false;
        loop {
            match reader.read_event().unwrap() {
                Event::Start(e) if e.local_name().as_ref() == name => {
                    inside = true;
                    out.push(String::new());
                }
                Event::End(e) if e.local_name().as_ref() == name => inside = false,
                Event::Text(t) if inside => {
                    out.last_mut().unwrap().push_str(&t.unescape().unwrap())
                }
                Event::CData(t) if inside => out
                    .last_mut()
                    .unwrap()
                    .push_str(std::str::from_utf8(&t).unwrap()),
                Event::Eof => break,
                _ => {}
            }
        }
        out
    }

    #[test]
    fn atom_feed_parses_back() {
        let site = site(25);
        let xml = atom(&site);
        let feed: atom::Feed = xml.parse().unwrap();
        assert_eq!(feed.entries.len(), FEED_LIMIT);
        let first = &feed.entries[0];
        assert_eq!(first.id, "https://blog.example/posts/p25/");
        assert_eq!(first.authors[0].name, "Ada L");
        let content = first.content.as_ref().unwrap().value.as_deref().unwrap();
        assert!(
            content.contains("src=\"https://blog.example/posts/p25/a.png\""),
            "{content}"
        );
        assert!(content.contains("href=\"//cdn.example/x\""), "{content}");
        assert_eq!(feed.updated.to_rfc3339(), "2024-01-25T10:00:00+02:00");
        assert_eq!(texts(&xml, b"title")[0], "Blog");
    }

    #[test]
    fn rss_feed_parses_back() {
        let site = site(3);
        let xml = rss(&site);
        let channel: rss::Channel = xml.parse().unwrap();
        assert_eq!(channel.items.len(), 3);
        let item = &channel.items[0];
        assert_eq!(item.link.as_deref(), Some("https://blog.example/posts/p3/"));
        assert_eq!(
            item.pub_date.as_deref(),
            Some("Wed, 3 Jan 2024 10:00:00 +0200")
        );
        assert!(item
            .content
            .as_deref()
            .unwrap()
            .contains("https://blog.example/posts/p3/a.png"));
        assert_eq!(item.categories[0].name, "rust");
        assert_eq!(
            texts(&xml, b"link"),
            vec![
                "https://blog.example/",
                "https://blog.example/posts/p3/",
                "https://blog.example/posts/p2/",
                "https://blog.example/posts/p1/"
            ]
        );
    }

    #[test]
    fn sitemap_lists_every_page() {
        let site = site(3);
        let locs = texts(&sitemap(&site), b"loc");
        assert_eq!(
            locs,
            vec![
                "https://blog.example/",
                "https://blog.example/page/2/",
                "https://blog.example/posts/p3/",
                "https://blog.example/posts/p2/",
                "https://blog.example/posts/p1/",
                "https://blog.example/tags/",
                "https://blog.example/tags/rust/",
            ]
        );
        assert!(robots(&site).contains("Sitemap: https://blog.example/sitemap.xml"));
    }

    #[test]
    fn empty_site_feeds_are_valid_and_stable() {
        let site = site(0);
        let feed: atom::Feed = atom(&site).parse().unwrap();
        assert!(feed.entries.is_empty());
        assert_eq!(atom(&site), atom(&site));
        let _: rss::Channel = rss(&site).parse().unwrap();
    }
}
