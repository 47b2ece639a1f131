//! HTTP grants: which origins a guest may reach, and which addresses those may resolve to.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP (`http://`): only where the grant names it explicitly.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The host part of a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// Exactly this name (lower case).
    Name(String),
    /// Any name one or more labels below this one (`*.lab.example`), not the name itself.
    Subdomains(String),
    /// Exactly this address.
    Ip(IpAddr),
}

/// One origin a guest may send requests to: scheme, host (or `*.` subdomain wildcard) and
/// port must all match. Parsed from `https://mikro.lab.example`, `https://*.lab.example:8443`,
/// `http://127.0.0.1:8080`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    scheme: Scheme,
    host: HostPattern,
    port: u16,
    /// Whether the origin may resolve to loopback, link-local or private addresses (an IP
    /// literal grant always may reach its own address).
    pub private: bool,
    /// Whether the origin is an Arkitekt service: requests get the agent's access token and
    /// the task's provenance token.
    pub service: bool,
}

/// Why an origin could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{origin}' is not an HTTP origin: {reason} (expected e.g. https://mikro.lab.example, https://*.lab.example:8443 or http://127.0.0.1:8080)"
)]
pub struct InvalidOrigin {
    origin: String,
    reason: &'static str,
}

impl FromStr for HttpGrant {
    type Err = InvalidOrigin;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| InvalidOrigin {
            origin: text.to_string(),
            reason,
        };
        let (scheme, rest) = if let Some(rest) = strip_prefix_ignore_case(text, "https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(text, "http://") {
            (Scheme::Http, rest)
        } else {
            return Err(invalid("it must start with http:// or https://"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(invalid("an origin has no path, query or user"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| invalid("bad port"))?;
        let port = port.unwrap_or(scheme.default_port());
        let host = if let Some(ip) = parse_ip(host) {
            HostPattern::Ip(ip)
        } else if let Some(suffix) = host.strip_prefix("*.") {
            HostPattern::Subdomains(check_name(suffix).ok_or_else(|| invalid("bad host name"))?)
        } else {
            HostPattern::Name(check_name(host).ok_or_else(|| invalid("bad host name"))?)
        };
        Ok(HttpGrant {
            scheme,
            host,
            port,
            private: false,
            service: false,
        })
    }
}

impl fmt::Display for HttpGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        match &self.host {
            HostPattern::Name(name) => write!(f, "{name}")?,
            HostPattern::Subdomains(suffix) => write!(f, "*.{suffix}")?,
            HostPattern::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            HostPattern::Ip(ip) => write!(f, "{ip}")?,
        }
        write!(f, ":{}", self.port)
    }
}

/// The origin of one request: what a grant is matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestOrigin {
    /// The scheme the grant allows (`https` unless it says `http://`).
    pub scheme: Scheme,
    /// Its host, lower case, without brackets or a trailing dot.
    pub host: String,
    /// Its port (explicit or the scheme's default).
    pub port: u16,
}

impl RequestOrigin {
    /// The origin of `uri`, if it is an absolute http(s) URI.
    pub fn of(uri: &http::Uri) -> Option<Self> {
        let scheme = match uri.scheme_str()? {
            s if s.eq_ignore_ascii_case("https") => Scheme::Https,
            s if s.eq_ignore_ascii_case("http") => Scheme::Http,
            _ => return None,
        };
        let host = uri.host()?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        if host.is_empty() {
            return None;
        }
        Some(RequestOrigin {
            scheme,
            port: uri.port_u16().unwrap_or(scheme.default_port()),
            host,
        })
    }

    /// The host as an address, if it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        parse_ip(&self.host)
    }
}

impl fmt::Display for RequestOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip() {
            Some(IpAddr::V6(ip)) => write!(f, "{}://[{ip}]:{}", self.scheme.as_str(), self.port),
            _ => write!(f, "{}://{}:{}", self.scheme.as_str(), self.host, self.port),
        }
    }
}

impl HttpGrant {
    /// This grant, allowed to resolve to loopback, link-local or private addresses.
    pub fn allow_private(self) -> Self {
        HttpGrant {
            private: true,
            ..self
        }
    }

    /// This grant, marked as an Arkitekt service.
    pub fn as_service(self) -> Self {
        HttpGrant {
            service: true,
            ..self
        }
    }

    /// Whether a request to `origin` is covered by this grant.
    pub fn matches(&self, origin: &RequestOrigin) -> bool {
        if self.scheme != origin.scheme || self.port != origin.port {
            return false;
        }
        match &self.host {
            HostPattern::Name(name) => *name == origin.host,
            HostPattern::Subdomains(suffix) => origin
                .host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            HostPattern::Ip(ip) => origin.ip() == Some(*ip),
        }
    }

    /// Whether this grant lets a connection go to `address`: public addresses always, others
    /// (see [`restricted_range`]) only if the grant names the address itself or is marked
    /// `private`.
    pub fn admits(&self, address: IpAddr) -> bool {
        self.private
            || restricted_range(address).is_none()
            || matches!(self.host, HostPattern::Ip(ip) if canonical(ip) == canonical(address))
    }
}

/// The kind of non-public range `address` is in, if any: these are refused unless granted
/// explicitly.
pub fn restricted_range(address: IpAddr) -> Option<&'static str> {
    match canonical(address) {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            if ip.is_loopback() {
                Some("loopback")
            } else if ip.is_link_local() {
                Some("link-local")
            } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
                Some("private")
            } else if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || a == 0 {
                Some("non-routable")
            } else {
                None
            }
        }
        IpAddr::V6(ip) => {
            if ip.is_loopback() {
                Some("loopback")
            } else if ip.is_unicast_link_local() {
                Some("link-local")
            } else if ip.is_unique_local() {
                Some("private")
            } else if ip.is_unspecified() || ip.is_multicast() {
                Some("non-routable")
            } else {
                None
            }
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(ip) => ip
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(ip)),
        v4 => v4,
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// `host[:port]` or `[v6][:port]`.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(port) => Some(port.parse::<u16>().ok().filter(|&p| p != 0)?),
        None => None,
    };
    Some((host, port))
}

fn parse_ip(host: &str) -> Option<IpAddr> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse().ok()
}

/// A DNS name, lower-cased, without a trailing dot; `None` if it is not one.
fn check_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    valid.then(|| name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(uri: &str) -> RequestOrigin {
        RequestOrigin::of(&uri.parse().expect("uri")).expect("origin")
    }

    fn grant(text: &str) -> HttpGrant {
        text.parse().expect("grant")
    }

    #[test]
    fn scheme_host_and_port_must_all_match() {
        let mikro = grant("https://mikro.lab.example");
        assert!(mikro.matches(&origin("https://mikro.lab.example/api/images/1")));
        assert!(mikro.matches(&origin("https://MIKRO.lab.example.:443/x")));
        assert!(!mikro.matches(&origin("http://mikro.lab.example/x")));
        assert!(!mikro.matches(&origin("https://mikro.lab.example:8443/x")));
        assert!(!mikro.matches(&origin("https://mikro.lab.example.attacker/x")));
        assert!(!mikro.matches(&origin("https://evil-mikro.lab.example/x")));
        let port = grant("http://127.0.0.1:8080/");
        assert!(port.matches(&origin("http://127.0.0.1:8080/x")));
        assert!(!port.matches(&origin("http://127.0.0.1:8081/x")));
        assert!(!port.matches(&origin("http://localhost:8080/x")));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let lab = grant("https://*.lab.example");
        assert!(lab.matches(&origin("https://mikro.lab.example/")));
        assert!(lab.matches(&origin("https://a.b.lab.example/")));
        assert!(!lab.matches(&origin("https://lab.example/")));
        assert!(!lab.matches(&origin("https://evil-mikro.lab.example.attacker/")));
        assert!(!lab.matches(&origin("https://evillab.example/")));
        assert!(!lab.matches(&origin("https://mikro.lab.example:444/")));
    }

    #[test]
    fn bad_origins_are_explained() {
        for text in [
            "mikro.lab.example",
            "ftp://x",
            "https://x/path",
            "https://user@x",
            "https://x:0",
            "https://x:99999",
            "https://",
            "https://a..b",
        ] {
            let error = text.parse::<HttpGrant>().expect_err(text);
            assert!(
                error.to_string().contains("is not an HTTP origin"),
                "{error}"
            );
        }
        assert_eq!(
            grant("HTTPS://[::1]:8443").to_string(),
            "https://[::1]:8443",
            "IPv6 literals keep their brackets"
        );
    }

    #[test]
    fn restricted_addresses_need_an_explicit_grant() {
        let public = grant("https://mikro.lab.example");
        for (address, range) in [
            ("127.0.0.1", "loopback"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("192.168.0.10", "private"),
            ("172.16.5.4", "private"),
            ("100.64.0.1", "private"),
            ("fd00::1", "private"),
            ("169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("0.0.0.0", "non-routable"),
        ] {
            let ip: IpAddr = address.parse().expect("ip");
            assert_eq!(restricted_range(ip), Some(range), "{address}");
            assert!(!public.admits(ip), "{address}");
        }
        assert!(public.admits("93.184.215.14".parse().expect("ip")));
        let loopback = grant("http://127.0.0.1:8080");
        assert!(loopback.admits("127.0.0.1".parse().expect("ip")));
        assert!(!loopback.admits("127.0.0.2".parse().expect("ip")));
        let marked = grant("http://mikro.lab.internal").allow_private();
        assert!(marked.admits("10.0.0.5".parse().expect("ip")));
    }
}
