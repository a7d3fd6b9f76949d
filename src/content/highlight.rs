//! Syntax highlighting of fenced code blocks with syntect.
//!
//! By default code gets `hl-` prefixed CSS classes and the site ships a stylesheet generated
//! from a light and a dark syntect theme; `highlight_theme` switches to inline styles of one
//! theme (for feeds read without the site's CSS).

use crate::content::escape_html;
use std::sync::OnceLock;

use syntect::highlighting::ThemeSet;
use syntect::html::{
    css_for_theme_with_class_style, styled_line_to_highlighted_html, ClassStyle,
    ClassedHTMLGenerator, IncludeBackground,
};
use syntect::parsing::{SyntaxReference, SyntaxSet};
use syntect::util::LinesWithEndings;

const CLASS_STYLE: ClassStyle = ClassStyle::SpacedPrefixed { prefix: "hl-" };
const LIGHT_THEME: &str = "InspiredGitHub";
const DARK_THEME: &str = "base16-ocean.dark";
/// Comment colours readable on each theme's background (both themes grey them out to under
/// 3:1, which a real browser measured): about 4.5:1 and 5.5:1.
const LIGHT_COMMENTS: &str = "#6a737d";
const DARK_COMMENTS: &str = "#a0a8b4";

/// A rule for comments more specific than any of the themes' own.
fn comments(color: &str) -> String {
    format!(
        ".hl-code .hl-comment, .hl-code .hl-punctuation.hl-definition.hl-comment {{\n color: {color};\n}}\n"
    )
}

/// Highlights code; syntax and theme sets load on first use so a build whose documents all
/// come from the cache never pays for them.
pub struct Highlighter {
    inline_theme: Option<String>,
    syntaxes: OnceLock<SyntaxSet>,
    themes: OnceLock<ThemeSet>,
}

impl std::fmt::Debug for Highlighter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Highlighter")
            .field("style", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Highlighter {
    /// `inline_theme`: a syntect theme name for inline styles, `None` for CSS classes.
    pub fn new(inline_theme: Option<String>) -> Highlighter {
        Highlighter {
            inline_theme,
            syntaxes: OnceLock::new(),
            themes: OnceLock::new(),
        }
    }

    /// Checks that the configured inline theme exists.
    pub fn validate(&self) -> Result<(), String> {
        match &self.inline_theme {
            Some(name) if !self.themes().themes.contains_key(name) => {
                let mut known: Vec<&str> =
                    self.themes().themes.keys().map(String::as_str).collect();
                known.sort_unstable();
                Err(format!(
                    "highlight_theme {name:?} is not a syntect theme; known: {}",
                    known.join(", ")
                ))
            }
            _ => Ok(()),
        }
    }

    /// Identifies the output style, so cached HTML is not reused across a style change.
    pub fn fingerprint(&self) -> String {
        match &self.inline_theme {
            Some(name) => format!("inline:{name}"),
            None => "classes".into(),
        }
    }

    fn syntaxes(&self) -> &SyntaxSet {
        self.syntaxes.get_or_init(SyntaxSet::load_defaults_newlines)
    }

    fn themes(&self) -> &ThemeSet {
        self.themes.get_or_init(ThemeSet::load_defaults)
    }

    /// A whole `<pre>` block for `code` written in `lang` (a fence token such as `rust`).
    pub fn code_block(&self, code: &str, lang: &str) -> String {
        let syntaxes = self.syntaxes();
        let syntax = (!lang.is_empty())
            .then(|| syntaxes.find_syntax_by_token(lang))
            .flatten();
        let lang_attr = if lang.is_empty() {
            String::new()
        } else {
            format!(" data-lang=\"{}\"", escape_html(lang))
        };
        let code_class = if lang.is_empty() {
            String::new()
        } else {
            format!(" class=\"language-{}\"", escape_html(lang))
        };
        let highlighted = syntax.and_then(|syntax| match &self.inline_theme {
            None => self.classed(code, syntax),
            Some(theme) => self.inline(code, syntax, theme),
        });
        match highlighted {
            Some((pre_style, inner)) => format!(
                "<pre class=\"hl-code\"{lang_attr}{pre_style}><code{code_class}>{inner}</code></pre>\n"
            ),
            None => format!(
                "<pre class=\"hl-code\"{lang_attr}><code{code_class}>{}</code></pre>\n",
                escape_html(code)
            ),
        }
    }

    fn classed(&self, code: &str, syntax: &SyntaxReference) -> Option<(String, String)> {
        let mut generator =
            ClassedHTMLGenerator::new_with_class_style(syntax, self.syntaxes(), CLASS_STYLE);
        for line in LinesWithEndings::from(code) {
            generator
                .parse_html_for_line_which_includes_newline(line)
                .ok()?;
        }
        Some((String::new(), generator.finalize()))
    }

    fn inline(
        &self,
        code: &str,
        syntax: &SyntaxReference,
        theme_name: &str,
    ) -> Option<(String, String)> {
        let theme = self.themes().themes.get(theme_name)?;
        let mut lines = syntect::easy::HighlightLines::new(syntax, theme);
        let mut html = String::new();
        for line in LinesWithEndings::from(code) {
            let regions = lines.highlight_line(line, self.syntaxes()).ok()?;
            html.push_str(&styled_line_to_highlighted_html(&regions, IncludeBackground::No).ok()?);
        }
        let style = match (theme.settings.background, theme.settings.foreground) {
            (Some(bg), Some(fg)) => format!(
                " style=\"background-color:#{:02x}{:02x}{:02x};color:#{:02x}{:02x}{:02x}\"",
                bg.r, bg.g, bg.b, fg.r, fg.g, fg.b
            ),
            _ => String::new(),
        };
        Some((style, html))
    }

    /// Stylesheet for class-styled code: a light theme under `prefers-color-scheme: light` and
    /// a dark one under `prefers-color-scheme: dark`. Each theme sits in its own media block
    /// because their selectors differ in specificity: a light rule left unscoped can beat the
    /// dark one for the same token (an invisible `-s` in dark mode). Empty when code is styled
    /// inline.
    pub fn stylesheet(&self) -> Result<String, String> {
        if self.inline_theme.is_some() {
            return Ok(String::new());
        }
        let css = |name: &str| {
            let theme = self
                .themes()
                .themes
                .get(name)
                .ok_or_else(|| format!("syntect theme {name} is missing"))?;
            css_for_theme_with_class_style(theme, CLASS_STYLE).map_err(|e| e.to_string())
        };
        Ok(format!(
            "@media (prefers-color-scheme: light) {{\n{}{}}}\n\
             @media (prefers-color-scheme: dark) {{\n{}{}}}\n",
            css(LIGHT_THEME)?,
            comments(LIGHT_COMMENTS),
            css(DARK_THEME)?,
            comments(DARK_COMMENTS)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_by_default() {
        let h = Highlighter::new(None);
        let html = h.code_block("fn main() {}\n", "rust");
        assert!(html.contains("class=\"hl-"), "{html}");
        assert!(html.contains("data-lang=\"rust\""), "{html}");
        assert!(!html.contains("style="), "{html}");
        let css = h.stylesheet().unwrap();
        assert!(css.contains(".hl-"), "{css}");
        assert!(css.contains("prefers-color-scheme: dark"));
    }

    /// Every rule sits inside exactly one scheme's media block, so no light rule can win in
    /// dark mode through a more specific selector.
    #[test]
    fn each_scheme_applies_alone() {
        let css = Highlighter::new(None).stylesheet().unwrap();
        let blocks = top_level_blocks(&css);
        let preludes: Vec<&str> = blocks.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            preludes,
            [
                "@media (prefers-color-scheme: light)",
                "@media (prefers-color-scheme: dark)"
            ],
            "{css}"
        );
        for (_, body) in &blocks {
            assert!(body.contains(".hl-"), "{body}");
        }
    }

    /// Splits a stylesheet into its top-level `prelude { body }` blocks, comments removed.
    fn top_level_blocks(css: &str) -> Vec<(String, String)> {
        let mut text = String::new();
        let mut rest = css;
        while let Some(start) = rest.find("/*") {
            text.push_str(&rest[..start]);
            rest = rest[start..]
                .split_once("*/")
                .map_or("", |(_, after)| after);
        }
        text.push_str(rest);
        let (mut blocks, mut depth, mut prelude, mut body) =
            (vec![], 0, String::new(), String::new());
        for c in text.chars() {
            match (c, depth) {
                ('{', 0) => depth = 1,
                ('}', 1) => {
                    blocks.push((prelude.trim().to_string(), std::mem::take(&mut body)));
                    prelude.clear();
                    depth = 0;
                }
                ('{', _) => {
                    depth += 1;
                    body.push(c);
                }
                ('}', _) => {
                    depth -= 1;
                    body.push(c);
                }
                (_, 0) => prelude.push(c),
                _ => body.push(c),
            }
        }
        assert!(
            prelude.trim().is_empty(),
            "text after the last block: {prelude}"
        );
        blocks
    }

    #[test]
    fn inline_styles_with_a_theme() {
        let h = Highlighter::new(Some("InspiredGitHub".into()));
        h.validate().unwrap();
        let html = h.code_block("let x = 1;\n", "rust");
        assert!(html.contains("style=\"color:"), "{html}");
        assert!(h.stylesheet().unwrap().is_empty());
    }

    #[test]
    fn unknown_theme_is_rejected() {
        assert!(Highlighter::new(Some("nope".into())).validate().is_err());
    }

    #[test]
    fn unknown_language_is_escaped_plain_text() {
        let h = Highlighter::new(None);
        let html = h.code_block("<b>&</b>\n", "no-such-lang");
        assert!(html.contains("&lt;b&gt;&amp;&lt;/b&gt;"), "{html}");
    }
}
