//! The daemon's loop: one scheduling thread (this one) holds every checker's next due time
//! in a heap, hands due checks to a fixed pool of check threads, and applies their verdicts:
//! checker state, real server and quorum state, then the difference between what should be
//! in rvsd and what is, as control-socket requests.
//!
//! Costs: one heap entry and one in-flight check at most per checker; the pool's threads
//! block in connect/read/wait, so with N threads and every check timing out, N checks finish
//! per connect_timeout (the default pool of 64 threads covers 1,000 checkers at a 5 s
//! timeout within a 60 s delay_loop, keepalived's defaults). A check never waits for rvsd:
//! only this thread talks to the control socket.

use crate::check::{self, Verdict};
use crate::conf::{CheckKind, Checker, Config};
use crate::state::{CheckerState, Quorum, ServiceState, WeightChange};
use control::client::{Client, ClientError};
use control::model::{DestSpec, ServiceKey, ServiceSpec};
use control::proto::{Request, Response};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What rvs-healthd changes in the load balancer: rvsd's control socket, or a recorder in
/// tests.
pub trait Lvs {
    fn call(&mut self, request: Request) -> Result<Response, String>;
}

/// rvsd's control socket. A broken connection (rvsd restarted) is opened again and the
/// request sent once more; rvsd's own refusals come back as they are.
pub struct ControlSocket {
    path: PathBuf,
    client: Client,
}

impl ControlSocket {
    pub fn new(path: PathBuf) -> ControlSocket {
        ControlSocket {
            client: Client::new(path.clone()),
            path,
        }
    }
}

impl Lvs for ControlSocket {
    fn call(&mut self, request: Request) -> Result<Response, String> {
        match self.client.call(request.clone()) {
            Err(ClientError::Io { .. } | ClientError::Protocol { .. }) => {
                self.client = Client::new(self.path.clone());
                self.client.call(request).map_err(|e| e.to_string())
            }
            r => r.map_err(|e| e.to_string()),
        }
    }
}

/// How often the loop looks at the stop flag when nothing is due.
const TICK: Duration = Duration::from_millis(100);

/// Check threads when not told otherwise (fewer when there are fewer checkers).
pub const DEFAULT_CHECK_THREADS: usize = 64;

struct ServiceRun {
    spec: ServiceSpec,
    state: ServiceState,
    /// What is in rvsd now, as this daemon put it.
    installed: BTreeMap<SocketAddr, DestSpec>,
}

struct CheckRun {
    service: usize,
    server: usize,
    index: usize,
    checker: Arc<Checker>,
    state: CheckerState,
    /// `[TCP_CHECK 203.0.113.2:80 of TCP 198.51.100.10:80]`, for the logs.
    label: String,
}

struct Job {
    id: usize,
    checker: Arc<Checker>,
}

struct Outcome {
    id: usize,
    verdict: Verdict,
}

/// Runs one check to its verdict.
pub fn run_check(c: &Checker) -> Verdict {
    match &c.kind {
        CheckKind::Tcp(conn) => check::tcp(conn, c.timing.timeout),
        CheckKind::Http(h) => check::http(h, c.timing.timeout),
        CheckKind::Misc(m) => check::misc(m, c.timing.timeout),
    }
}

pub struct Engine<L: Lvs> {
    lvs: L,
    services: Vec<ServiceRun>,
    checks: Vec<CheckRun>,
    /// Checks run to their verdict so far.
    completed: u64,
}

impl<L: Lvs> Engine<L> {
    pub fn new(config: &Config, lvs: L) -> Engine<L> {
        let mut services = Vec::new();
        let mut checks = Vec::new();
        for (si, vs) in config.services.iter().enumerate() {
            services.push(ServiceRun {
                spec: vs.spec.clone(),
                state: ServiceState::new(vs),
                installed: BTreeMap::new(),
            });
            for (ri, rs) in vs.real_servers.iter().enumerate() {
                for (ci, c) in rs.checkers.iter().enumerate() {
                    checks.push(CheckRun {
                        service: si,
                        server: ri,
                        index: ci,
                        checker: Arc::new(c.clone()),
                        state: CheckerState::new(c.timing, c.alpha),
                        label: format!("[{} {} of {}]", c.kind.name(), rs.endpoint, vs.spec.key),
                    });
                }
            }
        }
        Engine {
            lvs,
            services,
            checks,
            completed: 0,
        }
    }

    /// Checks run to their verdict so far.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Adds (or, if rvsd has them already, edits) every virtual server, and puts in the real
    /// servers that start alive (all of them, unless alpha), or the sorry server.
    pub fn install(&mut self) -> Result<(), String> {
        for i in 0..self.services.len() {
            let spec = self.services[i].spec.clone();
            match self.lvs.call(Request::AddService(spec.clone())) {
                Ok(_) => {
                    tracing::info!(service = %spec.key, scheduler = %spec.scheduler, "virtual server added")
                }
                Err(e) if e.contains("already exists") => {
                    self.lvs
                        .call(Request::EditService(spec.clone()))
                        .map_err(|e| format!("edit {}: {e}", spec.key))?;
                    self.services[i].installed = self.present(&spec.key)?;
                    tracing::info!(service = %spec.key, "virtual server already in rvsd: taken over");
                }
                Err(e) => return Err(format!("add {}: {e}", spec.key)),
            }
            let s = &self.services[i];
            if !s.state.quorum_up() {
                tracing::warn!(service = %spec.key, alive_weight = s.state.alive_weight(), "starting with quorum down");
            }
            self.sync(i, "start");
        }
        Ok(())
    }

    /// The real servers rvsd has for `key`.
    fn present(&mut self, key: &ServiceKey) -> Result<BTreeMap<SocketAddr, DestSpec>, String> {
        match self.lvs.call(Request::List {
            service: Some(*key),
        })? {
            Response::Services { services, .. } => Ok(services
                .into_iter()
                .flat_map(|s| s.dests)
                .map(|d| (SocketAddr::new(d.spec.addr, d.spec.port), d.spec))
                .collect()),
            other => Err(format!("list {key}: unexpected answer {other:?}")),
        }
    }

    /// Makes rvsd's real servers of service `i` what its state wants; each change logged
    /// with `why`. A refused request is logged and tried again at the next change.
    fn sync(&mut self, i: usize, why: &str) {
        let s = &self.services[i];
        let want = s.state.desired();
        let mut eps: Vec<SocketAddr> = s.installed.keys().copied().collect();
        eps.extend(want.keys().filter(|ep| !s.installed.contains_key(ep)));
        for ep in eps {
            self.sync_one(i, ep, want.get(&ep).cloned(), why);
        }
    }

    /// Makes real server `ep` of service `i` in rvsd what `want` says (`None`: not in).
    fn sync_one(&mut self, i: usize, ep: SocketAddr, want: Option<DestSpec>, why: &str) {
        let s = &self.services[i];
        let service = s.spec.key;
        let (request, what) = match (s.installed.get(&ep), &want) {
            (Some(have), Some(w)) if have == w => return,
            (None, None) => return,
            (Some(_), None) => (
                Request::DelDest {
                    service,
                    addr: ep.ip(),
                    port: ep.port(),
                },
                format!("removing {ep}"),
            ),
            (Some(have), Some(w)) => (
                Request::EditDest {
                    service,
                    dest: w.clone(),
                },
                format!("setting {ep} weight {} -> {}", have.weight, w.weight),
            ),
            (None, Some(w)) => (
                Request::AddDest {
                    service,
                    dest: w.clone(),
                },
                format!("adding {ep} weight {}", w.weight),
            ),
        };
        match self.lvs.call(request) {
            Ok(_) => {
                tracing::info!(%service, reason = why, "{what}");
                let installed = &mut self.services[i].installed;
                match want {
                    Some(d) => installed.insert(ep, d),
                    None => installed.remove(&ep),
                };
            }
            Err(e) => tracing::error!(%service, reason = why, error = %e, "{what} failed"),
        }
    }

    /// Applies one verdict of check `id`; returns when to run it again.
    fn apply(&mut self, id: usize, verdict: Verdict) -> Duration {
        let c = &mut self.checks[id];
        let (success, weight, error) = match &verdict {
            Verdict::Up(w) => (true, *w, None),
            Verdict::Down(e) => (false, WeightChange::Unchanged, Some(e.as_str())),
        };
        let step = c.state.record(success);
        let label = c.label.clone();
        let (si, ri, ci) = (c.service, c.server, c.index);
        if let (Some(left), Some(e)) = (step.retrying, error) {
            tracing::debug!(check = %label, error = e, retries_left = left, "check failed, retrying");
        }
        let up = c.state.is_up();
        let weight = match (up, weight) {
            // A checker that goes down drops its dynamic weight, as keepalived's.
            (false, _) if step.decided == Some(false) => WeightChange::Configured,
            (_, w) => w,
        };
        let s = &mut self.services[si];
        let was_alive = s.state.alive(ri);
        s.state.set_checker(ri, ci, up, weight);
        let alive = s.state.alive(ri);
        let reason = match (step.decided, error) {
            (Some(true), _) => format!("{label} succeeded"),
            (Some(false), Some(e)) => format!("{label} failed: {e}"),
            _ => format!("{label} weight"),
        };
        match step.decided {
            Some(true) => tracing::info!(check = %label, real_server_alive = alive, "check up"),
            Some(false) => {
                tracing::warn!(check = %label, error = error.unwrap_or_default(), real_server_alive = alive, "check down")
            }
            None => {}
        }
        if was_alive != alive {
            tracing::warn!(service = %s.spec.key, reason = %reason, "real server {}", if alive { "up" } else { "down" });
        }
        let quorum = s.state.update_quorum();
        match quorum {
            Some(Quorum::Lost { sum, threshold }) => {
                tracing::warn!(service = %s.spec.key, alive_weight = sum, threshold, reason = %reason, "quorum lost")
            }
            Some(Quorum::Gained { sum, threshold }) => {
                tracing::warn!(service = %s.spec.key, alive_weight = sum, threshold, reason = %reason, "quorum gained")
            }
            None => {}
        }
        if quorum.is_some() {
            // The sorry server and every alive real server move.
            self.sync(si, &reason);
        } else if let Some((ep, want)) = s.state.desired_server(ri) {
            // Only this real server can have changed: O(1), not O(real servers).
            self.sync_one(si, ep, want, &reason);
        }
        step.next
    }

    /// Runs the checks until `stop` is set, on `threads` check threads.
    pub fn run(&mut self, stop: &AtomicBool, threads: usize) {
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (out_tx, out_rx) = mpsc::channel::<Outcome>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let threads = threads.clamp(1, self.checks.len().max(1));
        for n in 0..threads {
            let rx = job_rx.clone();
            let tx = out_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("check-{n}"))
                .stack_size(256 * 1024)
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let verdict = run_check(&job.checker);
                    if tx
                        .send(Outcome {
                            id: job.id,
                            verdict,
                        })
                        .is_err()
                    {
                        return;
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a check thread");
            }
        }
        drop(out_tx);
        let mut rng = Rng::seeded();
        let now = Instant::now();
        let mut due: BinaryHeap<Reverse<(Instant, usize)>> = self
            .checks
            .iter()
            .enumerate()
            .map(|(id, c)| Reverse((now + rng.below(c.checker.timing.warmup), id)))
            .collect();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            while let Some(Reverse((at, id))) = due.peek().copied() {
                if at > now {
                    break;
                }
                due.pop();
                let checker = self.checks[id].checker.clone();
                if job_tx.send(Job { id, checker }).is_err() {
                    tracing::error!("the check threads are gone");
                    return;
                }
            }
            let wait = due
                .peek()
                .map_or(TICK, |Reverse((at, _))| at.saturating_duration_since(now))
                .min(TICK);
            match out_rx.recv_timeout(wait) {
                Ok(o) => {
                    self.completed += 1;
                    let next = self.apply(o.id, o.verdict);
                    due.push(Reverse((Instant::now() + next, o.id)));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    tracing::error!("the check threads are gone");
                    return;
                }
            }
        }
    }

    /// Removes every virtual server this daemon installed (keepalived's behaviour on exit).
    pub fn release(&mut self) {
        for s in &self.services {
            match self.lvs.call(Request::DelService(s.spec.key)) {
                Ok(_) => tracing::info!(service = %s.spec.key, "virtual server removed"),
                Err(e) => {
                    tracing::error!(service = %s.spec.key, error = %e, "removing the virtual server failed")
                }
            }
        }
    }
}

/// xorshift64*, for spreading the first checks over their warmup (no need for quality).
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng((t ^ u64::from(std::process::id()) << 32) | 1)
    }

    fn below(&mut self, d: Duration) -> Duration {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(r % nanos)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::parse_str;
    use crate::testlab::Recorder;
    use std::path::Path;

    #[test]
    fn verdicts_drive_rvsd_through_retries_and_recovery() {
        let cfg = parse_str(
            "virtual_server 198.51.100.10 80 {
  lb_algo rr
  lb_kind NAT
  sorry_server 203.0.113.100 80
  real_server 203.0.113.2 80 { weight 2\n inhibit_on_failure\n TCP_CHECK { retry 1 } }
  real_server 203.0.113.6 80 { MISC_CHECK { misc_path /bin/true\n misc_dynamic } }
}
",
            Path::new("t.conf"),
        )
        .unwrap();
        let rec = Recorder::default();
        let mut e = Engine::new(&cfg, rec.clone());
        e.install().unwrap();
        let ep = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            rec.weights(),
            BTreeMap::from([(ep("203.0.113.2:80"), 2), (ep("203.0.113.6:80"), 1)])
        );
        let down = || Verdict::Down("refused".into());
        e.apply(0, down()); // retry 1 of 1
        assert_eq!(rec.weights()[&ep("203.0.113.2:80")], 2);
        e.apply(0, down());
        assert_eq!(
            rec.weights()[&ep("203.0.113.2:80")],
            0,
            "inhibited: weight 0"
        );
        e.apply(1, Verdict::Up(WeightChange::Set(5)));
        assert_eq!(
            rec.weights()[&ep("203.0.113.6:80")],
            5,
            "misc_dynamic weight"
        );
        e.apply(1, down()); // retry 0: down at once, removed
        assert_eq!(
            rec.weights(),
            BTreeMap::from([(ep("203.0.113.2:80"), 0), (ep("203.0.113.100:80"), 1)]),
            "quorum lost: sorry server in"
        );
        e.apply(1, Verdict::Up(WeightChange::Configured));
        assert_eq!(
            rec.weights(),
            BTreeMap::from([(ep("203.0.113.2:80"), 0), (ep("203.0.113.6:80"), 1)])
        );
        e.apply(0, Verdict::Up(WeightChange::Unchanged));
        assert_eq!(rec.weights()[&ep("203.0.113.2:80")], 2);
        let n = rec.changes().len();
        e.apply(0, Verdict::Up(WeightChange::Unchanged));
        assert_eq!(rec.changes().len(), n, "nothing changed, nothing sent");
    }
}
