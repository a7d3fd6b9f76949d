//! Links a post page to its fediverse object, in place. The page is streamed through
//! lol_html and only what is missing or stale is touched: the `<link rel="alternate"
//! type="application/activity+json">` and `<meta name="fediverse:creator">` in `<head>`, and
//! optionally the replies-and-reactions section with its script after the `<article>`.
//! Every other byte stays as the generator wrote it, and a second run changes nothing.

use std::cell::Cell;
use std::rc::Rc;

use lol_html::html_content::ContentType;
use lol_html::{element, rewrite_str, RewriteStrSettings};

use crate::content::escape_html;

use super::page::PageFacts;

/// What a post page should carry.
#[derive(Debug, Clone)]
pub struct PageLinks {
    /// The object id, `https://blog.example/ap/posts/hello.json`.
    pub object_url: String,
    /// `@blog@blog.example`.
    pub creator: String,
    /// The replies-and-reactions section and script, when asked for.
    pub interactions: Option<InteractionsBlock>,
}

/// What the theme's `interactions.js` needs on the page.
#[derive(Debug, Clone)]
pub struct InteractionsBlock {
    /// Site path of the inbox's interactions endpoint for this post (`data-source`).
    pub source: String,
    pub permalink: String,
    /// Site path of the script.
    pub script: String,
}

impl InteractionsBlock {
    fn html(&self) -> String {
        format!(
            "\n<section class=\"fediverse-interactions\" id=\"interactions\" \
             aria-labelledby=\"interactions-title\" data-source=\"{source}\">\n\
             <h2 id=\"interactions-title\">Replies and reactions</h2>\n\
             <p class=\"no-replies\">No replies yet.</p>\n\
             <p class=\"how-to-reply\">To reply from Mastodon or another fediverse app, paste \
             this address into its search box, open the post it finds and answer it:</p>\n\
             <p><code class=\"handle\">{permalink}</code></p>\n</section>\n\
             <script src=\"{script}\" defer></script>",
            source = escape_html(&self.source),
            permalink = escape_html(&self.permalink),
            script = escape_html(&self.script),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("the page has neither a </head> nor a <body> tag to put the fediverse links at")]
    NoHead,
    #[error("cannot rewrite the page: {0}")]
    Html(String),
}

/// The page with the links it lacks; `None` when it already has all of them as wanted.
pub fn link_page(
    html: &str,
    facts: &PageFacts,
    links: &PageLinks,
) -> Result<Option<String>, RewriteError> {
    let has_section = html_has_interactions(html);
    let wants_section = links.interactions.is_some();
    let up_to_date = facts.object_link.as_deref() == Some(links.object_url.as_str())
        && facts.creator.as_deref() == Some(links.creator.as_str())
        && (!wants_section || has_section.as_ref().is_some_and(|s| s.complete(links)));
    if up_to_date {
        return Ok(None);
    }

    let mut head_insert = String::new();
    if facts.object_link.is_none() {
        head_insert.push_str(&format!(
            "<link rel=\"alternate\" type=\"application/activity+json\" href=\"{}\">\n",
            escape_html(&links.object_url)
        ));
    }
    if facts.creator.is_none() {
        head_insert.push_str(&format!(
            "<meta name=\"fediverse:creator\" content=\"{}\">\n",
            escape_html(&links.creator)
        ));
    }
    let section_insert = match (&links.interactions, has_section) {
        (Some(block), None) => Some(block.html()),
        _ => None,
    };
    let head_done = Rc::new(Cell::new(head_insert.is_empty()));
    let section_done = Rc::new(Cell::new(section_insert.is_none()));

    let object_url = links.object_url.clone();
    let creator = links.creator.clone();
    let source = links
        .interactions
        .as_ref()
        .map(|b| b.source.clone())
        .unwrap_or_default();
    let settings = RewriteStrSettings::new()
        .append_element_content_handler(element!(
            "link[rel~='alternate'][type='application/activity+json']",
            |el| {
                if el.get_attribute("href").as_deref() != Some(object_url.as_str()) {
                    el.set_attribute("href", &object_url)?;
                }
                Ok(())
            }
        ))
        .append_element_content_handler(element!("meta[name='fediverse:creator']", |el| {
            if el.get_attribute("content").as_deref() != Some(creator.as_str()) {
                el.set_attribute("content", &creator)?;
            }
            Ok(())
        }))
        .append_element_content_handler(element!("#interactions[data-source]", |el| {
            if wants_section && el.get_attribute("data-source").as_deref() != Some(&source) {
                el.set_attribute("data-source", &source)?;
            }
            Ok(())
        }))
        .append_element_content_handler(element!("head", |el| {
            let done = head_done.clone();
            let insert = head_insert.clone();
            let handler: lol_html::EndTagHandler<'static> = Box::new(move |end| {
                if !done.get() {
                    end.before(&insert, ContentType::Html);
                    done.set(true);
                }
                Ok(())
            });
            el.on_end_tag(handler)?;
            Ok(())
        }))
        .append_element_content_handler(element!("body", |el| {
            // `</head>` may be omitted (HTML allows it; minifiers do it).
            if !head_done.get() {
                el.before(&head_insert, ContentType::Html);
                head_done.set(true);
            }
            if let Some(section) = section_insert.clone() {
                let done = section_done.clone();
                let handler: lol_html::EndTagHandler<'static> = Box::new(move |end| {
                    if !done.get() {
                        end.before(&section, ContentType::Html);
                        done.set(true);
                    }
                    Ok(())
                });
                el.on_end_tag(handler)?;
            }
            Ok(())
        }))
        .append_element_content_handler(element!("article", |el| {
            if let Some(section) = section_insert.clone() {
                let done = section_done.clone();
                let handler: lol_html::EndTagHandler<'static> = Box::new(move |end| {
                    if !done.get() {
                        end.after(&section, ContentType::Html);
                        done.set(true);
                    }
                    Ok(())
                });
                el.on_end_tag(handler)?;
            }
            Ok(())
        }));
    let rewritten = rewrite_str(html, settings).map_err(|e| RewriteError::Html(e.to_string()))?;
    if !head_done.get() {
        return Err(RewriteError::NoHead);
    }
    Ok((rewritten != html).then_some(rewritten))
}

/// The interactions section already on a page, if any.
struct ExistingSection {
    source: Option<String>,
    script: bool,
}

impl ExistingSection {
    fn complete(&self, links: &PageLinks) -> bool {
        links.interactions.as_ref().is_some_and(|block| {
            self.source.as_deref() == Some(block.source.as_str()) && self.script
        })
    }
}

fn html_has_interactions(html: &str) -> Option<ExistingSection> {
    let doc = scraper::Html::parse_document(html);
    let section = scraper::Selector::parse("#interactions").ok()?;
    let script = scraper::Selector::parse("script[src]").ok()?;
    let found = doc.select(&section).next()?;
    Some(ExistingSection {
        source: found.value().attr("data-source").map(str::to_string),
        script: doc.select(&script).any(|s| {
            s.value()
                .attr("src")
                .is_some_and(|src| src.ends_with("interactions.js"))
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::page::read_page;

    fn links(with_section: bool) -> PageLinks {
        PageLinks {
            object_url: "https://b.example/ap/posts/hi.json".into(),
            creator: "@blog@b.example".into(),
            interactions: with_section.then(|| InteractionsBlock {
                source: "/ap/interactions?post=https%3A%2F%2Fb.example%2Fap%2Fposts%2Fhi.json"
                    .into(),
                permalink: "https://b.example/posts/hi/".into(),
                script: "/interactions.js".into(),
            }),
        }
    }

    fn run(html: &str, links: &PageLinks) -> Option<String> {
        link_page(html, &read_page(html), links).unwrap()
    }

    const PAGE: &str = "<!DOCTYPE html>\n<html>\n<head>\n  <meta charset=utf-8>\n  <title>Hi</title>\n</head>\n<body class=x>\n<article><p>Hi  <b>there</b></p></article>\n<footer>f</footer>\n</body>\n</html>\n";

    #[test]
    fn adds_the_links_once_and_keeps_every_other_byte() {
        let once = run(PAGE, &links(false)).expect("changed");
        assert_eq!(
            once,
            PAGE.replace(
                "</head>",
                "<link rel=\"alternate\" type=\"application/activity+json\" \
                 href=\"https://b.example/ap/posts/hi.json\">\n\
                 <meta name=\"fediverse:creator\" content=\"@blog@b.example\">\n</head>"
            )
        );
        assert_eq!(
            run(&once, &links(false)),
            None,
            "a second run changes nothing"
        );
    }

    #[test]
    fn the_interactions_section_follows_the_article() {
        let once = run(PAGE, &links(true)).expect("changed");
        let (before, after) = once.split_once("</article>").unwrap();
        assert!(before.contains("<p>Hi  <b>there</b></p>"));
        assert!(after.starts_with("\n<section class=\"fediverse-interactions\""));
        assert!(after.contains(
            "data-source=\"/ap/interactions?post=https%3A%2F%2Fb.example%2Fap%2Fposts%2Fhi.json\""
        ));
        assert!(after.contains("<script src=\"/interactions.js\" defer></script>\n<footer>"));
        assert_eq!(run(&once, &links(true)), None);
    }

    #[test]
    fn a_stale_link_is_updated_in_place() {
        let once = run(PAGE, &links(false)).unwrap();
        let mut moved = links(false);
        moved.object_url = "https://new.example/ap/posts/hi.json".into();
        let twice = run(&once, &moved).unwrap();
        assert_eq!(twice.matches("application/activity+json").count(), 1);
        assert!(twice.contains("href=\"https://new.example/ap/posts/hi.json\""));
    }

    #[test]
    fn a_page_without_head_end_tag_gets_links_before_body() {
        let html = "<!doctype html><html><head><title>x</title><body><p>y</p></body></html>";
        let once = run(html, &links(false)).unwrap();
        assert!(once.contains("<title>x</title><link rel=\"alternate\""));
        assert!(once.ends_with("<body><p>y</p></body></html>"));
        assert_eq!(run(&once, &links(false)), None);
        let err = link_page("just text", &read_page("just text"), &links(false)).unwrap_err();
        assert!(matches!(err, RewriteError::NoHead), "{err}");
    }
}
