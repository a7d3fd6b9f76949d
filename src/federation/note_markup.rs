//! Tables and footnotes as Mastodon can show them. Mastodon keeps only a few tags of a
//! remote status (`MASTODON_STRICT` in `app/lib/sanitize_config.rb`: p, br, span, a, del,
//! s, pre, blockquote, code, b, strong, u, i, em, ul, ol, li, ruby, rt, rp) and drops the
//! others, keeping their text: a table would arrive as its cells run together and a
//! footnote marker as a digit glued to the word before it. The Note's HTML is reshaped
//! into those tags instead: a table becomes a paragraph with a line per row and cells
//! separated by ` | ` (header cells in bold), a footnote marker becomes `[1]` linking to the
//! footnote on the page, and the footnotes become numbered paragraphs at the end.

use std::cell::{Cell, RefCell};

use lol_html::html_content::ContentType;
use lol_html::{element, rewrite_str, text, RewriteStrSettings};

/// What of a post's HTML Mastodon would not show as written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Markup {
    pub table: bool,
    pub footnote: bool,
}

impl Markup {
    /// Spots the tables and footnotes of Markdown rendered by `content` (pulldown-cmark's
    /// markup, which is all `reshape` knows).
    pub fn of(html: &str) -> Markup {
        Markup {
            table: html.contains("<table"),
            footnote: html.contains("class=\"footnote-reference\"")
                || html.contains("class=\"footnote-definition\""),
        }
    }
}

/// Footnote definitions are wrapped in these while rewriting, then moved to the end.
const FOOTNOTE_START: &str = "<!--relais-footnote-->";
const FOOTNOTE_END: &str = "<!--/relais-footnote-->";

/// `html` with tables and footnotes reshaped (see the module doc); `page_url` is where the
/// footnotes' anchors live. HTML with neither is returned as it is.
pub fn reshape(html: &str, page_url: &str) -> String {
    let markup = Markup::of(html);
    if markup == Markup::default() {
        return html.to_string();
    }
    // A Markdown table cell cannot hold a line break, so every one inside a table is
    // layout between tags, which Mastodon (pre-wrap) would show as blank lines.
    let html = strip_table_newlines(html);
    let first_row = Cell::new(true);
    let first_cell = Cell::new(true);
    let label = RefCell::new(String::new());
    let settings = RewriteStrSettings::new()
        .append_element_content_handler(element!("table", |el| {
            first_row.set(true);
            el.before("<p>", ContentType::Html);
            el.after("</p>", ContentType::Html);
            el.remove_and_keep_content();
            Ok(())
        }))
        .append_element_content_handler(element!("thead, tbody, tfoot", |el| {
            el.remove_and_keep_content();
            Ok(())
        }))
        .append_element_content_handler(element!("tr", |el| {
            if !first_row.replace(false) {
                el.before("<br>", ContentType::Html);
            }
            first_cell.set(true);
            el.remove_and_keep_content();
            Ok(())
        }))
        .append_element_content_handler(element!("td, th", |el| {
            if !first_cell.replace(false) {
                el.before(" | ", ContentType::Text);
            }
            if el.tag_name() == "th" {
                el.prepend("<strong>", ContentType::Html);
                el.append("</strong>", ContentType::Html);
            }
            el.remove_and_keep_content();
            Ok(())
        }))
        .append_element_content_handler(element!("sup.footnote-reference", |el| {
            el.remove_and_keep_content();
            Ok(())
        }))
        .append_element_content_handler(element!("sup.footnote-reference > a[href]", |el| {
            if let Some(fragment) = el.get_attribute("href").filter(|h| h.starts_with('#')) {
                // Cannot fail: the attribute name is a constant.
                let _ = el.set_attribute("href", &format!("{page_url}{fragment}"));
            }
            el.prepend("[", ContentType::Text);
            el.append("]", ContentType::Text);
            Ok(())
        }))
        .append_element_content_handler(element!("div.footnote-definition", |el| {
            el.before(FOOTNOTE_START, ContentType::Html);
            el.after(FOOTNOTE_END, ContentType::Html);
            el.remove_and_keep_content();
            Ok(())
        }))
        .append_element_content_handler(element!("sup.footnote-definition-label", |el| {
            label.borrow_mut().clear();
            el.remove_and_keep_content();
            Ok(())
        }))
        .append_element_content_handler(text!("sup.footnote-definition-label", |t| {
            label.borrow_mut().push_str(t.as_str());
            t.remove();
            Ok(())
        }))
        .append_element_content_handler(element!("div.footnote-definition > p", |el| {
            let label = std::mem::take(&mut *label.borrow_mut());
            if !label.is_empty() {
                // The label is HTML text already (escaped by the Markdown renderer).
                el.prepend(&format!("[{label}] "), ContentType::Html);
            }
            Ok(())
        }));
    // HTML lol_html cannot parse is sent as it was: Mastodon then shows it flattened.
    let Ok(rewritten) = rewrite_str(&html, settings) else {
        return html;
    };
    move_footnotes_last(&rewritten)
}

fn strip_table_newlines(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find("<table") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("</table>")
            .map_or(rest.len(), |e| start + e + "</table>".len());
        out.extend(rest[start..end].chars().filter(|c| *c != '\n'));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn move_footnotes_last(html: &str) -> String {
    let mut body = String::with_capacity(html.len());
    let mut notes = String::new();
    let mut rest = html;
    while let Some(start) = rest.find(FOOTNOTE_START) {
        body.push_str(&rest[..start]);
        let inner = &rest[start + FOOTNOTE_START.len()..];
        let end = inner.find(FOOTNOTE_END).unwrap_or(inner.len());
        notes.push_str(inner[..end].trim());
        // The line break that followed the definition goes with it.
        rest = inner
            .get(end + FOOTNOTE_END.len()..)
            .unwrap_or("")
            .trim_start_matches('\n');
    }
    body.push_str(rest);
    let mut out = body.trim_end().to_string();
    out.push_str(&notes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "https://blog.example/posts/a/";

    /// What pulldown-cmark writes for a table between two footnote markers, with the
    /// definitions in the middle of the text.
    const HTML: &str = "<p>Text<sup class=\"footnote-reference\"><a href=\"#a\">1</a></sup> and more<sup class=\"footnote-reference\"><a href=\"#b\">2</a></sup>.</p>\n\
<div class=\"footnote-definition\" id=\"a\"><sup class=\"footnote-definition-label\">1</sup>\n<p>First &amp; only.</p>\n</div>\n\
<div class=\"footnote-definition\" id=\"b\"><sup class=\"footnote-definition-label\">2</sup>\n<p>Second\npara.</p>\n</div>\n\
<table><thead><tr><th style=\"text-align: left\">A</th><th style=\"text-align: right\">B</th></tr></thead><tbody>\n\
<tr><td style=\"text-align: left\">1</td><td style=\"text-align: right\"><code>x</code></td></tr>\n\
<tr><td style=\"text-align: left\">2</td><td style=\"text-align: right\"><a href=\"/y\">l</a></td></tr>\n\
</tbody></table>\n<p>After.</p>\n";

    #[test]
    fn tables_become_lines_and_footnotes_numbered_paragraphs_at_the_end() {
        let out = reshape(HTML, PAGE);
        assert_eq!(
            out,
            "<p>Text<a href=\"https://blog.example/posts/a/#a\">[1]</a> and more<a href=\"https://blog.example/posts/a/#b\">[2]</a>.</p>\n\
<p><strong>A</strong> | <strong>B</strong><br>1 | <code>x</code><br>2 | <a href=\"/y\">l</a></p>\n<p>After.</p>\
<p>[1] First &amp; only.</p><p>[2] Second\npara.</p>"
        );
        let kept = [
            "p",
            "br",
            "span",
            "a",
            "del",
            "s",
            "pre",
            "blockquote",
            "code",
            "b",
            "strong",
            "u",
            "i",
            "em",
            "ul",
            "ol",
            "li",
        ];
        for tag in out.split('<').skip(1) {
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            assert!(kept.contains(&name.as_str()), "<{tag} in {out}");
        }
    }

    #[test]
    fn html_without_tables_or_footnotes_is_untouched() {
        let html = "<p>Plain <sup>2</sup> text</p>\n<ul><li>x</li></ul>\n";
        assert_eq!(reshape(html, PAGE), html);
        assert_eq!(Markup::of(html), Markup::default());
        assert_eq!(
            Markup::of(HTML),
            Markup {
                table: true,
                footnote: true
            }
        );
    }
}
