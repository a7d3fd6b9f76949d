//! Netlify: `_headers` and `_redirects` in the output folder. WebFinger is one literal query
//! rule per resource (Netlify decodes the request's query value and compares it with the
//! rule's unencoded value, so Mastodon's `acct:` and Fedify's `acct%3A` both match); the
//! dynamic paths are 200 proxies to the inbox service.
//!
//! Netlify's headers do not apply to proxied responses: the inbox service sets the content
//! types of what it answers itself.

use super::HostRules;
use crate::federation::urls::Urls;

const BANNER: &str = "# Written by relais build; edit config.toml instead.\n";

/// One `_redirects` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub from: String,
    /// `(name, value)` query condition, matched literally.
    pub query: Option<(String, String)>,
    pub to: String,
    pub status: u16,
}

/// The rules as Netlify redirects, in the order Netlify tries them (first match wins):
/// literal WebFinger resources before the catch-alls.
pub fn rewrites(rules: &HostRules) -> Vec<Rewrite> {
    let mut out: Vec<Rewrite> = rules
        .webfinger
        .iter()
        .map(|route| Rewrite {
            from: Urls::WEBFINGER_PATH.into(),
            query: Some(("resource".into(), route.resource.clone())),
            to: route.file.clone(),
            status: 200,
        })
        .collect();
    match &rules.inbox {
        Some(service) => {
            let proxy = |path: &str| Rewrite {
                from: path.into(),
                query: None,
                to: format!("{service}{path}"),
                status: 200,
            };
            // Anything else asked of WebFinger goes to the service, which answers 404/400.
            out.push(proxy(Urls::WEBFINGER_PATH));
            out.extend(rules.dynamic.iter().map(|path| proxy(path)));
        }
        None => out.push(Rewrite {
            from: Urls::WEBFINGER_PATH.into(),
            query: None,
            to: "/404.html".into(),
            status: 404,
        }),
    }
    out
}

/// `_headers` (read by Netlify and by Cloudflare Pages).
pub fn headers_file(rules: &HostRules) -> String {
    let mut out = String::from(BANNER);
    for rule in &rules.headers {
        out.push_str(&rule.pattern);
        out.push('\n');
        for (name, value) in &rule.headers {
            out.push_str(&format!("  {name}: {value}\n"));
        }
    }
    out
}

/// `_redirects`.
pub fn redirects_file(rules: &HostRules) -> String {
    let mut out = String::from(BANNER);
    for r in rewrites(rules) {
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

/// `_redirects` lines sending each page alias (Zola's and Hugo's `aliases`) to its page:
/// permanent, and forced (`301!`) since the alias's own redirect page would shadow the rule.
pub fn alias_lines(aliases: &[(String, String)]) -> String {
    aliases
        .iter()
        .map(|(from, to)| format!("{} {} 301!\n", from.replace(' ', "%20"), to))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::host_rules;
    use super::super::tests::config;
    use super::*;

    #[test]
    fn routes_each_webfinger_resource_to_its_file() {
        let redirects = redirects_file(&host_rules(&config("")));
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
        let redirects = redirects_file(&rules);
        for line in [
            "/ap/users/:name/inbox https://inbox.example/ap/users/:name/inbox 200",
            "/ap/inbox https://inbox.example/ap/inbox 200",
            "/ap/users/:name/followers https://inbox.example/ap/users/:name/followers 200",
            "/ap/:p1/:p2/replies https://inbox.example/ap/:p1/:p2/replies 200",
            "/ap/:p1/:p2/:p3/:p4/:p5/:p6/replies https://inbox.example/ap/:p1/:p2/:p3/:p4/:p5/:p6/replies 200",
            "/.well-known/webfinger https://inbox.example/.well-known/webfinger 200",
        ] {
            assert!(redirects.contains(line), "missing {line} in\n{redirects}");
        }
    }

    #[test]
    fn headers_set_activity_json_and_jrd() {
        let headers = headers_file(&host_rules(&config("")));
        assert!(headers.contains("/ap/*\n  Content-Type: application/activity+json; charset=utf-8"));
        assert!(
            headers.contains("/webfinger/*\n  Content-Type: application/jrd+json; charset=utf-8")
        );
    }
}
