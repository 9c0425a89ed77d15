//! One VRRP instance's state machine, RFC 5798 section 6.4, with keepalived 2.2.7's choices
//! where the RFC leaves one (keepalived/vrrp/vrrp.c, vrrp_scheduler.c):
//!
//! - Start: priority 255 (the address owner) goes to MASTER at once; anything else, `state
//!   MASTER` included, starts in BACKUP and waits Master_Down_Interval (keepalived 2.x does
//!   the same: `state MASTER` below 255 only clears `nopreempt`).
//! - Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time, Skew_Time = (256 -
//!   priority) * Master_Adver_Interval / 256; Master_Adver_Interval is learnt from the master's
//!   adverts.
//! - BACKUP: a priority 0 advert sets the down timer to Skew_Time; an advert is accepted (the
//!   down timer restarts) when preemption is off, its priority is at least ours, or a
//!   `preempt_delay` is running; else it is discarded, so the down timer runs out and we
//!   preempt. The preempt delay starts at the first lower-priority advert (keepalived's
//!   `preempt_time`) and stops at a higher one.
//! - MASTER: a higher priority, or the same one from a higher address, sends us to BACKUP; a
//!   priority 0 or a lower one is answered with an advert at once (keepalived asserts itself
//!   the same way, which also makes a lower-priority master yield without waiting).
//! - FAULT (a weightless `track_script` failing): no adverts sent or heard; leaving MASTER for
//!   it sends priority 0 so the backup takes over at once. Back from FAULT as from Initialize.
//! - Shutdown: a MASTER sends priority 0 (the backup takes over after its Skew_Time).
//!
//! No clock and no I/O here: every input carries `now`, and the outputs are [`Action`]s, so
//! the tests drive it with a fake clock.

use super::advert::Advert;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The address owner's priority.
pub const PRIORITY_OWNER: u8 = 255;
/// The priority a leaving master advertises.
pub const PRIORITY_STOP: u8 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Init,
    Backup,
    Master,
    Fault,
}

impl State {
    /// keepalived's word for it, as notify scripts get it.
    pub fn name(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

/// What the instance must do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an advertisement with this priority.
    Send { priority: u8 },
    /// The state changed (addresses, notify scripts and the sync role follow it).
    Enter(State),
    /// Still MASTER, but another master was heard (a lower priority: the two sides of a
    /// partition meeting again): announce the addresses again (gratuitous ARPs), as keepalived
    /// does, since the neighbours may have learnt the other master's MAC meanwhile.
    Announce,
}

/// What does not change while running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub vrid: u8,
    /// The configured priority (1..=255).
    pub priority: u8,
    /// Advertisement_Interval in centiseconds.
    pub interval_cs: u16,
    /// Preempt_Mode: false with `nopreempt`.
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// Our address on the interface (IPv6: its link-local address), for breaking
    /// equal-priority ties.
    pub primary: IpAddr,
}

/// How an advert was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// Acted on (timer restarted, state changed or answered).
    Accepted,
    /// A lower priority we preempt: ignored, our down timer keeps running.
    Discarded,
    /// In INIT or FAULT: not listening.
    Ignored,
}

#[derive(Debug, Clone)]
pub struct Machine {
    p: Params,
    state: State,
    /// The sum of the track_script weights that apply now.
    weight: i32,
    /// The master's interval as last heard (ours until then).
    master_interval: Duration,
    /// Adver_Timer in MASTER, Master_Down_Timer in BACKUP.
    timer: Option<Instant>,
    /// While set and in the future, lower-priority adverts are still accepted.
    preempt_until: Option<Instant>,
    /// The master we last accepted, and its priority.
    master: Option<(IpAddr, u8)>,
}

fn cs(c: u16) -> Duration {
    Duration::from_millis(u64::from(c) * 10)
}

impl Machine {
    pub fn new(p: Params) -> Machine {
        let master_interval = cs(p.interval_cs);
        Machine {
            p,
            state: State::Init,
            weight: 0,
            master_interval,
            timer: None,
            preempt_until: None,
            master: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn params(&self) -> &Params {
        &self.p
    }

    /// The priority we advertise: the configured one plus the track_script weights, kept
    /// within 1..=254 (keepalived's rule); the address owner stays at 255.
    pub fn priority(&self) -> u8 {
        if self.p.priority == PRIORITY_OWNER {
            return PRIORITY_OWNER;
        }
        (i32::from(self.p.priority) + self.weight).clamp(1, 254) as u8
    }

    /// The master last heard from (address, priority).
    pub fn master(&self) -> Option<(IpAddr, u8)> {
        self.master
    }

    /// When [`Machine::tick`] must run next.
    pub fn deadline(&self) -> Option<Instant> {
        self.timer
    }

    fn skew(&self) -> Duration {
        self.master_interval * (256 - u32::from(self.priority())) / 256
    }

    /// Master_Down_Interval.
    pub fn master_down_interval(&self) -> Duration {
        self.master_interval * 3 + self.skew()
    }

    /// Initialize (6.4.1): the owner becomes MASTER, anyone else BACKUP.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        if self.priority() == PRIORITY_OWNER {
            self.become_master(now)
        } else {
            self.become_backup(now)
        }
    }

    fn become_master(&mut self, now: Instant) -> Vec<Action> {
        self.state = State::Master;
        self.master = Some((self.p.primary, self.priority()));
        self.timer = Some(now + cs(self.p.interval_cs));
        // The advert first, so the old master leaves before our gratuitous ARPs.
        vec![
            Action::Send {
                priority: self.priority(),
            },
            Action::Enter(State::Master),
        ]
    }

    fn become_backup(&mut self, now: Instant) -> Vec<Action> {
        self.state = State::Backup;
        self.master_interval = cs(self.p.interval_cs);
        self.timer = Some(now + self.master_down_interval());
        vec![Action::Enter(State::Backup)]
    }

    /// The timer ran out (call when `now` has reached [`Machine::deadline`]).
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        match self.timer {
            Some(at) if at <= now => {}
            _ => return Vec::new(),
        }
        match self.state {
            State::Backup => self.become_master(now),
            State::Master => {
                self.timer = Some(now + cs(self.p.interval_cs));
                vec![Action::Send {
                    priority: self.priority(),
                }]
            }
            State::Init | State::Fault => {
                self.timer = None;
                Vec::new()
            }
        }
    }

    /// An advertisement for our VRID from `src` (already checked by the codec).
    pub fn advert(&mut self, now: Instant, src: IpAddr, a: &Advert) -> (Heard, Vec<Action>) {
        match self.state {
            State::Init | State::Fault => (Heard::Ignored, Vec::new()),
            State::Backup => self.backup_heard(now, src, a),
            State::Master => self.master_heard(now, src, a),
        }
    }

    fn backup_heard(&mut self, now: Instant, src: IpAddr, a: &Advert) -> (Heard, Vec<Action>) {
        if a.priority == PRIORITY_STOP {
            self.timer = Some(now + self.skew());
            self.master = None;
            return (Heard::Accepted, Vec::new());
        }
        let mine = self.priority();
        let delaying =
            !self.p.preempt_delay.is_zero() && self.preempt_until.is_none_or(|until| until > now);
        if !self.p.preempt || a.priority >= mine || delaying {
            if a.interval_cs != 0 {
                self.master_interval = cs(a.interval_cs);
            }
            self.timer = Some(now + self.master_down_interval());
            self.master = Some((src, a.priority));
            if !self.p.preempt_delay.is_zero() {
                if a.priority >= mine {
                    self.preempt_until = None;
                } else if self.preempt_until.is_none() {
                    self.preempt_until = Some(now + self.p.preempt_delay);
                }
            }
            (Heard::Accepted, Vec::new())
        } else {
            (Heard::Discarded, Vec::new())
        }
    }

    fn master_heard(&mut self, now: Instant, src: IpAddr, a: &Advert) -> (Heard, Vec<Action>) {
        let mine = self.priority();
        // Equal priorities: the higher primary address wins, compared as unsigned integers
        // in network byte order for either family (RFC 5798 6.4.3; IpAddr orders so).
        let theirs_wins = a.priority > mine || (a.priority == mine && src > self.p.primary);
        if a.priority != PRIORITY_STOP && theirs_wins {
            self.master_interval = if a.interval_cs != 0 {
                cs(a.interval_cs)
            } else {
                cs(self.p.interval_cs)
            };
            self.state = State::Backup;
            self.timer = Some(now + self.master_down_interval());
            self.master = Some((src, a.priority));
            self.preempt_until = None;
            return (Heard::Accepted, vec![Action::Enter(State::Backup)]);
        }
        // A leaving master or a lower priority: assert ourselves now; after another master,
        // announce the addresses again too.
        self.timer = Some(now + cs(self.p.interval_cs));
        let mut out = vec![Action::Send { priority: mine }];
        if a.priority != PRIORITY_STOP {
            out.push(Action::Announce);
        }
        (Heard::Accepted, out)
    }

    /// The track_script weights changed to `weight` in all. As MASTER the new priority is
    /// advertised at once.
    pub fn set_weight(&mut self, now: Instant, weight: i32) -> Vec<Action> {
        if weight == self.weight {
            return Vec::new();
        }
        self.weight = weight;
        match self.state {
            State::Master => {
                self.timer = Some(now + cs(self.p.interval_cs));
                vec![Action::Send {
                    priority: self.priority(),
                }]
            }
            _ => Vec::new(),
        }
    }

    /// A weightless track_script failed (`fault` true) or all are good again.
    pub fn set_fault(&mut self, now: Instant, fault: bool) -> Vec<Action> {
        match (fault, self.state) {
            (true, State::Fault) | (false, State::Init | State::Backup | State::Master) => {
                Vec::new()
            }
            (true, was) => {
                self.state = State::Fault;
                self.timer = None;
                self.master = None;
                let mut out = Vec::new();
                if was == State::Master {
                    out.push(Action::Send {
                        priority: PRIORITY_STOP,
                    });
                }
                out.push(Action::Enter(State::Fault));
                out
            }
            (false, State::Fault) => self.start(now),
        }
    }

    /// Shutdown: a MASTER advertises priority 0 so the backup takes over after its skew time.
    pub fn shutdown(&mut self) -> Vec<Action> {
        let was = self.state;
        self.state = State::Init;
        self.timer = None;
        let mut out = Vec::new();
        if was == State::Master {
            out.push(Action::Send {
                priority: PRIORITY_STOP,
            });
        }
        if was != State::Init {
            out.push(Action::Enter(State::Init));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::{Ipv4Addr, Ipv6Addr};

    const ME: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    const LOW: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0));

    fn params(priority: u8) -> Params {
        Params {
            vrid: 51,
            priority,
            interval_cs: 100,
            preempt: true,
            preempt_delay: Duration::ZERO,
            primary: ME,
        }
    }

    fn adv(priority: u8) -> Advert {
        Advert {
            vrid: 51,
            priority,
            interval_cs: 100,
            addrs: vec![Ipv4Addr::new(192, 0, 2, 100).into()],
        }
    }

    /// A fake clock: milliseconds from a fixed start.
    struct Clock(Instant);
    impl Clock {
        fn at(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_backup_becomes_master_after_master_down_interval() {
        let c = Clock(Instant::now());
        let mut m = Machine::new(params(100));
        assert_eq!(m.start(c.at(0)), [Action::Enter(State::Backup)]);
        // 3 * 1 s + (256 - 100) / 256 s = 3.609375 s.
        assert_eq!(
            m.master_down_interval(),
            MS(3609) + Duration::from_micros(375)
        );
        assert_eq!(m.tick(c.at(3609)), []);
        assert_eq!(
            m.tick(c.at(3610)),
            [Action::Send { priority: 100 }, Action::Enter(State::Master)]
        );
        // Then an advert every interval.
        assert_eq!(m.deadline(), Some(c.at(4610)));
        assert_eq!(m.tick(c.at(4610)), [Action::Send { priority: 100 }]);
    }

    #[test]
    fn the_address_owner_is_master_at_once() {
        let c = Clock(Instant::now());
        let mut m = Machine::new(params(255));
        assert_eq!(
            m.start(c.at(0)),
            [Action::Send { priority: 255 }, Action::Enter(State::Master)]
        );
        // Its priority ignores track weights.
        m.set_weight(c.at(1), -50);
        assert_eq!(m.priority(), 255);
    }

    #[test]
    fn election_higher_priority_and_address_tie_break() {
        let c = Clock(Instant::now());
        // A master hears a higher priority: backup.
        let mut m = Machine::new(params(100));
        m.start(c.at(0));
        m.tick(c.at(4000));
        assert_eq!(m.state(), State::Master);
        let (h, out) = m.advert(c.at(4100), PEER, &adv(150));
        assert_eq!(
            (h, out),
            (Heard::Accepted, vec![Action::Enter(State::Backup)])
        );
        assert_eq!(m.master(), Some((PEER, 150)));
        // Same priority from a higher address wins; from a lower address it loses.
        let mut m = Machine::new(params(100));
        m.start(c.at(0));
        m.tick(c.at(4000));
        assert_eq!(
            m.advert(c.at(4100), LOW, &adv(100)),
            (
                Heard::Accepted,
                vec![Action::Send { priority: 100 }, Action::Announce]
            )
        );
        assert_eq!(m.state(), State::Master);
        assert_eq!(
            m.advert(c.at(4200), PEER, &adv(100)).1,
            [Action::Enter(State::Backup)]
        );
        // A master answers a lower priority with an advert at once, and announces its
        // addresses again (the neighbours may have followed the other master).
        let mut m = Machine::new(params(100));
        m.start(c.at(0));
        m.tick(c.at(4000));
        assert_eq!(
            m.advert(c.at(4100), PEER, &adv(50)).1,
            [Action::Send { priority: 100 }, Action::Announce]
        );
        assert_eq!(m.deadline(), Some(c.at(5100)));
    }

    #[test]
    fn a_backup_hearing_its_master_stays_backup_and_learns_its_interval() {
        let c = Clock(Instant::now());
        let mut m = Machine::new(params(100));
        m.start(c.at(0));
        for t in (0..20_000).step_by(1000) {
            let mut a = adv(200);
            a.interval_cs = 50;
            assert_eq!(m.advert(c.at(t), PEER, &a).0, Heard::Accepted);
            assert_eq!(m.tick(c.at(t + 999)), []);
        }
        // Master_Adver_Interval is now 0.5 s: down after 1.5 s + skew.
        assert_eq!(m.master_down_interval(), MS(1500) + MS(500) * 156 / 256);
        assert_eq!(m.state(), State::Backup);
    }

    #[test]
    fn preemption_a_higher_backup_takes_over_from_a_lower_master() {
        let c = Clock(Instant::now());
        let mut m = Machine::new(params(150));
        m.start(c.at(0));
        // The lower master's adverts are discarded: the down timer set at start runs out.
        for t in [500, 1500, 2500, 3500] {
            assert_eq!(m.advert(c.at(t), PEER, &adv(100)).0, Heard::Discarded);
        }
        let down = m.master_down_interval();
        assert_eq!(m.deadline(), Some(c.at(0) + down));
        assert_eq!(
            m.tick(c.at(0) + down),
            [Action::Send { priority: 150 }, Action::Enter(State::Master)]
        );
    }

    #[test]
    fn nopreempt_keeps_the_current_master() {
        let c = Clock(Instant::now());
        let mut p = params(150);
        p.preempt = false;
        let mut m = Machine::new(p);
        m.start(c.at(0));
        for t in (0..30_000).step_by(1000) {
            assert_eq!(m.advert(c.at(t), PEER, &adv(100)).0, Heard::Accepted);
            assert_eq!(m.tick(c.at(t + 999)), []);
        }
        assert_eq!(m.state(), State::Backup);
        // It still takes over when the master goes quiet.
        let down = m.master_down_interval();
        assert_eq!(m.tick(c.at(29_000) + down)[1], Action::Enter(State::Master));
    }

    #[test]
    fn preempt_delay_waits_from_the_first_lower_advert() {
        let c = Clock(Instant::now());
        let mut p = params(150);
        p.preempt_delay = Duration::from_secs(10);
        let mut m = Machine::new(p);
        m.start(c.at(0));
        // Lower adverts are accepted for 10 s from the first one (at 1 s).
        for t in (1000..11_000).step_by(1000) {
            assert_eq!(m.advert(c.at(t), PEER, &adv(100)).0, Heard::Accepted, "{t}");
        }
        assert_eq!(m.advert(c.at(11_000), PEER, &adv(100)).0, Heard::Discarded);
        let down = m.master_down_interval();
        assert_eq!(m.deadline(), Some(c.at(10_000) + down));
        assert_eq!(m.tick(c.at(10_000) + down)[1], Action::Enter(State::Master));
        // A higher advert stops the delay; the next lower one starts it afresh.
        let mut p = params(150);
        p.preempt_delay = Duration::from_secs(10);
        let mut m = Machine::new(p);
        m.start(c.at(0));
        m.advert(c.at(1000), PEER, &adv(100));
        m.advert(c.at(2000), PEER, &adv(200));
        assert_eq!(m.advert(c.at(11_500), PEER, &adv(100)).0, Heard::Accepted);
        assert_eq!(m.advert(c.at(21_000), PEER, &adv(100)).0, Heard::Accepted);
        assert_eq!(m.advert(c.at(21_600), PEER, &adv(100)).0, Heard::Discarded);
    }

    #[test]
    fn priority_zero_hands_over_at_once() {
        let c = Clock(Instant::now());
        // The master's side: shutdown sends priority 0.
        let mut master = Machine::new(params(200));
        master.start(c.at(0));
        master.tick(c.at(5000));
        assert_eq!(
            master.shutdown(),
            [Action::Send { priority: 0 }, Action::Enter(State::Init)]
        );
        assert_eq!(master.deadline(), None);
        // The backup's side: its down timer becomes Skew_Time.
        let mut backup = Machine::new(params(100));
        backup.start(c.at(0));
        backup.advert(c.at(1000), PEER, &adv(200));
        backup.advert(c.at(2000), PEER, &adv(0));
        let skew = Duration::from_millis(1000) * 156 / 256;
        assert_eq!(backup.deadline(), Some(c.at(2000) + skew));
        assert_eq!(
            backup.tick(c.at(2000) + skew)[1],
            Action::Enter(State::Master)
        );
        // A master hearing priority 0 answers at once and stays.
        assert_eq!(
            backup.advert(c.at(3000), PEER, &adv(0)),
            (Heard::Accepted, vec![Action::Send { priority: 100 }])
        );
    }

    #[test]
    fn track_script_weights_move_the_priority_and_the_election() {
        let c = Clock(Instant::now());
        let mut m = Machine::new(params(100));
        m.start(c.at(0));
        m.tick(c.at(4000));
        assert_eq!(m.state(), State::Master);
        // A script failing with weight -60: 40 now, advertised at once.
        assert_eq!(
            m.set_weight(c.at(4100), -60),
            [Action::Send { priority: 40 }]
        );
        assert_eq!(m.set_weight(c.at(4200), -60), []);
        // The peer at 90 now wins the election.
        assert_eq!(
            m.advert(c.at(4300), PEER, &adv(90)).1,
            [Action::Enter(State::Backup)]
        );
        // Script good again: 100 beats 90, so its adverts are discarded and we preempt.
        m.set_weight(c.at(5000), 0);
        assert_eq!(m.advert(c.at(5300), PEER, &adv(90)).0, Heard::Discarded);
        // Clamped to 1..=254.
        m.set_weight(c.at(6000), 500);
        assert_eq!(m.priority(), 254);
        m.set_weight(c.at(6000), -500);
        assert_eq!(m.priority(), 1);
    }

    #[test]
    fn fault_releases_with_priority_zero_and_recovers_as_backup() {
        let c = Clock(Instant::now());
        let mut m = Machine::new(params(100));
        m.start(c.at(0));
        m.tick(c.at(4000));
        assert_eq!(
            m.set_fault(c.at(4500), true),
            [Action::Send { priority: 0 }, Action::Enter(State::Fault)]
        );
        assert_eq!(m.advert(c.at(4600), PEER, &adv(50)).0, Heard::Ignored);
        assert_eq!(m.tick(c.at(10_000)), []);
        assert_eq!(
            m.set_fault(c.at(11_000), false),
            [Action::Enter(State::Backup)]
        );
        assert_eq!(m.set_fault(c.at(11_000), false), []);
    }

    #[test]
    fn ipv6_ties_compare_link_local_addresses_as_128_bit_integers() {
        let c = Clock(Instant::now());
        let ll = |last: u16| IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0x200, 0, 0, last));
        let mut p = params(100);
        p.primary = ll(0x10);
        let master = |p: &Params| {
            let mut m = Machine::new(p.clone());
            m.start(c.at(0));
            m.tick(c.at(4000));
            m
        };
        let mut m = master(&p);
        // Lower address at the same priority: we stay and assert ourselves.
        assert_eq!(
            m.advert(c.at(4100), ll(0x0f), &adv(100)).1,
            [Action::Send { priority: 100 }, Action::Announce]
        );
        // Higher in the last byte, or in any earlier one: theirs wins.
        assert_eq!(
            m.advert(c.at(4200), ll(0x11), &adv(100)).1,
            [Action::Enter(State::Backup)]
        );
        let mut m = master(&p);
        let higher = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0x201, 0, 0, 1));
        assert_eq!(
            m.advert(c.at(4100), higher, &adv(100)).1,
            [Action::Enter(State::Backup)]
        );
        assert_eq!(m.master(), Some((higher, 100)));
    }
}
