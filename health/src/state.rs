//! What the checks decide, without I/O: each checker's retry counting, each real server's
//! alive state, each virtual server's quorum, and from those the real servers (and sorry
//! server) that should be in rvsd with their weights.
//!
//! The rules are keepalived 2.2.7's (check_tcp.c `tcp_epilog`, ipwrapper.c
//! `update_quorum_state`, `perform_quorum_state`):
//! - a failed check is retried `retry` times, `delay_before_retry` apart, before the checker
//!   goes down; a success resets the count; otherwise the next check is `delay_loop` later;
//! - a real server is alive while all its checkers are up; with `alpha` they start down;
//! - a dead real server gets weight 0 with `inhibit_on_failure`, else it is removed;
//! - the virtual server's quorum (sum of alive weights) is lost below `quorum - hysteresis`
//!   (or at 0), and regained at `quorum + hysteresis`; while it is lost the sorry server is in
//!   and the alive real servers are out (weight 0 when inhibited).

use crate::conf::{SorryServer, Timing, VirtualServer};
use control::model::{DestSpec, Forward};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// A checker's state between checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckerState {
    timing: Timing,
    retry_it: u32,
    is_up: bool,
    has_run: bool,
}

/// What one check result did to its checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// `Some(up)` when the checker's state is decided anew: it changed, or this is the first
    /// decision (keepalived logs those too).
    pub decided: Option<bool>,
    /// The failure was counted as a retry; `retries_left` are left.
    pub retrying: Option<u32>,
    /// When to check again.
    pub next: Duration,
}

impl CheckerState {
    pub fn new(timing: Timing, alpha: bool) -> CheckerState {
        CheckerState {
            timing,
            retry_it: 0,
            is_up: !alpha,
            has_run: false,
        }
    }

    pub fn is_up(&self) -> bool {
        self.is_up
    }

    /// Records one check's result.
    pub fn record(&mut self, success: bool) -> Step {
        let mut step = Step {
            decided: None,
            retrying: None,
            next: self.timing.delay_loop,
        };
        if success {
            if !self.is_up || !self.has_run {
                step.decided = Some(true);
            }
            self.is_up = true;
            self.retry_it = 0;
        } else if self.retry_it < self.timing.retry {
            self.retry_it += 1;
            step.retrying = Some(self.timing.retry - self.retry_it);
            step.next = self.timing.delay_before_retry;
        } else {
            self.retry_it = 0;
            if self.is_up || !self.has_run {
                step.decided = Some(false);
            }
            self.is_up = false;
        }
        self.has_run = true;
        step
    }
}

/// A misc_dynamic check's effect on its real server's weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightChange {
    Unchanged,
    /// Back to the configured weight (exit 0, or the checker went down).
    Configured,
    /// Exit code - 2.
    Set(u32),
}

#[derive(Debug, Clone, PartialEq)]
struct ServerState {
    endpoint: SocketAddr,
    weight: u32,
    dynamic_weight: Option<u32>,
    inhibit: bool,
    upper_threshold: u32,
    lower_threshold: u32,
    checker_up: Vec<bool>,
}

impl ServerState {
    fn alive(&self) -> bool {
        self.checker_up.iter().all(|&u| u)
    }

    fn weight(&self) -> u32 {
        self.dynamic_weight.unwrap_or(self.weight)
    }

    fn dest(&self, weight: u32) -> DestSpec {
        DestSpec {
            addr: self.endpoint.ip(),
            port: self.endpoint.port(),
            weight,
            forward: Forward::Masq,
            upper_threshold: self.upper_threshold,
            lower_threshold: self.lower_threshold,
        }
    }
}

/// A change of a virtual server's quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    Gained { sum: u64, threshold: i64 },
    Lost { sum: u64, threshold: i64 },
}

/// One virtual server's real servers, their checkers' up/down, and its quorum.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceState {
    quorum: u32,
    hysteresis: u32,
    sorry: Option<SorryServer>,
    servers: Vec<ServerState>,
    quorum_up: bool,
}

impl ServiceState {
    /// The state at start: checkers up unless alpha; the quorum as keepalived's
    /// `set_quorum_states` sets it.
    pub fn new(vs: &VirtualServer) -> ServiceState {
        let servers = vs
            .real_servers
            .iter()
            .map(|r| ServerState {
                endpoint: r.endpoint,
                weight: r.weight,
                dynamic_weight: None,
                inhibit: r.inhibit_on_failure,
                upper_threshold: r.upper_threshold,
                lower_threshold: r.lower_threshold,
                checker_up: r.checkers.iter().map(|c| !c.alpha).collect(),
            })
            .collect();
        let mut s = ServiceState {
            quorum: vs.quorum,
            hysteresis: vs.hysteresis,
            sorry: vs.sorry_server,
            servers,
            quorum_up: true,
        };
        s.quorum_up = s.alive_weight() >= u64::from(vs.quorum) + u64::from(vs.hysteresis);
        s
    }

    pub fn quorum_up(&self) -> bool {
        self.quorum_up
    }

    pub fn alive(&self, server: usize) -> bool {
        self.servers.get(server).is_some_and(ServerState::alive)
    }

    /// The sum of the alive real servers' weights.
    pub fn alive_weight(&self) -> u64 {
        self.servers
            .iter()
            .filter(|s| s.alive())
            .map(|s| u64::from(s.weight()))
            .sum()
    }

    /// Sets checker `checker` of real server `server` up or down, with its weight effect.
    pub fn set_checker(&mut self, server: usize, checker: usize, up: bool, weight: WeightChange) {
        let Some(s) = self.servers.get_mut(server) else {
            return;
        };
        if let Some(c) = s.checker_up.get_mut(checker) {
            *c = up;
        }
        match weight {
            WeightChange::Unchanged => {}
            WeightChange::Configured => s.dynamic_weight = None,
            WeightChange::Set(w) => s.dynamic_weight = Some(w),
        }
    }

    /// Re-evaluates the quorum after changes, with its hysteresis.
    pub fn update_quorum(&mut self) -> Option<Quorum> {
        let sum = self.alive_weight();
        let h = i64::from(self.hysteresis);
        let threshold = i64::from(self.quorum) + if self.quorum_up { -h } else { h };
        let sum_i = i64::try_from(sum).unwrap_or(i64::MAX);
        if !self.quorum_up && sum_i >= threshold {
            self.quorum_up = true;
            Some(Quorum::Gained { sum, threshold })
        } else if self.quorum_up && (sum == 0 || sum_i < threshold) {
            self.quorum_up = false;
            Some(Quorum::Lost { sum, threshold })
        } else {
            None
        }
    }

    /// Whether the sorry server stands in for the real servers now.
    fn sorry_in(&self) -> bool {
        !self.quorum_up && self.sorry.is_some()
    }

    /// Real server `server`'s endpoint, and how it should be in rvsd now (`None`: not at all).
    pub fn desired_server(&self, server: usize) -> Option<(SocketAddr, Option<DestSpec>)> {
        let s = self.servers.get(server)?;
        let weight = if !self.sorry_in() && s.alive() {
            Some(s.weight())
        } else if s.inhibit {
            Some(0)
        } else {
            None
        };
        Some((s.endpoint, weight.map(|w| s.dest(w))))
    }

    /// The real servers (and sorry server) that should be in rvsd now, by endpoint.
    pub fn desired(&self) -> BTreeMap<SocketAddr, DestSpec> {
        let mut out: BTreeMap<SocketAddr, DestSpec> = (0..self.servers.len())
            .filter_map(|i| self.desired_server(i))
            .filter_map(|(ep, d)| Some((ep, d?)))
            .collect();
        if let Some(sorry) = self.sorry {
            let weight = if self.sorry_in() {
                Some(1)
            } else if sorry.inhibit {
                Some(0)
            } else {
                None
            };
            if let Some(w) = weight {
                out.insert(
                    sorry.endpoint,
                    DestSpec {
                        addr: sorry.endpoint.ip(),
                        port: sorry.endpoint.port(),
                        weight: w,
                        forward: Forward::Masq,
                        upper_threshold: 0,
                        lower_threshold: 0,
                    },
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::parse_str;
    use std::path::Path;

    fn timing(retry: u32) -> Timing {
        Timing {
            delay_loop: Duration::from_secs(6),
            retry,
            delay_before_retry: Duration::from_secs(2),
            timeout: Duration::from_secs(3),
            warmup: Duration::ZERO,
        }
    }

    #[test]
    fn retries_are_counted_before_the_checker_goes_down() {
        let mut c = CheckerState::new(timing(2), false);
        let first = c.record(true);
        assert_eq!(first.decided, Some(true), "the first result is a decision");
        assert_eq!(first.next, Duration::from_secs(6));
        assert_eq!(c.record(true).decided, None);
        let r1 = c.record(false);
        assert_eq!(
            (r1.decided, r1.retrying, r1.next),
            (None, Some(1), Duration::from_secs(2))
        );
        let r2 = c.record(false);
        assert_eq!((r2.decided, r2.retrying), (None, Some(0)));
        assert!(c.is_up());
        let down = c.record(false);
        assert_eq!(
            (down.decided, down.retrying, down.next),
            (Some(false), None, Duration::from_secs(6))
        );
        assert!(!c.is_up());
        // Down stays down without retries, and is not decided again.
        let again = c.record(false);
        assert_eq!((again.decided, again.retrying), (None, Some(1)));
        let up = c.record(true);
        assert_eq!(up.decided, Some(true));
    }

    #[test]
    fn a_success_between_failures_resets_the_count() {
        let mut c = CheckerState::new(timing(1), false);
        c.record(true);
        assert_eq!(c.record(false).retrying, Some(0));
        c.record(true);
        assert_eq!(c.record(false).retrying, Some(0), "counting starts again");
        assert_eq!(c.record(false).decided, Some(false));
    }

    #[test]
    fn alpha_starts_down_and_retry_zero_fails_at_once() {
        let mut c = CheckerState::new(timing(0), true);
        assert!(!c.is_up());
        assert_eq!(
            c.record(false).decided,
            Some(false),
            "first result decides, even when the same"
        );
        assert_eq!(c.record(true).decided, Some(true));
        assert_eq!(
            c.record(false).decided,
            Some(false),
            "no retry with retry 0"
        );
    }

    fn service(text: &str) -> ServiceState {
        let cfg = parse_str(text, Path::new("t.conf")).unwrap();
        ServiceState::new(&cfg.services[0])
    }

    fn weights(s: &ServiceState) -> Vec<(String, u32)> {
        s.desired()
            .into_iter()
            .map(|(e, d)| (e.to_string(), d.weight))
            .collect()
    }

    const TWO: &str = "virtual_server 198.51.100.10 80 {
  lb_algo rr
  lb_kind NAT
  real_server 203.0.113.2 80 {
    weight 3
    inhibit_on_failure
    TCP_CHECK { }
  }
  real_server 203.0.113.6 80 {
    weight 2
    TCP_CHECK { }
  }
}
";

    #[test]
    fn inhibit_sets_weight_zero_and_otherwise_the_server_is_removed() {
        let mut s = service(TWO);
        assert_eq!(
            weights(&s),
            [("203.0.113.2:80".into(), 3), ("203.0.113.6:80".into(), 2)]
        );
        s.set_checker(0, 0, false, WeightChange::Unchanged);
        s.set_checker(1, 0, false, WeightChange::Unchanged);
        assert_eq!(weights(&s), [("203.0.113.2:80".into(), 0)]);
        s.set_checker(1, 0, true, WeightChange::Unchanged);
        assert_eq!(
            weights(&s),
            [("203.0.113.2:80".into(), 0), ("203.0.113.6:80".into(), 2)]
        );
        s.set_checker(0, 0, true, WeightChange::Unchanged);
        assert_eq!(
            weights(&s),
            [("203.0.113.2:80".into(), 3), ("203.0.113.6:80".into(), 2)]
        );
    }

    #[test]
    fn misc_dynamic_weight_counts_for_the_quorum_and_resets() {
        let mut s = service(TWO);
        s.set_checker(1, 0, true, WeightChange::Set(7));
        assert_eq!(s.alive_weight(), 10);
        assert_eq!(weights(&s)[1], ("203.0.113.6:80".into(), 7));
        s.set_checker(1, 0, true, WeightChange::Configured);
        assert_eq!(s.alive_weight(), 5);
    }

    #[test]
    fn a_server_is_alive_only_with_all_its_checkers_up() {
        let mut s = service(
            "virtual_server 198.51.100.10 80 { lb_algo rr\n lb_kind NAT\n real_server 203.0.113.2 80 {\n TCP_CHECK { }\n MISC_CHECK { misc_path /bin/true }\n }\n}\n",
        );
        assert!(s.alive(0));
        s.set_checker(0, 1, false, WeightChange::Unchanged);
        assert!(!s.alive(0));
        assert!(s.desired().is_empty());
        s.set_checker(0, 1, true, WeightChange::Unchanged);
        assert!(s.alive(0));
    }

    #[test]
    fn quorum_with_hysteresis_swaps_the_sorry_server_in_and_out() {
        // Weights 3+2+1 = 6; quorum 4, hysteresis 1: lost below 3, regained at 5.
        let mut s = service(
            "virtual_server 198.51.100.10 80 {
  lb_algo wrr
  lb_kind NAT
  quorum 4
  hysteresis 1
  sorry_server 203.0.113.100 8080
  real_server 203.0.113.2 80 { weight 3\n TCP_CHECK { } }
  real_server 203.0.113.6 80 { weight 2\n inhibit_on_failure\n TCP_CHECK { } }
  real_server 203.0.113.10 80 { weight 1\n TCP_CHECK { } }
}
",
        );
        assert!(s.quorum_up());
        assert!(!s
            .desired()
            .contains_key(&"203.0.113.100:8080".parse().unwrap()));
        s.set_checker(0, 0, false, WeightChange::Unchanged); // 3 left: not below 3
        assert_eq!(s.update_quorum(), None);
        s.set_checker(2, 0, false, WeightChange::Unchanged); // 2 left: lost
        assert_eq!(
            s.update_quorum(),
            Some(Quorum::Lost {
                sum: 2,
                threshold: 3
            })
        );
        // Sorry in; the alive inhibited server kept at weight 0, nothing else.
        assert_eq!(
            weights(&s),
            [
                ("203.0.113.6:80".into(), 0),
                ("203.0.113.100:8080".into(), 1)
            ]
        );
        s.set_checker(2, 0, true, WeightChange::Unchanged); // 3: still below 5
        assert_eq!(s.update_quorum(), None);
        assert!(!s.quorum_up());
        s.set_checker(0, 0, true, WeightChange::Unchanged); // 6 >= 5: regained
        assert_eq!(
            s.update_quorum(),
            Some(Quorum::Gained {
                sum: 6,
                threshold: 5
            })
        );
        assert_eq!(
            weights(&s),
            [
                ("203.0.113.2:80".into(), 3),
                ("203.0.113.6:80".into(), 2),
                ("203.0.113.10:80".into(), 1)
            ]
        );
    }

    #[test]
    fn alpha_starts_with_the_servers_out_and_the_quorum_down() {
        let s = service(
            "virtual_server 198.51.100.10 80 { lb_algo rr\n lb_kind NAT\n alpha\n sorry_server 203.0.113.100 80\n real_server 203.0.113.2 80 { TCP_CHECK { } }\n}\n",
        );
        assert!(!s.alive(0));
        assert!(!s.quorum_up());
        assert_eq!(weights(&s), [("203.0.113.100:80".into(), 1)]);
    }

    #[test]
    fn sorry_server_inhibit_keeps_it_at_weight_zero() {
        let s = service(
            "virtual_server 198.51.100.10 80 { lb_algo rr\n lb_kind NAT\n sorry_server 203.0.113.100 80\n sorry_server_inhibit\n real_server 203.0.113.2 80 { TCP_CHECK { } }\n}\n",
        );
        assert_eq!(
            weights(&s),
            [("203.0.113.2:80".into(), 1), ("203.0.113.100:80".into(), 0)]
        );
    }
}
