//! The one guard every connection made on a member's behalf goes through
//! (the import's listings, downloads and each redirect hop; later remote
//! calendars and DNS checks).
//!
//! A member names a host; the server must not become their way into the
//! networks it can reach and they cannot: its own loopback services, the
//! LAN, the cloud's metadata service. So a name is resolved once, every
//! address it resolves to is classified ([`refused_range`]), and only the
//! addresses that pass are handed to the HTTP client, which connects to
//! exactly those (no second lookup, hence no DNS-rebinding window). A
//! host written as an address (`127.0.0.1`, `[::ffff:127.0.0.1]`, and
//! `0`, `2130706433` or `0x7f.1`, which URL parsing turns into
//! `0.0.0.0` and `127.0.0.1`) never reaches a resolver, so it is
//! classified the same way before every request ([`Guard::check_url`]).
//!
//! Operators who import from a NAS on their LAN allow its network
//! explicitly (`[import] allow_networks`). The server's own listen
//! address stays refused even then: drive → drive imports read our own
//! drives in-process instead (see `drive::imports`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

pub use ipnet::IpNet;

/// A network as operators write it: `192.168.1.0/24`, `fd00::/8`, or one
/// address (`192.168.1.20`).
pub fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .map(|net| net.trunc())
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Why an address is refused, for logs (members only ever read "this
/// address is not allowed").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Unspecified,
    Loopback,
    Private,
    SharedAddressSpace,
    LinkLocal,
    Multicast,
    Broadcast,
    Documentation,
    Benchmarking,
    Reserved,
    UniqueLocal,
    /// The IETF protocol assignments (192.0.0.0/24), e.g. DS-Lite.
    ProtocolAssignments,
    /// One of this server's own listen addresses.
    OwnServer,
}

/// The range that makes `ip` an address the server must not connect to
/// on a member's behalf, or `None` for an address on the public
/// Internet. IPv6 forms that carry an IPv4 address (mapped, compatible,
/// NAT64, 6to4) are judged by the IPv4 address they carry.
pub fn refused_range(ip: IpAddr) -> Option<Range> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => refused_v4(v4).or_else(|| refused_v6(v6)),
            None => refused_v6(v6),
        },
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<Range> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() || a == 0 => Range::Unspecified,
        _ if ip.is_loopback() => Range::Loopback,
        _ if ip.is_private() => Range::Private,
        (100, 64..=127, _) => Range::SharedAddressSpace,
        _ if ip.is_link_local() => Range::LinkLocal,
        (192, 0, 0) => Range::ProtocolAssignments,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Range::Documentation,
        (198, 18..=19, _) => Range::Benchmarking,
        _ if ip.is_broadcast() => Range::Broadcast,
        _ if ip.is_multicast() => Range::Multicast,
        (240..=255, _, _) => Range::Reserved,
        _ => return None,
    })
}

fn refused_v6(ip: Ipv6Addr) -> Option<Range> {
    let segments = ip.segments();
    Some(match segments[0] {
        _ if ip.is_unspecified() => Range::Unspecified,
        _ if ip.is_loopback() => Range::Loopback,
        s if s & 0xfe00 == 0xfc00 => Range::UniqueLocal,
        s if s & 0xffc0 == 0xfe80 => Range::LinkLocal,
        // Deprecated site-local, still routed inside some networks.
        s if s & 0xffc0 == 0xfec0 => Range::UniqueLocal,
        s if s & 0xff00 == 0xff00 => Range::Multicast,
        0x2001 if segments[1] == 0x0db8 => Range::Documentation,
        0x3fff if segments[1] & 0xf000 == 0 => Range::Documentation,
        0x2001 if segments[1] == 0x0002 && segments[2] == 0 => Range::Benchmarking,
        // Discard-only (RFC 6666).
        0x0100 if segments[1..4] == [0, 0, 0] => Range::Reserved,
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address stands for: mapped
/// (`::ffff:a.b.c.d`), compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`
/// and the local-use `64:ff9b:1::/48`), 6to4 (`2002:a.b.c.d::/16`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        // `::` and `::1` are judged as IPv6; the rest of ::/96 as IPv4.
        [0, 0, 0, 0, 0, 0, _, _] if !ip.is_unspecified() && !ip.is_loopback() => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x64, 0xff9b, 1, ..] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

/// The address is not one the server may connect to. Says nothing about
/// whether anything listens there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this address is not allowed")]
pub struct NotAllowed;

/// What the server may connect to on a member's behalf.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// Networks the operator allows although [`refused_range`] refuses
    /// them (a NAS on the LAN).
    allow: Vec<IpNet>,
    /// This server's listen addresses: refused even inside an allowed
    /// network. A listen address with an unspecified IP (`0.0.0.0:8080`)
    /// stands for its port on every loopback and unspecified address.
    own: Vec<SocketAddr>,
}

impl Guard {
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow, own: Vec::new() }
    }

    /// Adds one of the server's own listen addresses.
    pub fn with_own_address(mut self, address: SocketAddr) -> Self {
        self.own.push(address);
        self
    }

    /// Why the server must not connect to `address`, or `None` when it may.
    pub fn refusal(&self, address: SocketAddr) -> Option<Range> {
        let ip = canonical(address.ip());
        let own = self.own.iter().any(|own| {
            own.port() == address.port()
                && (canonical(own.ip()) == ip
                    || (own.ip().is_unspecified()
                        && matches!(refused_range(ip), Some(Range::Loopback | Range::Unspecified))))
        });
        if own {
            return Some(Range::OwnServer);
        }
        let range = refused_range(ip)?;
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return None;
        }
        Some(range)
    }

    pub fn permits(&self, address: SocketAddr) -> bool {
        self.refusal(address).is_none()
    }

    /// Resolves `host` once and keeps the addresses the server may
    /// connect to. `Ok(empty)` never happens: a name that resolves only
    /// to refused addresses is [`NotAllowed`]. `Err(None)`: the name does
    /// not resolve (the caller says "cannot be reached").
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Option<NotAllowed>> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            let address = SocketAddr::new(ip, port);
            return match self.refusal(address) {
                None => Ok(vec![address]),
                Some(_) => Err(Some(NotAllowed)),
            };
        }
        let found: Vec<SocketAddr> = match tokio::net::lookup_host((host, port)).await {
            Ok(found) => found.collect(),
            Err(_) => return Err(None),
        };
        if found.is_empty() {
            return Err(None);
        }
        let permitted: Vec<SocketAddr> = found.iter().copied().filter(|a| self.permits(*a)).collect();
        if permitted.is_empty() {
            tracing::info!(host, refused = ?found, "an outbound connection was refused");
            return Err(Some(NotAllowed));
        }
        Ok(permitted)
    }

    /// Checks a URL's host and port (an address host at once, a name by
    /// resolving it). `Err(None)`: not a URL with a host, or a name that
    /// does not resolve.
    pub async fn check_url(&self, url: &reqwest::Url) -> Result<(), Option<NotAllowed>> {
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return Err(None);
        };
        self.resolve(host, port).await.map(drop)
    }

    /// The host of `url` when it is an address the server must not
    /// connect to. An address host never reaches the resolver, so this
    /// is checked before every request and redirect hop.
    pub fn refuses_literal(&self, url: &reqwest::Url) -> bool {
        let port = url.port_or_known_default().unwrap_or(0);
        match url.host() {
            Some(url::Host::Ipv4(ip)) => !self.permits(SocketAddr::new(ip.into(), port)),
            Some(url::Host::Ipv6(ip)) => !self.permits(SocketAddr::new(ip.into(), port)),
            Some(url::Host::Domain(_)) => false,
            None => true,
        }
    }

    /// A resolver for an HTTP client whose every connection goes to
    /// `port` (an import's source origin: redirects elsewhere are
    /// refused), so the own-address check sees the real port.
    pub fn resolver(self: &Arc<Self>, port: u16) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver {
            guard: self.clone(),
            port,
        })
    }
}

/// `::ffff:a.b.c.d` compared as `a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// reqwest's DNS resolver through the [`Guard`]: the client connects to
/// what this returns, and nothing else.
pub struct GuardedResolver {
    guard: Arc<Guard>,
    port: u16,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        let port = self.port;
        Box::pin(async move {
            match guard.resolve(name.as_str(), port).await {
                Ok(found) => Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs),
                Err(Some(refused)) => Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>),
                Err(None) => Err("the name does not resolve".into()),
            }
        })
    }
}

/// Whether `error` (anywhere in its chain) is the guard's refusal.
pub fn is_not_allowed(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<NotAllowed>() {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_ranges_are_refused_and_public_ones_pass() {
        for (text, range) in [
            ("0.0.0.0", Range::Unspecified),
            ("0.1.2.3", Range::Unspecified),
            ("127.0.0.1", Range::Loopback),
            ("127.255.0.9", Range::Loopback),
            ("10.1.2.3", Range::Private),
            ("172.16.0.1", Range::Private),
            ("172.31.255.254", Range::Private),
            ("192.168.1.10", Range::Private),
            ("100.64.0.1", Range::SharedAddressSpace),
            ("100.127.255.255", Range::SharedAddressSpace),
            ("169.254.169.254", Range::LinkLocal),
            ("192.0.0.170", Range::ProtocolAssignments),
            ("192.0.2.1", Range::Documentation),
            ("198.51.100.7", Range::Documentation),
            ("203.0.113.9", Range::Documentation),
            ("198.18.0.1", Range::Benchmarking),
            ("224.0.0.1", Range::Multicast),
            ("239.255.255.250", Range::Multicast),
            ("240.0.0.1", Range::Reserved),
            ("255.255.255.255", Range::Broadcast),
            ("::", Range::Unspecified),
            ("::1", Range::Loopback),
            ("fc00::1", Range::UniqueLocal),
            ("fd12:3456::1", Range::UniqueLocal),
            ("fe80::1", Range::LinkLocal),
            ("febf::1", Range::LinkLocal),
            ("fec0::1", Range::UniqueLocal),
            ("ff02::1", Range::Multicast),
            ("2001:db8::1", Range::Documentation),
            ("100::1", Range::Reserved),
            // IPv4 carried in IPv6.
            ("::ffff:127.0.0.1", Range::Loopback),
            ("::ffff:169.254.169.254", Range::LinkLocal),
            ("::ffff:10.0.0.1", Range::Private),
            ("::127.0.0.1", Range::Loopback),
            ("::ffff:0.0.0.0", Range::Unspecified),
            ("64:ff9b::7f00:1", Range::Loopback),
            ("64:ff9b::a9fe:a9fe", Range::LinkLocal),
            ("64:ff9b:1::c0a8:101", Range::Private),
            ("2002:7f00:1::", Range::Loopback),
            ("2002:c0a8:101::1", Range::Private),
        ] {
            assert_eq!(refused_range(ip(text)), Some(range), "{text}");
        }
        for text in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.0.1",
            "172.32.0.1",
            "169.253.1.1",
            "192.0.1.1",
            "198.20.0.1",
            "223.255.255.254",
            "2606:4700:4700::1111",
            "2a00:1450:4007:80e::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(refused_range(ip(text)), None, "{text}");
        }
    }

    #[test]
    fn allowed_networks_pass_but_the_server_itself_never_does() {
        let guard = Guard::new(vec!["192.168.1.0/24".parse().unwrap(), "127.0.0.1/32".parse().unwrap()])
            .with_own_address("127.0.0.1:8080".parse().unwrap());
        assert!(guard.permits("192.168.1.20:443".parse().unwrap()));
        assert!(guard.permits("[::ffff:192.168.1.20]:443".parse().unwrap()));
        assert_eq!(guard.refusal("192.168.2.20:443".parse().unwrap()), Some(Range::Private));
        assert!(guard.permits("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(guard.refusal("127.0.0.1:8080".parse().unwrap()), Some(Range::OwnServer));
        assert_eq!(
            guard.refusal("[::ffff:127.0.0.1]:8080".parse().unwrap()),
            Some(Range::OwnServer)
        );
        assert_eq!(guard.refusal("127.0.0.2:9000".parse().unwrap()), Some(Range::Loopback));
        assert!(guard.permits("8.8.8.8:8080".parse().unwrap()));

        let everywhere = Guard::new(vec!["127.0.0.0/8".parse().unwrap(), "192.168.0.0/16".parse().unwrap()])
            .with_own_address("0.0.0.0:8080".parse().unwrap());
        assert_eq!(
            everywhere.refusal("127.0.0.5:8080".parse().unwrap()),
            Some(Range::OwnServer)
        );
        // A NAS on the LAN may well answer on the same port number.
        assert!(everywhere.permits("192.168.1.20:8080".parse().unwrap()));
        assert!(everywhere.permits("127.0.0.5:8081".parse().unwrap()));
    }

    #[test]
    fn every_spelling_of_loopback_is_caught() {
        let guard = Guard::default();
        for url in [
            "http://127.0.0.1:8080/",
            "http://0:8080/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::1]/",
            "http://[0:0:0:0:0:0:0:1]/",
            "https://169.254.169.254/latest/meta-data/",
        ] {
            let parsed = reqwest::Url::parse(url).unwrap();
            assert!(guard.refuses_literal(&parsed), "{url}");
        }
        assert!(!guard.refuses_literal(&reqwest::Url::parse("https://nas.example.org/").unwrap()));
        assert!(!guard.refuses_literal(&reqwest::Url::parse("https://8.8.8.8/").unwrap()));
    }

    #[test]
    fn networks_are_read_as_operators_write_them() {
        assert_eq!(
            parse_network(" 192.168.1.0/24 "),
            Some("192.168.1.0/24".parse().unwrap())
        );
        assert_eq!(parse_network("192.168.1.7/24"), Some("192.168.1.0/24".parse().unwrap()));
        assert_eq!(parse_network("10.0.0.5"), Some("10.0.0.5/32".parse().unwrap()));
        assert_eq!(parse_network("fd00::/8"), Some("fd00::/8".parse().unwrap()));
        assert_eq!(parse_network("nas.local"), None);
        assert_eq!(parse_network("10.0.0.0/33"), None);
    }

    #[tokio::test]
    async fn names_are_judged_by_what_they_resolve_to() {
        let guard = Arc::new(Guard::default());
        assert_eq!(guard.resolve("localhost", 80).await, Err(Some(NotAllowed)));
        assert_eq!(guard.resolve("[::1]", 80).await, Err(Some(NotAllowed)));
        assert_eq!(guard.resolve("no-such-host.invalid", 80).await, Err(None));
        let allowed = Guard::new(vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]);
        let found = allowed.resolve("localhost", 80).await.unwrap();
        assert!(
            found.iter().all(|a| a.ip().is_loopback() && a.port() == 80),
            "{found:?}"
        );
    }
}
