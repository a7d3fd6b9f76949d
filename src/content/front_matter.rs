//! Front matter: a TOML block between `+++` lines or a YAML block between `---` lines.
//!
//! Unknown keys are an error, not a warning: a misspelt `draft` or `date` would otherwise
//! publish a draft or misdate a post without a word. Keys that Zola or Hugo document
//! ([`GENERATOR_KEYS`]) are the exception: a blog moved from them keeps them, for templates.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use serde::Deserialize;

use crate::config::{line_of_offset, ObjectType, QuotePolicy};

/// The front matter keys, with dates still as the text the author wrote.
#[derive(Debug, Default, PartialEq)]
pub struct FrontMatter {
    pub title: Option<String>,
    pub date: Option<Dated>,
    pub updated: Option<Dated>,
    pub draft: bool,
    pub slug: Option<String>,
    pub tags: Vec<String>,
    pub summary: Option<String>,
    pub authors: Vec<String>,
    pub language: Option<String>,
    pub image: Option<String>,
    pub image_alt: Option<String>,
    pub content_warning: Option<String>,
    pub federate_as: Option<ObjectType>,
    /// Per-post override of `fediverse.quotes`.
    pub quotes: Option<QuotePolicy>,
    /// The post (any server's URL) this one answers: federated as a reply.
    pub in_reply_to: Option<String>,
    /// Zola/Hugo fields with a meaning here (see [`Generator`]).
    pub generator: Generator,
}

/// The Zola and Hugo front matter fields relais gives a meaning to, and the ones it keeps.
#[derive(Debug, Default, PartialEq)]
pub struct Generator {
    /// `description`: the summary when `summary` is absent, and the meta description.
    pub description: Option<String>,
    /// `path` (Zola) or `url` (Hugo): the page's site path.
    pub path: Option<String>,
    /// Old paths that redirect to the page.
    pub aliases: Vec<String>,
    pub weight: Option<i64>,
    /// `[extra]` (Zola), `params` (Hugo) and the kept generator fields, as JSON.
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// `[taxonomies]` other than `tags` (Zola) and `categories` (Hugo).
    pub taxonomies: BTreeMap<String, Vec<String>>,
    /// Keys of [`GENERATOR_KEYS`] present, kept in `extra` without a meaning here.
    pub kept: Vec<String>,
}

/// Front matter keys documented by Zola (pages and sections) and Hugo that relais accepts
/// without acting on them; they are kept for templates under `page.extra`.
pub const GENERATOR_KEYS: &[&str] = &[
    // Zola pages and sections.
    "render",
    "in_search_index",
    "template",
    "sort_by",
    "page_template",
    "paginate_by",
    "paginate_path",
    "paginate_reversed",
    "insert_anchor_links",
    "redirect_to",
    "transparent",
    "generate_feed",
    "generate_feeds",
    // Hugo.
    "build",
    "_build",
    "cascade",
    "expirydate",
    "expiryDate",
    "unpublishdate",
    "headless",
    "isCJKLanguage",
    "iscjklanguage",
    "keywords",
    "layout",
    "linkTitle",
    "linktitle",
    "markup",
    "menu",
    "menus",
    "outputs",
    "publishDate",
    "publishdate",
    "pubdate",
    "published",
    "modified",
    "resources",
    "sitemap",
    "translationKey",
    "translationkey",
    "type",
];

/// A date value and the 1-based line of the file it was written on.
#[derive(Debug, Clone, PartialEq)]
pub struct Dated {
    pub text: String,
    pub line: usize,
}

/// A front matter problem at a 1-based line of the whole file.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontMatterError {
    pub line: usize,
    pub message: String,
}

/// A file split into front matter and Markdown body.
#[derive(Debug, PartialEq)]
pub struct Split<'a> {
    pub front_matter: FrontMatter,
    pub body: &'a str,
    /// 1-based line of the file where `body` starts.
    pub body_line: usize,
    /// Byte offset in the file where `body` starts.
    pub body_offset: usize,
    /// Line of each key of the front matter, for errors about their values.
    pub key_lines: Vec<(String, usize)>,
}

impl Split<'_> {
    /// Line of `key` in the file, else the first line.
    pub fn line_of_key(&self, key: &str) -> usize {
        self.key_lines
            .iter()
            .find(|(k, _)| k == key)
            .map_or(1, |(_, line)| *line)
    }
}

/// The fields relais reads itself (those of [`Raw`]), for "did you mean" on a typo.
const FIELDS: &[&str] = &[
    "title",
    "date",
    "updated",
    "draft",
    "slug",
    "tags",
    "summary",
    "authors",
    "language",
    "image",
    "image_alt",
    "content_warning",
    "federate_as",
    "quotes",
    "in_reply_to",
    "description",
    "path",
    "url",
    "aliases",
    "weight",
    "lastmod",
    "extra",
    "params",
    "taxonomies",
    "categories",
];

#[derive(Debug, Deserialize)]
struct Raw<D> {
    title: Option<String>,
    date: Option<D>,
    updated: Option<D>,
    #[serde(default)]
    draft: bool,
    slug: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    summary: Option<String>,
    #[serde(default)]
    authors: Vec<String>,
    language: Option<String>,
    image: Option<String>,
    image_alt: Option<String>,
    content_warning: Option<String>,
    federate_as: Option<ObjectType>,
    quotes: Option<QuotePolicy>,
    in_reply_to: Option<String>,
    description: Option<String>,
    path: Option<String>,
    url: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    weight: Option<i64>,
    /// Hugo's name for `updated`.
    lastmod: Option<D>,
    extra: Option<D>,
    params: Option<D>,
    taxonomies: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    categories: Vec<String>,
    /// Every other key: refused unless it is one of [`GENERATOR_KEYS`].
    #[serde(flatten)]
    other: BTreeMap<String, D>,
}

#[derive(Clone, Copy)]
enum Format {
    Toml,
    Yaml,
}

/// Splits `text` into front matter and body. A file without front matter is all body.
pub fn split(text: &str) -> Result<Split<'_>, FrontMatterError> {
    // A BOM before the delimiter is common in files saved by Windows editors.
    let start = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let rest = &text[start..];
    let (format, delimiter) = match first_line(rest) {
        "+++" => (Format::Toml, "+++"),
        "---" => (Format::Yaml, "---"),
        _ => {
            return Ok(Split {
                front_matter: FrontMatter::default(),
                body: rest,
                body_line: 1,
                body_offset: start,
                key_lines: Vec::new(),
            })
        }
    };
    let open_len = rest.find('\n').map_or(rest.len(), |i| i + 1);
    let inner_start = start + open_len;
    let mut offset = inner_start;
    let mut close = None;
    for line in text[inner_start..].split_inclusive('\n') {
        if line.trim_end() == delimiter {
            close = Some((offset, offset + line.len()));
            break;
        }
        offset += line.len();
    }
    let Some((inner_end, body_offset)) = close else {
        return Err(FrontMatterError {
            line: 1,
            message: format!("front matter opened with `{delimiter}` is never closed"),
        });
    };
    let inner = &text[inner_start..inner_end];
    // Line numbers inside `inner` are shifted by the opening delimiter line.
    let shift = line_of_offset(text, inner_start) - 1;
    let front_matter = parse(inner, format, shift)?;
    Ok(Split {
        front_matter,
        body: &text[body_offset..],
        body_line: line_of_offset(text, body_offset),
        body_offset,
        key_lines: key_lines(inner, shift),
    })
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim_end()
}

fn parse(inner: &str, format: Format, shift: usize) -> Result<FrontMatter, FrontMatterError> {
    let lines = key_lines(inner, shift);
    let line_of = |key: &str| {
        lines
            .iter()
            .find(|(k, _)| k == key)
            .map_or(shift + 1, |(_, l)| *l)
    };
    match format {
        Format::Toml => {
            let raw: Raw<toml::Value> = toml::from_str(inner).map_err(|e| FrontMatterError {
                line: shift + e.span().map_or(1, |s| line_of_offset(inner, s.start)),
                message: format!(
                    "TOML front matter: {}",
                    crate::config::plain_serde_message(e.message())
                ),
            })?;
            raw.into_front_matter(&line_of, toml_json, "TOML", |value, key| match value {
                toml::Value::Datetime(d) => Ok(d.to_string()),
                toml::Value::String(s) => Ok(s),
                other => Err(format!(
                    "`{key}` must be a date, found a {}",
                    other.type_str()
                )),
            })
        }
        Format::Yaml => {
            if inner.trim().is_empty() {
                return Ok(FrontMatter::default());
            }
            let raw: Raw<serde_norway::Value> =
                serde_norway::from_str(inner).map_err(|e| FrontMatterError {
                    line: shift + e.location().map_or(1, |l| l.line()),
                    message: format!(
                        "YAML front matter: {}",
                        crate::config::plain_serde_message(&yaml_message(&e))
                    ),
                })?;
            raw.into_front_matter(&line_of, yaml_json, "YAML", |value, key| match value {
                serde_norway::Value::String(s) => Ok(s),
                _ => Err(format!("`{key}` must be a date such as 2024-05-01")),
            })
        }
    }
}

/// serde_norway appends " at line L column C" to its messages; the line is reported already.
fn yaml_message(e: &serde_norway::Error) -> String {
    let text = e.to_string();
    match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

impl<D> Raw<D> {
    /// Keeps dates as text: TOML has a date type, YAML has none, both end up as strings.
    fn into_front_matter(
        self,
        line_of: &dyn Fn(&str) -> usize,
        to_json: fn(D) -> serde_json::Value,
        label: &str,
        date_text: impl Fn(D, &str) -> Result<String, String>,
    ) -> Result<FrontMatter, FrontMatterError> {
        let mut generator = Generator {
            description: self.description,
            aliases: self.aliases,
            weight: self.weight,
            ..Generator::default()
        };
        generator.path = match (self.path, self.url) {
            (Some(_), Some(_)) => {
                return Err(FrontMatterError {
                    line: line_of("url"),
                    message: "`path` and `url` both set the page's path: keep one".into(),
                })
            }
            (path, url) => path.or(url),
        };
        for (key, table) in [("extra", self.extra), ("params", self.params)] {
            match table.map(to_json) {
                None => {}
                Some(serde_json::Value::Object(map)) => generator.extra.extend(map),
                Some(_) => {
                    return Err(FrontMatterError {
                        line: line_of(key),
                        message: format!("`{key}` must be a table of values"),
                    })
                }
            }
        }
        let mut tags = self.tags;
        if let Some(taxonomies) = self.taxonomies {
            for (name, terms) in taxonomies {
                if name == "tags" {
                    tags.extend(terms);
                } else {
                    generator.taxonomies.entry(name).or_default().extend(terms);
                }
            }
        }
        if !self.categories.is_empty() {
            generator
                .taxonomies
                .entry("categories".into())
                .or_default()
                .extend(self.categories);
        }
        for (key, value) in self.other {
            if !GENERATOR_KEYS.contains(&key.as_str()) {
                let hint = match crate::config::closest(&key, FIELDS) {
                    Some(best) => format!(": did you mean `{best}`?"),
                    None => format!("; known fields: {}", FIELDS.join(", ")),
                };
                return Err(FrontMatterError {
                    line: line_of(&key),
                    message: format!("{label} front matter: unknown field `{key}`{hint}"),
                });
            }
            generator.extra.entry(key.clone()).or_insert(to_json(value));
            generator.kept.push(key);
        }
        let updated = match (self.updated, self.lastmod) {
            (Some(updated), _) => Some((updated, "updated")),
            (None, lastmod) => lastmod.map(|l| (l, "lastmod")),
        };
        let dated = |value: Option<D>, key: &str| {
            value
                .map(|v| {
                    let line = line_of(key);
                    date_text(v, key)
                        .map(|text| Dated { text, line })
                        .map_err(|message| FrontMatterError { line, message })
                })
                .transpose()
        };
        Ok(FrontMatter {
            date: dated(self.date, "date")?,
            updated: match updated {
                Some((value, key)) => dated(Some(value), key)?,
                None => None,
            },
            title: self.title,
            draft: self.draft,
            slug: self.slug,
            tags,
            summary: self.summary,
            authors: self.authors,
            language: self.language,
            image: self.image,
            image_alt: self.image_alt,
            content_warning: self.content_warning,
            federate_as: self.federate_as,
            quotes: self.quotes,
            in_reply_to: self.in_reply_to,
            generator,
        })
    }
}

/// TOML values as JSON for templates; dates become their text.
fn toml_json(value: toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        toml::Value::String(s) => J::String(s),
        toml::Value::Integer(i) => J::from(i),
        toml::Value::Float(f) => J::from(f),
        toml::Value::Boolean(b) => J::Bool(b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(items) => J::Array(items.into_iter().map(toml_json).collect()),
        toml::Value::Table(table) => {
            J::Object(table.into_iter().map(|(k, v)| (k, toml_json(v))).collect())
        }
    }
}

/// YAML values as JSON for templates; keys that are not text are written as YAML text.
fn yaml_json(value: serde_norway::Value) -> serde_json::Value {
    use serde_json::Value as J;
    use serde_norway::Value as Y;
    match value {
        Y::Null => J::Null,
        Y::Bool(b) => J::Bool(b),
        Y::Number(n) => n
            .as_i64()
            .map(J::from)
            .or_else(|| n.as_f64().map(J::from))
            .unwrap_or(J::Null),
        Y::String(s) => J::String(s),
        Y::Sequence(items) => J::Array(items.into_iter().map(yaml_json).collect()),
        Y::Mapping(map) => J::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        other => serde_norway::to_string(&other)
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    };
                    (key, yaml_json(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => yaml_json(tagged.value),
    }
}

/// Top-level keys (`key =` or `key:` at the start of a line) and their lines in the file.
fn key_lines(inner: &str, shift: usize) -> Vec<(String, usize)> {
    inner
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
            let (key, rest) = line.split_at(end);
            let rest = rest.trim_start();
            (!key.is_empty() && (rest.starts_with('=') || rest.starts_with(':')))
                .then(|| (key.to_string(), shift + i + 1))
        })
        .collect()
}

/// Parses RFC 3339 (`2024-05-01T09:30:00+02:00`), a date-time without offset (taken as UTC)
/// or a plain `YYYY-MM-DD` (midnight UTC).
pub fn parse_date(text: &str) -> Option<DateTime<FixedOffset>> {
    let text = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(text) {
        return Some(d);
    }
    let utc = FixedOffset::east_opt(0)?;
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(naive.and_utc().with_timezone(&utc));
        }
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(day.and_hms_opt(0, 0, 0)?.and_utc().with_timezone(&utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_front_matter_with_native_date() {
        let text = "+++\ntitle = \"Hi\"\ndate = 2024-05-01T09:30:00+02:00\ntags = [\"a\", \"b\"]\nfederate_as = \"Article\"\n+++\n\nBody\n";
        let s = split(text).unwrap();
        assert_eq!(s.front_matter.title.as_deref(), Some("Hi"));
        let date = s.front_matter.date.clone().unwrap();
        assert_eq!(date.line, 3);
        assert_eq!(
            parse_date(&date.text).unwrap().to_rfc3339(),
            "2024-05-01T09:30:00+02:00"
        );
        assert_eq!(s.front_matter.tags, vec!["a", "b"]);
        assert_eq!(s.front_matter.federate_as, Some(ObjectType::Article));
        assert_eq!(s.body, "\nBody\n");
        assert_eq!(s.body_line, 7);
    }

    #[test]
    fn yaml_front_matter() {
        let text = "---\ntitle: Hi there\ndate: 2024-05-01\ndraft: true\nimage: cat.png\nimage_alt: A cat\n---\nBody";
        let s = split(text).unwrap();
        let fm = &s.front_matter;
        assert_eq!(fm.title.as_deref(), Some("Hi there"));
        assert!(fm.draft);
        assert_eq!(fm.date.as_ref().unwrap().text, "2024-05-01");
        assert_eq!(fm.image_alt.as_deref(), Some("A cat"));
        assert_eq!(s.body, "Body");
        assert_eq!(s.line_of_key("image"), 5);
    }

    #[test]
    fn no_front_matter_is_all_body() {
        let s = split("# Title\n").unwrap();
        assert_eq!(s.body, "# Title\n");
        assert_eq!(s.front_matter, FrontMatter::default());
    }

    #[test]
    fn unclosed_front_matter_is_an_error() {
        let err = split("+++\ntitle = \"x\"\n\nbody\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.message.contains("never closed"), "{}", err.message);
    }

    #[test]
    fn toml_syntax_error_names_line_in_file() {
        let err = split("+++\ntitle = \"x\"\ndate = = 3\n+++\n").unwrap_err();
        assert_eq!(err.line, 3, "{err:?}");
    }

    #[test]
    fn yaml_syntax_error_names_line_in_file() {
        let err = split("---\ntitle: x\ntags: [a, b\n---\n").unwrap_err();
        assert!(err.line >= 3, "{err:?}");
        assert!(err.message.starts_with("YAML"), "{err:?}");
    }

    #[test]
    fn unknown_keys_are_errors_with_their_line() {
        let err = split("+++\ntitle = \"x\"\ndraftt = true\n+++\n").unwrap_err();
        assert_eq!(err.line, 3, "{err:?}");
        assert!(err.message.contains("draftt"), "{err:?}");
        let err = split("---\ntitle: x\n\nsumary: y\n---\n").unwrap_err();
        assert_eq!(err.line, 4, "{err:?}");
        assert!(err.message.contains("sumary"), "{err:?}");
    }

    #[test]
    fn wrong_date_type_names_its_line() {
        let err = split("+++\ntitle = \"x\"\ndate = 5\n+++\n").unwrap_err();
        assert_eq!(err.line, 3);
    }

    #[test]
    fn date_formats() {
        let d = parse_date("2024-05-01").unwrap();
        assert_eq!(d.to_rfc3339(), "2024-05-01T00:00:00+00:00");
        let d = parse_date("2024-05-01T10:20:30Z").unwrap();
        assert_eq!(d.to_rfc3339(), "2024-05-01T10:20:30+00:00");
        let d = parse_date("2024-05-01 10:20:30").unwrap();
        assert_eq!(d.to_rfc3339(), "2024-05-01T10:20:30+00:00");
        assert!(parse_date("01/05/2024").is_none());
        assert!(parse_date("2024-13-01").is_none());
        assert!(parse_date("yesterday").is_none());
    }

    #[test]
    fn bom_before_front_matter() {
        let s = split("\u{feff}+++\ntitle = \"x\"\n+++\nb").unwrap();
        assert_eq!(s.front_matter.title.as_deref(), Some("x"));
        assert_eq!(s.body, "b");
    }

    #[test]
    fn zola_fields_have_their_meaning() {
        let text = "+++\ntitle = \"x\"\ndescription = \"About x\"\npath = \"old/x\"\naliases = [\"/a/\", \"b.html\"]\nweight = 3\ntemplate = \"page.html\"\ndate = 2024-05-01\n[taxonomies]\ntags = [\"rust\"]\nseries = [\"intro\"]\n[extra]\nmood = \"calm\"\nwhen = 2024-01-02\n+++\n";
        let fm = split(text).unwrap().front_matter;
        let g = &fm.generator;
        assert_eq!(fm.tags, vec!["rust"]);
        assert_eq!(fm.date.unwrap().text, "2024-05-01");
        assert_eq!(g.description.as_deref(), Some("About x"));
        assert_eq!(g.path.as_deref(), Some("old/x"));
        assert_eq!(g.aliases, vec!["/a/", "b.html"]);
        assert_eq!(g.weight, Some(3));
        assert_eq!(g.taxonomies["series"], vec!["intro"]);
        assert_eq!(g.extra["mood"], "calm");
        assert_eq!(g.extra["when"], "2024-01-02");
        assert_eq!(g.extra["template"], "page.html");
        assert_eq!(g.kept, vec!["template"]);
    }

    #[test]
    fn hugo_fields_have_their_meaning() {
        let text = "---\ntitle: x\nurl: /custom/\nlastmod: 2024-06-01\ncategories: [Tech]\nkeywords: [a]\nparams:\n  color: red\n---\n";
        let fm = split(text).unwrap().front_matter;
        assert_eq!(fm.updated.unwrap().text, "2024-06-01");
        let g = &fm.generator;
        assert_eq!(g.path.as_deref(), Some("/custom/"));
        assert_eq!(g.taxonomies["categories"], vec!["Tech"]);
        assert_eq!(g.extra["color"], "red");
        assert_eq!(g.extra["keywords"], serde_json::json!(["a"]));
        assert_eq!(g.kept, vec!["keywords"]);
        let err = split("---\ntitle: x\npath: a\nurl: b\n---\n").unwrap_err();
        assert_eq!(err.line, 4, "{err:?}");
    }
}
