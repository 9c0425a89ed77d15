//! The flood defences, as one worker applies them: `drop_entry` (the aging sweep removes
//! half-open connections), `drop_packet` (a share of new connections is dropped) and
//! `secure_tcp` (the kernel's stricter TCP transition table). Each is off, automatic (on while
//! fewer than `amemthresh` connection-table entries are free) or always on
//! (`control::sysctl`). Whether each acts is worked out once per burst, from the snapshot's
//! sysctls and the sampled free entries ([`Dataplane::free_entries`](super::Dataplane)); per
//! packet only `drop_packet`'s countdown, the worker's own, changes.

use super::Pipeline;
use crate::conntrack::{HalfOpen, TcpTable};
use control::sysctl::{Defence, IpvsSysctls};

/// The defences in force for one burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Defences {
    /// `drop_entry`: what the aging sweep does with half-open connections.
    pub(super) half_open: HalfOpen,
    /// `secure_tcp`: the table TCP packets are applied with.
    pub(super) tcp_table: TcpTable,
    /// `drop_packet`: one new connection of every `drop_rate` is dropped; 0 drops none.
    pub(super) drop_rate: u32,
}

impl Defences {
    /// The defences `sys` asks for when `free` connection-table entries are free.
    pub(super) fn of(sys: &IpvsSysctls, free: u64) -> Defences {
        let on = |d: Defence| d.active(free, sys.amemthresh);
        Defences {
            half_open: if on(sys.drop_entry()) {
                HalfOpen::Drop
            } else {
                HalfOpen::Keep
            },
            tcp_table: if on(sys.secure_tcp()) {
                TcpTable::Secure
            } else {
                TcpTable::Normal
            },
            drop_rate: match sys.drop_packet() {
                d if !on(d) => 0,
                Defence::Always => sys.am_droprate.max(1),
                // Automatic, as the kernel's update_defense_level: the fuller the table, the
                // more is dropped, down to every new connection when none is free.
                _ => {
                    let short = u64::from(sys.amemthresh).saturating_sub(free).max(1);
                    u32::try_from(u64::from(sys.amemthresh) / short)
                        .unwrap_or(u32::MAX)
                        .max(1)
                }
            },
        }
    }
}

impl Pipeline {
    /// Works the defences out for this burst; a new `drop_packet` rate restarts its countdown.
    pub(super) fn update_defences(&mut self) {
        let next = Defences::of(&self.snap.sysctls, self.dp.free_entries());
        if next.drop_rate != self.defences.drop_rate {
            self.drop_countdown.set(next.drop_rate);
        }
        self.defences = next;
    }

    /// `drop_packet`: whether this new connection is the one of every `drop_rate` to drop (the
    /// kernel's `ip_vs_todrop`).
    pub(super) fn drop_new_conn(&self) -> bool {
        if self.defences.drop_rate == 0 {
            return false;
        }
        let left = self.drop_countdown.get().saturating_sub(1);
        if left > 0 {
            self.drop_countdown.set(left);
            return false;
        }
        self.drop_countdown.set(self.defences.drop_rate);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sysctls(settings: &[(&str, u32)]) -> IpvsSysctls {
        let mut s = IpvsSysctls::default();
        for (name, value) in settings {
            s.set(name, *value).unwrap_or_else(|e| panic!("{e}"));
        }
        s
    }

    #[test]
    fn each_defence_follows_its_mode_and_the_free_entries() {
        let never = Defences::of(&IpvsSysctls::default(), 0);
        assert_eq!(never, Defences::default());
        let auto = sysctls(&[("drop_entry", 1), ("secure_tcp", 2), ("drop_packet", 1)]);
        assert_eq!(
            Defences::of(&auto, 1024),
            Defences::default(),
            "enough free"
        );
        let d = Defences::of(&auto, 1023);
        assert_eq!(
            (d.half_open, d.tcp_table),
            (HalfOpen::Drop, TcpTable::Secure)
        );
        let always = sysctls(&[("drop_entry", 3), ("secure_tcp", 3), ("drop_packet", 3)]);
        let d = Defences::of(&always, u64::MAX);
        assert_eq!(
            (d.half_open, d.tcp_table, d.drop_rate),
            (HalfOpen::Drop, TcpTable::Secure, 10)
        );
    }

    #[test]
    fn automatic_drop_rate_grows_as_the_table_fills() {
        let s = sysctls(&[("drop_packet", 1), ("amemthresh", 1000)]);
        let rate = |free| Defences::of(&s, free).drop_rate;
        assert_eq!(rate(1000), 0);
        assert_eq!(rate(999), 1000);
        assert_eq!(rate(900), 10);
        assert_eq!(rate(500), 2);
        assert_eq!(rate(0), 1, "every new connection");
    }
}
