//! What to scan: a host, a port and the protocol that leads to a TLS handshake there.
//!
//! Targets are parsed once, at the edge, into [`Target`]; everything downstream works with the
//! parsed form and its canonical spelling ([`Target`]'s `Display`), which is also the key of a
//! registered endpoint.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::endpoint::Tags;

/// The protocol spoken before (or instead of) the TLS handshake, chosen by the URL scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TLS from the first byte (`https://`, or a bare `host[:port]`).
    Https,
    /// SMTP with `STARTTLS` (RFC 3207).
    Smtp,
    /// SMTP over implicit TLS (RFC 8314).
    Smtps,
    /// IMAP with `STARTTLS` (RFC 3501).
    Imap,
    /// IMAP over implicit TLS.
    Imaps,
    /// POP3 with `STLS` (RFC 2595).
    Pop3,
    /// POP3 over implicit TLS.
    Pop3s,
    /// FTP with `AUTH TLS` (RFC 4217).
    Ftp,
    /// FTP over implicit TLS.
    Ftps,
    /// PostgreSQL with an `SSLRequest` packet.
    Postgres,
    /// LDAP with the StartTLS extended operation (RFC 4511).
    Ldap,
    /// LDAP over implicit TLS.
    Ldaps,
}

/// How a connection gets from plaintext to a TLS handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// The handshake starts at once.
    Direct,
    /// The given protocol's upgrade exchange runs first.
    StartTls(Protocol),
}

impl Protocol {
    const ALL: [Protocol; 12] = [
        Protocol::Https,
        Protocol::Smtp,
        Protocol::Smtps,
        Protocol::Imap,
        Protocol::Imaps,
        Protocol::Pop3,
        Protocol::Pop3s,
        Protocol::Ftp,
        Protocol::Ftps,
        Protocol::Postgres,
        Protocol::Ldap,
        Protocol::Ldaps,
    ];

    /// The URL scheme that selects this protocol.
    pub fn scheme(self) -> &'static str {
        match self {
            Protocol::Https => "https",
            Protocol::Smtp => "smtp",
            Protocol::Smtps => "smtps",
            Protocol::Imap => "imap",
            Protocol::Imaps => "imaps",
            Protocol::Pop3 => "pop3",
            Protocol::Pop3s => "pop3s",
            Protocol::Ftp => "ftp",
            Protocol::Ftps => "ftps",
            Protocol::Postgres => "postgres",
            Protocol::Ldap => "ldap",
            Protocol::Ldaps => "ldaps",
        }
    }

    /// The IANA port used when a target names none.
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Https => 443,
            Protocol::Smtp => 25,
            Protocol::Smtps => 465,
            Protocol::Imap => 143,
            Protocol::Imaps => 993,
            Protocol::Pop3 => 110,
            Protocol::Pop3s => 995,
            Protocol::Ftp => 21,
            Protocol::Ftps => 990,
            Protocol::Postgres => 5432,
            Protocol::Ldap => 389,
            Protocol::Ldaps => 636,
        }
    }

    /// Whether TLS starts at once or after a protocol exchange.
    pub fn upgrade(self) -> Upgrade {
        match self {
            Protocol::Https
            | Protocol::Smtps
            | Protocol::Imaps
            | Protocol::Pop3s
            | Protocol::Ftps
            | Protocol::Ldaps => Upgrade::Direct,
            p => Upgrade::StartTls(p),
        }
    }

    fn from_scheme(scheme: &str) -> Option<Protocol> {
        // "postgresql" is what libpq URIs use; "pop3" and "pop" both appear in the wild.
        let scheme = match scheme {
            "postgresql" => "postgres",
            "pop" => "pop3",
            s => s,
        };
        Protocol::ALL.into_iter().find(|p| p.scheme() == scheme)
    }
}

/// The host part of a target.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Host {
    /// A literal IP address: connected to directly, no SNI is sent.
    Ip(IpAddr),
    /// A DNS name (lowercase, no trailing dot): resolved, and sent as SNI.
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

/// A parsed scan target: where to connect and how to reach the TLS handshake.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// Protocol, from the URL scheme (`https` when none is given).
    pub protocol: Protocol,
    /// The host to resolve and to send as SNI.
    pub host: Host,
    /// TCP port.
    pub port: u16,
}

/// Why a target, tag or `--resolve` entry could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetError {
    /// The input was empty.
    #[error("target is empty")]
    Empty,
    /// The URL scheme is not one certpilot can scan.
    #[error(
        "target {input:?}: unsupported scheme {scheme:?} (expected one of https, smtp, smtps, imap, imaps, pop3, pop3s, ftp, ftps, postgres, ldap, ldaps)"
    )]
    Scheme {
        /// The whole input.
        input: String,
        /// The scheme found.
        scheme: String,
    },
    /// The port is not a number from 1 to 65535.
    #[error("target {input:?}: port {port:?} is not a number from 1 to 65535")]
    Port {
        /// The whole input.
        input: String,
        /// The port text found.
        port: String,
    },
    /// The host is neither an IP address nor a valid DNS name.
    #[error("target {input:?}: {reason}")]
    Host {
        /// The whole input.
        input: String,
        /// What is wrong with the host.
        reason: String,
    },
    /// A `--resolve` entry is not `host:port:address`.
    #[error(
        "--resolve {input:?}: {reason} (expected host:port:address, e.g. shop.example.com:443:10.0.0.7)"
    )]
    Resolve {
        /// The whole input.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// A tag is not `key=value` with a valid key.
    #[error("tag {input:?}: {reason} (expected key=value, e.g. owner=payments)")]
    Tag {
        /// The whole input.
        input: String,
        /// What is wrong.
        reason: String,
    },
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(TargetError::Empty);
        }
        let (protocol, rest) = match trimmed.split_once("://") {
            Some((scheme, rest)) => {
                let scheme_lc = scheme.to_ascii_lowercase();
                let protocol =
                    Protocol::from_scheme(&scheme_lc).ok_or_else(|| TargetError::Scheme {
                        input: input.to_owned(),
                        scheme: scheme.to_owned(),
                    })?;
                (protocol, rest)
            }
            None => (Protocol::Https, trimmed),
        };
        // A URL may carry a path, query or user info; only the authority matters for a scan.
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let authority = authority.rsplit('@').next().unwrap_or_default();
        let (host, port) = split_host_port(authority, input)?;
        let port = match port {
            Some(p) => parse_port(p, input)?,
            None => protocol.default_port(),
        };
        Ok(Target {
            protocol,
            host: parse_host(host, input)?,
            port,
        })
    }
}

impl fmt::Display for Target {
    /// The canonical spelling: `host:port` for HTTPS, `scheme://host:port` otherwise, IPv6
    /// addresses in brackets. Two inputs naming the same endpoint print the same.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.protocol != Protocol::Https {
            write!(f, "{}://", self.protocol.scheme())?;
        }
        match &self.host {
            Host::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]:{}", self.port),
            host => write!(f, "{host}:{}", self.port),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn split_host_port<'a>(
    authority: &'a str,
    input: &str,
) -> Result<(&'a str, Option<&'a str>), TargetError> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| TargetError::Host {
            input: input.to_owned(),
            reason: "missing ']' after IPv6 address".into(),
        })?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(TargetError::Host {
                    input: input.to_owned(),
                    reason: format!("unexpected {after:?} after IPv6 address"),
                }),
            },
        };
    }
    // A bare IPv6 address ("::1") has several colons and no port.
    if authority.matches(':').count() > 1 {
        return Ok((authority, None));
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

fn parse_port(port: &str, input: &str) -> Result<u16, TargetError> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(TargetError::Port {
            input: input.to_owned(),
            port: port.to_owned(),
        }),
    }
}

fn parse_host(host: &str, input: &str) -> Result<Host, TargetError> {
    let err = |reason: String| TargetError::Host {
        input: input.to_owned(),
        reason,
    };
    if host.is_empty() {
        return Err(err("host is empty".into()));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    if host.contains(':') {
        return Err(err(format!("{host:?} is not a valid IPv6 address")));
    }
    // One trailing dot is a fully qualified name; more is a typo.
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if name.len() > 253 {
        return Err(err("host name is longer than 253 characters".into()));
    }
    if looks_numeric(&name) {
        return Err(err(format!(
            "{host:?} is not a valid IP address (write IPv4 as four decimal numbers from 0 to 255, \
             e.g. 192.0.2.7), and not a DNS name either: no top-level domain is numeric"
        )));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(err(format!(
                "host name {host:?} has an empty label or one longer than 63 characters"
            )));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(err(format!("host name {host:?} contains {c:?}")));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(err(format!(
                "host name {host:?} has a label that starts or ends with '-'"
            )));
        }
    }
    Ok(Host::Name(name))
}

/// Whether a name's last label is numeric (`1.2.3.999`, `0177.0.0.1`, `16909060`, `0x7f.1`):
/// no top-level domain is, so it is a mistyped address — which some resolvers would quietly
/// read as another address (`16909060` is 1.2.3.4 to `inet_aton`).
pub fn looks_numeric(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    !last.is_empty()
        && (last.chars().all(|c| c.is_ascii_digit())
            || last
                .strip_prefix("0x")
                .or_else(|| last.strip_prefix("0X"))
                .is_some_and(|hex| !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit())))
}

/// A `--resolve host:port:address` entry: connect to `address` while sending SNI `host`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolveOverride {
    /// The host name the override applies to (lowercase).
    pub host: String,
    /// The port the override applies to.
    pub port: u16,
    /// The address to connect to instead of resolving.
    pub address: IpAddr,
}

impl FromStr for ResolveOverride {
    type Err = TargetError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| TargetError::Resolve {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let mut parts = input.splitn(3, ':');
        let (Some(host), Some(port), Some(addr)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(err("missing a part"));
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() {
            return Err(err("host is empty"));
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(err("port is not a number from 1 to 65535")),
        };
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let address = addr
            .parse::<IpAddr>()
            .map_err(|_| err("address is not an IPv4 or IPv6 address"))?;
        Ok(ResolveOverride {
            host,
            port,
            address,
        })
    }
}

/// One thing to scan: a target, the tags it carries into the inventory, and optionally the
/// addresses to connect to instead of resolving its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanRequest {
    /// What to scan.
    pub target: Target,
    /// Owner, environment, platform… copied onto every observation.
    pub tags: Tags,
    /// Addresses from `--resolve`; when empty the host name is resolved (every A and AAAA).
    pub connect_to: Vec<IpAddr>,
}

impl ScanRequest {
    /// A request with no tags and no address override.
    pub fn new(target: Target) -> Self {
        ScanRequest {
            target,
            tags: Tags::new(),
            connect_to: Vec::new(),
        }
    }

    /// Applies the `--resolve` overrides that match this target's host and port.
    pub fn with_overrides(mut self, overrides: &[ResolveOverride]) -> Self {
        if let Host::Name(name) = &self.target.host {
            self.connect_to.extend(
                overrides
                    .iter()
                    .filter(|o| &o.host == name && o.port == self.target.port)
                    .map(|o| o.address),
            );
        }
        self
    }

    /// The socket addresses known without DNS: the literal IP, or the `--resolve` addresses.
    pub fn known_addresses(&self) -> Option<Vec<SocketAddr>> {
        match &self.target.host {
            Host::Ip(ip) => Some(vec![SocketAddr::new(*ip, self.target.port)]),
            Host::Name(_) if !self.connect_to.is_empty() => Some(
                self.connect_to
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, self.target.port))
                    .collect(),
            ),
            Host::Name(_) => None,
        }
    }
}

/// Formats a socket address the way the rest of certpilot prints it (`[v6]:port` for IPv6).
pub fn format_address(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_none() => {
            format!("[{}]:{}", v6.ip(), v6.port())
        }
        other => other.to_string(),
    }
}

/// A line of a targets file that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{source_name}:{line}: {error}")]
pub struct TargetsFileError {
    /// The file's name as the user gave it.
    pub source_name: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong on that line.
    pub error: TargetError,
}

/// Parses a targets file: one target per line, then optional `key=value` tags; blank lines
/// and everything after a `#` that starts a word are ignored.
///
/// ```text
/// # payments team
/// shop.example.com:443 owner=payments env=prod platform=alb
/// smtp://mx.example.com:587 owner=mail   # the outbound relay
/// ```
pub fn parse_targets_file(
    source_name: &str,
    text: &str,
) -> Result<Vec<ScanRequest>, TargetsFileError> {
    let mut requests = Vec::new();
    // Editors on Windows start UTF-8 files with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (index, raw) in text.lines().enumerate() {
        let err = |error| TargetsFileError {
            source_name: source_name.to_owned(),
            line: index + 1,
            error,
        };
        let mut words = raw.split_whitespace().take_while(|w| !w.starts_with('#'));
        let Some(first) = words.next() else {
            continue;
        };
        let mut request = ScanRequest::new(first.parse().map_err(err)?);
        for word in words {
            super::endpoint::add_tag(&mut request.tags, word).map_err(err)?;
        }
        requests.push(request);
    }
    Ok(requests)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_every_accepted_form_to_a_canonical_spelling() {
        let cases = [
            ("example.com", "example.com:443"),
            ("Example.COM.", "example.com:443"),
            ("example.com:8443", "example.com:8443"),
            ("https://example.com/path?q=1", "example.com:443"),
            ("https://user@example.com:444/", "example.com:444"),
            ("127.0.0.1", "127.0.0.1:443"),
            ("127.0.0.1:8443", "127.0.0.1:8443"),
            ("[::1]:8443", "[::1]:8443"),
            ("[::1]", "[::1]:443"),
            ("::1", "[::1]:443"),
            ("smtp://mail.example.com", "smtp://mail.example.com:25"),
            ("smtp://mail.example.com:587", "smtp://mail.example.com:587"),
            ("smtps://mail.example.com", "smtps://mail.example.com:465"),
            ("imap://mail.example.com", "imap://mail.example.com:143"),
            ("imaps://mail.example.com", "imaps://mail.example.com:993"),
            ("pop3://mail.example.com", "pop3://mail.example.com:110"),
            ("ftp://files.example.com", "ftp://files.example.com:21"),
            (
                "postgres://db.example.com",
                "postgres://db.example.com:5432",
            ),
            (
                "postgresql://db.example.com/app",
                "postgres://db.example.com:5432",
            ),
            ("ldap://dir.example.com", "ldap://dir.example.com:389"),
            ("LDAPS://dir.example.com", "ldaps://dir.example.com:636"),
        ];
        for (input, canonical) in cases {
            assert_eq!(t(input).to_string(), canonical, "input {input}");
            // The canonical form parses back to the same target.
            assert_eq!(t(canonical), t(input), "round trip of {input}");
        }
    }

    #[test]
    fn starttls_protocols_are_the_ones_without_implicit_tls() {
        assert_eq!(
            t("smtp://a").protocol.upgrade(),
            Upgrade::StartTls(Protocol::Smtp)
        );
        assert_eq!(
            t("ldap://a").protocol.upgrade(),
            Upgrade::StartTls(Protocol::Ldap)
        );
        assert_eq!(
            t("postgres://a").protocol.upgrade(),
            Upgrade::StartTls(Protocol::Postgres)
        );
        assert_eq!(t("a").protocol.upgrade(), Upgrade::Direct);
        assert_eq!(t("imaps://a").protocol.upgrade(), Upgrade::Direct);
    }

    #[test]
    fn rejects_bad_input_naming_it() {
        let cases = [
            ("", "target is empty"),
            ("gopher://a", "unsupported scheme"),
            ("a:0", "port \"0\""),
            ("a:99999", "port \"99999\""),
            ("a:https", "port \"https\""),
            ("[::1", "missing ']'"),
            ("exa mple.com", "contains ' '"),
            ("-bad.example", "starts or ends with '-'"),
            ("a..b", "empty label"),
            ("1::2::3", "not a valid IPv6"),
        ];
        for (input, want) in cases {
            let err = input.parse::<Target>().expect_err(input).to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn targets_files_carry_tags_and_skip_comments() {
        let text = "# payments\n\nshop.example.com:443 owner=payments env=prod  # checkout\n  smtp://mx.example.com:587\n";
        let reqs = parse_targets_file("t.txt", text).unwrap();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].target.to_string(), "shop.example.com:443");
        assert_eq!(reqs[0].tags.get("env").map(String::as_str), Some("prod"));
        assert_eq!(reqs[0].tags.len(), 2);
        assert_eq!(reqs[1].target.protocol, Protocol::Smtp);
        let err = parse_targets_file("t.txt", "a.example\nb.example owner\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(
            err.to_string().starts_with("t.txt:2: tag \"owner\""),
            "{err}"
        );
        let err = parse_targets_file("t.txt", "gopher://x\n").unwrap_err();
        assert!(
            err.to_string().contains("t.txt:1: target \"gopher://x\""),
            "{err}"
        );
    }

    #[test]
    fn resolve_overrides_apply_only_to_their_host_and_port() {
        let o: ResolveOverride = "shop.example.com:443:10.0.0.7".parse().unwrap();
        let o6: ResolveOverride = "shop.example.com:443:[2001:db8::7]".parse().unwrap();
        let other: ResolveOverride = "shop.example.com:8443:10.0.0.8".parse().unwrap();
        let req = ScanRequest::new(t("shop.example.com")).with_overrides(&[o, o6, other]);
        assert_eq!(
            req.known_addresses().unwrap(),
            vec![
                "10.0.0.7:443".parse::<SocketAddr>().unwrap(),
                "[2001:db8::7]:443".parse().unwrap()
            ]
        );
        assert_eq!(ScanRequest::new(t("other.example")).known_addresses(), None);
        for bad in ["a:443", "a:x:1.2.3.4", "a:443:nope", ":443:1.2.3.4"] {
            assert!(bad.parse::<ResolveOverride>().is_err(), "{bad}");
        }
    }
}
