//! rvs-pktgen `--conn-test`: one trial of RFC 9693's stateful measures with complete TCP
//! connections (rvs_benches::session holds the connections' logic; this moves the frames).
//! The clients' segments go out of the external port; what the DUT delivers on the internal
//! port is answered by the session's real-server side; the replies on the external port move
//! each connection on. One JSON line on stdout says whether the trial passed.

use super::{arp_room, prepare, Args, Plan, Ports, BURST, STOP};
use dpdk_sys as sys;
use rvs_benches::frame;
use rvs_benches::session::{Config, Mode, Seg, SegKind, Served, Trial};
use rvsd::dpdk::{eal, mbuf};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;

/// A trial that has not ended after this many seconds is cut short (and fails).
const TRIAL_LIMIT_S: u64 = 600;

/// Frames waiting for room in a port's TX ring, oldest first: a DUT that was descheduled for a
/// moment (a shared machine) leaves its ring full; what the generator built is sent later, in
/// order, rather than dropped. Past `TX_BACKLOG` frames the newest are dropped (and the trial
/// told: their connections fail).
struct Tx {
    port: u16,
    q: VecDeque<*mut sys::rte_mbuf>,
    /// Flushes that found the ring full (the DUT not keeping up, or not running).
    ring_full: u64,
}

const TX_BACKLOG: usize = 8192;

impl Tx {
    fn new(port: u16) -> Tx {
        Tx {
            port,
            q: VecDeque::with_capacity(TX_BACKLOG),
            ring_full: 0,
        }
    }

    /// Queues `m` (an mbuf we own) behind what waits; false (and `m` freed) when full.
    fn push(&mut self, m: *mut sys::rte_mbuf) -> bool {
        if self.q.len() >= TX_BACKLOG {
            // SAFETY: ours to free.
            unsafe { sys::rte_pktmbuf_free(m) };
            return false;
        }
        self.q.push_back(m);
        true
    }

    /// Sends what waits, oldest first, until the ring is full.
    fn flush(&mut self) {
        while !self.q.is_empty() {
            let v = self.q.make_contiguous();
            let n = v.len().min(BURST);
            // SAFETY: the port is started; queue 0 is ours; v[..n] are mbufs we own.
            let k = usize::from(unsafe {
                sys::rte_eth_tx_burst(self.port, 0, v.as_mut_ptr(), n as u16)
            });
            self.q.drain(..k);
            if k < n {
                self.ring_full += 1;
                return;
            }
        }
    }

    fn free_all(&mut self) {
        for m in self.q.drain(..) {
            // SAFETY: ours to free.
            unsafe { sys::rte_pktmbuf_free(m) };
        }
    }
}

/// Builds `segs` in fresh mbufs and queues them on the client port; what could not be built or
/// queued is reported to the trial (its connections fail).
fn send_segs(ports: &Ports, tx: &mut Tx, t: &mut Trial, segs: &[Seg]) {
    for &s in segs {
        // SAFETY: the port's mempool lives as long as the port.
        match unsafe { mbuf::alloc_with(ports.ext.pool, |buf| t.write(buf, s)) } {
            Some(m) if tx.push(m) => {}
            _ => t.tx_failed(1),
        }
    }
    tx.flush();
}

pub fn bench(
    args: &Args,
    plan: &Plan,
    ports: &Ports,
    mode: Mode,
    vport: u16,
    dut_mac: Option<[u8; 6]>,
) -> Result<String, String> {
    let dut = prepare(args, plan, ports, dut_mac)?;
    let std::net::IpAddr::V4(vip) = plan.vip else {
        return Err("--conn-test runs over IPv4 only".into());
    };
    let hz = eal::tsc_hz();
    let mut t = Trial::new(Config {
        mode,
        conns: u32::try_from(args.flows).unwrap_or(u32::MAX),
        rate: args.rate,
        load_rate: args.load_rate,
        drain: args.drain_ms * hz / 1000,
        hz,
        vip,
        vport,
        client_mac: ports.ext.mac,
        dut_mac: dut,
    })?;
    let start = eal::tsc();
    let deadline = start + TRIAL_LIMIT_S * hz;
    let idle = Seg {
        idx: 0,
        kind: SegKind::Syn,
    };
    let mut kicks = [idle; BURST];
    let mut answers = [idle; 2 * BURST];
    let mut rx = [std::ptr::null_mut::<sys::rte_mbuf>(); BURST];
    let mut free = [std::ptr::null_mut::<sys::rte_mbuf>(); BURST];
    let (mut ext_tx, mut int_tx) = (Tx::new(ports.ext.id), Tx::new(ports.int.id));
    let mut next_report = start + hz;
    let mut cut_short = None;
    // Turns of the loop, and the longest time between two (the generator off its CPU).
    let (mut loops, mut max_gap, mut last) = (0u64, 0u64, start);
    loop {
        let now = eal::tsc();
        loops += 1;
        max_gap = max_gap.max(now - last);
        last = now;
        t.poll(now);
        if t.over() {
            break;
        }
        if STOP.load(Ordering::Relaxed) || now > deadline {
            cut_short = Some(if now > deadline {
                "time limit"
            } else {
                "interrupted"
            });
            break;
        }

        // Clients: the connections due now (none while frames wait for the DUT's ring).
        ext_tx.flush();
        int_tx.flush();
        let n = if ext_tx.q.is_empty() {
            t.due(now, &mut kicks)
        } else {
            0
        };
        send_segs(ports, &mut ext_tx, &mut t, &kicks[..n]);

        // Real servers: answer what the DUT delivered.
        // SAFETY: the port is started; queue 0 is ours.
        let n = usize::from(unsafe {
            sys::rte_eth_rx_burst(ports.int.id, 0, rx.as_mut_ptr(), BURST as u16)
        });
        let mut n_free = 0usize;
        for &m in &rx[..n] {
            // SAFETY: m came from rx_burst and is ours until sent or freed; `room` is its
            // data and tailroom, the only view of it while used.
            let room = unsafe { arp_room(m) };
            let len = if frame::is_arp(room) {
                frame::answer_neighbour(room, ports.int.mac, |ip| plan.is_server(ip))
            } else {
                match t.serve(room) {
                    Ok(Served::Reply(len)) => Some(len),
                    Ok(Served::Absorbed) | Err(_) => None,
                }
            };
            if let Some(len) = len {
                // SAFETY: valid mbuf; the answer fits its data room.
                unsafe { sys::rvs_mbuf_set_len(m, len as u16) };
                if !int_tx.push(m) {
                    t.tx_failed(1);
                }
            } else {
                free[n_free] = m;
                n_free += 1;
            }
        }
        int_tx.flush();
        if n_free > 0 {
            // SAFETY: ours to free.
            unsafe { sys::rte_pktmbuf_free_bulk(free.as_mut_ptr(), n_free as u32) };
        }

        // Clients: check the replies, answer them.
        // SAFETY: the port is started; queue 0 is ours.
        let n = usize::from(unsafe {
            sys::rte_eth_rx_burst(ports.ext.id, 0, rx.as_mut_ptr(), BURST as u16)
        });
        let (mut n_free, mut n_ans) = (0usize, 0usize);
        for &m in &rx[..n] {
            // SAFETY: as above.
            let room = unsafe { arp_room(m) };
            if frame::is_arp(room) {
                if let Some(len) = frame::answer_arp(room, ports.ext.mac, frame::is_client) {
                    // SAFETY: valid mbuf; the reply fits its data room.
                    unsafe { sys::rvs_mbuf_set_len(m, len as u16) };
                    ext_tx.push(m);
                    continue;
                }
            } else {
                // SAFETY: as above; `room` is not used after this.
                let f = unsafe { mbuf::data_mut(m) };
                let mut two = [idle; 2];
                let k = t.on_reply(f, now, &mut two);
                answers[n_ans..n_ans + k].copy_from_slice(&two[..k]);
                n_ans += k;
            }
            free[n_free] = m;
            n_free += 1;
        }
        if n_free > 0 {
            // SAFETY: ours to free.
            unsafe { sys::rte_pktmbuf_free_bulk(free.as_mut_ptr(), n_free as u32) };
        }
        send_segs(ports, &mut ext_tx, &mut t, &answers[..n_ans]);

        if !args.quiet && now >= next_report {
            eprintln!(
                "rvs-pktgen: {:5.1}s {}",
                (now - start) as f64 / hz as f64,
                t.phase_name()
            );
            next_report = now + hz;
        }
    }
    ext_tx.free_all();
    int_tx.free_all();
    let mut r = t.report();
    r["tx_ring_full"] =
        serde_json::json!({ "client": ext_tx.ring_full, "server": int_tx.ring_full });
    r["label"] = args.label.clone().into();
    r["dut_mac"] = control::config::MacAddr(dut).to_string().into();
    r["vip"] = plan.vip.to_string().into();
    r["vport"] = vport.into();
    r["elapsed_s"] = ((eal::tsc() - start) as f64 / hz as f64).into();
    r["tsc_hz"] = hz.into();
    r["loops"] = loops.into();
    r["max_loop_gap_ms"] = (max_gap as f64 * 1e3 / hz as f64).into();
    if let Some(why) = cut_short {
        r["error"] = format!("trial cut short ({why}) in phase {}", t.phase_name()).into();
    }
    eprintln!(
        "rvs-pktgen: {} trial, {} connections, rate {}/s (load {}/s): {}",
        mode.name(),
        args.flows,
        args.rate,
        args.load_rate,
        if t.passed() { "passed" } else { "FAILED" }
    );
    for p in r["phases"].as_array().into_iter().flatten() {
        eprintln!("  {p}");
    }
    Ok(r.to_string())
}
