//! The SSRF guard: which URLs and resolved addresses federation may contact. A remote
//! document names the URLs we fetch; without this, it could point us at loopback, the
//! cloud's metadata address or the machine's private network.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use super::FetchError;

/// Why a host may not be contacted. Travels through reqwest's error chain from the resolver
/// and the redirect policy, and is recovered into [`FetchError::Blocked`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("{host}: {reason}")]
pub struct BlockedAddress {
    pub host: String,
    pub reason: String,
}
/// Resolves names with the system resolver, keeping only public addresses.
pub(super) struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|a| is_public_address(a.ip()))
                .collect();
            if public.is_empty() {
                let listed: Vec<String> = resolved.iter().map(|a| a.ip().to_string()).collect();
                return Err(Box::new(BlockedAddress {
                    host,
                    reason: format!(
                        "resolves only to non-public addresses ({})",
                        listed.join(", ")
                    ),
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// Only http(s), and no IP literal outside the public internet (names are checked once
/// resolved, by [`PublicOnlyResolver`]).
pub(super) fn check_url(url: &Url, allow_private: bool) -> Result<(), FetchError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::InvalidUrl(url.to_string()));
    }
    let ip = match url.host() {
        None => return Err(FetchError::InvalidUrl(url.to_string())),
        Some(Host::Domain(_)) => return Ok(()),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
    };
    if allow_private || is_public_address(ip) {
        return Ok(());
    }
    Err(FetchError::Blocked(BlockedAddress {
        host: ip.to_string(),
        reason: "not a public address".into(),
    }))
}

/// Whether `ip` is on the public internet: not loopback, private (RFC 1918), link-local,
/// CGNAT, unique-local, unspecified, multicast, broadcast, reserved, benchmarking or
/// documentation space. IPv6 forms embedding an IPv4 address are judged by that address;
/// tunnels and translators that can reach any IPv4 address (Teredo, local-use NAT64, the
/// 6to4 relay anycast) are refused outright.
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            let embedded =
                |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
            // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the embedded IPv4 address.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_public_v4(embedded(s[6], s[7]));
            }
            if s[0] == 0x2002 {
                return is_public_v4(embedded(s[1], s[2]));
            }
            // Teredo (2001::/32) hides its IPv4 server and client; local-use NAT64
            // (64:ff9b:1::/48, RFC 8215) translates to whatever the operator's network is.
            if (s[0] == 0x2001 && s[1] == 0) || s[..3] == [0x64, 0xff9b, 1] {
                return false;
            }
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || s[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible (deprecated)
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[..4] == [0x0100, 0, 0, 0]) // discard-only 100::/64
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0 // "this network", 0.0.0.0 included
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_documentation()
        || (a == 100 && (b & 0xc0) == 64) // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast (deprecated, RFC 7526)
        || (a == 198 && (b & 0xfe) == 18) // benchmarking 198.18.0.0/15
        || a >= 240) // reserved, broadcast included
}
