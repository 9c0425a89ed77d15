//! What the scheduler tests and benchmarks schedule (sched_props, sched-bench): a service's
//! real servers as a snapshot holds them, client flows, and the connections that load them.

use crate::plan::{nth_client, nth_real_server, VIP};
use crate::services::{dest, service, tcp};
use control::model::{SchedFlags, SchedulerKind, ServiceSpec};
use dataplane::conntrack::{ConnState, NewConn};
use dataplane::sched::Flow;
use dataplane::service::Dest;
use std::net::Ipv4Addr;

/// TCP service VIP:80 with scheduler `kind` and its `-b` flags.
pub fn service_with(kind: SchedulerKind, sched_flags: SchedFlags) -> ServiceSpec {
    ServiceSpec {
        sched_flags,
        ..service(tcp(VIP, 80), kind)
    }
}

/// Real servers with these weights ([`nth_real_server`] 0, 1, ..., masquerading, no
/// thresholds), in connection-table slots 0, 1, ...
pub fn real_servers(weights: &[u32]) -> Vec<Dest> {
    (0u32..)
        .zip(weights)
        .map(|(slot, &weight)| {
            let (addr, port) = nth_real_server(slot as usize);
            Dest::new(dest(addr, port, weight), slot)
        })
        .collect()
}

/// Client flow `k` to VIP:80, its address a multiplicative hash of `k` spread over the whole
/// IPv4 space so that source hashing sees every bucket (keys only, never sent).
pub fn spread_flow(k: u32) -> Flow {
    let a = k.wrapping_mul(0x9e37_79b1) ^ 0x5bd1_e995;
    Flow {
        client: Ipv4Addr::from(a).into(),
        cport: (a >> 7) as u16 | 1024,
        vip: VIP.into(),
        vport: 80,
    }
}

/// Connection `n` ([`nth_client`] `n` to VIP:80) on real server `to`: active (ESTABLISHED)
/// or inactive (TIME_WAIT).
pub fn conn_on(to: &Dest, n: usize, active: bool) -> NewConn {
    NewConn {
        proto: 6,
        client: nth_client(n),
        virt: (VIP, 80),
        real: (to.addr4(), to.spec.port),
        dest: to.slot,
        state: if active {
            ConnState::Established
        } else {
            ConnState::TimeWait
        },
    }
}
