//! Cloudflare Pages: an advanced-mode `_worker.js` in the output folder. Pages drops the
//! `_redirects` lines relais needs (query conditions: "Expected exactly 2 or 3
//! whitespace-separated tokens"; proxies elsewhere: "Proxy (200) redirects can only point to
//! relative paths"), so the worker does the routing: WebFinger from the `/webfinger/` files,
//! the dynamic paths forwarded to the inbox service, everything else from the static assets,
//! which get their content types from `_headers`.
//!
//! The worker's data is one JSON literal written by serde_json, so no configured value can
//! break out of its string; the code around it is fixed.

use serde::Serialize;

use super::HostRules;
use crate::federation::urls::Urls;

#[derive(Serialize)]
struct WorkerRules<'a> {
    webfinger: &'a str,
    /// `[resource, file]` pairs, read into a `Map` (no prototype keys to stumble on).
    resources: Vec<[&'a str; 2]>,
    #[serde(rename = "webfingerHeaders")]
    webfinger_headers: Vec<(String, String)>,
    dynamic: &'a [String],
    inbox: Option<&'a str>,
}

const WORKER: &str = r#"// Written by relais build; edit config.toml instead.
// Cloudflare Pages runs this for every request (advanced mode): it answers WebFinger from the
// files under /webfinger/, forwards the inbox paths to the inbox service and serves the rest
// from the static files, whose content types come from _headers.
const RULES = __RULES__;
const RESOURCES = new Map(RULES.resources);

// Netlify-style path patterns: `:name` is one segment, a final `*` the rest.
function matches(pattern, path) {
  if (pattern.endsWith("*")) return path.startsWith(pattern.slice(0, -1));
  const want = pattern.split("/");
  const got = path.split("/");
  return want.length === got.length &&
    want.every((w, i) => (w.startsWith(":") ? got[i] !== "" : w === got[i]));
}

// Method, headers and body go through unchanged: the inbox checks signatures against the
// site's base_url, not against the Host it is reached at.
function forward(request, url) {
  return fetch(new Request(RULES.inbox + url.pathname + url.search, request));
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === RULES.webfinger) {
      // searchParams decodes, so Mastodon's acct:blog@host and Fedify's acct%3Ablog%40host
      // name the same resource.
      const file = RESOURCES.get(url.searchParams.get("resource"));
      if (file !== undefined) {
        const asset = await env.ASSETS.fetch(new URL(file, url));
        const response = new Response(asset.body, asset);
        for (const [name, value] of RULES.webfingerHeaders) response.headers.set(name, value);
        return response;
      }
      if (RULES.inbox !== null) return forward(request, url);
      return new Response("Not found\n", { status: 404 });
    }
    if (RULES.inbox !== null && RULES.dynamic.some((p) => matches(p, url.pathname))) {
      return forward(request, url);
    }
    return env.ASSETS.fetch(request);
  },
};
"#;

/// The `_worker.js` for these rules.
pub fn worker_js(rules: &HostRules) -> String {
    let data = WorkerRules {
        webfinger: Urls::WEBFINGER_PATH,
        resources: rules
            .webfinger
            .iter()
            .map(|r| [r.resource.as_str(), r.file.as_str()])
            .collect(),
        webfinger_headers: rules.headers_for(Urls::WEBFINGER_PATH),
        dynamic: &rules.dynamic,
        inbox: rules.inbox.as_deref(),
    };
    // Serialising strings, vectors and options cannot fail.
    let json = serde_json::to_string(&data).unwrap_or_default();
    WORKER.replace("__RULES__", &json)
}

#[cfg(test)]
mod tests {
    use super::super::host_rules;
    use super::super::tests::config;
    use super::*;

    fn embedded(js: &str) -> serde_json::Value {
        let line = js
            .lines()
            .find_map(|l| l.strip_prefix("const RULES = "))
            .unwrap();
        serde_json::from_str(line.trim_end_matches(';')).unwrap()
    }

    #[test]
    fn embeds_the_rules_as_one_json_literal() {
        let js = worker_js(&host_rules(&config(
            "[fediverse]\ninbox_url = \"https://inbox.example/\"\n",
        )));
        let rules = embedded(&js);
        assert_eq!(rules["inbox"], "https://inbox.example");
        assert_eq!(
            rules["resources"][0],
            serde_json::json!(["acct:blog@blog.example", "/webfinger/blog.json"])
        );
        assert!(rules["dynamic"]
            .as_array()
            .unwrap()
            .contains(&"/ap/users/:name/inbox".into()));
        assert_eq!(
            rules["webfingerHeaders"][0],
            serde_json::json!(["Content-Type", super::super::JRD_JSON_UTF8])
        );
        assert!(!js.contains("__RULES__"));
    }

    #[test]
    fn without_an_inbox_nothing_is_forwarded() {
        let rules = embedded(&worker_js(&host_rules(&config(""))));
        assert_eq!(rules["inbox"], serde_json::Value::Null);
        assert_eq!(rules["dynamic"], serde_json::json!([]));
    }
}
