//! Static host rules: content types for the JSON documents, the WebFinger query routing and
//! the proxying of dynamic endpoints to the inbox service. Written as `_headers` and
//! `_redirects` in the output folder, which Netlify reads from there. Cloudflare Pages reads
//! the same files but not their query conditions: there WebFinger must go to the inbox.
//!
//! Netlify's `[[headers]]` do not apply to proxied responses: the inbox service sets the
//! content types of what it answers itself.

use crate::config::SiteConfig;
use crate::federation::documents::actors;
use crate::federation::urls::Urls;

pub const ACTIVITY_JSON_UTF8: &str = "application/activity+json; charset=utf-8";
pub const JRD_JSON_UTF8: &str = "application/jrd+json; charset=utf-8";
pub const NODEINFO_JSON: &str =
    "application/json; profile=\"http://nodeinfo.diaspora.software/ns/schema/2.1#\"";

/// One rewrite or proxy rule, in host-neutral form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub from: String,
    /// `(name, value)` query condition, matched literally.
    pub query: Option<(String, String)>,
    pub to: String,
    pub status: u16,
}

/// Headers applied to every path matching `pattern` (a Netlify path with `*` splat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRule {
    pub pattern: String,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct HostRules {
    pub headers: Vec<HeaderRule>,
    pub rewrites: Vec<Rewrite>,
}

fn cors() -> (String, String) {
    ("Access-Control-Allow-Origin".into(), "*".into())
}

/// The rules a site needs on its static host.
pub fn host_rules(config: &SiteConfig) -> HostRules {
    let urls = Urls::new(config);
    let mut rules = HostRules::default();
    rules.headers.push(HeaderRule {
        pattern: "/ap/*".into(),
        headers: vec![
            ("Content-Type".into(), ACTIVITY_JSON_UTF8.into()),
            cors(),
            ("Vary".into(), "Accept".into()),
        ],
    });
    rules.headers.push(HeaderRule {
        pattern: "/webfinger/*".into(),
        headers: vec![("Content-Type".into(), JRD_JSON_UTF8.into()), cors()],
    });
    rules.headers.push(HeaderRule {
        pattern: Urls::NODEINFO_WELL_KNOWN_PATH.into(),
        headers: vec![("Content-Type".into(), "application/json".into()), cors()],
    });
    rules.headers.push(HeaderRule {
        pattern: Urls::NODEINFO_PATH.into(),
        headers: vec![("Content-Type".into(), NODEINFO_JSON.into()), cors()],
    });

    // WebFinger: one literal query rule per resource naming an actor, by handle or by id.
    for actor in actors(config) {
        let file = Urls::webfinger_file_path(&actor.name);
        for resource in [
            format!("acct:{}@{}", actor.name, config.host()),
            urls.actor(&actor.name),
        ] {
            rules.rewrites.push(Rewrite {
                from: Urls::WEBFINGER_PATH.into(),
                query: Some(("resource".into(), resource)),
                to: file.clone(),
                status: 200,
            });
        }
    }

    match config.fediverse.inbox_url.as_deref() {
        Some(service) => {
            let service = service.trim_end_matches('/');
            let proxy = |path: &str| Rewrite {
                from: path.into(),
                query: None,
                to: format!("{service}{path}"),
                status: 200,
            };
            // Anything else asked of WebFinger goes to the service, which answers 404/400.
            rules.rewrites.push(proxy(Urls::WEBFINGER_PATH));
            rules.rewrites.push(proxy(&Urls::inbox_path(":name")));
            rules.rewrites.push(proxy(&Urls::followers_path(":name")));
            rules.rewrites.push(proxy(Urls::SHARED_INBOX_PATH));
            rules
                .rewrites
                .push(proxy(&Urls::replies_path("/posts/:slug/")));
            rules.rewrites.push(proxy(Urls::INTERACTIONS_PATH));
        }
        None => rules.rewrites.push(Rewrite {
            from: Urls::WEBFINGER_PATH.into(),
            query: None,
            to: "/404.html".into(),
            status: 404,
        }),
    }
    rules
}

impl HostRules {
    /// Netlify / Cloudflare Pages `_headers` file.
    pub fn to_headers_file(&self) -> String {
        let mut out = String::from("# Written by relais build; edit config.toml instead.\n");
        for rule in &self.headers {
            out.push_str(&rule.pattern);
            out.push('\n');
            for (name, value) in &rule.headers {
                out.push_str(&format!("  {name}: {value}\n"));
            }
        }
        out
    }

    /// Netlify `_redirects` file. Literal query conditions match before the catch-alls,
    /// because Netlify applies the first matching rule.
    pub fn to_redirects_file(&self) -> String {
        let mut out = String::from("# Written by relais build; edit config.toml instead.\n");
        for r in &self.rewrites {
            match &r.query {
                Some((name, value)) => out.push_str(&format!(
                    "{} {name}={value} {} {}\n",
                    r.from, r.to, r.status
                )),
                None => out.push_str(&format!("{} {} {}\n", r.from, r.to, r.status)),
            }
        }
        out
    }

    /// The same rules as `netlify.toml` tables, for sites that keep their rules there.
    pub fn to_netlify_toml(&self) -> String {
        let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
        let mut out = String::new();
        for r in &self.rewrites {
            out.push_str("[[redirects]]\n");
            out.push_str(&format!("  from = {}\n", quote(&r.from)));
            out.push_str(&format!("  to = {}\n", quote(&r.to)));
            out.push_str(&format!("  status = {}\n", r.status));
            if let Some((name, value)) = &r.query {
                out.push_str(&format!("  query = {{ {name} = {} }}\n", quote(value)));
            }
            out.push('\n');
        }
        for rule in &self.headers {
            out.push_str("[[headers]]\n");
            out.push_str(&format!("  for = {}\n", quote(&rule.pattern)));
            out.push_str("  [headers.values]\n");
            for (name, value) in &rule.headers {
                out.push_str(&format!("    {name} = {}\n", quote(value)));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(extra: &str) -> SiteConfig {
        SiteConfig::parse(
            &format!(
                "title = \"T\"\nbase_url = \"https://blog.example\"\n\
                 [[authors]]\nid = \"ann\"\nname = \"Ann\"\n{extra}"
            ),
            Path::new("config.toml"),
        )
        .unwrap()
    }

    #[test]
    fn routes_each_webfinger_resource_to_its_file() {
        let rules = host_rules(&config(""));
        let redirects = rules.to_redirects_file();
        assert!(redirects.contains(
            "/.well-known/webfinger resource=acct:blog@blog.example /webfinger/blog.json 200"
        ));
        assert!(redirects.contains(
            "/.well-known/webfinger resource=https://blog.example/ap/users/ann.json /webfinger/ann.json 200"
        ));
        // Without an inbox service, unknown resources get a 404, after the literal rules.
        let last = redirects.lines().last().unwrap();
        assert_eq!(last, "/.well-known/webfinger /404.html 404");
    }

    #[test]
    fn proxies_dynamic_endpoints_to_the_inbox_service() {
        let rules = host_rules(&config(
            "[fediverse]\ninbox_url = \"https://inbox.example/\"\n",
        ));
        let redirects = rules.to_redirects_file();
        for line in [
            "/ap/users/:name/inbox https://inbox.example/ap/users/:name/inbox 200",
            "/ap/inbox https://inbox.example/ap/inbox 200",
            "/ap/users/:name/followers https://inbox.example/ap/users/:name/followers 200",
            "/ap/posts/:slug/replies https://inbox.example/ap/posts/:slug/replies 200",
            "/.well-known/webfinger https://inbox.example/.well-known/webfinger 200",
        ] {
            assert!(redirects.contains(line), "missing {line} in\n{redirects}");
        }
    }

    #[test]
    fn headers_set_activity_json_and_jrd() {
        let headers = host_rules(&config("")).to_headers_file();
        assert!(headers.contains("/ap/*\n  Content-Type: application/activity+json; charset=utf-8"));
        assert!(
            headers.contains("/webfinger/*\n  Content-Type: application/jrd+json; charset=utf-8")
        );
    }

    #[test]
    fn netlify_toml_form_parses() {
        let rules = host_rules(&config(
            "[fediverse]\ninbox_url = \"https://inbox.example\"\n",
        ));
        let parsed: toml::Table = toml::from_str(&rules.to_netlify_toml()).unwrap();
        let redirects = parsed["redirects"].as_array().unwrap();
        assert_eq!(redirects.len(), rules.rewrites.len());
        assert_eq!(
            redirects[0]["query"]["resource"].as_str(),
            Some("acct:blog@blog.example")
        );
        assert_eq!(
            parsed["headers"].as_array().unwrap().len(),
            rules.headers.len()
        );
    }
}
