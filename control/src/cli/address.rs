//! Addresses and ports: `host[:port]` as ipvsadm reads it, host names and service names.

use super::{number, CliError};
use crate::model::Protocol;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

/// `host[:port]` as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HostPort {
    pub(super) addr: IpAddr,
    /// `None` when not given.
    pub(super) port: Option<u16>,
}

/// `host[:port]` as ipvsadm's parse_service reads it: `Ok(None)` when malformed (the caller
/// names what was malformed). IPv6: `[addr]:port`, or a bare `addr` without a port;
/// `[addr]` without `:port` is malformed, as in ipvsadm. Host names resolve to IPv4 only
/// (ipvsadm's gethostbyname).
pub(super) fn parse_host_port(
    text: &str,
    protocol: Protocol,
) -> Result<Option<HostPort>, CliError> {
    // ipvsadm refuses a bare number, which would otherwise read as a 32-bit address.
    if text.is_empty() || text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    if let Some(rest) = text.strip_prefix('[') {
        let Some((host, port)) = rest.split_once("]:") else {
            return Ok(None);
        };
        let Ok(addr) = host.parse::<Ipv6Addr>() else {
            return Ok(None);
        };
        return Ok(parse_port(port, protocol).map(|port| HostPort {
            addr: IpAddr::V6(addr),
            port: Some(port),
        }));
    }
    if let Ok(addr) = text.parse::<Ipv6Addr>() {
        return Ok(Some(HostPort {
            addr: IpAddr::V6(addr),
            port: None,
        }));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (text, None),
    };
    let Some(addr) = host.parse::<Ipv4Addr>().ok().or_else(|| resolve_host(host)) else {
        return Ok(None);
    };
    let addr = IpAddr::V4(addr);
    let port = match port {
        None => None,
        Some(p) => match parse_port(p, protocol) {
            Some(n) => Some(n),
            None => return Ok(None),
        },
    };
    Ok(Some(HostPort { addr, port }))
}

/// A port number or service name.
fn parse_port(text: &str, protocol: Protocol) -> Option<u16> {
    number(text, 0, 65535)
        .map(|n| n as u16)
        .or_else(|| service_port(text, protocol))
}

/// A host name's first IPv4 address.
fn resolve_host(host: &str) -> Option<Ipv4Addr> {
    if host.is_empty() {
        return None;
    }
    (host, 0).to_socket_addrs().ok()?.find_map(|a| match a {
        std::net::SocketAddr::V4(v4) => Some(*v4.ip()),
        std::net::SocketAddr::V6(_) => None,
    })
}

/// Ports of well-known services for systems without `/etc/services`.
const BUILTIN_SERVICES: &[(&str, u16)] = &[
    ("ftp", 21),
    ("ssh", 22),
    ("smtp", 25),
    ("domain", 53),
    ("http", 80),
    ("www", 80),
    ("pop3", 110),
    ("ntp", 123),
    ("imap", 143),
    ("snmp", 161),
    ("ldap", 389),
    ("https", 443),
    ("imaps", 993),
    ("pop3s", 995),
    ("mysql", 3306),
    ("postgresql", 5432),
];

/// A service name's port, from `/etc/services` as getservbyname reads it, or from a small
/// built-in table when that file is missing.
fn service_port(name: &str, protocol: Protocol) -> Option<u16> {
    match std::fs::read_to_string("/etc/services") {
        Ok(text) => port_in_services(&text, name, protocol),
        Err(_) => BUILTIN_SERVICES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p),
    }
}

/// Looks `name` (or an alias) up in `/etc/services` text for the given protocol.
fn port_in_services(text: &str, name: &str, protocol: Protocol) -> Option<u16> {
    let proto = match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let primary = fields.next()?;
        let (port, p) = fields.next()?.split_once('/')?;
        let matches = primary == name || fields.any(|alias| alias == name);
        (matches && p == proto).then(|| port.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICES: &str = "\
# comment line
http\t\t80/tcp\t\twww\t\t# WorldWideWeb HTTP
domain\t\t53/tcp
domain\t\t53/udp
ntp\t\t123/udp
";

    #[test]
    fn services_file_lookup_by_name_alias_and_protocol() {
        assert_eq!(port_in_services(SERVICES, "http", Protocol::Tcp), Some(80));
        assert_eq!(port_in_services(SERVICES, "www", Protocol::Tcp), Some(80));
        assert_eq!(port_in_services(SERVICES, "http", Protocol::Udp), None);
        assert_eq!(
            port_in_services(SERVICES, "domain", Protocol::Udp),
            Some(53)
        );
        assert_eq!(port_in_services(SERVICES, "ntp", Protocol::Tcp), None);
        assert_eq!(port_in_services(SERVICES, "comment", Protocol::Tcp), None);
    }

    #[test]
    fn host_port_forms() {
        let p = |t| parse_host_port(t, Protocol::Tcp);
        let a = |port| HostPort {
            addr: "192.0.2.2".parse().unwrap(),
            port,
        };
        let a6 = |port| HostPort {
            addr: "2001:db8::1".parse().unwrap(),
            port,
        };
        assert_eq!(p("192.0.2.2:8080"), Ok(Some(a(Some(8080)))));
        assert_eq!(p("192.0.2.2"), Ok(Some(a(None))));
        assert_eq!(p("192.0.2.2:0"), Ok(Some(a(Some(0)))));
        assert_eq!(p("192.0.2.2:65536"), Ok(None));
        assert_eq!(p("192.0.2.2:"), Ok(None));
        assert_eq!(p("12345"), Ok(None));
        assert_eq!(p(""), Ok(None));
        assert_eq!(p("[2001:db8::1]:80"), Ok(Some(a6(Some(80)))));
        assert_eq!(p("[2001:db8::1]:http"), Ok(Some(a6(Some(80)))));
        assert_eq!(p("[2001:db8:0::1]:0"), Ok(Some(a6(Some(0)))));
        assert_eq!(p("2001:db8::1"), Ok(Some(a6(None))));
        // ipvsadm: brackets need a port; no port past 65535; no IPv4 in brackets.
        assert_eq!(p("[2001:db8::1]"), Ok(None));
        assert_eq!(p("[2001:db8::1]:"), Ok(None));
        assert_eq!(p("[2001:db8::1]:65536"), Ok(None));
        assert_eq!(p("[2001:db8::1:80"), Ok(None));
        assert_eq!(p("[192.0.2.2]:80"), Ok(None));
        assert_eq!(p("[2001:db8::g]:80"), Ok(None));
    }

    #[test]
    fn host_names_resolve_to_ipv4() {
        assert_eq!(
            parse_host_port("localhost:80", Protocol::Tcp),
            Ok(Some(HostPort {
                addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port: Some(80)
            }))
        );
    }
}
