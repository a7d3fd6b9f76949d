//! A Caddyfile (Caddy 2) for a server of one's own, or for the domain of a GitHub Pages site,
//! which sets no headers: Caddy serves `public/` with the content types, answers WebFinger
//! from the `/webfinger/` files and reverse-proxies the dynamic paths to the inbox service.
//!
//! Caddy runs `header` before `rewrite` whatever the order in the file, so each WebFinger
//! resource gets its own `handle` block with its own `header` lines rather than relying on
//! the `/webfinger/*` rule after the rewrite.

use super::HostRules;
use crate::config::SiteConfig;
use crate::federation::urls::Urls;

/// A Caddyfile token in double quotes. Caddy keeps other backslashes literally.
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\\\""))
}

/// Netlify-syntax pattern as a Caddy path matcher: `:name` segments become `*`.
fn caddy_path(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|segment| {
            if segment.starts_with(':') {
                "*"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn header_lines(out: &mut String, indent: &str, matcher: &str, headers: &[(String, String)]) {
    for (name, value) in headers {
        out.push_str(&format!(
            "{indent}header {matcher}{name} {}\n",
            quote(value)
        ));
    }
}

/// The site block serving the folder `root` (where `public/` is put on the server) at the
/// site's `base_url`.
pub fn caddyfile(config: &SiteConfig, root: &str) -> String {
    let rules = super::host_rules(config);
    let scheme = url::Url::parse(&config.base_url)
        .map(|u| u.scheme().to_string())
        .unwrap_or_else(|_| "https".into());
    let mut out = String::from(
        "# Written by relais for a server of your own (or in front of GitHub Pages).\n\
         # Caddy serves the built site with the types the fediverse expects and hands the\n\
         # inbox paths to the relais inbox service.\n",
    );
    out.push_str(&format!("{scheme}://{} {{\n", config.host()));
    out.push_str(&format!("\troot * {}\n", quote(root)));
    out.push_str("\tencode gzip\n\n");
    webfinger_blocks(&mut out, &rules);
    dynamic_block(&mut out, &rules);
    out.push_str("\thandle {\n");
    for rule in &rules.headers {
        let matcher = format!("{} ", caddy_path(&rule.pattern));
        header_lines(&mut out, "\t\t", &matcher, &rule.headers);
    }
    out.push_str("\t\tfile_server\n\t}\n}\n");
    out
}

/// One block per resource: Caddy's query matcher compares decoded values, so Mastodon's
/// `acct:` and Fedify's `acct%3A` both match the unencoded resource.
fn webfinger_blocks(out: &mut String, rules: &HostRules) {
    let headers = rules.headers_for(Urls::WEBFINGER_PATH);
    for (n, route) in rules.webfinger.iter().enumerate() {
        out.push_str(&format!(
            "\t@webfinger{n} {{\n\t\tpath {}\n\t\tquery {}\n\t}}\n",
            Urls::WEBFINGER_PATH,
            quote(&format!("resource={}", route.resource))
        ));
        out.push_str(&format!("\thandle @webfinger{n} {{\n"));
        out.push_str(&format!("\t\trewrite * {}\n", quote(&route.file)));
        header_lines(out, "\t\t", "", &headers);
        out.push_str("\t\tfile_server\n\t}\n");
    }
    out.push('\n');
}

/// The inbox service answers the dynamic paths and the WebFinger resources the site does
/// not know; without one, those get a 404 here.
fn dynamic_block(out: &mut String, rules: &HostRules) {
    let Some(inbox) = &rules.inbox else {
        out.push_str(&format!(
            "\t@webfinger path {}\n\thandle @webfinger {{\n\t\trespond 404\n\t}}\n\n",
            Urls::WEBFINGER_PATH
        ));
        return;
    };
    let mut paths = vec![Urls::WEBFINGER_PATH.to_string()];
    paths.extend(rules.dynamic.iter().map(|p| caddy_path(p)));
    out.push_str(&format!("\t@inbox path {}\n", paths.join(" ")));
    out.push_str("\thandle @inbox {\n");
    // An upstream is scheme://host[:port]; a path of the inbox URL becomes a prefix.
    let (origin, prefix) = match url::Url::parse(inbox) {
        Ok(url) => {
            let prefix = url.path().trim_end_matches('/').to_string();
            let origin = inbox
                .strip_suffix(prefix.as_str())
                .unwrap_or(inbox)
                .to_string();
            (origin, prefix)
        }
        Err(_) => (inbox.clone(), String::new()),
    };
    if !prefix.is_empty() {
        out.push_str(&format!(
            "\t\trewrite * {}\n",
            quote(&format!("{prefix}{{uri}}"))
        ));
    }
    // The inbox checks signatures against base_url, not Host: giving the upstream its own
    // Host lets it sit behind another proxy or platform router.
    out.push_str(&format!(
        "\t\treverse_proxy {} {{\n\t\t\theader_up Host {{upstream_hostport}}\n\t\t}}\n",
        quote(&origin)
    ));
    out.push_str("\t}\n\n");
}

#[cfg(test)]
mod tests {
    use super::super::tests::config;
    use super::*;

    #[test]
    fn serves_types_routes_webfinger_and_proxies_the_inbox() {
        let text = caddyfile(
            &config("[fediverse]\ninbox_url = \"https://inbox.example/relais/\"\n"),
            "/srv/blog",
        );
        assert!(text.contains("https://blog.example {\n\troot * \"/srv/blog\"\n"));
        assert!(text.contains("\t\tquery \"resource=acct:blog@blog.example\"\n"));
        assert!(text.contains("\t\trewrite * \"/webfinger/blog.json\"\n\t\theader Content-Type \"application/jrd+json; charset=utf-8\"\n"));
        assert!(text.contains(
            "\t@inbox path /.well-known/webfinger /ap/users/*/inbox /ap/users/*/followers /ap/inbox /ap/*/replies /ap/*/*/replies /ap/*/*/*/replies /ap/*/*/*/*/replies /ap/*/*/*/*/*/replies /ap/*/*/*/*/*/*/replies /ap/interactions /ap/quote_authorizations/*\n"
        ));
        assert!(text.contains(
            "\t\trewrite * \"/relais{uri}\"\n\t\treverse_proxy \"https://inbox.example\" {"
        ));
        assert!(text.contains(
            "\t\theader /nodeinfo/2.1.json Content-Type \"application/json; profile=\\\"http://nodeinfo.diaspora.software/ns/schema/2.1#\\\"\"\n"
        ));
        // Every block is closed.
        assert_eq!(text.matches('{').count(), text.matches('}').count());
    }

    #[test]
    fn without_an_inbox_unknown_webfinger_is_404() {
        let text = caddyfile(&config(""), "/srv/blog");
        assert!(text.contains("\thandle @webfinger {\n\t\trespond 404\n\t}\n"));
        assert!(!text.contains("reverse_proxy"));
    }
}
