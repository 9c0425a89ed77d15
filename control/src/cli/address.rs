//! Addresses and ports: `host[:port]` as ipvsadm reads it, host names and service names.

use super::grammar::NO_IPV6;
use super::{fail, number, CliError};
use crate::model::Protocol;
use std::net::{Ipv4Addr, Ipv6Addr, ToSocketAddrs};

/// `host[:port]` as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HostPort {
    pub(super) addr: Ipv4Addr,
    /// `None` when not given.
    pub(super) port: Option<u16>,
}

/// `host[:port]` as ipvsadm's parse_service reads it: `Ok(None)` when malformed (the caller
/// names what was malformed).
pub(super) fn parse_host_port(
    text: &str,
    protocol: Protocol,
) -> Result<Option<HostPort>, CliError> {
    if text.starts_with('[') || text.parse::<Ipv6Addr>().is_ok() {
        return fail(NO_IPV6);
    }
    // ipvsadm refuses a bare number, which would otherwise read as a 32-bit address.
    if text.is_empty() || text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (text, None),
    };
    let Some(addr) = host.parse().ok().or_else(|| resolve_host(host)) else {
        return Ok(None);
    };
    let port = match port {
        None => None,
        Some(p) => match number(p, 0, 65535).or_else(|| service_port(p, protocol).map(u32::from)) {
            Some(n) => Some(n as u16),
            None => return Ok(None),
        },
    };
    Ok(Some(HostPort { addr, port }))
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
        assert_eq!(p("192.0.2.2:8080"), Ok(Some(a(Some(8080)))));
        assert_eq!(p("192.0.2.2"), Ok(Some(a(None))));
        assert_eq!(p("192.0.2.2:0"), Ok(Some(a(Some(0)))));
        assert_eq!(p("192.0.2.2:65536"), Ok(None));
        assert_eq!(p("192.0.2.2:"), Ok(None));
        assert_eq!(p("12345"), Ok(None));
        assert_eq!(p(""), Ok(None));
        assert_eq!(
            p("[2001:db8::1]:80"),
            Err(CliError("IPv6 is not supported by rvs yet".into()))
        );
        assert_eq!(
            p("2001:db8::1"),
            Err(CliError("IPv6 is not supported by rvs yet".into()))
        );
    }

    #[test]
    fn host_names_resolve_to_ipv4() {
        assert_eq!(
            parse_host_port("localhost:80", Protocol::Tcp),
            Ok(Some(HostPort {
                addr: Ipv4Addr::LOCALHOST,
                port: Some(80)
            }))
        );
    }
}
