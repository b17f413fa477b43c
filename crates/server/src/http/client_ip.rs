//! Who is calling: the client's IP address, seen through the reverse proxies the operator trusts
//! (`trusted_proxies`), and the key rate limits count it under.
//!
//! Without trusted proxies (the default) the client is the TCP peer and forwarding headers are
//! ignored: anyone can write them. With them, when the peer is a trusted proxy the chain in
//! `Forwarded` (RFC 7239; else `X-Forwarded-For`) is read from the right, skipping trusted
//! proxies; the first address that is not one is the client. Addresses to its left were written
//! by the client itself and are never believed.

use std::cell::Cell;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use crate::state::Shared;

pub use crate::config::parse_proxy;

/// The calling client's address: `peer` unless `peer` is a trusted proxy, then the right-most
/// address of the forwarding chain that is not a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(&ip));
    if !is_trusted(peer) {
        return peer;
    }
    let chain = forwarded_chain(headers);
    let mut client = peer;
    for hop in chain.iter().rev() {
        match hop {
            // A hop the proxy could not name ("unknown", an obfuscated identifier, garbage):
            // the request is counted against the last address we could trust.
            None => return client,
            Some(ip) => {
                client = ip.to_canonical();
                if !is_trusted(client) {
                    return client;
                }
            }
        }
    }
    client
}

/// The addresses of `Forwarded` (every `for=`), or of `X-Forwarded-For` when there is no
/// `Forwarded` header, left to right across all header lines. `None`: a hop with no IP address.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|line| line.split(','))
            .map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| parse_node(v.trim().trim_matches('"')))
                })?
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().ok())
        .flat_map(|line| match line {
            Some(l) => l.split(',').map(|h| parse_node(h.trim())).collect(),
            None => vec![None],
        })
        .collect()
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`,
/// `[2001:db8::1]:4711` or a bare `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (v6, _) = rest.split_once(']')?;
        return v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    s.parse::<SocketAddr>().ok().map(|a| a.ip())
}

pub use crate::limits::rate_key;

/// The client address of the current request (an extractor; set by [`middleware`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The key rate limits count this client under ([`rate_key`]).
    pub fn key(self) -> IpAddr {
        rate_key(self.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientIp>()
            .copied()
            .unwrap_or(ClientIp(IpAddr::from([0, 0, 0, 0]))))
    }
}

/// Works out the client address of every request once, for handlers ([`ClientIp`]) and for
/// [`current`].
pub async fn middleware(State(s): State<Shared>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip());
    let ip = peer.map(|p| client_ip(p, req.headers(), &s.cfg.trusted_proxies));
    if let Some(ip) = ip {
        req.extensions_mut().insert(ClientIp(ip));
    }
    crate::limits::CURRENT
        .scope(Cell::new(ip), next.run(req))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            rate_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            rate_key(ip("2001:db8:1:2::1")),
            rate_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            rate_key(ip("2001:db8:1:2::1")),
            rate_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(rate_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(rate_key(ip("192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn forwarding_headers_count_only_behind_a_trusted_proxy() {
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        // No trusted proxies: the peer, whatever the header says.
        assert_eq!(client_ip(ip("198.51.100.1"), &h, &[]), ip("198.51.100.1"));
        let trusted = vec![parse_proxy("10.0.0.0/8").unwrap()];
        // A peer that is not a trusted proxy: the header is the client's own word.
        assert_eq!(
            client_ip(ip("198.51.100.1"), &h, &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(client_ip(ip("10.1.2.3"), &h, &trusted), ip("203.0.113.9"));
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let trusted = vec![
            parse_proxy("10.0.0.0/8").unwrap(),
            parse_proxy("2001:db8:ffff::1").unwrap(),
        ];
        // The client forged the left-most entry; the proxy appended the real address.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.0.0.7")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("203.0.113.9"));
        // Across header lines, in order.
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("203.0.113.9"));
        // RFC 7239, with ports, quotes, IPv6; preferred over X-Forwarded-For.
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.77"),
            (
                "forwarded",
                "for=1.2.3.4;proto=https, for=\"[2001:db8:cafe::17]:4711\";by=10.0.0.1",
            ),
            ("forwarded", "for=\"[2001:db8:ffff::1]\""),
        ]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted),
            ip("2001:db8:cafe::17")
        );
        // An unnamed hop stops the walk at the last trusted address.
        let h = headers(&[("forwarded", "for=unknown, for=10.9.9.9")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.9.9.9"));
        // Only trusted addresses: the left-most one.
        let h = headers(&[("x-forwarded-for", "10.0.0.3, 10.0.0.2")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.3"));
        // No header at all: the proxy itself.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
        // An IPv4-mapped peer is its IPv4 address.
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &h, &trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn proxy_entries_are_cidrs_or_addresses() {
        assert_eq!(
            parse_proxy("10.1.2.3/8").unwrap(),
            "10.0.0.0/8".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            parse_proxy("::1").unwrap(),
            "::1/128".parse::<IpNet>().unwrap()
        );
        assert!(
            parse_proxy("10.0.0.0/33")
                .unwrap_err()
                .contains("'10.0.0.0/33'")
        );
        assert!(parse_proxy("proxy.internal").is_err());
    }
}
