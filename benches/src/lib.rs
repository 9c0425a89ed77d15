//! rvs benchmarks. `frame` holds rvs-pktgen's packet logic on plain byte buffers (client frames,
//! the real-server reflection, reply checks, ARP) so it is tested without DPDK; the binary
//! `rvs-pktgen` (src/bin) drives it over two DPDK ports. `scripts/bench.sh` runs the traffic
//! benchmark and writes `benches/RESULTS.md`.

pub mod frame;
pub mod session;

/// The director of the benchmarks without DPDK (pipeline-bench, snapshot-bench): testkit's
/// two-arm director, no gateway, MTU 1500.
pub fn two_arm_ports() -> Vec<dataplane::pipeline::PortSetup> {
    testkit::director::two_arm_ports(None, 1500)
}

/// Real server `d` (from 0) of the benchmarks' services: 192.0.2.2 + `d`.
pub fn rip(d: u32) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(192, 0, 2, 2)) + d)
}

/// IPv6 real server `d` (from 0): 2001:db8:2::2 + `d`, in the real servers' prefix of the
/// address plan (testkit's `ipv6::RIP6_1` is `rip6(0)`).
pub fn rip6(d: u32) -> std::net::Ipv6Addr {
    std::net::Ipv6Addr::from(u128::from(testkit::ipv6::RIP6_1) + u128::from(d))
}

/// Adds service `key`, round robin over `dests` real servers [`rip`]`(0..dests)` (an IPv6
/// service: [`rip6`]`(0..dests)`) on port `dest_port` (NAT, weight 1); a panic if the manager
/// refuses.
pub fn add_rr_service(
    mgr: &mut dataplane::service::ServiceManager,
    key: control::model::ServiceKey,
    dests: u32,
    dest_port: u16,
) {
    use control::model::{default_netmask, DestSpec, Forward, SchedulerKind, ServiceSpec};
    use control::proto::{Request, Response};
    let mut ok = |r: Request| match mgr.handle(r) {
        Response::Ok => {}
        other => panic!("setup refused: {other:?}"),
    };
    ok(Request::AddService(ServiceSpec {
        key,
        scheduler: SchedulerKind::Rr,
        persistence: None,
        netmask: default_netmask(),
        sched_flags: Default::default(),
        ops: false,
    }));
    for d in 0..dests {
        ok(Request::AddDest {
            service: key,
            dest: DestSpec {
                addr: if key.addr.is_ipv6() {
                    rip6(d).into()
                } else {
                    rip(d).into()
                },
                port: dest_port,
                weight: 1,
                forward: Forward::Masq,
                upper_threshold: 0,
                lower_threshold: 0,
            },
        });
    }
}

/// The CPU's model name as `/proc/cpuinfo` gives it, for the results; "unknown CPU" without one.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Writes section `name` of the results file at `path` (`benches/RESULTS.md`, where every
/// benchmark has its own part between `<!-- name:begin -->` and `<!-- name:end -->`):
/// `body` gets the section's current text (`None` when there is none) and returns the new one,
/// which replaces it, or is appended at the end. The rest of the file is left alone. The same
/// rules as `scripts/lib/results_section.py`, which the bench scripts use.
pub fn write_results_section(
    path: &std::path::Path,
    name: &str,
    body: impl FnOnce(Option<&str>) -> String,
) -> std::io::Result<()> {
    let (begin, end) = (
        format!("<!-- {name}:begin -->"),
        format!("<!-- {name}:end -->"),
    );
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let found = old
        .find(&begin)
        .and_then(|b| old[b..].find(&end).map(|e| (b, b + e)));
    let current = found.map(|(b, e)| old[b + begin.len()..e].trim_matches('\n'));
    let section = format!("{begin}\n{}\n{end}\n", body(current).trim_matches('\n'));
    let new = match found {
        Some((b, e)) => {
            let rest = old[e + end.len()..].trim_start_matches('\n');
            let sep = if rest.is_empty() { "" } else { "\n" };
            format!("{}{section}{sep}{rest}", &old[..b])
        }
        None if old.trim().is_empty() => section,
        None => format!("{}\n\n{section}", old.trim_end()),
    };
    std::fs::write(path, new)
}

/// Pins the calling thread to `cpu` (a refusal is reported on stderr, and the run goes on).
pub fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and the syscall only touch it and this
    // thread's affinity.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("pinning refused: {}", std::io::Error::last_os_error());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::write_results_section;

    #[test]
    fn sections_are_replaced_appended_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("R.md");
        write_results_section(&p, "a", |old| {
            assert_eq!(old, None);
            "one".into()
        })
        .unwrap();
        write_results_section(&p, "b", |_| "two".into()).unwrap();
        write_results_section(&p, "a", |old| format!("{}+1", old.unwrap())).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "<!-- a:begin -->\none+1\n<!-- a:end -->\n\n<!-- b:begin -->\ntwo\n<!-- b:end -->\n"
        );
    }
}
