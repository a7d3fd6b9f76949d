//! The URL scheme of every federation document. Ids are permanent, so this is the one place
//! that decides them: the build writes files at these paths, the host rules and the inbox
//! serve them, and delivery refers to them.
//!
//! Static documents are `.json` files under `/ap/`; dynamic endpoints (inboxes, followers,
//! replies) have no file and are proxied to the inbox service.

use crate::config::SiteConfig;

/// The public URLs of one site.
#[derive(Debug, Clone)]
pub struct Urls {
    base: String,
}

impl Urls {
    pub fn new(config: &SiteConfig) -> Urls {
        Urls {
            base: config.base_url.trim_end_matches('/').to_string(),
        }
    }

    /// The URLs of a site known only by its address (`relais doctor` without a site folder).
    pub fn from_base(base_url: &str) -> Urls {
        Urls {
            base: base_url.trim_end_matches('/').to_string(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn abs(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Site path of an actor document (a file in `public/`).
    pub fn actor_path(name: &str) -> String {
        format!("/ap/users/{name}.json")
    }
    pub fn actor(&self, name: &str) -> String {
        self.abs(&Self::actor_path(name))
    }
    pub fn key_id(&self, name: &str) -> String {
        format!("{}#main-key", self.actor(name))
    }
    pub fn outbox_path(name: &str) -> String {
        format!("/ap/users/{name}/outbox.json")
    }
    pub fn outbox(&self, name: &str) -> String {
        self.abs(&Self::outbox_path(name))
    }
    pub fn outbox_page_path(name: &str, page: usize) -> String {
        format!("/ap/users/{name}/outbox/page-{page}.json")
    }
    pub fn outbox_page(&self, name: &str, page: usize) -> String {
        self.abs(&Self::outbox_page_path(name, page))
    }
    pub fn featured_path(name: &str) -> String {
        format!("/ap/users/{name}/featured.json")
    }
    pub fn featured(&self, name: &str) -> String {
        self.abs(&Self::featured_path(name))
    }
    pub fn following_path(name: &str) -> String {
        format!("/ap/users/{name}/following.json")
    }
    pub fn following(&self, name: &str) -> String {
        self.abs(&Self::following_path(name))
    }
    /// Dynamic: served by the inbox service.
    pub fn followers_path(name: &str) -> String {
        format!("/ap/users/{name}/followers")
    }
    pub fn followers(&self, name: &str) -> String {
        self.abs(&Self::followers_path(name))
    }
    /// Dynamic: served by the inbox service.
    pub fn inbox_path(name: &str) -> String {
        format!("/ap/users/{name}/inbox")
    }
    pub fn inbox(&self, name: &str) -> String {
        self.abs(&Self::inbox_path(name))
    }
    /// Dynamic: the shared inbox of every actor of the site.
    pub const SHARED_INBOX_PATH: &'static str = "/ap/inbox";
    pub fn shared_inbox(&self) -> String {
        self.abs(Self::SHARED_INBOX_PATH)
    }
    /// Object document of a post whose HTML lives at `post_path` (`/posts/slug/`).
    pub fn object_path(post_path: &str) -> String {
        format!("/ap{}.json", post_path.trim_end_matches('/'))
    }
    pub fn object(&self, post_path: &str) -> String {
        self.abs(&Self::object_path(post_path))
    }
    /// The `Create` activity listed in the outbox for a post.
    pub fn create_activity(&self, post_path: &str) -> String {
        format!("{}#create", self.object(post_path))
    }
    /// Dynamic: the replies collection of a post.
    pub fn replies_path(post_path: &str) -> String {
        format!("/ap{}/replies", post_path.trim_end_matches('/'))
    }
    pub fn replies(&self, post_path: &str) -> String {
        self.abs(&Self::replies_path(post_path))
    }
    /// Dynamic: a `QuoteAuthorization` we granted (FEP-044f), served by the inbox.
    pub fn quote_authorization_path(token: &str) -> String {
        format!("/ap/quote_authorizations/{token}")
    }
    pub fn quote_authorization(&self, token: &str) -> String {
        self.abs(&Self::quote_authorization_path(token))
    }
    /// WebFinger answer for one actor; the host rules route `?resource=` to it. Outside `/ap/`
    /// because it is served as `application/jrd+json`, not `application/activity+json`.
    pub fn webfinger_file_path(name: &str) -> String {
        format!("/webfinger/{name}.json")
    }
    pub const WEBFINGER_PATH: &'static str = "/.well-known/webfinger";
    pub const NODEINFO_WELL_KNOWN_PATH: &'static str = "/.well-known/nodeinfo";
    pub const NODEINFO_PATH: &'static str = "/nodeinfo/2.1.json";
    pub fn nodeinfo(&self) -> String {
        self.abs(Self::NODEINFO_PATH)
    }
    /// Dynamic: public JSON of a post's replies and reactions, read by the page script
    /// and by `relais build` when the store is remote.
    pub const INTERACTIONS_PATH: &'static str = "/ap/interactions";
    pub fn tag_page(&self, tag_slug: &str) -> String {
        self.abs(&format!("/tags/{tag_slug}/"))
    }
    /// `@name@host`, the handle a Mastodon user types into search.
    pub fn handle(name: &str, host: &str) -> String {
        format!("@{name}@{host}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn urls() -> Urls {
        let c = SiteConfig::parse(
            "title = \"T\"\nbase_url = \"https://example.com/\"\n",
            Path::new("config.toml"),
        )
        .unwrap();
        Urls::new(&c)
    }

    #[test]
    fn object_ids_derive_from_permalinks() {
        let u = urls();
        assert_eq!(
            u.object("/posts/hello/"),
            "https://example.com/ap/posts/hello.json"
        );
        assert_eq!(
            u.replies("/posts/hello/"),
            "https://example.com/ap/posts/hello/replies"
        );
        assert_eq!(
            u.key_id("blog"),
            "https://example.com/ap/users/blog.json#main-key"
        );
    }
}
