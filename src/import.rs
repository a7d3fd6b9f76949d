//! `relais import zola|hugo DIR`: makes a Zola or Hugo site a relais site in place. Content
//! is built as it is (front matter and sections keep their meaning); what does not map one
//! to one is converted (the generator's config becomes relais's `config.toml`, the original
//! kept beside it) or reported with file:line (shortcodes, Hugo's relative aliases).

use std::path::{Path, PathBuf};

use crate::config::{SiteConfig, CONFIG_FILE};
use crate::content::printable;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generator {
    Zola,
    Hugo,
}

impl Generator {
    fn name(self) -> &'static str {
        match self {
            Generator::Zola => "zola",
            Generator::Hugo => "hugo",
        }
    }
}

/// What an import changed and what it could not convert.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub changes: Vec<String>,
    /// `file:line: message` lines.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}: cannot read: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: cannot write: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("{path}:{line}: {message}")]
    Config {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{0}: no {1} configuration found (looked for {2})")]
    NoConfig(PathBuf, &'static str, String),
    #[error("{0}: already a relais site")]
    AlreadyRelais(PathBuf),
}

/// Imports the site at `dir` built by `generator`.
pub fn import(generator: Generator, dir: &Path) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    let candidates: &[&str] = match generator {
        Generator::Zola => &["config.toml", "zola.toml"],
        Generator::Hugo => &["hugo.toml", "config.toml"],
    };
    let relais_config = dir.join(CONFIG_FILE);
    // Never overwrite a relais configuration (a second import, or a site already moved).
    if let Ok(existing) = std::fs::read_to_string(&relais_config) {
        if SiteConfig::parse(&existing, &relais_config).is_ok() {
            return Err(ImportError::AlreadyRelais(relais_config));
        }
    }
    let found = candidates
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            ImportError::NoConfig(dir.to_path_buf(), generator.name(), candidates.join(", "))
        })?;
    let text = std::fs::read_to_string(&found).map_err(|e| ImportError::Read(found.clone(), e))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| ImportError::Config {
        path: found.clone(),
        line: e
            .span()
            .map_or(1, |s| crate::config::line_of_offset(&text, s.start)),
        message: e.message().to_string(),
    })?;
    let config = relais_config_text(generator, &table);
    SiteConfig::parse(&config, &relais_config).map_err(|e| ImportError::Config {
        path: found.clone(),
        line: 1,
        message: format!("the converted configuration is not valid: {e}"),
    })?;
    if found == relais_config {
        let kept = dir.join(format!("config.{}.toml", generator.name()));
        std::fs::rename(&found, &kept).map_err(|e| ImportError::Write(kept.clone(), e))?;
        report.changes.push(format!(
            "moved {}'s {CONFIG_FILE} to {}",
            generator.name(),
            kept.display()
        ));
    }
    std::fs::write(&relais_config, config)
        .map_err(|e| ImportError::Write(relais_config.clone(), e))?;
    report.changes.push(format!(
        "wrote {} (title, base_url, language, description; [fediverse] username \"blog\")",
        relais_config.display()
    ));
    scan_content(generator, dir, &mut report)?;
    Ok(report)
}

/// relais's `config.toml` from the generator's settings of the same meaning.
fn relais_config_text(generator: Generator, table: &toml::Table) -> String {
    let text = |keys: &[&str]| {
        keys.iter().find_map(|key| {
            let mut value: Option<&toml::Value> = None;
            for (i, part) in key.split('.').enumerate() {
                value = if i == 0 {
                    table.get(part)
                } else {
                    value.and_then(|v| v.get(part))
                };
            }
            value.and_then(toml::Value::as_str).map(str::to_string)
        })
    };
    let (base_url, language, description) = match generator {
        Generator::Zola => (
            text(&["base_url"]),
            text(&["default_language"]),
            text(&["description"]),
        ),
        Generator::Hugo => (
            text(&["baseURL", "baseurl"]),
            text(&["languageCode", "languagecode", "defaultContentLanguage"]),
            text(&["params.description", "description"]),
        ),
    };
    let quote = |s: String| toml::Value::String(s).to_string();
    let base_url = base_url
        .unwrap_or_else(|| "https://example.com".into())
        .trim_end_matches('/')
        .to_string();
    let mut out = format!(
        "# Converted by `relais import {}`; the original settings are kept beside this file.\n\
         title = {}\nbase_url = {}\n",
        generator.name(),
        quote(text(&["title"]).unwrap_or_else(|| "My blog".into())),
        quote(base_url),
    );
    if let Some(language) = language {
        // relais wants a language tag (`en`), Hugo often writes `en-us`.
        out.push_str(&format!("language = {}\n", quote(language.to_lowercase())));
    }
    if let Some(description) = description {
        out.push_str(&format!("description = {}\n", quote(description)));
    }
    out.push_str("\n[fediverse]\n# Followers find the site as @blog@<host of base_url>.\nusername = \"blog\"\n");
    out
}

/// Reports shortcodes relais cannot render and, for Hugo, relative aliases.
fn scan_content(
    generator: Generator,
    dir: &Path,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let content = dir.join("content");
    for entry in walkdir::WalkDir::new(&content)
        .sort_by_file_name()
        .into_iter()
        .flatten()
    {
        let path = entry.path();
        if !entry.file_type().is_file() || path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(path).map_err(|e| ImportError::Read(path.into(), e))?;
        let shown = path.strip_prefix(dir).unwrap_or(path).display().to_string();
        let mut fence = false;
        let mut in_aliases = false;
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
                fence = !fence;
                continue;
            }
            if fence {
                continue;
            }
            if let Some(name) = shortcode(generator, line) {
                report.warnings.push(format!(
                    "{shown}:{}: shortcode `{}` is not rendered by relais: the call stays in the text as written",
                    i + 1,
                    printable(&name)
                ));
            }
            if generator == Generator::Hugo {
                in_aliases = relative_aliases(line, in_aliases, |alias| {
                    report.warnings.push(format!(
                        "{shown}:{}: alias {alias:?} is relative: Hugo puts it under the page's folder, relais under the site root; write it from the root (/…)",
                        i + 1
                    ));
                });
            }
        }
    }
    Ok(())
}

/// The shortcode a line calls: Hugo `{{< name … >}}`/`{{% name … %}}`, Zola
/// `{{ name(…) }}`/`{% name(…) %}`.
fn shortcode(generator: Generator, line: &str) -> Option<String> {
    let name_after = |rest: &str| {
        let rest = rest.trim_start().trim_start_matches('/').trim_start();
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '/'))
            .collect();
        (!name.is_empty()).then_some(name)
    };
    match generator {
        Generator::Hugo => ["{{<", "{{%"]
            .iter()
            .find_map(|open| line.find(open).and_then(|i| name_after(&line[i + 3..]))),
        Generator::Zola => ["{{", "{%"].iter().find_map(|open| {
            let i = line.find(open)?;
            let name = name_after(&line[i + 2..])?;
            line[i + 2..]
                .trim_start()
                .get(name.len()..)
                .is_some_and(|rest| rest.starts_with('('))
                .then_some(name)
        }),
    }
}

/// Calls `found` for each relative alias on a front matter line (`aliases: [a, /b]`, or
/// `- a` items under `aliases:`); returns whether the next line is still in the list.
fn relative_aliases(line: &str, in_list: bool, mut found: impl FnMut(&str)) -> bool {
    let trimmed = line.trim();
    let items: Vec<&str> = if let Some(rest) = trimmed
        .strip_prefix("aliases:")
        .or_else(|| trimmed.strip_prefix("aliases ="))
    {
        let rest = rest.trim();
        if rest.is_empty() {
            return true;
        }
        rest.trim_matches(['[', ']']).split(',').collect()
    } else if in_list && trimmed.starts_with("- ") {
        vec![&trimmed[2..]]
    } else {
        return false;
    };
    for item in items {
        let alias = item.trim().trim_matches(['"', '\'']);
        if !alias.is_empty() && !alias.starts_with('/') {
            found(alias);
        }
    }
    in_list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_shortcodes() {
        assert_eq!(
            shortcode(Generator::Hugo, "a {{< youtube id=\"x\" >}}"),
            Some("youtube".into())
        );
        assert_eq!(
            shortcode(Generator::Hugo, "{{% /note %}}"),
            Some("note".into())
        );
        assert_eq!(
            shortcode(Generator::Zola, "{{ youtube(id=\"x\") }}"),
            Some("youtube".into())
        );
        assert_eq!(shortcode(Generator::Zola, "{{ not a call }}"), None);
    }

    #[test]
    fn relative_hugo_aliases() {
        let mut got = Vec::new();
        assert!(!relative_aliases("aliases: [old, /abs/]", false, |a| got.push(a.to_string())));
        assert!(relative_aliases("aliases:", false, |_| {}));
        assert!(relative_aliases("  - rel/x", true, |a| got.push(a.to_string())));
        assert_eq!(got, vec!["old", "rel/x"]);
    }
}
