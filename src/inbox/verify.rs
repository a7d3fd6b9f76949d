//! Checking the signatures of incoming requests without holding up the async threads: the
//! RSA arithmetic runs on a pool of one thread per core, and a cached actor's PEM is parsed
//! once, then kept in memory as long as the store holds the same PEM for that key id.
//!
//! The RSA backend is used through `federation::keys::parse_public_key_pem` and
//! `RequestSignature::verify` (cavage or RFC 9421) only, here; [`VerifyingKey`] names its
//! key type.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use parking_lot::Mutex;

use crate::federation::keys::{parse_public_key_pem, KeyError};
use crate::federation::signature::{IncomingRequest, SignatureError};
use crate::federation::signature9421::RequestSignature;

/// The parsed public key `RequestSignature::verify` takes.
pub type VerifyingKey = crate::federation::keys::PublicKey;

/// Parsed keys kept at most; past that the map starts over (parsing again is cheap).
const MAX_KEYS: usize = 20_000;

/// What a signature covers, owned so that it can go to another thread.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub public_host: String,
    /// The public site's scheme, for RFC 9421's `@target-uri`.
    pub scheme: String,
    pub body: Bytes,
}

pub struct Verifier {
    /// Key id → (the PEM it was parsed from, the key).
    keys: Mutex<HashMap<String, (String, Arc<VerifyingKey>)>>,
    pool: Option<rayon::ThreadPool>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.lock().len())
            .finish_non_exhaustive()
    }
}

impl Default for Verifier {
    fn default() -> Verifier {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cores)
            .thread_name(|n| format!("relais-verify-{n}"))
            .build();
        if let Err(e) = &pool {
            tracing::warn!("no signature pool ({e}); verifying on the request's thread");
        }
        Verifier {
            keys: Mutex::new(HashMap::new()),
            pool: pool.ok(),
        }
    }
}

impl Verifier {
    /// The key `pem` holds, parsed once per key id and PEM.
    pub fn key(&self, key_id: &str, pem: &str) -> Result<Arc<VerifyingKey>, KeyError> {
        if let Some((cached_pem, key)) = self.keys.lock().get(key_id) {
            if cached_pem == pem {
                return Ok(key.clone());
            }
        }
        let key = Arc::new(parse_public_key_pem(pem)?);
        let mut keys = self.keys.lock();
        if keys.len() >= MAX_KEYS {
            keys.clear();
        }
        keys.insert(key_id.to_string(), (pem.to_string(), key.clone()));
        Ok(key)
    }

    /// `RequestSignature::verify` on the pool.
    pub async fn verify(
        &self,
        params: &RequestSignature,
        request: &Arc<SignedRequest>,
        key: Arc<VerifyingKey>,
        now: SystemTime,
    ) -> Result<(), SignatureError> {
        let check = {
            let (params, request) = (params.clone(), request.clone());
            move || verify_owned(&params, &request, &key, now)
        };
        let Some(pool) = &self.pool else {
            return check();
        };
        let (done, result) = tokio::sync::oneshot::channel();
        pool.spawn(move || {
            let _ = done.send(check());
        });
        // The pool never drops a job; a lost answer counts as a failed signature.
        result.await.unwrap_or(Err(SignatureError::Mismatch))
    }
}

fn verify_owned(
    params: &RequestSignature,
    request: &SignedRequest,
    key: &VerifyingKey,
    now: SystemTime,
) -> Result<(), SignatureError> {
    let incoming = IncomingRequest {
        method: &request.method,
        path_and_query: &request.path_and_query,
        headers: &request.headers,
        public_host: &request.public_host,
        body: Some(&request.body),
    };
    params.verify(&incoming, &request.scheme, key, now)
}
