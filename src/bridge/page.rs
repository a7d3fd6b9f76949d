//! What a post's own HTML page says about it: `h-entry` microformats, `<article>`,
//! OpenGraph and `<meta>` tags, read with a real HTML parser. Used where the feed is silent
//! (Hugo's default RSS has summaries only, many feeds have no tags or images).

use chrono::{DateTime, FixedOffset};
use scraper::{ElementRef, Html, Selector};

use crate::content::parse_date;

/// Facts found on a post page; each may be missing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageFacts {
    pub title: Option<String>,
    pub published: Option<DateTime<FixedOffset>>,
    pub updated: Option<DateTime<FixedOffset>>,
    /// Plain text (`description` / `og:description` / `p-summary`).
    pub description: Option<String>,
    /// Inner HTML of the post body.
    pub content: Option<String>,
    pub tags: Vec<String>,
    pub authors: Vec<String>,
    /// Lead image URL and its description.
    pub image: Option<String>,
    pub image_alt: Option<String>,
    /// `<html lang>`.
    pub language: Option<String>,
    /// What the page already carries for the fediverse.
    pub object_link: Option<String>,
    pub creator: Option<String>,
}

/// Selectors are constants: a failure to parse one is a programming error caught by tests.
fn selector(css: &str) -> Selector {
    Selector::parse(css).unwrap_or_else(|e| panic!("bad selector {css:?}: {e}"))
}

fn text_of(element: ElementRef<'_>) -> String {
    element
        .text()
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn non_empty(text: impl AsRef<str>) -> Option<String> {
    let text = text.as_ref().trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// Reads the facts of the page `html`.
pub fn read_page(html: &str) -> PageFacts {
    let doc = Html::parse_document(html);
    let first = |css: &str| doc.select(&selector(css)).next();
    let meta = |css: &str| {
        first(css)
            .and_then(|e| e.value().attr("content"))
            .and_then(non_empty)
    };
    let metas = |css: &str| -> Vec<String> {
        doc.select(&selector(css))
            .filter_map(|e| e.value().attr("content").and_then(non_empty))
            .collect()
    };
    let entry = first(".h-entry");
    let within = |css: &str| -> Option<ElementRef<'_>> {
        let sel = selector(css);
        match entry {
            Some(root) => root.select(&sel).next(),
            None => doc.select(&sel).next(),
        }
    };
    let within_all = |css: &str| -> Vec<ElementRef<'_>> {
        let sel = selector(css);
        match entry {
            Some(root) => root.select(&sel).collect(),
            None => doc.select(&sel).collect(),
        }
    };
    let time_of = |e: ElementRef<'_>| {
        e.value()
            .attr("datetime")
            .map(str::to_string)
            .or_else(|| non_empty(text_of(e)))
            .and_then(|t| parse_date(&t))
    };

    let title = within(".p-name")
        .map(text_of)
        .and_then(non_empty)
        .or_else(|| meta("meta[property='og:title']"))
        .or_else(|| first("article h1").map(text_of).and_then(non_empty))
        .or_else(|| first("title").map(text_of).and_then(non_empty));
    let published = within(".dt-published")
        .and_then(time_of)
        .or_else(|| meta("meta[property='article:published_time']").and_then(|t| parse_date(&t)))
        .or_else(|| first("article time[datetime]").and_then(time_of));
    let updated = within(".dt-updated")
        .and_then(time_of)
        .or_else(|| meta("meta[property='article:modified_time']").and_then(|t| parse_date(&t)))
        .filter(|u| Some(*u) != published);
    let description = within(".p-summary")
        .map(text_of)
        .and_then(non_empty)
        .or_else(|| meta("meta[name='description']"))
        .or_else(|| meta("meta[property='og:description']"));
    let content = [".e-content", "[itemprop='articleBody']"]
        .iter()
        .find_map(|css| within(css))
        .map(|e| e.inner_html())
        .or_else(|| {
            ["article", "main"]
                .iter()
                .find_map(|css| first(css))
                .map(article_body)
        })
        .and_then(non_empty);
    let mut tags: Vec<String> = within_all(".p-category")
        .into_iter()
        .filter_map(|e| non_empty(text_of(e)))
        .collect();
    if tags.is_empty() {
        tags = metas("meta[property='article:tag']");
    }
    if tags.is_empty() {
        tags = doc
            .select(&selector("article a[rel~='tag']"))
            .filter_map(|e| non_empty(text_of(e)))
            .map(|t| t.trim_start_matches('#').to_string())
            .collect();
    }
    let mut authors: Vec<String> = within_all(".p-author")
        .into_iter()
        .filter_map(|e| {
            e.select(&selector(".p-name"))
                .next()
                .map(text_of)
                .or_else(|| Some(text_of(e)))
                .and_then(non_empty)
        })
        .collect();
    if authors.is_empty() {
        authors = metas("meta[name='author']");
    }
    let image = meta("meta[property='og:image']")
        .or_else(|| meta("meta[property='og:image:url']"))
        .or_else(|| {
            within(".u-photo, .u-featured")
                .and_then(|e| e.value().attr("src").or_else(|| e.value().attr("href")))
                .and_then(non_empty)
        });
    let image_alt = meta("meta[property='og:image:alt']");
    let language = first("html")
        .and_then(|e| e.value().attr("lang"))
        .and_then(non_empty);
    let object_link = first("link[rel~='alternate'][type='application/activity+json']")
        .and_then(|e| e.value().attr("href"))
        .map(str::to_string);
    let creator = meta("meta[name='fediverse:creator']");
    PageFacts {
        title,
        published,
        updated,
        description,
        content,
        tags,
        authors,
        image,
        image_alt,
        language,
        object_link,
        creator,
    }
}

/// Elements of an `<article>` that frame the post rather than belong to it: its title,
/// dates, tag lists and navigation, which the federated object carries otherwise.
const FRAME_ELEMENTS: &[&str] = &[
    "header", "footer", "nav", "h1", "time", "script", "style", "aside", "form", "button",
];
const FRAME_CLASSES: &[&str] = &["tags", "meta", "share", "byline", "post-meta"];

/// The inner HTML of an `<article>` without its frame (see [`FRAME_ELEMENTS`]).
fn article_body(article: ElementRef<'_>) -> String {
    let mut html = String::new();
    for child in article.children() {
        if let Some(element) = ElementRef::wrap(child) {
            let name = element.value().name();
            let framed = FRAME_ELEMENTS.contains(&name)
                || element
                    .value()
                    .classes()
                    .any(|c| FRAME_CLASSES.contains(&c));
            if !framed {
                html.push_str(&element.html());
            }
        } else if let Some(text) = child.value().as_text() {
            html.push_str(&crate::content::escape_html(text));
        }
    }
    html
}

/// An image a fragment of HTML shows: its `src` as written and its `alt`.
pub fn images_in(html: &str) -> Vec<(String, String)> {
    let fragment = Html::parse_fragment(html);
    fragment
        .select(&selector("img[src]"))
        .filter_map(|e| {
            let src = non_empty(e.value().attr("src")?)?;
            Some((src, e.value().attr("alt").unwrap_or_default().to_string()))
        })
        .collect()
}

/// Rewrites every relative `href` and `src` of a fragment of post HTML to an absolute URL
/// resolved against the page's: a feed's or page's `cat.png` means nothing on another
/// server. Everything else of the fragment is kept byte for byte.
pub fn absolute_links(html: &str, page_url: &url::Url) -> String {
    use lol_html::{element, rewrite_str, RewriteStrSettings};
    let resolve = |el: &mut lol_html::html_content::Element, attr: &str| {
        if let Some(value) = el.get_attribute(attr) {
            let relative = url::Url::parse(&value).is_err() && !value.starts_with('#');
            if relative {
                if let Ok(absolute) = page_url.join(&value) {
                    // Cannot fail: the attribute name is a constant.
                    let _ = el.set_attribute(attr, absolute.as_str());
                }
            }
        }
    };
    let settings = RewriteStrSettings::new()
        .append_element_content_handler(element!("[href]", |el| {
            resolve(el, "href");
            Ok(())
        }))
        .append_element_content_handler(element!("[src]", |el| {
            resolve(el, "src");
            Ok(())
        }));
    // A fragment lol_html cannot rewrite is kept as it was: links stay relative.
    rewrite_str(html, settings).unwrap_or_else(|_| html.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<!doctype html><html lang="de"><head>
<title>Hallo · Blog</title>
<meta name="description" content="Ein Gruß">
<meta property="og:title" content="Hallo OG">
<meta property="og:image" content="https://b.example/posts/hallo/lead.jpg">
<meta property="og:image:alt" content="Ein See">
<meta property="article:published_time" content="2024-05-01T10:00:00+02:00">
<meta property="article:tag" content="reisen">
</head><body><main>
<article class="h-entry"><h1 class="p-name">Hallo Welt</h1>
<time class="dt-published" datetime="2024-05-01T09:00:00+02:00">1. Mai</time>
<a class="p-author h-card" href="/"><span class="p-name">Ann</span></a>
<div class="e-content"><p>Text <img src="see.jpg" alt="See"></p></div>
<a class="p-category" href="/tags/berge/">berge</a>
</article></main></body></html>"#;

    #[test]
    fn microformats_win_then_meta_tags() {
        let facts = read_page(PAGE);
        assert_eq!(facts.title.as_deref(), Some("Hallo Welt"));
        assert_eq!(
            facts.published.unwrap().to_rfc3339(),
            "2024-05-01T09:00:00+02:00"
        );
        assert_eq!(facts.description.as_deref(), Some("Ein Gruß"));
        let content = facts.content.unwrap();
        assert!(content.starts_with("<p>Text <img"), "{content}");
        assert!(content.contains("src=\"see.jpg\""), "{content}");
        assert_eq!(facts.tags, ["berge"]);
        assert_eq!(facts.authors, ["Ann"]);
        assert_eq!(
            facts.image.as_deref(),
            Some("https://b.example/posts/hallo/lead.jpg")
        );
        assert_eq!(facts.image_alt.as_deref(), Some("Ein See"));
        assert_eq!(facts.language.as_deref(), Some("de"));
    }

    #[test]
    fn a_plain_page_falls_back_to_article_and_meta() {
        let facts = read_page(
            "<html><head><title>T</title><meta property=\"article:tag\" content=\"x\">\
             <meta property=\"article:published_time\" content=\"2024-01-02\"></head>\
             <body><article><h1>Head</h1><p>Body</p></article></body></html>",
        );
        assert_eq!(facts.title.as_deref(), Some("Head"));
        assert_eq!(facts.tags, ["x"]);
        assert!(facts.published.is_some());
        assert_eq!(facts.content.as_deref(), Some("<p>Body</p>"));
    }

    #[test]
    fn relative_links_become_absolute_and_nothing_else_moves() {
        let page = url::Url::parse("https://b.example/posts/hallo/").unwrap();
        let html = "<p class='x'>A <a href=\"../other/\">b</a> <img src=\"see.jpg\" alt=\"\"> \
                    <a href=\"#fn\">1</a> <a href=\"https://e.example/\">e</a></p>";
        assert_eq!(
            absolute_links(html, &page),
            "<p class='x'>A <a href=\"https://b.example/posts/other/\">b</a> \
             <img src=\"https://b.example/posts/hallo/see.jpg\" alt=\"\"> \
             <a href=\"#fn\">1</a> <a href=\"https://e.example/\">e</a></p>"
        );
        assert_eq!(
            images_in("<p><img src=\"a.png\" alt=\"A\"><img alt=\"none\"></p>"),
            [("a.png".to_string(), "A".to_string())]
        );
    }
}
