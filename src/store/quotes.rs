//! Quote authorizations (FEP-044f) we granted: one per quoting post and quoted post, each
//! served as a `QuoteAuthorization` document at a stable URL named by its token.

use super::sql::{params, Row};
use super::{time, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteAuthorization {
    /// The last path segment of the authorization's URL.
    pub token: String,
    /// The `QuoteRequest` it answered.
    pub request_id: String,
    /// Who quotes.
    pub actor_id: String,
    /// The quoting post (`instrument`).
    pub quote_id: String,
    /// Our quoted post (`object`).
    pub post_id: String,
    /// Our actor the post belongs to.
    pub actor_name: String,
}

impl Store {
    /// Records an authorization; when the same post was already authorized to quote ours,
    /// the existing one is returned (a repeated request gets the same URL).
    pub fn authorize_quote(
        &self,
        new: &QuoteAuthorization,
    ) -> Result<QuoteAuthorization, StoreError> {
        self.with_conn(|c| {
            c.execute(
                "INSERT INTO quote_authorizations (token, request_id, actor_id, quote_id, \
                 post_id, actor_name, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (quote_id, post_id) DO UPDATE SET request_id = excluded.request_id",
                params![
                    new.token,
                    new.request_id,
                    new.actor_id,
                    new.quote_id,
                    new.post_id,
                    new.actor_name,
                    time::now(),
                ],
            )?;
            c.query_row(
                "SELECT token, request_id, actor_id, quote_id, post_id, actor_name \
                 FROM quote_authorizations WHERE quote_id = ?1 AND post_id = ?2",
                params![new.quote_id, new.post_id],
                row,
            )
        })
    }

    pub fn quote_authorization(
        &self,
        token: &str,
    ) -> Result<Option<QuoteAuthorization>, StoreError> {
        self.with_conn(|c| {
            c.query_opt(
                "SELECT token, request_id, actor_id, quote_id, post_id, actor_name \
                 FROM quote_authorizations WHERE token = ?1",
                params![token],
                row,
            )
        })
    }

    /// The authorizations granted to quote our post `post_id`.
    pub fn quote_authorizations_of(
        &self,
        post_id: &str,
    ) -> Result<Vec<QuoteAuthorization>, StoreError> {
        self.with_conn(|c| {
            c.query_all(
                "SELECT token, request_id, actor_id, quote_id, post_id, actor_name \
                 FROM quote_authorizations WHERE post_id = ?1 ORDER BY created_at, token",
                params![post_id],
                row,
            )
        })
    }

    /// Forgets a revoked authorization, and the quote it admitted: its URL answers 404
    /// from now on, and a new request for the same quote is judged afresh.
    pub fn remove_quote_authorization(&self, token: &str) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            let tx = c.begin()?;
            tx.execute(
                "DELETE FROM received_quotes WHERE token = ?1",
                params![token],
            )?;
            let removed = tx.execute(
                "DELETE FROM quote_authorizations WHERE token = ?1",
                params![token],
            )? == 1;
            tx.commit()?;
            Ok(removed)
        })
    }

    /// The authorization that lets `quote_id`, by `actor_id`, quote our `post_id`.
    pub fn quote_authorization_for(
        &self,
        quote_id: &str,
        post_id: &str,
        actor_id: &str,
    ) -> Result<Option<QuoteAuthorization>, StoreError> {
        self.with_conn(|c| {
            c.query_opt(
                "SELECT token, request_id, actor_id, quote_id, post_id, actor_name \
                 FROM quote_authorizations WHERE quote_id = ?1 AND post_id = ?2 AND actor_id = ?3",
                params![quote_id, post_id, actor_id],
                row,
            )
        })
    }

    /// Records an authorized quote of our post, shown under it; false when known already.
    pub fn add_received_quote(
        &self,
        auth: &QuoteAuthorization,
        url: &str,
    ) -> Result<bool, StoreError> {
        let host = super::host_of(&auth.actor_id).unwrap_or_default();
        self.with_conn(|c| {
            Ok(c.execute(
                "INSERT INTO received_quotes (quote_id, actor_id, actor_host, post_id, \
                 url, token, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT DO NOTHING",
                params![
                    auth.quote_id,
                    auth.actor_id,
                    host,
                    auth.post_id,
                    url,
                    auth.token,
                    time::now(),
                ],
            )? == 1)
        })
    }

    /// Forgets a quote its author deleted; false when there was none.
    pub fn remove_received_quote(
        &self,
        quote_id: &str,
        actor_id: &str,
    ) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            Ok(c.execute(
                "DELETE FROM received_quotes WHERE quote_id = ?1 AND actor_id = ?2",
                params![quote_id, actor_id],
            )? == 1)
        })
    }
}

fn row(r: &Row) -> Result<QuoteAuthorization, StoreError> {
    Ok(QuoteAuthorization {
        token: r.get(0)?,
        request_id: r.get(1)?,
        actor_id: r.get(2)?,
        quote_id: r.get(3)?,
        post_id: r.get(4)?,
        actor_name: r.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_stores;

    #[test]
    fn a_repeated_request_keeps_its_token() {
        for store in test_stores() {
            let mut auth = QuoteAuthorization {
                token: "t1".into(),
                request_id: "https://r.example/q/1".into(),
                actor_id: "https://r.example/users/bob".into(),
                quote_id: "https://r.example/statuses/9".into(),
                post_id: "https://blog.example/ap/posts/hello.json".into(),
                actor_name: "blog".into(),
            };
            assert_eq!(store.authorize_quote(&auth).unwrap(), auth);
            auth.token = "t2".into();
            auth.request_id = "https://r.example/q/2".into();
            let kept = store.authorize_quote(&auth).unwrap();
            assert_eq!(kept.token, "t1");
            assert_eq!(kept.request_id, "https://r.example/q/2");
            assert_eq!(store.quote_authorization("t1").unwrap(), Some(kept));
            assert_eq!(store.quote_authorization("t2").unwrap(), None);
        }
    }
}
