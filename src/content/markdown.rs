//! Markdown body → HTML, plain text, images, and the summary before `<!-- more -->`.

use std::collections::HashSet;

use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd};

use super::highlight::Highlighter;

const MORE_MARKER: &str = "<!-- more -->";

/// What the body of a document turned into.
#[derive(Debug, Default, PartialEq)]
pub struct Rendered {
    pub html: String,
    /// HTML of the part before `<!-- more -->`, when the marker is there.
    pub summary_html: Option<String>,
    pub text: String,
    /// Images in order: (rewritten src, alt text).
    pub images: Vec<(String, String)>,
    /// Ids a link can point at with `#id`: headings, footnotes, `id` attributes of raw HTML.
    pub anchors: Vec<String>,
    /// Links that may name a page of this site or an anchor: (rewritten URL, byte offset).
    /// Remote URLs (`https:`, `mailto:`, `//host`) are left out.
    pub site_links: Vec<(String, usize)>,
}

/// A problem at a byte offset of the body.
#[derive(Debug, PartialEq)]
pub struct MarkdownError {
    pub offset: usize,
    pub message: String,
}

/// Whether a URL is the target of a link or of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Link,
    Image,
}

pub fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_HEADING_ATTRIBUTES
}

/// Renders `body`. `resolve` rewrites (or rejects) each link and image URL; `image_size`
/// gives the pixel size of a resolved image URL when its file is known and readable.
pub fn render(
    body: &str,
    highlighter: &Highlighter,
    resolve: &dyn Fn(&str, Target) -> Result<String, String>,
    image_size: &dyn Fn(&str) -> Option<(u32, u32)>,
) -> Result<Rendered, MarkdownError> {
    let mut events: Vec<Event> = Vec::new();
    let mut text = String::new();
    let mut images = Vec::new();
    let mut more_at = None;
    let mut depth = 0usize;
    let mut code: Option<(String, String)> = None;
    // Index in `events` of the open heading or image, and the text gathered inside it.
    let mut heading: Option<(usize, String)> = None;
    let mut image_alt: Option<String> = None;
    // Index in `events` where the open image starts, and its resolved URL.
    let mut image_start: Option<(usize, String)> = None;
    let mut heading_ids = HashSet::new();
    let mut anchors = Vec::new();
    let mut site_links = Vec::new();

    for (event, range) in Parser::new_ext(body, options()).into_offset_iter() {
        let fail = |message: String| MarkdownError {
            offset: range.start,
            message,
        };
        match &event {
            Event::Start(_) => depth += 1,
            Event::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
        if let Some((_, buffer)) = &mut code {
            match event {
                Event::Text(t) => buffer.push_str(&t),
                Event::End(TagEnd::CodeBlock) => {
                    if let Some((lang, buffer)) = code.take() {
                        text.push_str(&buffer);
                        text.push('\n');
                        events.push(Event::Html(highlighter.code_block(&buffer, &lang).into()));
                    }
                }
                _ => {}
            }
            continue;
        }
        match event {
            Event::Start(Tag::CodeBlock(kind)) => {
                let lang = match kind {
                    // The info string may carry more than the language: "rust,ignore".
                    CodeBlockKind::Fenced(info) => info
                        .split(|c: char| c == ',' || c.is_whitespace())
                        .next()
                        .unwrap_or("")
                        .to_string(),
                    CodeBlockKind::Indented => String::new(),
                };
                code = Some((lang, String::new()));
            }
            Event::Start(Tag::Heading { .. }) => {
                heading = Some((events.len(), String::new()));
                events.push(event);
            }
            Event::End(TagEnd::Heading(level)) => {
                if let Some((index, title)) = heading.take() {
                    if let Event::Start(Tag::Heading {
                        id, classes, attrs, ..
                    }) = std::mem::replace(&mut events[index], Event::SoftBreak)
                    {
                        let id = match id {
                            Some(id) => id,
                            None => CowStr::from(unique_id(&title, &mut heading_ids)),
                        };
                        heading_ids.insert(id.to_string());
                        anchors.push(id.to_string());
                        events[index] = Event::Start(Tag::Heading {
                            level,
                            id: Some(id),
                            classes,
                            attrs,
                        });
                    }
                }
                text.push('\n');
                events.push(event);
            }
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                let dest = resolve(&dest_url, Target::Image).map_err(fail)?;
                image_alt = Some(String::new());
                images.push((dest.clone(), String::new()));
                image_start = Some((events.len(), dest.clone()));
                events.push(Event::Start(Tag::Image {
                    link_type,
                    dest_url: dest.into(),
                    title,
                    id,
                }));
            }
            Event::End(TagEnd::Image) => {
                if let (Some(alt), Some(last)) = (image_alt.take(), images.last_mut()) {
                    last.1 = alt.trim().to_string();
                }
                events.push(event);
                if let Some((start, dest)) = image_start.take() {
                    let img = sized_image(&events[start..], image_size(&dest));
                    events.truncate(start);
                    events.push(Event::InlineHtml(img.into()));
                }
            }
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                let dest = resolve(&dest_url, Target::Link).map_err(fail)?;
                if !dest.starts_with("//") && !has_scheme(&dest) {
                    site_links.push((dest.clone(), range.start));
                }
                events.push(Event::Start(Tag::Link {
                    link_type,
                    dest_url: dest.into(),
                    title,
                    id,
                }));
            }
            Event::Text(ref t) | Event::Code(ref t) => {
                if let Some(alt) = &mut image_alt {
                    alt.push_str(t);
                } else {
                    text.push_str(t);
                }
                if let Some((_, title)) = &mut heading {
                    title.push_str(t);
                }
                events.push(event);
            }
            Event::Start(Tag::FootnoteDefinition(ref label)) => {
                anchors.push(label.to_string());
                events.push(event);
            }
            Event::Html(ref html) | Event::InlineHtml(ref html)
                if html.trim() != MORE_MARKER || depth != 1 =>
            {
                anchors.extend(html_ids(html));
                events.push(event);
            }
            Event::Html(ref html) if html.trim() == MORE_MARKER && depth == 1 => {
                // The marker is an HTML block of its own: cut before the block started.
                let block_start = events
                    .iter()
                    .rposition(|e| matches!(e, Event::Start(Tag::HtmlBlock)))
                    .unwrap_or(events.len());
                more_at.get_or_insert(block_start);
                events.push(event);
            }
            Event::SoftBreak | Event::HardBreak => {
                text.push(' ');
                events.push(event);
            }
            Event::End(
                TagEnd::Paragraph | TagEnd::Item | TagEnd::TableCell | TagEnd::BlockQuote(_),
            ) => {
                text.push('\n');
                events.push(event);
            }
            other => events.push(other),
        }
    }

    let mut html = String::with_capacity(body.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events.iter().cloned());
    let summary_html = more_at.map(|at| {
        let mut summary = String::new();
        pulldown_cmark::html::push_html(&mut summary, events[..at].iter().cloned());
        summary
    });
    Ok(Rendered {
        html,
        summary_html,
        text: collapse_blank_lines(&text),
        images,
        anchors,
        site_links,
    })
}

/// The `<img>` of one image's events as pulldown-cmark writes it (its escaping kept), plus
/// its size, so the page does not jump as it loads, and `loading="lazy"`.
fn sized_image(events: &[Event], size: Option<(u32, u32)>) -> String {
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events.iter().cloned());
    let extra = match size {
        Some((width, height)) => format!(" width=\"{width}\" height=\"{height}\" loading=\"lazy\""),
        None => " loading=\"lazy\"".to_string(),
    };
    match html.strip_suffix(" />") {
        Some(open) => format!("{open}{extra} />"),
        None => html,
    }
}

/// Whether `url` starts with a scheme (`https:`, `mailto:`), so it leaves the site.
pub(super) fn has_scheme(url: &str) -> bool {
    match url.split_once(':') {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && !scheme.contains('/')
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// Values of `id` attributes in a piece of raw HTML (`<a id="here"></a>`), which links
/// may target as well as headings.
pub fn html_ids(html: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find("id=") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + 3..];
        if !before.is_some_and(char::is_whitespace) {
            continue;
        }
        let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        if let Some(end) = rest[1..].find(quote) {
            ids.push(rest[1..1 + end].to_string());
            rest = &rest[1 + end..];
        }
    }
    ids
}

/// Renders a short Markdown fragment (the front matter summary) without link checks.
pub fn render_fragment(markdown: &str) -> String {
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, Parser::new_ext(markdown, options()));
    html
}

fn unique_id(title: &str, taken: &mut HashSet<String>) -> String {
    let base = match slug::slugify(title) {
        s if s.is_empty() => "section".to_string(),
        s => s,
    };
    let mut id = base.clone();
    let mut n = 1;
    while taken.contains(&id) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

fn collapse_blank_lines(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(url: &str, _: Target) -> Result<String, String> {
        Ok(url.to_string())
    }

    fn render_ok(body: &str) -> Rendered {
        render(body, &Highlighter::new(None), &keep, &|_| None).unwrap()
    }

    #[test]
    fn extensions_are_on() {
        let r = render_ok(
            "| a | b |\n|---|---|\n| 1 | 2 |\n\n~~gone~~\n\n- [x] done\n\nNote[^1].\n\n[^1]: The footnote.\n",
        );
        assert!(r.html.contains("<table>"), "{}", r.html);
        assert!(r.html.contains("<del>gone</del>"), "{}", r.html);
        assert!(r.html.contains("type=\"checkbox\""), "{}", r.html);
        assert!(r.html.contains("footnote-definition"), "{}", r.html);
    }

    #[test]
    fn headings_get_unique_ids_and_keep_explicit_ones() {
        let r = render_ok("# Intro\n\n## Intro\n\n## Custom {#mine .wide}\n");
        assert!(r.html.contains("<h1 id=\"intro\">Intro</h1>"), "{}", r.html);
        assert!(
            r.html.contains("<h2 id=\"intro-1\">Intro</h2>"),
            "{}",
            r.html
        );
        assert!(r.html.contains("id=\"mine\""), "{}", r.html);
        assert!(r.html.contains("class=\"wide\""), "{}", r.html);
    }

    #[test]
    fn code_blocks_are_highlighted_and_kept_in_text() {
        let r = render_ok("```rust,ignore\nlet x = 1;\n```\n");
        assert!(r.html.contains("hl-code"), "{}", r.html);
        assert!(r.html.contains("language-rust"), "{}", r.html);
        assert!(r.text.contains("let x = 1;"));
    }

    #[test]
    fn images_are_collected_with_alt() {
        let r = render_ok("![A *red* cat](cat.png) and ![](x.jpg)\n");
        assert_eq!(
            r.images,
            vec![
                ("cat.png".to_string(), "A red cat".to_string()),
                ("x.jpg".to_string(), String::new())
            ]
        );
        assert!(
            !r.text.contains("red"),
            "alt text is not body text: {}",
            r.text
        );
    }

    #[test]
    fn images_get_their_size_and_load_lazily() {
        let size = |url: &str| (url == "cat.png").then_some((640, 480));
        let r = render(
            "![A \"cat\" & co](cat.png \"Title\") ![remote](https://x.test/a.png)\n",
            &Highlighter::new(None),
            &keep,
            &size,
        )
        .unwrap();
        assert!(
            r.html.contains("<img src=\"cat.png\" alt=\"A &quot;cat&quot; &amp; co\" title=\"Title\" width=\"640\" height=\"480\" loading=\"lazy\" />"),
            "{}",
            r.html
        );
        assert!(
            r.html
                .contains("<img src=\"https://x.test/a.png\" alt=\"remote\" loading=\"lazy\" />"),
            "{}",
            r.html
        );
    }

    #[test]
    fn more_marker_splits_summary() {
        let r = render_ok("First para.\n\n<!-- more -->\n\nSecond para.\n");
        assert_eq!(r.summary_html.as_deref(), Some("<p>First para.</p>\n"));
        assert!(r.html.contains("Second para."));
        assert!(render_ok("No marker.\n").summary_html.is_none());
    }

    #[test]
    fn resolver_errors_carry_the_offset() {
        let body = "Line one.\n\nSee ![x](missing.png).\n";
        let err = render(
            body,
            &Highlighter::new(None),
            &|url, target| {
                assert_eq!(target, Target::Image);
                Err(format!("no {url}"))
            },
            &|_| None,
        )
        .unwrap_err();
        assert_eq!(err.message, "no missing.png");
        assert_eq!(&body[..err.offset].matches('\n').count(), &2);
    }

    #[test]
    fn links_are_rewritten() {
        let r = render(
            "[a](b.pdf)",
            &Highlighter::new(None),
            &|url, _| Ok(format!("/x/{url}")),
            &|_| None,
        )
        .unwrap();
        assert!(r.html.contains("href=\"/x/b.pdf\""), "{}", r.html);
    }

    #[test]
    fn plain_text_and_word_count_source() {
        let r = render_ok("# Title\n\nHello *big* world.\nNext line.\n");
        assert_eq!(r.text, "Title\nHello big world. Next line.");
    }
}
