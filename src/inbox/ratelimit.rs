//! Rate limits of the inbox, in two places so that no request can spend another's allowance:
//! per client address before the signature is checked (junk costs its sender, not the
//! server it names), and per remote server once the signature has verified.
//!
//! `governor`'s keyed GCRA limiter does the counting: constant work per request, and
//! [`RateLimiter::check`] forgets idle keys every so often, so memory follows the keys seen
//! in the last minute whatever their number.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::HeaderMap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::Quota;
use ipnet::IpNet;

/// Idle keys are dropped after this many checks.
const FORGET_EVERY: u64 = 4096;

pub struct RateLimiter<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    limiter: governor::RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// At most `per_minute` requests a minute per key, in bursts of as many.
    pub fn per_minute(per_minute: u32) -> RateLimiter<K> {
        RateLimiter::with_clock(per_minute, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> RateLimiter<K, C> {
    pub fn with_clock(per_minute: u32, clock: C) -> RateLimiter<K, C> {
        let quota =
            Quota::per_minute(NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN));
        RateLimiter {
            limiter: governor::RateLimiter::dashmap_with_clock(quota, clock.clone()),
            clock,
            checks: AtomicU64::new(0),
        }
    }

    /// Counts a request for `key`; `Err(wait)` when over the limit, with the time until the
    /// next request would pass (for `Retry-After`).
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % FORGET_EVERY == FORGET_EVERY - 1 {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

impl<K: Hash + Eq + Clone, C: Clock> std::fmt::Debug for RateLimiter<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("keys", &self.limiter.len())
            .finish_non_exhaustive()
    }
}

/// Counts failures only (wrong credentials), and refuses a key outright once it failed more
/// than its allowance, until the allowance refills: a guesser cannot keep trying, and
/// whoever knows the secret is never slowed down by its own successes.
pub struct FailureLimiter<K: Hash + Eq + Clone> {
    failures: RateLimiter<K>,
    /// Keys over their allowance, until when.
    blocked: parking_lot::Mutex<std::collections::HashMap<K, std::time::Instant>>,
}

/// Blocked keys tracked at most; expired ones are dropped first when full.
const MAX_BLOCKED: usize = 10_000;

impl<K: Hash + Eq + Clone> FailureLimiter<K> {
    /// At most `per_minute` failures a minute per key, in bursts of as many.
    pub fn per_minute(per_minute: u32) -> FailureLimiter<K> {
        FailureLimiter {
            failures: RateLimiter::per_minute(per_minute),
            blocked: parking_lot::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// `Err(wait)` while `key` is blocked.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let mut blocked = self.blocked.lock();
        match blocked.get(key) {
            Some(until) => match until.checked_duration_since(std::time::Instant::now()) {
                Some(wait) if !wait.is_zero() => Err(wait),
                _ => {
                    blocked.remove(key);
                    Ok(())
                }
            },
            None => Ok(()),
        }
    }

    /// Counts a failure; `Err(wait)` when it was one too many, and `key` is blocked for
    /// `wait`.
    pub fn failed(&self, key: &K) -> Result<(), Duration> {
        let wait = self
            .failures
            .check(key)
            .err()
            .map(|wait| wait.max(Duration::from_secs(1)));
        let Some(wait) = wait else {
            return Ok(());
        };
        let now = std::time::Instant::now();
        let mut blocked = self.blocked.lock();
        if blocked.len() >= MAX_BLOCKED {
            blocked.retain(|_, until| *until > now);
        }
        if blocked.len() < MAX_BLOCKED {
            blocked.insert(key.clone(), now + wait);
        }
        Err(wait)
    }
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for FailureLimiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureLimiter")
            .field("blocked", &self.blocked.lock().len())
            .finish_non_exhaustive()
    }
}

/// Failed deploy webhook authentications allowed per client address and minute.
pub const DEPLOY_FAILURES_PER_MINUTE: u32 = 10;

/// The inbox's limiters.
#[derive(Debug)]
pub struct Limits {
    /// Before verification, per client address.
    pub clients: RateLimiter<IpAddr>,
    /// After verification, per remote server (host of the signing actor).
    pub servers: RateLimiter<String>,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` name the real client.
    pub trusted_proxies: Vec<IpNet>,
    /// Failed authentications at the deploy webhook, per client address.
    pub deploy_failures: FailureLimiter<IpAddr>,
}

impl Limits {
    pub fn new(per_client: u32, per_server: u32, trusted_proxies: Vec<IpNet>) -> Limits {
        Limits {
            clients: RateLimiter::per_minute(per_client),
            servers: RateLimiter::per_minute(per_server),
            trusted_proxies,
            deploy_failures: FailureLimiter::per_minute(DEPLOY_FAILURES_PER_MINUTE),
        }
    }

    /// The address a request came from: the connection's peer, or, when that peer is a
    /// trusted proxy, the nearest untrusted address the proxies recorded.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_address(peer, headers, &self.trusted_proxies)
    }
}

fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // Each proxy appends the address it got the request from: walk back from the nearest
    // and stop at the first one no trusted proxy would have written.
    let chain = forwarded_chain(headers);
    for ip in chain.iter().rev() {
        if !is_trusted(ip) {
            return *ip;
        }
    }
    chain.first().copied().unwrap_or(peer)
}

/// The client addresses of `Forwarded` (RFC 7239) or else `X-Forwarded-For`, in order.
fn forwarded_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_string())
            .collect()
    };
    let forwarded: Vec<IpAddr> = values("forwarded")
        .iter()
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                if !name.eq_ignore_ascii_case("for") {
                    return None;
                }
                parse_node(value.trim_matches('"'))
            })
        })
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    values("x-forwarded-for")
        .iter()
        .filter_map(|v| parse_node(v))
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    node.rsplit_once(':')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn limits_each_key_and_refills_over_the_minute() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(2, clock.clone());
        assert!(limiter.check(&"a.example").is_ok());
        assert!(limiter.check(&"a.example").is_ok());
        let wait = limiter.check(&"a.example").unwrap_err();
        assert_eq!(wait, Duration::from_secs(30));
        assert!(limiter.check(&"b.example").is_ok(), "keys count apart");
        clock.advance(Duration::from_secs(30));
        assert!(limiter.check(&"a.example").is_ok(), "one request refilled");
        assert!(limiter.check(&"a.example").is_err());
    }

    #[test]
    fn memory_follows_the_keys_of_the_last_minute() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(10, clock.clone());
        for n in 0..100_000u32 {
            assert!(limiter.check(&n).is_ok());
            if n % 20_000 == 0 {
                clock.advance(Duration::from_secs(61));
            }
        }
        assert!(
            limiter.len() < 30_000,
            "{} keys kept after five minutes of 20k new keys each",
            limiter.len()
        );
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let trusted = vec!["10.0.0.0/8".parse::<IpNet>().unwrap()];
        let xff = headers(&[("x-forwarded-for", "203.0.113.9, 10.0.0.7")]);
        assert_eq!(
            client_address(proxy, &xff, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // Not from a trusted proxy: the header is anyone's to write.
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(client_address(stranger, &xff, &trusted), stranger);
        assert_eq!(client_address(proxy, &xff, &[]), proxy);
        // A client cannot hide behind an address it prepends itself.
        let spoofed = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9")]);
        assert_eq!(
            client_address(proxy, &spoofed, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        let forwarded = headers(&[("forwarded", "for=\"[2001:db8::1]:4711\";proto=https")]);
        assert_eq!(
            client_address(proxy, &forwarded, &trusted),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }
}
