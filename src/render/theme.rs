//! Themes: `themes/NAME/templates/*.html` and `themes/NAME/static/`, with the site's own
//! `templates/` overriding theme templates by name. The default theme is compiled into the
//! binary so `relais` works from anywhere; a `themes/default/` folder in the site wins over it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tera::Tera;

use crate::config::SiteConfig;

/// Templates every theme must provide (directly or through the site's `templates/`).
pub const REQUIRED_TEMPLATES: &[&str] = &[
    "index.html",
    "post.html",
    "page.html",
    "tags.html",
    "tag.html",
    "404.html",
];

pub const THEMES_DIR: &str = "themes";
pub const TEMPLATES_DIR: &str = "templates";
const DEFAULT_THEME: &str = "default";

/// The default theme, relative to `themes/default/`. A test keeps this list equal to the folder.
pub const EMBEDDED_DEFAULT_THEME: &[(&str, &[u8])] = &[
    (
        "templates/404.html",
        include_bytes!("../../themes/default/templates/404.html"),
    ),
    (
        "templates/base.html",
        include_bytes!("../../themes/default/templates/base.html"),
    ),
    (
        "templates/index.html",
        include_bytes!("../../themes/default/templates/index.html"),
    ),
    (
        "templates/macros.html",
        include_bytes!("../../themes/default/templates/macros.html"),
    ),
    (
        "templates/page.html",
        include_bytes!("../../themes/default/templates/page.html"),
    ),
    (
        "templates/post.html",
        include_bytes!("../../themes/default/templates/post.html"),
    ),
    (
        "templates/tag.html",
        include_bytes!("../../themes/default/templates/tag.html"),
    ),
    (
        "templates/tags.html",
        include_bytes!("../../themes/default/templates/tags.html"),
    ),
    (
        "static/interactions.js",
        include_bytes!("../../themes/default/static/interactions.js"),
    ),
    (
        "static/remote.js",
        include_bytes!("../../themes/default/static/remote.js"),
    ),
    (
        "static/style.css",
        include_bytes!("../../themes/default/static/style.css"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error("{path}: theme {name:?} not found")]
    NotFound { name: String, path: PathBuf },
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: template syntax error: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: missing template {name}: the theme does not provide it and {TEMPLATES_DIR}/ does not override it")]
    Missing { name: String, path: PathBuf },
    #[error("{path}:{line}: {message}")]
    MissingReference {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Template { path: PathBuf, message: String },
}

/// Where a static file of the theme comes from.
#[derive(Debug, Clone)]
pub enum StaticSource {
    Embedded(&'static [u8]),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct ThemeStatic {
    /// Site path, e.g. `/style.css`.
    pub path: String,
    pub source: StaticSource,
}

/// The templates and the static files of the theme. The templates are compiled on first
/// use ([`Theme::tera`]): a build that finds nothing changed never needs them.
#[derive(Debug)]
pub struct Theme {
    pub name: String,
    templates: BTreeMap<String, TemplateSource>,
    compiled: std::sync::OnceLock<Option<Tera>>,
    /// Template name → file it came from, for error messages.
    pub origins: BTreeMap<String, PathBuf>,
    pub static_files: Vec<ThemeStatic>,
    /// Literal `id`s of the templates (`interactions`, `main`), which links in posts may
    /// target besides the posts' own headings.
    pub anchors: std::collections::BTreeSet<String>,
    /// Hash of the theme name and every template's name, origin and text: an incremental
    /// build re-renders every page when it changes.
    pub fingerprint: u64,
    /// Which document fields that change with almost every edit the templates may read.
    pub volatile: VolatileFields,
}

/// Document fields that change with almost every edit of a post. A list page need not be
/// rendered again for them when no template can read them: the incremental build leaves
/// them out of list signatures then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VolatileFields {
    pub word_count: bool,
    pub reading_minutes: bool,
    pub source_hash: bool,
}

impl VolatileFields {
    /// Conservative: a field counts as read when its name appears in any template, and
    /// every field does when a template could reach fields without naming them
    /// (`json_encode`, `get(`, a `for key, value` loop over a map, the raw context).
    fn of<'a>(texts: impl Iterator<Item = &'a str> + Clone) -> VolatileFields {
        let generic = texts.clone().any(|t| {
            t.contains("json_encode")
                || t.contains("get(")
                || t.contains("__tera_context")
                || t.split("{%").skip(1).any(|tag| {
                    let tag = tag.split("%}").next().unwrap_or_default();
                    let tag = tag.trim_start_matches('-').trim_start();
                    tag.starts_with("for") && tag.contains(',')
                })
        });
        let named = |field: &str| generic || texts.clone().any(|t| t.contains(field));
        VolatileFields {
            word_count: named("word_count"),
            reading_minutes: named("reading_minutes"),
            source_hash: named("source_hash"),
        }
    }
}

#[derive(Debug)]
struct TemplateSource {
    name: String,
    origin: PathBuf,
    text: String,
}

impl Theme {
    /// Loads the theme named in `config` and the site's template overrides.
    pub fn load(site_dir: &Path, config: &SiteConfig) -> Result<Theme, ThemeError> {
        let theme_rel = Path::new(THEMES_DIR).join(&config.theme);
        let theme_dir = site_dir.join(&theme_rel);
        let mut templates: BTreeMap<String, TemplateSource> = BTreeMap::new();
        let mut static_files = Vec::new();
        if theme_dir.is_dir() {
            for (name, file) in files_under(site_dir, &theme_rel.join(TEMPLATES_DIR))? {
                templates.insert(name.clone(), read_template(site_dir, name, file)?);
            }
            let static_rel = theme_rel.join("static");
            for (name, file) in files_under(site_dir, &static_rel)? {
                static_files.push(ThemeStatic {
                    path: format!("/{name}"),
                    source: StaticSource::File(site_dir.join(file)),
                });
            }
        } else if config.theme == DEFAULT_THEME {
            for (rel, bytes) in EMBEDDED_DEFAULT_THEME {
                if let Some(name) = rel.strip_prefix("templates/") {
                    let origin = Path::new("(built-in theme)").join(rel);
                    let text = String::from_utf8(bytes.to_vec()).map_err(|e| ThemeError::Read {
                        path: origin.clone(),
                        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                    })?;
                    templates.insert(
                        name.to_string(),
                        TemplateSource {
                            name: name.to_string(),
                            origin,
                            text,
                        },
                    );
                } else if let Some(path) = rel.strip_prefix("static/") {
                    static_files.push(ThemeStatic {
                        path: format!("/{path}"),
                        source: StaticSource::Embedded(bytes),
                    });
                }
            }
        } else {
            return Err(ThemeError::NotFound {
                name: config.theme.clone(),
                path: theme_rel,
            });
        }
        for (name, file) in files_under(site_dir, Path::new(TEMPLATES_DIR))? {
            templates.insert(name.clone(), read_template(site_dir, name, file)?);
        }
        for name in REQUIRED_TEMPLATES {
            if !templates.contains_key(*name) {
                return Err(ThemeError::Missing {
                    name: name.to_string(),
                    path: Path::new(TEMPLATES_DIR).join(name),
                });
            }
        }
        let fingerprint = templates
            .values()
            .fold(
                crate::build::index::Sig::new("theme").with(&config.theme),
                |sig, t| sig.with((&t.name, &t.origin, &t.text)),
            )
            .finish();
        let anchors = templates
            .values()
            .flat_map(|t| crate::content::html_ids(&t.text))
            .filter(|id| !id.contains(['{', '}']))
            .collect();
        let volatile = VolatileFields::of(templates.values().map(|t| t.text.as_str()));
        Ok(Theme {
            name: config.theme.clone(),
            origins: templates
                .iter()
                .map(|(name, t)| (name.clone(), t.origin.clone()))
                .collect(),
            templates,
            compiled: std::sync::OnceLock::new(),
            anchors,
            fingerprint,
            volatile,
            static_files,
        })
    }

    /// Takes over the compiled templates of `last` when it had the same templates.
    pub fn take_compiled(&mut self, last: Theme) {
        if last.fingerprint == self.fingerprint && last.templates.len() == self.templates.len() {
            if let Some(Some(tera)) = last.compiled.into_inner() {
                self.compiled = std::sync::OnceLock::from(Some(tera));
            }
        }
    }

    /// The compiled templates; the first call compiles them (syntax errors name the file
    /// and line).
    pub fn tera(&self) -> Result<&Tera, ThemeError> {
        match self.compiled.get_or_init(|| compile(&self.templates).ok()) {
            Some(tera) => Ok(tera),
            // Compiling is deterministic: again, for the error itself.
            None => Err(compile(&self.templates)
                .err()
                .unwrap_or(ThemeError::Template {
                    path: PathBuf::from(TEMPLATES_DIR),
                    message: "the templates did not compile".into(),
                })),
        }
    }

    pub fn origin(&self, template: &str) -> PathBuf {
        self.origins
            .get(template)
            .cloned()
            .unwrap_or_else(|| Path::new(TEMPLATES_DIR).join(template))
    }
}

fn read_template(
    site_dir: &Path,
    name: String,
    file: PathBuf,
) -> Result<TemplateSource, ThemeError> {
    let text =
        std::fs::read_to_string(site_dir.join(&file)).map_err(|source| ThemeError::Read {
            path: file.clone(),
            source,
        })?;
    Ok(TemplateSource {
        name,
        origin: file,
        text,
    })
}

/// Files under `<site_dir>/<rel_dir>` as (name with `/` separators, path relative to the
/// site), sorted. A missing directory has no files.
fn files_under(site_dir: &Path, rel_dir: &Path) -> Result<Vec<(String, PathBuf)>, ThemeError> {
    let dir = site_dir.join(rel_dir);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(&dir).sort_by_file_name() {
        let entry = entry.map_err(|e| ThemeError::Read {
            path: e.path().map_or_else(|| dir.clone(), Path::to_path_buf),
            source: e.into(),
        })?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !entry.file_type().is_file() || hidden {
            continue;
        }
        if let Ok(rel) = entry.path().strip_prefix(&dir) {
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((name, rel_dir.join(rel)));
        }
    }
    Ok(out)
}

/// Parses each template alone first, so a syntax error names its own file and line, then
/// checks that every `extends`, `import` and `include` names a known template.
fn compile(templates: &BTreeMap<String, TemplateSource>) -> Result<Tera, ThemeError> {
    for t in templates.values() {
        let parsed = tera::Template::new(&t.name, None, &t.text).map_err(|e| {
            let message = error_chain(&e);
            ThemeError::Syntax {
                path: t.origin.clone(),
                line: pest_line(&message).unwrap_or(1),
                message: compact(&message),
            }
        })?;
        let mut references: Vec<&str> = parsed.parent.as_deref().into_iter().collect();
        references.extend(
            parsed
                .imported_macro_files
                .iter()
                .map(|(file, _)| file.as_str()),
        );
        references.extend(includes(&t.text));
        for reference in references {
            if !templates.contains_key(reference) {
                return Err(ThemeError::MissingReference {
                    path: t.origin.clone(),
                    line: line_mentioning(&t.text, reference),
                    message: format!("template {reference:?} does not exist"),
                });
            }
        }
    }
    let mut tera = Tera::default();
    // Tera's default also escapes `/`, which garbles every URL in the page source for no
    // gain: `/` cannot end an attribute value or start markup.
    tera.set_escape_fn(crate::content::escape_html);
    tera.add_raw_templates(
        templates
            .values()
            .map(|t| (t.name.as_str(), t.text.as_str())),
    )
    .map_err(|e| ThemeError::Template {
        path: PathBuf::from(TEMPLATES_DIR),
        message: error_chain(&e),
    })?;
    Ok(tera)
}

/// Names in `{% include "x" %}` tags, unless marked `ignore missing`.
fn includes(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{%") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("%}") else { break };
        let tag = after[..end]
            .trim_start_matches('-')
            .trim()
            .trim_end_matches('-')
            .trim();
        if let Some(args) = tag.strip_prefix("include ") {
            if !args.contains("ignore missing") {
                let args = args.trim();
                let quote = args.chars().next();
                if let Some(q @ ('"' | '\'' | '`')) = quote {
                    if let Some(close) = args[1..].find(q) {
                        out.push(&args[1..1 + close]);
                    }
                }
            }
        }
        rest = &after[end + 2..];
    }
    out
}

fn line_mentioning(text: &str, name: &str) -> usize {
    text.lines()
        .position(|l| l.contains(name) && l.contains("{%"))
        .map_or(1, |i| i + 1)
}

/// The message of a Tera error and all its causes.
pub fn error_chain(error: &tera::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The line of a pest error (` --> 3:5`).
fn pest_line(message: &str) -> Option<usize> {
    let at = message.find("--> ")?;
    let rest = &message[at + 4..];
    rest.split(':').next()?.trim().parse().ok()
}

/// One line: pest draws the offending source over several lines, the line number is enough.
fn compact(message: &str) -> String {
    match message.lines().find_map(|l| l.trim().strip_prefix("= ")) {
        Some(expected) => expected.to_string(),
        None => message.lines().next().unwrap_or("").trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatile_fields_are_read_when_named_or_reachable() {
        let plain =
            "{%- for post in posts %}{{ post.title }}, {{ post.reading_minutes }}{% endfor %}";
        let fields = VolatileFields::of([plain].into_iter());
        assert!(fields.reading_minutes);
        assert!(!fields.word_count && !fields.source_hash);
        for generic in [
            "{{ post | json_encode() }}",
            "{{ post | get(key=\"word_count\") }}",
            "{% for key, value in post %}{{ value }}{% endfor %}",
            "{{ __tera_context }}",
        ] {
            let fields = VolatileFields::of([plain, generic].into_iter());
            assert!(fields.word_count && fields.source_hash, "{generic}");
        }
    }
    use crate::test_support::write;

    fn config(theme: &str) -> SiteConfig {
        SiteConfig::parse(
            &format!("title = \"T\"\nbase_url = \"https://e.example\"\ntheme = \"{theme}\"\n"),
            Path::new("config.toml"),
        )
        .unwrap()
    }

    #[test]
    fn embedded_list_matches_the_theme_folder() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("themes/default");
        let mut on_disk: Vec<String> = walkdir::WalkDir::new(&root)
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                e.path()
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/")
            })
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = EMBEDDED_DEFAULT_THEME
            .iter()
            .map(|(p, _)| p.to_string())
            .collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }

    /// A theme loaded and compiled, as a build that renders uses it.
    fn load_checked(site: &Path, name: &str) -> Result<Theme, ThemeError> {
        let theme = Theme::load(site, &config(name))?;
        theme.tera()?;
        Ok(theme)
    }

    #[test]
    fn default_theme_loads_from_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        let theme = Theme::load(dir.path(), &config("default")).unwrap();
        for name in REQUIRED_TEMPLATES {
            assert!(
                theme
                    .tera()
                    .unwrap()
                    .get_template_names()
                    .any(|n| n == *name),
                "{name}"
            );
        }
        assert!(theme.static_files.iter().any(|s| s.path == "/style.css"));
    }

    #[test]
    fn site_templates_override_the_theme() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "templates/404.html", "custom 404");
        let theme = Theme::load(dir.path(), &config("default")).unwrap();
        assert_eq!(theme.origin("404.html"), Path::new("templates/404.html"));
        let out = theme
            .tera()
            .unwrap()
            .render("404.html", &tera::Context::new())
            .unwrap();
        assert_eq!(out, "custom 404");
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "templates/post.html",
            "<p>\n{{ title }}\n{% if %}\n",
        );
        let err = load_checked(dir.path(), "default").unwrap_err().to_string();
        assert!(
            err.starts_with("templates/post.html:3: template syntax error"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn missing_required_template_and_missing_parent() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "index.html",
            "post.html",
            "page.html",
            "tags.html",
            "tag.html",
        ] {
            write(dir.path(), &format!("themes/bare/templates/{name}"), "x");
        }
        let err = load_checked(dir.path(), "bare").unwrap_err().to_string();
        assert_eq!(
            err,
            "templates/404.html: missing template 404.html: the theme does not provide it and templates/ does not override it"
        );
        write(
            dir.path(),
            "themes/bare/templates/404.html",
            "{% extends \"nope.html\" %}",
        );
        let err = load_checked(dir.path(), "bare").unwrap_err().to_string();
        assert!(
            err.starts_with("themes/bare/templates/404.html:1:"),
            "{err}"
        );
        assert!(err.contains("nope.html"), "{err}");
        write(
            dir.path(),
            "themes/bare/templates/404.html",
            "x\n{% include \"gone.html\" %}",
        );
        let err = load_checked(dir.path(), "bare").unwrap_err().to_string();
        assert!(
            err.starts_with("themes/bare/templates/404.html:2:"),
            "{err}"
        );
    }

    #[test]
    fn unknown_theme() {
        let dir = tempfile::tempdir().unwrap();
        let err = Theme::load(dir.path(), &config("fancy"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "themes/fancy: theme \"fancy\" not found");
    }

    #[test]
    fn include_names() {
        assert_eq!(
            includes("a {% include \"x.html\" %} {%- include 'y.html' ignore missing -%}"),
            vec!["x.html"]
        );
    }
}
