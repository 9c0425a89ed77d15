//! The two-arm director most dataplane tests run: port `ext` (198.51.100.1/24, the VIPs'
//! side) and port `int` (192.0.2.1/24, the real servers'), as DESIGN.md's lab plan.

use control::config::{Cidr, PortRole};
use dataplane::pipeline::PortSetup;
use std::net::Ipv4Addr;

pub const EXT_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
pub const INT_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];

/// Ports `ext` (with `ext_gateway`, MTU 1500) and `int` (no gateway, MTU `int_mtu`).
pub fn two_arm_ports(ext_gateway: Option<Ipv4Addr>, int_mtu: u16) -> Vec<PortSetup> {
    vec![
        PortSetup {
            name: "ext".into(),
            mac: EXT_MAC,
            role: PortRole::External,
            addrs: vec![Cidr::parse("198.51.100.1/24").expect("cidr")],
            gateway: ext_gateway,
            mtu: 1500,
        },
        PortSetup {
            name: "int".into(),
            mac: INT_MAC,
            role: PortRole::Internal,
            addrs: vec![Cidr::parse("192.0.2.1/24").expect("cidr")],
            gateway: None,
            mtu: int_mtu,
        },
    ]
}
