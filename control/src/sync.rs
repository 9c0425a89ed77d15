//! Connection sync's control side: rvs.toml's `[sync]` table and what `SyncStatus` answers
//! (docs/sync.md). The protocol itself is the dataplane's (`dataplane::sync`); the socket and
//! thread are rvsd's.

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// The kernel's sync multicast group and UDP port (`IP_VS_SYNC_GROUP`, `IP_VS_SYNC_PORT`).
pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
pub const DEFAULT_UDP_PORT: u16 = 8848;
/// The largest message for a 1500-byte MTU (the kernel's `sync_maxlen` there).
pub const DEFAULT_MAXLEN: u16 = 1472;
/// The smallest `maxlen`: the 8-byte header and one IPv6 entry (72 bytes, the larger family).
pub const MIN_MAXLEN: u16 = 80;

/// What this director's sync daemon does at start: send (master), receive (backup), both
/// (a pair whose roles VRRP changes: keepalived's `lvs_sync_daemon` runs the backup daemon
/// always and the master one while MASTER) or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncRole {
    #[default]
    None,
    Master,
    Backup,
    Both,
}

impl SyncRole {
    /// (master, backup).
    pub fn flags(self) -> (bool, bool) {
        match self {
            SyncRole::None => (false, false),
            SyncRole::Master => (true, false),
            SyncRole::Backup => (false, true),
            SyncRole::Both => (true, true),
        }
    }
}

/// `[sync]`: IPVS connection sync over the kernel twin of one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// The port (its rvs.toml name) whose kernel twin carries the sync datagrams.
    pub port: String,
    /// The sync group: a backup takes messages of its syncid only (0: of any), as the kernel's.
    #[serde(default)]
    pub syncid: u8,
    /// Multicast group (default 224.0.0.81); or `peer` for unicast.
    #[serde(default)]
    pub group: Option<Ipv4Addr>,
    /// Unicast: the other director's address on the port's segment.
    #[serde(default)]
    pub peer: Option<Ipv4Addr>,
    #[serde(default = "default_udp_port")]
    pub udp_port: u16,
    /// Multicast TTL (the kernel's default 1: the sync group stays on the segment).
    #[serde(default = "default_ttl")]
    pub ttl: u8,
    /// The largest message, in bytes (UDP payload).
    #[serde(default = "default_maxlen")]
    pub maxlen: u16,
    #[serde(default)]
    pub role: SyncRole,
}

fn default_udp_port() -> u16 {
    DEFAULT_UDP_PORT
}

fn default_ttl() -> u8 {
    1
}

fn default_maxlen() -> u16 {
    DEFAULT_MAXLEN
}

impl SyncConfig {
    /// Where messages go: the peer, else the group.
    pub fn destination(&self) -> Ipv4Addr {
        self.peer.or(self.group).unwrap_or(DEFAULT_GROUP)
    }

    /// Checks what serde cannot; `twin` is the named port's kernel twin, if any. The message
    /// names the key.
    pub fn validate(&self, twin: Option<&str>) -> Result<(), String> {
        if twin.is_none() {
            return Err(format!(
                "sync.port: port {:?} is not a port with a kernel_twin (sync datagrams go through the twin)",
                self.port
            ));
        }
        if self.group.is_some() && self.peer.is_some() {
            return Err("sync.group, sync.peer: give one (multicast group or unicast peer)".into());
        }
        if let Some(g) = self.group {
            if !g.is_multicast() {
                return Err(format!("sync.group: {g} is not a multicast address"));
            }
        }
        if let Some(p) = self.peer {
            if p.is_multicast() || p.is_broadcast() || p.is_unspecified() {
                return Err(format!("sync.peer: {p} is not a unicast address"));
            }
        }
        if self.udp_port == 0 {
            return Err("sync.udp_port: must not be 0".into());
        }
        if self.ttl == 0 {
            return Err("sync.ttl: must be at least 1".into());
        }
        if self.maxlen < MIN_MAXLEN {
            return Err(format!(
                "sync.maxlen: {} is below {MIN_MAXLEN} bytes (a header and one IPv6 connection)",
                self.maxlen
            ));
        }
        Ok(())
    }
}

/// What `SyncStatus` answers (`rvsadm -L --daemon`, `rvsctl sync`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    pub master: bool,
    pub backup: bool,
    pub syncid: u8,
    /// The rvs.toml port and its kernel twin, the interface the daemons use.
    pub port: String,
    pub interface: String,
    /// `mcast 224.0.0.81:8848` or `unicast 192.0.2.253:8848`.
    pub transport: String,
    /// The sync counters (`sync.*`, as in `Counters`).
    pub counters: Vec<(String, u64)>,
}

impl SyncStatus {
    /// ipvsadm's `-L --daemon` lines: one per running daemon.
    pub fn ipvsadm_lines(&self) -> String {
        let mut out = String::new();
        for (on, name) in [(self.master, "master"), (self.backup, "backup")] {
            if on {
                out.push_str(&format!(
                    "{name} sync daemon (mcast={}, syncid={})\n",
                    self.interface, self.syncid
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Result<SyncConfig, String> {
        let c: SyncConfig =
            toml::from_str(&format!("port = \"int\"\n{extra}")).map_err(|e| e.to_string())?;
        c.validate(Some("rvs-tint")).map(|()| c)
    }

    #[test]
    fn defaults_are_the_kernels() {
        let c = cfg("").unwrap();
        assert_eq!(
            (
                c.syncid,
                c.destination(),
                c.udp_port,
                c.ttl,
                c.maxlen,
                c.role
            ),
            (0, DEFAULT_GROUP, 8848, 1, 1472, SyncRole::None)
        );
        let c = cfg("peer = \"192.0.2.253\"\nrole = \"both\"\nsyncid = 7").unwrap();
        assert_eq!(
            (c.destination(), c.role.flags(), c.syncid),
            (Ipv4Addr::new(192, 0, 2, 253), (true, true), 7)
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (extra, key) in [
            ("group = \"192.0.2.9\"", "sync.group"),
            ("peer = \"224.0.0.81\"", "sync.peer"),
            (
                "group = \"224.0.0.81\"\npeer = \"192.0.2.9\"",
                "sync.group, sync.peer",
            ),
            ("udp_port = 0", "sync.udp_port"),
            ("ttl = 0", "sync.ttl"),
            ("maxlen = 20", "sync.maxlen"),
            ("maxlen = 79", "sync.maxlen"),
        ] {
            let err = cfg(extra).unwrap_err();
            assert!(err.starts_with(key), "{extra}: {err}");
        }
        let c: SyncConfig = toml::from_str("port = \"ext\"").unwrap();
        assert!(c.validate(None).unwrap_err().starts_with("sync.port"));
        assert!(toml::from_str::<SyncConfig>("port = \"ext\"\nrole = \"primary\"").is_err());
        assert!(toml::from_str::<SyncConfig>("port = \"ext\"\nmcast = 1").is_err());
    }

    #[test]
    fn ipvsadm_daemon_lines() {
        let s = SyncStatus {
            master: true,
            backup: true,
            syncid: 3,
            port: "int".into(),
            interface: "rvs-tint".into(),
            transport: "mcast 224.0.0.81:8848".into(),
            counters: vec![],
        };
        assert_eq!(
            s.ipvsadm_lines(),
            "master sync daemon (mcast=rvs-tint, syncid=3)\nbackup sync daemon (mcast=rvs-tint, syncid=3)\n"
        );
    }
}
