//! The address plan of every test, benchmark and lab (DESIGN.md's lab plan, documentation
//! addresses only): clients on 198.51.100.0/24 with the VIP, real servers on 192.0.2.0/24 with
//! the DIP, in LVS's words (CIP, VIP, DIP, RIP). More clients than one /24 holds go on to
//! 203.0.113.0/24 ([`nth_client`]).

use dataplane::conntrack::{ConnState, NewConn};
use std::net::Ipv4Addr;

/// The virtual IP, also the external port's address.
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The director's address on the real servers' side: their default gateway.
pub const DIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The first client, `client(10)`.
pub const CIP: Ipv4Addr = client(10);
/// Real servers `rip(1)`, `rip(2)`, `rip(3)`.
pub const RIP1: Ipv4Addr = rip(1);
pub const RIP2: Ipv4Addr = rip(2);
pub const RIP3: Ipv4Addr = rip(3);

/// The external port's address in CIDR form (the VIP's subnet).
pub const EXT_CIDR: &str = "198.51.100.1/24";
/// The internal port's address in CIDR form (the DIP's subnet).
pub const INT_CIDR: &str = "192.0.2.1/24";

/// A client on the VIP's subnet: 198.51.100.`last`.
pub const fn client(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, last)
}

/// Real server `n` (from 1): 192.0.2.(1 + `n`), so that RIP1 is 192.0.2.2.
pub const fn rip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 1 + n)
}

/// Real-server addresses in [`nth_real_server`]: `rip(1)` ..= `rip(253)`.
pub const RIPS: usize = 253;

/// The `i`-th of many distinct real servers: `rip(1 + i % RIPS)`, port 80 for the first
/// [`RIPS`], then 81, ... (more real servers than the /24 holds).
pub fn nth_real_server(i: usize) -> (Ipv4Addr, u16) {
    let port = u16::try_from(80 + i / RIPS).expect("the plan's real-server ports");
    (rip(1 + (i % RIPS) as u8), port)
}

/// Client ports per address in [`nth_client`]: 1024..=65535.
pub const PORTS_PER_CLIENT: usize = 64_512;

/// The `i`-th of up to 512 x 64512 (33M) distinct client endpoints: ports 1024.. of
/// 198.51.100.0, .1, ... .255, then of 203.0.113.0 ... .255.
pub fn nth_client(i: usize) -> (Ipv4Addr, u16) {
    let host = i / PORTS_PER_CLIENT;
    assert!(host < 512, "client {i}: the plan has 512 client addresses");
    let ip = if host < 256 {
        Ipv4Addr::new(198, 51, 100, host as u8)
    } else {
        Ipv4Addr::new(203, 0, 113, (host - 256) as u8)
    };
    (ip, 1024 + (i % PORTS_PER_CLIENT) as u16)
}

/// Connection `i` of a table filled with [`nth_client`]s: to VIP:80, on real server
/// `rip(1 + i % 32)`:80 (slot `i % 32`), ESTABLISHED.
pub fn nth_conn(i: usize) -> NewConn {
    NewConn {
        proto: 6,
        client: nth_client(i),
        virt: (VIP, 80),
        real: (rip(1 + (i % 32) as u8), 80),
        dest: (i % 32) as u32,
        state: ConnState::Established,
    }
}

/// The one-arm director's MAC (rvsd's port in the DPDK tests, the port of `director::one_arm`).
pub const ONE_ARM_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
/// The client's MAC (also the router's, for clients behind it).
pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
/// The real servers' MACs.
pub const RS1_MAC: [u8; 6] = [2, 0, 0, 0, 3, 2];
pub const RS2_MAC: [u8; 6] = [2, 0, 0, 0, 3, 3];
pub const BROADCAST: [u8; 6] = [0xff; 6];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_documentation_addresses() {
        assert_eq!(
            (CIP, VIP, DIP, RIP1, RIP2),
            (
                Ipv4Addr::new(198, 51, 100, 10),
                Ipv4Addr::new(198, 51, 100, 1),
                Ipv4Addr::new(192, 0, 2, 1),
                Ipv4Addr::new(192, 0, 2, 2),
                Ipv4Addr::new(192, 0, 2, 3)
            )
        );
        assert_eq!(nth_real_server(0), (RIP1, 80));
        assert_eq!(
            nth_real_server(RIPS - 1),
            (Ipv4Addr::new(192, 0, 2, 254), 80)
        );
        assert_eq!(nth_real_server(RIPS), (RIP1, 81));
        assert_eq!(nth_client(0), (Ipv4Addr::new(198, 51, 100, 0), 1024));
        assert_eq!(
            nth_client(PORTS_PER_CLIENT - 1),
            (Ipv4Addr::new(198, 51, 100, 0), 65535)
        );
        assert_eq!(
            nth_client(256 * PORTS_PER_CLIENT),
            (Ipv4Addr::new(203, 0, 113, 0), 1024)
        );
        assert_eq!(
            nth_client(512 * PORTS_PER_CLIENT - 1),
            (Ipv4Addr::new(203, 0, 113, 255), 65535)
        );
    }
}
