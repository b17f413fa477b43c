//! The address guard of outbound fetches: every address a host name resolves to is checked after
//! DNS resolution and before any connection, inside the resolver reqwest uses, so the addresses
//! checked are exactly the ones connected to. Special-use addresses (RFC 6890 and the IANA
//! special-purpose registries) refuse the whole fetch.
//!
//! Built for Client ID Metadata Documents; nothing in it is CIMD-specific, so any fetcher whose
//! URL an untrusted party chooses (a TAT profile's `jwks_url`, say) can use it: build the
//! `reqwest::Client` with [`GuardedResolver`] as its `dns_resolver`, check IP-literal hosts with
//! [`check_ip_literal`] (reqwest connects to those without asking the resolver), and find the
//! refusal in a failed request's error chain with [`find_guard_error`].

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// If `ip` must not be fetched from, the special-purpose block it falls in.
///
/// Hand-written because std's `IpAddr::is_global` is unstable (rust-lang/rust#27709), and the
/// stable predicates (`is_private`, `is_loopback`, …) cover only part of the registries. Sources:
/// RFC 6890, the IANA IPv4 and IPv6 Special-Purpose Address Registries. Every block is refused
/// whole, including the few sub-blocks the registry marks globally reachable (e.g. inside
/// 2001::/23): a metadata document has no business living there. IPv6 forms that embed an IPv4
/// address the packets will actually reach (IPv4-mapped, NAT64, 6to4) are judged by that
/// IPv4 address.
pub fn special_use(ip: IpAddr) -> Option<Cow<'static, str>> {
    match ip {
        IpAddr::V4(v4) => special_use_v4(v4).map(Cow::Borrowed),
        IpAddr::V6(v6) => special_use_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

const V4_SPECIAL: &[([u8; 4], u32, &str)] = &[
    ([0, 0, 0, 0], 8, "\"this network\" 0.0.0.0/8"),
    ([10, 0, 0, 0], 8, "private-use 10.0.0.0/8"),
    (
        [100, 64, 0, 0],
        10,
        "shared address space (CGNAT) 100.64.0.0/10",
    ),
    ([127, 0, 0, 0], 8, "loopback 127.0.0.0/8"),
    ([169, 254, 0, 0], 16, "link-local 169.254.0.0/16"),
    ([172, 16, 0, 0], 12, "private-use 172.16.0.0/12"),
    ([192, 0, 0, 0], 24, "IETF protocol assignments 192.0.0.0/24"),
    (
        [192, 0, 2, 0],
        24,
        "documentation (TEST-NET-1) 192.0.2.0/24",
    ),
    ([192, 88, 99, 0], 24, "6to4 relay anycast 192.88.99.0/24"),
    ([192, 168, 0, 0], 16, "private-use 192.168.0.0/16"),
    ([198, 18, 0, 0], 15, "benchmarking 198.18.0.0/15"),
    (
        [198, 51, 100, 0],
        24,
        "documentation (TEST-NET-2) 198.51.100.0/24",
    ),
    (
        [203, 0, 113, 0],
        24,
        "documentation (TEST-NET-3) 203.0.113.0/24",
    ),
    ([224, 0, 0, 0], 4, "multicast 224.0.0.0/4"),
    (
        [255, 255, 255, 255],
        32,
        "limited broadcast 255.255.255.255",
    ),
    ([240, 0, 0, 0], 4, "reserved 240.0.0.0/4"),
];

fn special_use_v4(ip: Ipv4Addr) -> Option<&'static str> {
    V4_SPECIAL
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, name)| *name)
}

const V6_SPECIAL: &[([u16; 8], u32, &str)] = &[
    ([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified ::"),
    ([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback ::1"),
    // Deprecated IPv4-compatible addresses (RFC 4291 §2.5.5.1); includes :: and ::1.
    (
        [0, 0, 0, 0, 0, 0, 0, 0],
        96,
        "IPv4-compatible (deprecated) ::/96",
    ),
    (
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "local-use NAT64 64:ff9b:1::/48",
    ),
    ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only 100::/64"),
    (
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "IETF protocol assignments 2001::/23",
    ),
    (
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "documentation 2001:db8::/32",
    ),
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation 3fff::/20"),
    (
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        "segment routing SIDs 5f00::/16",
    ),
    ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local fc00::/7"),
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local fe80::/10"),
    (
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        "site-local (deprecated) fec0::/10",
    ),
    ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast ff00::/8"),
];

fn special_use_v6(ip: Ipv6Addr) -> Option<Cow<'static, str>> {
    let bits = u128::from(ip);
    let embedded = |form: &str, v4: Ipv4Addr| {
        special_use_v4(v4).map(|range| Cow::Owned(format!("{form} of {v4}, {range}")))
    };
    // IPv4-mapped ::ffff:0:0/96: the connection goes to the embedded IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return embedded("IPv4-mapped ::ffff:0:0/96", v4);
    }
    // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052): translated to the embedded IPv4 address.
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return embedded(
            "NAT64 64:ff9b::/96",
            Ipv4Addr::from((bits & 0xffff_ffff) as u32),
        );
    }
    // 6to4 2002::/16 (RFC 3056): bits 16..48 are the IPv4 address of the tunnel end.
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        let v4 = Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32);
        return embedded("6to4 2002::/16", v4);
    }
    V6_SPECIAL
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
        .map(|(_, _, name)| Cow::Borrowed(*name))
}

/// Where connections may go once the special-use guard has let an address through.
///
/// This is a second, independent check at the same two places the guard sits (the resolver
/// wrapper and the IP-literal check), with its own trivially simple rule. In production
/// ([`CimdResolver::new`]) it lets everything through: the guard has decided. Under
/// [`CimdResolver::with_resolver`] — the test constructor — it allows loopback only, so a test
/// that maps `evil.test` to 10.0.0.5 can never send a packet there, even if a future edit breaks
/// the guard: the test then fails with this policy's error instead of the guard's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectPolicy {
    Any,
    LoopbackOnly,
}

impl ConnectPolicy {
    pub fn permits(self, ip: IpAddr) -> bool {
        match self {
            ConnectPolicy::Any => true,
            ConnectPolicy::LoopbackOnly => ip.to_canonical().is_loopback(),
        }
    }
}

/// What the guarded resolver refused; travels inside reqwest's error chain and is turned back
/// into a [`CimdError`] by [`CimdResolver`].
#[derive(Debug, Clone)]
pub enum GuardError {
    Lookup {
        host: String,
        detail: String,
    },
    NoAddress {
        host: String,
    },
    SpecialUse {
        host: String,
        addr: IpAddr,
        range: Cow<'static, str>,
    },
    Policy {
        host: String,
        addr: IpAddr,
    },
}

impl fmt::Display for GuardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardError::Lookup { host, detail } => {
                write!(f, "host {host} could not be resolved: {detail}")
            }
            GuardError::NoAddress { host } => write!(f, "host {host} resolves to no address"),
            GuardError::SpecialUse { host, addr, range } => {
                write!(
                    f,
                    "host {host} resolves to a special-use address {addr} ({range})"
                )
            }
            GuardError::Policy { host, addr } => write!(
                f,
                "refusing to connect to {addr} (host {host}): this resolver, built with \
                 CimdResolver::with_resolver for tests, connects to loopback addresses only"
            ),
        }
    }
}

impl std::error::Error for GuardError {}

/// The only source of addresses for host names: the inner resolver's answer is checked in full
/// before reqwest sees any of it, so the addresses checked are exactly the ones connected to
/// (no second lookup, no DNS-rebinding window). One refused address refuses the whole answer.
/// Dropping it and connecting to the public ones would also be safe for this connection, but
/// refusing is simpler to reason about, gives the document's publisher one clear error instead
/// of fetches that succeed or fail depending on the answer's order, and a legitimate document
/// host has no reason to publish internal addresses.
pub struct GuardedResolver {
    inner: Arc<dyn Resolve>,
    /// Host names (lower-case) exempt from the special-use check: the `allow_hosts` names, set
    /// only on the client used for requests whose host *and* port matched an entry.
    exempt: Vec<String>,
    policy: ConnectPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let exempt = self.exempt.contains(&host);
        let policy = self.policy;
        let lookup = self.inner.resolve(name);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match lookup.await {
                Ok(addrs) => addrs.collect(),
                Err(e) => {
                    return Err(Box::new(GuardError::Lookup {
                        host,
                        detail: e.to_string(),
                    }) as BoxError);
                }
            };
            check_addresses(&host, &addrs, exempt, policy).map_err(|e| Box::new(e) as BoxError)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

pub fn check_addresses(
    host: &str,
    addrs: &[SocketAddr],
    exempt: bool,
    policy: ConnectPolicy,
) -> Result<(), GuardError> {
    if addrs.is_empty() {
        return Err(GuardError::NoAddress {
            host: host.to_owned(),
        });
    }
    if !exempt {
        for a in addrs {
            if let Some(range) = special_use(a.ip()) {
                return Err(GuardError::SpecialUse {
                    host: host.to_owned(),
                    addr: a.ip(),
                    range,
                });
            }
        }
    }
    for a in addrs {
        if !policy.permits(a.ip()) {
            return Err(GuardError::Policy {
                host: host.to_owned(),
                addr: a.ip(),
            });
        }
    }
    Ok(())
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Production DNS: the system resolver (getaddrinfo on tokio's blocking pool).
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

impl GuardedResolver {
    /// Guard the answers of `inner`. `exempt`: lower-case host names whose answers skip the
    /// special-use check (the policy still applies to them).
    pub fn new(inner: Arc<dyn Resolve>, exempt: Vec<String>, policy: ConnectPolicy) -> Self {
        GuardedResolver {
            inner,
            exempt,
            policy,
        }
    }
}

/// The guard for a host that is an IP literal (reqwest connects to those without asking the
/// resolver). `exempt`: the special-use check is lifted for it (the policy still applies).
pub fn check_ip_literal(
    host: &str,
    ip: IpAddr,
    exempt: bool,
    policy: ConnectPolicy,
) -> Result<(), GuardError> {
    check_addresses(host, &[SocketAddr::new(ip, 0)], exempt, policy)
}

/// The guard's refusal inside a failed request's error chain, if that is why it failed.
pub fn find_guard_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a GuardError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(g) = err.downcast_ref::<GuardError>() {
            return Some(g);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Every block of the brief's list, at its first and last address (and the embedded forms);
    /// classification only, nothing connects.
    #[test]
    fn special_use_addresses_are_classified() {
        let special = [
            ("0.0.0.0", "0.0.0.0/8"),
            ("0.255.255.255", "0.0.0.0/8"),
            ("10.0.0.0", "10.0.0.0/8"),
            ("10.0.0.5", "10.0.0.0/8"),
            ("10.255.255.255", "10.0.0.0/8"),
            ("100.64.0.0", "100.64.0.0/10"),
            ("100.64.0.1", "100.64.0.0/10"),
            ("100.127.255.255", "100.64.0.0/10"),
            ("127.0.0.1", "127.0.0.0/8"),
            ("127.255.255.254", "127.0.0.0/8"),
            ("169.254.0.0", "169.254.0.0/16"),
            ("169.254.169.254", "169.254.0.0/16"),
            ("172.16.0.0", "172.16.0.0/12"),
            ("172.31.255.255", "172.16.0.0/12"),
            ("192.0.0.0", "192.0.0.0/24"),
            ("192.0.0.255", "192.0.0.0/24"),
            ("192.0.2.0", "192.0.2.0/24"),
            ("192.0.2.255", "192.0.2.0/24"),
            ("192.88.99.1", "192.88.99.0/24"),
            ("192.168.0.0", "192.168.0.0/16"),
            ("192.168.255.255", "192.168.0.0/16"),
            ("198.18.0.0", "198.18.0.0/15"),
            ("198.19.255.255", "198.18.0.0/15"),
            ("198.51.100.7", "198.51.100.0/24"),
            ("203.0.113.9", "203.0.113.0/24"),
            ("224.0.0.1", "224.0.0.0/4"),
            ("239.255.255.255", "224.0.0.0/4"),
            ("240.0.0.1", "240.0.0.0/4"),
            ("255.255.255.254", "240.0.0.0/4"),
            ("255.255.255.255", "255.255.255.255"),
            ("::", "unspecified ::"),
            ("::1", "loopback ::1"),
            ("::a00:5", "::/96"),
            ("::ffff:127.0.0.1", "IPv4-mapped"),
            ("::ffff:10.0.0.5", "10.0.0.0/8"),
            ("::ffff:169.254.169.254", "169.254.0.0/16"),
            ("::ffff:0.0.0.0", "0.0.0.0/8"),
            ("64:ff9b::a00:5", "NAT64"),
            ("64:ff9b::7f00:1", "127.0.0.0/8"),
            ("64:ff9b:1::1", "64:ff9b:1::/48"),
            ("100::", "100::/64"),
            ("100::ffff:ffff:ffff:ffff", "100::/64"),
            ("2001::1", "2001::/23"),
            ("2001:10::1", "2001::/23"),
            ("2001:1ff:ffff::1", "2001::/23"),
            ("2001:db8::1", "2001:db8::/32"),
            ("2001:db8:ffff::1", "2001:db8::/32"),
            ("2002:a00:5::1", "6to4"),
            ("2002:7f00:1::", "127.0.0.0/8"),
            ("2002:c0a8:101::1", "192.168.0.0/16"),
            ("3fff::1", "3fff::/20"),
            ("5f00::1", "5f00::/16"),
            ("fc00::1", "fc00::/7"),
            ("fd00::1", "fc00::/7"),
            ("fdff:ffff::1", "fc00::/7"),
            ("fe80::1", "fe80::/10"),
            ("febf::1", "fe80::/10"),
            ("fec0::1", "fec0::/10"),
            ("ff00::1", "ff00::/8"),
            ("ff02::1", "ff00::/8"),
        ];
        for (addr, range) in special {
            let got = special_use(ip(addr));
            assert!(
                got.as_deref().is_some_and(|g| g.contains(range)),
                "{addr}: expected special-use ({range}), got {got:?}"
            );
        }
        let public = [
            "8.8.8.8",
            "1.1.1.1",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.0.3.0",
            "192.88.98.255",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "203.0.112.255",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:200::1",
            "2001:db7:ffff::1",
            "2001:db9::1",
            "2002:808:808::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2400:cb00::1",
            "fbff:ffff::1",
            "fe7f::1",
        ];
        for addr in public {
            assert_eq!(special_use(ip(addr)), None, "{addr} should be public");
        }
    }

    fn sock(s: &str) -> SocketAddr {
        SocketAddr::new(ip(s), 0)
    }

    /// The resolver-side guard: any refused address refuses the whole answer; the connect policy
    /// is a separate, later check that catches what the guard lets through (here: a name exempted
    /// from the guard, standing in for a broken guard).
    #[test]
    fn guard_refuses_whole_answers_and_policy_backs_it_up() {
        let any = ConnectPolicy::Any;
        let lo = ConnectPolicy::LoopbackOnly;
        assert!(check_addresses("a.test", &[sock("8.8.8.8")], false, any).is_ok());
        match check_addresses("a.test", &[sock("8.8.8.8"), sock("10.0.0.5")], false, any) {
            Err(GuardError::SpecialUse { addr, .. }) => assert_eq!(addr, ip("10.0.0.5")),
            other => panic!("mixed answer must be refused whole: {other:?}"),
        }
        assert!(matches!(
            check_addresses("a.test", &[], false, any),
            Err(GuardError::NoAddress { .. })
        ));
        // Exempt (allow_hosts) names skip the special-use check...
        assert!(check_addresses("a.test", &[sock("127.0.0.1")], true, lo).is_ok());
        assert!(check_addresses("a.test", &[sock("::1")], true, lo).is_ok());
        // ...but the loopback-only policy still refuses anything else: a guard that let 10.0.0.5
        // through would be stopped here, before any connection.
        match check_addresses("a.test", &[sock("10.0.0.5")], true, lo) {
            Err(GuardError::Policy { addr, .. }) => assert_eq!(addr, ip("10.0.0.5")),
            other => panic!("policy must refuse: {other:?}"),
        }
        // And the policy applies after the guard even for public addresses.
        assert!(matches!(
            check_addresses("a.test", &[sock("8.8.8.8")], false, lo),
            Err(GuardError::Policy { .. })
        ));
        assert!(lo.permits(ip("::ffff:127.0.0.1")));
        assert!(!lo.permits(ip("::ffff:10.0.0.1")));
    }
}
