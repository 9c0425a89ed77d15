//! The IPVS sysctls (`net.ipv4.vs.*`) rvs honours, with the kernel's names, defaults and ranges
//! (Documentation/networking/ipvs-sysctl.rst). They are set in rvs.toml's `[ipvs]` table (the
//! names without the `net.ipv4.vs.` prefix) and live with `rvsctl sysctl -w name=value`.
//!
//! Where rvs reads a knob differently from the kernel, [`KNOBS`] says so in its `meaning`, and
//! docs/rvsadm.md repeats it: the kernel's memory thresholds are in pages of free memory, rvs's
//! in free connection-table entries, because the table, allocated once at start, is what a
//! flood exhausts.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One knob: its sysctl name, the kernel's default, the values it takes, what it does in rvs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knob {
    pub name: &'static str,
    pub default: u32,
    pub min: u32,
    pub max: u32,
    pub meaning: &'static str,
}

/// Every knob rvs honours, in the order `rvsctl sysctl` lists them.
#[rustfmt::skip]
pub const KNOBS: &[Knob] = &[
    Knob { name: "am_droprate", default: 10, min: 1, max: 1_000_000,
        meaning: "drop_packet in mode 3 drops one of every am_droprate new connections" },
    Knob { name: "amemthresh", default: 1024, min: 0, max: u32::MAX,
        meaning: "automatic defences (mode 1) switch on when fewer connection-table entries than this are free (the kernel counts free memory pages)" },
    Knob { name: "conn_reuse_mode", default: 1, min: 0, max: 3,
        meaning: "0: a SYN that reuses the ports of a closed (TIME_WAIT, CLOSE) connection goes to the same real server; otherwise it is scheduled afresh" },
    Knob { name: "drop_entry", default: 0, min: 0, max: 3,
        meaning: "defence: 0 never, 1 automatic, 2 on (set by automatic mode), 3 always: the aging sweep drops half-open (SYN_RECV, SYNACK) connections early" },
    Knob { name: "drop_packet", default: 0, min: 0, max: 3,
        meaning: "defence: 0 never, 1 automatic, 2 on (set by automatic mode), 3 always: drop a share of new connections (mode 3: see am_droprate; automatic: one of every amemthresh / (amemthresh - free entries))" },
    Knob { name: "expire_nodest_conn", default: 0, min: 0, max: 1,
        meaning: "0: connections of a removed real server keep flowing to it; 1: such a connection expires on the client's next packet (TCP: the client gets a RST)" },
    Knob { name: "expire_quiescent_template", default: 0, min: 0, max: 1,
        meaning: "1: a persistence template whose real server has weight 0 expires when next used; 0: it keeps sending its client there" },
    Knob { name: "nat_icmp_send", default: 0, min: 0, max: 1,
        meaning: "1: a packet from a real server's service address and port that matches no connection is answered with ICMP port unreachable (it is dropped either way)" },
    Knob { name: "schedule_icmp", default: 0, min: 0, max: 1,
        meaning: "1: an ICMP error to a VIP about a flow with no connection is scheduled to a real server like the flow's first packet; 0: it is dropped" },
    Knob { name: "secure_tcp", default: 0, min: 0, max: 3,
        meaning: "defence: 0 never, 1 automatic, 2 on (set by automatic mode), 3 always: the kernel's tcp_states_dos table: a client's ACK no longer makes a SYN_RECV connection ESTABLISHED (it keeps SYN_RECV's timeout); the server's SYN-ACK makes it SYNACK and the server's next packet ESTABLISHED" },
    Knob { name: "sloppy_tcp", default: 0, min: 0, max: 1,
        meaning: "1: any TCP packet (not only a SYN) to a service creates a connection, as after a failover without sync" },
    Knob { name: "sync_refresh_period", default: 10, min: 0, max: 86_400,
        meaning: "seconds: the sync master re-sends each synced connection once per period, with the time it has left (0: only on state changes). The kernel's default is 0 because it also re-sends every sync_period packets; rvs counts no packets per connection, so its default is 10" },
];

/// The values of every knob. `Default` is the kernel's defaults (but `sync_refresh_period`'s,
/// see its meaning). Deserialised from rvs.toml's
/// `[ipvs]` (unknown names are refused with the valid ones listed; ranges are checked by
/// [`IpvsSysctls::validate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpvsSysctls {
    pub am_droprate: u32,
    pub amemthresh: u32,
    pub conn_reuse_mode: u32,
    pub drop_entry: u32,
    pub drop_packet: u32,
    pub expire_nodest_conn: u32,
    pub expire_quiescent_template: u32,
    pub nat_icmp_send: u32,
    pub schedule_icmp: u32,
    pub secure_tcp: u32,
    pub sloppy_tcp: u32,
    pub sync_refresh_period: u32,
}

impl Default for IpvsSysctls {
    fn default() -> Self {
        let mut s = IpvsSysctls {
            am_droprate: 0,
            amemthresh: 0,
            conn_reuse_mode: 0,
            drop_entry: 0,
            drop_packet: 0,
            expire_nodest_conn: 0,
            expire_quiescent_template: 0,
            nat_icmp_send: 0,
            schedule_icmp: 0,
            secure_tcp: 0,
            sloppy_tcp: 0,
            sync_refresh_period: 0,
        };
        for k in KNOBS {
            if let Some(v) = s.slot(k.name) {
                *v = k.default;
            }
        }
        s
    }
}

/// A refused name or value; the message lists what would have been accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlError(pub String);

impl fmt::Display for SysctlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SysctlError {}

/// State of one of the flood defences (`drop_entry`, `drop_packet`, `secure_tcp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defence {
    Never,
    /// Mode 1 or 2: on while fewer than `amemthresh` table entries are free.
    Automatic,
    Always,
}

impl Defence {
    fn of(mode: u32) -> Defence {
        match mode {
            0 => Defence::Never,
            3 => Defence::Always,
            _ => Defence::Automatic,
        }
    }

    /// Whether the defence acts now, given how many connection-table entries are free.
    pub fn active(self, free_entries: u64, amemthresh: u32) -> bool {
        match self {
            Defence::Never => false,
            Defence::Always => true,
            Defence::Automatic => free_entries < u64::from(amemthresh),
        }
    }
}

impl IpvsSysctls {
    fn slot(&mut self, name: &str) -> Option<&mut u32> {
        Some(match name {
            "am_droprate" => &mut self.am_droprate,
            "amemthresh" => &mut self.amemthresh,
            "conn_reuse_mode" => &mut self.conn_reuse_mode,
            "drop_entry" => &mut self.drop_entry,
            "drop_packet" => &mut self.drop_packet,
            "expire_nodest_conn" => &mut self.expire_nodest_conn,
            "expire_quiescent_template" => &mut self.expire_quiescent_template,
            "nat_icmp_send" => &mut self.nat_icmp_send,
            "schedule_icmp" => &mut self.schedule_icmp,
            "secure_tcp" => &mut self.secure_tcp,
            "sloppy_tcp" => &mut self.sloppy_tcp,
            "sync_refresh_period" => &mut self.sync_refresh_period,
            _ => return None,
        })
    }

    /// The value of knob `name` (with or without the `net.ipv4.vs.` prefix).
    pub fn get(&self, name: &str) -> Result<u32, SysctlError> {
        let mut copy = *self;
        copy.slot(strip(name))
            .map(|v| *v)
            .ok_or_else(|| unknown(name))
    }

    /// Sets knob `name` to `value` after checking its range; on error nothing changes.
    pub fn set(&mut self, name: &str, value: u32) -> Result<(), SysctlError> {
        let knob = knob(strip(name)).ok_or_else(|| unknown(name))?;
        check(knob, value)?;
        if let Some(slot) = self.slot(knob.name) {
            *slot = value;
        }
        Ok(())
    }

    /// Parses `name=value` (as `sysctl -w` takes it) and sets it; returns the knob's name
    /// (without the prefix) and the value.
    pub fn set_assignment(&mut self, text: &str) -> Result<(&'static str, u32), SysctlError> {
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| SysctlError(format!("{text:?}: expected name=value")))?;
        let (name, value) = (name.trim(), value.trim());
        let value: u32 = value
            .parse()
            .map_err(|_| SysctlError(format!("{name}: {value:?} is not a number")))?;
        self.set(name, value)?;
        let knob = knob(strip(name)).ok_or_else(|| unknown(name))?;
        Ok((knob.name, value))
    }

    /// Checks every value against its knob's range (for values deserialised from rvs.toml).
    pub fn validate(&self) -> Result<(), SysctlError> {
        for k in KNOBS {
            check(k, self.get(k.name)?)?;
        }
        Ok(())
    }

    /// Every knob with its value, in [`KNOBS`] order.
    pub fn list(&self) -> Vec<(&'static str, u32)> {
        KNOBS
            .iter()
            .map(|k| (k.name, self.get(k.name).unwrap_or(k.default)))
            .collect()
    }

    pub fn drop_entry(&self) -> Defence {
        Defence::of(self.drop_entry)
    }

    pub fn drop_packet(&self) -> Defence {
        Defence::of(self.drop_packet)
    }

    pub fn secure_tcp(&self) -> Defence {
        Defence::of(self.secure_tcp)
    }
}

/// The prefix `sysctl` prints before each name.
pub const PREFIX: &str = "net.ipv4.vs.";

fn strip(name: &str) -> &str {
    name.strip_prefix(PREFIX).unwrap_or(name)
}

fn knob(name: &str) -> Option<&'static Knob> {
    KNOBS.iter().find(|k| k.name == name)
}

fn unknown(name: &str) -> SysctlError {
    let names: Vec<&str> = KNOBS.iter().map(|k| k.name).collect();
    SysctlError(format!(
        "unknown IPVS sysctl {name:?}; rvs knows: {}",
        names.join(", ")
    ))
}

fn check(k: &Knob, value: u32) -> Result<(), SysctlError> {
    if value < k.min || value > k.max {
        return Err(SysctlError(format!(
            "{}: {value} is out of range ({}..={})",
            k.name, k.min, k.max
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_kernels() {
        let s = IpvsSysctls::default();
        assert_eq!(s.expire_nodest_conn, 0);
        assert_eq!(s.expire_quiescent_template, 0);
        assert_eq!(s.conn_reuse_mode, 1);
        assert_eq!(s.sloppy_tcp, 0);
        assert_eq!(s.schedule_icmp, 0);
        assert_eq!(s.nat_icmp_send, 0);
        assert_eq!((s.drop_entry, s.drop_packet, s.secure_tcp), (0, 0, 0));
        assert_eq!(s.amemthresh, 1024);
        assert_eq!(s.am_droprate, 10);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn every_knob_has_a_field_and_every_field_a_knob() {
        let mut s = IpvsSysctls::default();
        for k in KNOBS {
            s.set(k.name, k.max).unwrap();
            assert_eq!(s.get(k.name).unwrap(), k.max, "{}", k.name);
        }
        // serde sees the same names: a table with every knob parses.
        let text: String = KNOBS
            .iter()
            .map(|k| format!("{} = {}\n", k.name, k.min))
            .collect();
        let parsed: IpvsSysctls = toml::from_str(&text).unwrap();
        assert_eq!(parsed.list().len(), KNOBS.len());
    }

    #[test]
    fn bad_names_and_values_change_nothing_and_say_what_is_valid() {
        let mut s = IpvsSysctls::default();
        let e = s.set("expire_nodest", 1).unwrap_err();
        assert!(
            e.0.contains("expire_nodest_conn") && e.0.contains("sloppy_tcp"),
            "{e}"
        );
        let e = s.set("expire_nodest_conn", 2).unwrap_err();
        assert!(e.0.contains("0..=1"), "{e}");
        assert!(s.set_assignment("conn_reuse_mode=x").is_err());
        assert!(s.set_assignment("conn_reuse_mode").is_err());
        assert_eq!(s, IpvsSysctls::default());
        let set = s
            .set_assignment("net.ipv4.vs.expire_nodest_conn = 1")
            .unwrap();
        assert_eq!(set, ("expire_nodest_conn", 1));
        assert_eq!(s.expire_nodest_conn, 1);
    }

    #[test]
    fn unknown_toml_keys_are_named_with_the_valid_ones() {
        let e = toml::from_str::<IpvsSysctls>("expire_nodest = 1\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("expire_nodest") && msg.contains("expire_nodest_conn"),
            "{msg}"
        );
    }

    #[test]
    fn defences_follow_their_mode_and_the_free_entries() {
        let mut s = IpvsSysctls::default();
        assert!(!s.drop_packet().active(0, s.amemthresh));
        s.set("drop_packet", 1).unwrap();
        assert!(s.drop_packet().active(1023, s.amemthresh));
        assert!(!s.drop_packet().active(1024, s.amemthresh));
        s.set("drop_packet", 3).unwrap();
        assert!(s.drop_packet().active(u64::MAX, s.amemthresh));
    }
}
