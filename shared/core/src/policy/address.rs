//! Which addresses an endpoint registered by someone else (through the API) may point scans
//! and verifications at.
//!
//! A scanner inside a VPC that connects wherever a caller asks is a server-side request
//! forgery tool: the cloud's metadata service hands out credentials, loopback and private
//! addresses reach services never meant to be public. Every address is checked after
//! resolution, in its canonical form: an IPv4-mapped (`::ffff:127.0.0.1`), IPv4-compatible or
//! NAT64 (`64:ff9b::7f00:1`) IPv6 address is judged as the IPv4 address it carries. Decimal,
//! octal and hexadecimal spellings of IPv4 (`2130706433`, `0177.0.0.1`) never get this far:
//! the target parser refuses them as host names (see [`crate::model::target::looks_numeric`]).
//!
//! The operator may allow networks (`--allow-network 10.20.0.0/16`): an address in an allowed
//! network passes whatever its kind.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an address is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Forbidden {
    /// The cloud metadata service (169.254.169.254, fd00:ec2::254, 100.100.100.200).
    Metadata,
    /// This host (127.0.0.0/8, ::1).
    Loopback,
    /// Link-local (169.254.0.0/16, fe80::/10).
    LinkLocal,
    /// Private networks (10/8, 172.16/12, 192.168/16, fc00::/7).
    Private,
    /// Carrier-grade NAT's shared space (100.64.0.0/10).
    SharedAddressSpace,
    /// Nowhere (0.0.0.0/8, ::).
    Unspecified,
    /// Multicast or broadcast.
    Multicast,
    /// Reserved, documentation or benchmarking ranges (240/4, 192.0.2/24, 198.18/15,
    /// 2001:db8::/32…), which no public service uses.
    Reserved,
}

impl Forbidden {
    /// In words, for error messages.
    pub fn words(self) -> &'static str {
        match self {
            Forbidden::Metadata => "the cloud metadata service",
            Forbidden::Loopback => "a loopback address",
            Forbidden::LinkLocal => "a link-local address",
            Forbidden::Private => "a private address",
            Forbidden::SharedAddressSpace => "carrier-grade NAT's shared address space",
            Forbidden::Unspecified => "the unspecified address",
            Forbidden::Multicast => "a multicast or broadcast address",
            Forbidden::Reserved => "a reserved or documentation address",
        }
    }
}

/// A network in CIDR notation (`10.20.0.0/16`, `fd00::/8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Whether `ip` (canonical) lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Network {
    type Err = String;

    /// `ADDRESS/PREFIX`, or a bare address (one host). The error says what is wrong.
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not a network such as 10.20.0.0/16 or fd00::/8"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Network { addr, prefix })
    }
}

/// The address policy: everything public, plus the networks the operator allows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Networks allowed whatever their kind.
    pub allowed: Vec<Network>,
}

impl AddressPolicy {
    /// Whether scans may go to `ip`; the error says what kind of address it is.
    pub fn check(&self, ip: IpAddr) -> Result<(), Forbidden> {
        let ip = canonical(ip);
        if self.allowed.iter().any(|n| n.contains(ip)) {
            return Ok(());
        }
        match classify(ip) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
}

/// The IPv4 address an IPv6 address carries (mapped `::ffff:a.b.c.d`, compatible
/// `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`), else the address itself.
pub fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let embedded = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    // IPv4-compatible (deprecated, ::a.b.c.d), but not :: and ::1 themselves.
    if s[..6] == [0; 6] && u32::from(embedded) > 1 {
        return IpAddr::V4(embedded);
    }
    // NAT64's well-known prefix 64:ff9b::/96.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return IpAddr::V4(embedded);
    }
    ip
}

fn classify(ip: IpAddr) -> Option<Forbidden> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<Forbidden> {
    use Forbidden::*;
    let table: &[([u8; 4], u32, Forbidden)] = &[
        ([169, 254, 169, 254], 32, Metadata),
        // Alibaba Cloud's metadata service.
        ([100, 100, 100, 200], 32, Metadata),
        ([0, 0, 0, 0], 8, Unspecified),
        ([127, 0, 0, 0], 8, Loopback),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([10, 0, 0, 0], 8, Private),
        ([172, 16, 0, 0], 12, Private),
        ([192, 168, 0, 0], 16, Private),
        ([100, 64, 0, 0], 10, SharedAddressSpace),
        ([224, 0, 0, 0], 4, Multicast),
        ([255, 255, 255, 255], 32, Multicast),
        ([240, 0, 0, 0], 4, Reserved),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 0, 2, 0], 24, Reserved),
        ([198, 51, 100, 0], 24, Reserved),
        ([203, 0, 113, 0], 24, Reserved),
        ([198, 18, 0, 0], 15, Reserved),
    ];
    table
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, why)| *why)
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

fn classify_v6(ip: Ipv6Addr) -> Option<Forbidden> {
    use Forbidden::*;
    let net = |s: &str| s.parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::UNSPECIFIED);
    let table: &[(&str, u32, Forbidden)] = &[
        // AWS's metadata service over IPv6 (Nitro instances).
        ("fd00:ec2::254", 128, Metadata),
        ("::", 128, Unspecified),
        ("::1", 128, Loopback),
        ("fe80::", 10, LinkLocal),
        ("fc00::", 7, Private),
        ("ff00::", 8, Multicast),
        ("2001:db8::", 32, Reserved),
        ("100::", 64, Reserved),
        // Deprecated site-local.
        ("fec0::", 10, Private),
    ];
    table
        .iter()
        .find(|(n, prefix, _)| in_v6(ip, net(n), *prefix))
        .map(|(_, _, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_forbidden_range_is_refused_in_every_spelling() {
        let policy = AddressPolicy::default();
        for (addr, why) in [
            ("169.254.169.254", Forbidden::Metadata),
            ("::ffff:169.254.169.254", Forbidden::Metadata),
            ("fd00:ec2::254", Forbidden::Metadata),
            ("100.100.100.200", Forbidden::Metadata),
            ("127.0.0.1", Forbidden::Loopback),
            ("127.255.0.9", Forbidden::Loopback),
            ("::1", Forbidden::Loopback),
            ("::ffff:127.0.0.1", Forbidden::Loopback),
            ("::127.0.0.1", Forbidden::Loopback),
            ("64:ff9b::7f00:1", Forbidden::Loopback),
            ("169.254.10.1", Forbidden::LinkLocal),
            ("fe80::1", Forbidden::LinkLocal),
            ("10.1.2.3", Forbidden::Private),
            ("172.16.0.1", Forbidden::Private),
            ("172.31.255.255", Forbidden::Private),
            ("192.168.1.1", Forbidden::Private),
            ("::ffff:10.0.0.1", Forbidden::Private),
            ("fd12:3456::1", Forbidden::Private),
            ("100.64.0.1", Forbidden::SharedAddressSpace),
            ("0.0.0.0", Forbidden::Unspecified),
            ("::", Forbidden::Unspecified),
            ("224.0.0.1", Forbidden::Multicast),
            ("255.255.255.255", Forbidden::Multicast),
            ("ff02::1", Forbidden::Multicast),
            ("192.0.2.10", Forbidden::Reserved),
            ("2001:db8::1", Forbidden::Reserved),
            ("240.0.0.1", Forbidden::Reserved),
        ] {
            assert_eq!(policy.check(ip(addr)), Err(why), "{addr}");
        }
        for public in [
            "93.184.215.14",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:93.184.215.14",
        ] {
            assert_eq!(policy.check(ip(public)), Ok(()), "{public}");
        }
    }

    #[test]
    fn allowed_networks_pass_and_are_parsed_with_named_mistakes() {
        let policy = AddressPolicy {
            allowed: vec![
                "10.20.0.0/16".parse().unwrap(),
                "127.0.0.1".parse().unwrap(),
                "fd00::/8".parse().unwrap(),
            ],
        };
        assert_eq!(policy.check(ip("10.20.3.4")), Ok(()));
        assert_eq!(policy.check(ip("::ffff:10.20.3.4")), Ok(()));
        assert_eq!(policy.check(ip("10.21.0.1")), Err(Forbidden::Private));
        assert_eq!(policy.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check(ip("127.0.0.2")), Err(Forbidden::Loopback));
        assert_eq!(policy.check(ip("fd12::1")), Ok(()));
        // An allowed network is allowed whole, the metadata address in it included.
        assert_eq!(policy.check(ip("fd00:ec2::254")), Ok(()));
        assert!(
            "10.0.0.0/33"
                .parse::<Network>()
                .unwrap_err()
                .contains("0 to 32")
        );
        assert!(
            "ten/8"
                .parse::<Network>()
                .unwrap_err()
                .contains("not a network")
        );
        assert_eq!(
            "0.0.0.0/0".parse::<Network>().unwrap().to_string(),
            "0.0.0.0/0"
        );
        assert!(
            "0.0.0.0/0"
                .parse::<Network>()
                .unwrap()
                .contains(ip("8.8.8.8"))
        );
    }
}
