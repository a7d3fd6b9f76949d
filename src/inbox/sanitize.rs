//! Remote HTML is cleaned before it is stored: what is in the store can go into a page as is.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

/// Mastodon's own safe subset (its `Sanitize::Config::MASTODON_STRICT`), links to http(s)
/// only, every link `nofollow noopener noreferrer`.
static CLEANER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut builder = ammonia::Builder::default();
    builder
        .tags(HashSet::from([
            "p",
            "br",
            "span",
            "a",
            "del",
            "pre",
            "code",
            "em",
            "strong",
            "b",
            "i",
            "u",
            "ul",
            "ol",
            "li",
            "blockquote",
        ]))
        .clean_content_tags(HashSet::from(["script", "style"]))
        .generic_attributes(HashSet::new())
        .tag_attributes(HashMap::from([("a", HashSet::from(["href"]))]))
        .allowed_classes(HashMap::from([
            (
                "span",
                HashSet::from(["h-card", "mention", "hashtag", "invisible", "ellipsis"]),
            ),
            ("a", HashSet::from(["mention", "hashtag", "u-url"])),
        ]))
        .url_schemes(HashSet::from(["http", "https"]))
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some("nofollow noopener noreferrer"));
    builder
});

pub fn sanitize_html(html: &str) -> String {
    CLEANER.clean(html).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_mastodon_reply_as_it_looks() {
        let html = r#"<p><span class="h-card" translate="no"><a href="https://blog.example/ap/users/blog.json" class="u-url mention">@<span>blog</span></a></span> Great post! <a href="https://m.example/tags/rust" class="mention hashtag" rel="tag">#<span>rust</span></a></p>"#;
        let clean = sanitize_html(html);
        assert_eq!(
            clean,
            r#"<p><span class="h-card"><a href="https://blog.example/ap/users/blog.json" class="u-url mention" rel="nofollow noopener noreferrer">@<span>blog</span></a></span> Great post! <a href="https://m.example/tags/rust" class="mention hashtag" rel="nofollow noopener noreferrer">#<span>rust</span></a></p>"#
        );
    }

    #[test]
    fn removes_scripts_handlers_styles_and_other_schemes() {
        let html = r#"<p onclick="x()" style="color:red">hi<script>alert(1)</script><img src="https://t.example/p.gif"><a href="javascript:alert(1)">j</a><a href="/relative">r</a><span class="evil invisible">s</span></p>"#;
        let clean = sanitize_html(html);
        assert_eq!(
            clean,
            r#"<p>hi<a rel="nofollow noopener noreferrer">j</a><a rel="nofollow noopener noreferrer">r</a><span class="invisible">s</span></p>"#
        );
    }

    #[test]
    fn keeps_structure_tags() {
        let html = "<blockquote><ul><li><em>a</em></li></ul><pre><code>b</code></pre></blockquote><h1>t</h1>";
        assert_eq!(
            sanitize_html(html),
            "<blockquote><ul><li><em>a</em></li></ul><pre><code>b</code></pre></blockquote>t"
        );
    }
}
