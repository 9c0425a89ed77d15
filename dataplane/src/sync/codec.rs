//! The IPVS sync protocol, version 1 (the kernel's `net/netfilter/ipvs/ip_vs_sync.c`): a
//! message is an 8-byte header and up to 255 connection entries, IPv4 (`struct
//! ip_vs_sync_v4`, 36 bytes) or IPv6 (`struct ip_vs_sync_v6`, 72 bytes) mixed in any order,
//! each followed by its options and padded to 4 bytes (the padding of the last one is not
//! sent).
//!
//! ```text
//! header:  reserved 0 | syncid | size (be16, whole message) | nr_conns | version 1 | spare 0 (be16)
//! entry:   type | protocol | ver_size (be16: version 0 << 12 | entry size) | flags (be32)
//!          state (be16) | cport | vport | dport | fwmark (be32) | timeout s (be32)
//!          caddr | vaddr | daddr | options: type, length, data
//! type:    0 for IPv4 (4-byte addresses); STYPE_F_INET6 (bit 0) for IPv6 (16-byte addresses)
//! ```
//!
//! The two entry layouts differ only in the addresses' width, so one encoder and one decoder
//! serve both, over [`WireAddr`] (`Ipv4Addr`, `Ipv6Addr`).
//!
//! Decoding makes every check the kernel's backup makes (`ip_vs_process_message`,
//! `ip_vs_proc_sync_conn`), with the kernel's split: a structural error (a size that overruns
//! the message or is short of its type's fixed part, a type other than IPv4 or IPv6, an
//! unknown entry version, a bad option) drops the rest of the message; a semantic one (an
//! unknown protocol or state, an unknown mandatory option, a forwarding method other than NAT)
//! drops that entry. Every refusal is a [`Refused`] reason, counted by the caller; nothing
//! here panics.

use crate::conntrack::ConnState;
use crate::packet::ipv4::{PROTO_TCP, PROTO_UDP};
use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The protocol version in the header.
pub const VERSION: u8 = 1;
/// The header's size.
pub const HDR_LEN: usize = 8;
/// An IPv4 entry's size without options (`struct ip_vs_sync_v4`).
pub const V4_LEN: usize = 36;
/// An IPv6 entry's size without options (`struct ip_vs_sync_v6`).
pub const V6_LEN: usize = 72;
/// Where an entry's addresses start (after the fields both layouts share).
const ADDRS_AT: usize = 24;
/// The most entries one message holds (`nr_conns` is a byte).
pub const MAX_CONNS: usize = 255;
/// The kernel's default message size bound for a 1500-byte MTU: the MTU less the IPv4 and UDP
/// headers.
pub const DEFAULT_MAXLEN: usize = 1500 - 20 - 8;
/// The smallest message bound: a header and one IPv6 entry.
pub const MIN_MAXLEN: usize = HDR_LEN + V6_LEN;

/// Entry `type` bit: IPv6 addresses (the kernel takes any type with this bit as IPv6).
const STYPE_F_INET6: u8 = 1;
const SVER_SHIFT: u16 = 12;
const SVER_MASK: u16 = 0x0fff;
/// Option types; `OPT_F_PARAM` marks an option a receiver may skip.
const OPT_SEQ_DATA: u8 = 1;
const OPT_PE_DATA: u8 = 2;
const OPT_PE_NAME: u8 = 3;
const OPT_F_PARAM: u8 = 1 << 6;
/// `struct ip_vs_sync_conn_options`: two `ip_vs_seq` of three be32 each.
const SEQ_DATA_LEN: usize = 24;
const PE_DATA_MAXLEN: usize = 255;
const PE_NAME_MAXLEN: usize = 16;

/// Connection flags (`IP_VS_CONN_F_*`) that travel.
pub const F_FWD_MASK: u32 = 0x0007;
pub const F_MASQ: u32 = 0x0000;
pub const F_INACTIVE: u32 = 0x0100;
pub const F_TEMPLATE: u32 = 0x1000;
/// The kernel's `IP_VS_CONN_F_SEQ_MASK`: sequence adjustment (never set by rvs).
const F_SEQ_MASK: u32 = 0x0600;

/// The kernel's state numbers: `IP_VS_TCP_S_*` are rvs's TCP [`ConnState`]s (NONE 0 ..
/// SYNACK 10); UDP has the single state `IP_VS_UDP_S_NORMAL` 0; templates `IP_VS_CTPL_S_NONE`.
const TCP_STATES: u16 = 11;

mod sealed {
    pub trait Sealed {}
    impl Sealed for std::net::Ipv4Addr {}
    impl Sealed for std::net::Ipv6Addr {}
}

/// An address family the sync protocol carries: its entry `type`, its entry's fixed size and
/// how its addresses are written.
pub trait WireAddr: sealed::Sealed + Copy + Eq + Debug + Into<IpAddr> {
    /// The entry's `type` byte.
    const TYPE: u8;
    /// The entry's size without options.
    const LEN: usize;
    /// Appends the address in network byte order.
    fn put(self, out: &mut Vec<u8>);
    /// The address at `at` of `b` (`None` past its end).
    fn read(b: &[u8], at: usize) -> Option<Self>;
}

impl WireAddr for Ipv4Addr {
    const TYPE: u8 = 0;
    const LEN: usize = V4_LEN;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.octets());
    }
    fn read(b: &[u8], at: usize) -> Option<Ipv4Addr> {
        let o: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(Ipv4Addr::from(o))
    }
}

impl WireAddr for Ipv6Addr {
    const TYPE: u8 = STYPE_F_INET6;
    const LEN: usize = V6_LEN;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.octets());
    }
    fn read(b: &[u8], at: usize) -> Option<Ipv6Addr> {
        let o: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
        Some(Ipv6Addr::from(o))
    }
}

/// One synced connection or persistence template of one address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncConn<A = Ipv4Addr> {
    pub proto: u8,
    /// For a template, [`ConnState::None`].
    pub state: ConnState,
    /// A persistence template (client address & netmask, cport 0, VIP and vport (0 for a port-0
    /// service), the real server it pins) rather than a connection.
    pub template: bool,
    pub client: (A, u16),
    pub virt: (A, u16),
    pub real: (A, u16),
    /// Seconds until the connection expires on the sender.
    pub timeout_s: u32,
    pub fwmark: u32,
}

/// A synced connection or template of either family: what the workers queue, the encoder
/// takes and the decoder gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncEntry {
    V4(SyncConn<Ipv4Addr>),
    V6(SyncConn<Ipv6Addr>),
}

impl From<SyncConn<Ipv4Addr>> for SyncEntry {
    fn from(c: SyncConn<Ipv4Addr>) -> SyncEntry {
        SyncEntry::V4(c)
    }
}

impl From<SyncConn<Ipv6Addr>> for SyncEntry {
    fn from(c: SyncConn<Ipv6Addr>) -> SyncEntry {
        SyncEntry::V6(c)
    }
}

/// What the [`Encoder`] takes: a [`SyncConn`] of either family, or a [`SyncEntry`].
pub trait Encode {
    /// The entry's size on the wire (no options: rvs sends none).
    fn wire_len(&self) -> usize;
    /// Appends the entry.
    fn put(&self, out: &mut Vec<u8>);
}

impl<A: WireAddr> Encode for SyncConn<A> {
    fn wire_len(&self) -> usize {
        A::LEN
    }
    fn put(&self, out: &mut Vec<u8>) {
        put_entry(out, self);
    }
}

impl Encode for SyncEntry {
    fn wire_len(&self) -> usize {
        match self {
            SyncEntry::V4(c) => c.wire_len(),
            SyncEntry::V6(c) => c.wire_len(),
        }
    }
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            SyncEntry::V4(c) => c.put(out),
            SyncEntry::V6(c) => c.put(out),
        }
    }
}

impl<A> SyncConn<A> {
    /// The `flags` word: NAT, inactive unless ESTABLISHED, the template bit.
    fn flags(&self) -> u32 {
        let mut f = F_MASQ;
        if self.template {
            f |= F_TEMPLATE;
        } else if !self.state.is_active() {
            f |= F_INACTIVE;
        }
        f
    }

    /// The kernel's state number.
    fn wire_state(&self) -> u16 {
        if self.template || self.proto != PROTO_TCP {
            0
        } else {
            u16::from(self.state as u8)
        }
    }
}

/// Why a message or an entry was not taken. One counter each (`rvsctl counters`, /metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refused {
    /// Shorter than a header, or `size` is not the datagram's length.
    BadSize,
    /// Another director group's syncid.
    ForeignSyncid,
    /// A version 0 message (rvs sends and takes version 1 only), or a bad header.
    BadVersion,
    /// An entry that overruns the message or is shorter than its type's fixed part, or a type
    /// other than IPv4 (0) or IPv6 (`STYPE_F_INET6`).
    BadEntry,
    /// An entry version other than 0.
    EntryVersion,
    /// An option with a bad length, a duplicate, or PE data (rvs has no persistence engines).
    BadOption,
    /// Not TCP or UDP, or a state the protocol does not have.
    BadProtocolOrState,
    /// A forwarding method other than NAT (masquerading).
    NotNat,
    // Refusals of the install, after decoding:
    /// Its VIP:vport is no configured service.
    NoService,
    /// Its real server is not one of the service's.
    NoRealServer,
    /// The table had no room.
    TableFull,
}

impl Refused {
    pub const ALL: [Refused; 11] = [
        Refused::BadSize,
        Refused::ForeignSyncid,
        Refused::BadVersion,
        Refused::BadEntry,
        Refused::EntryVersion,
        Refused::BadOption,
        Refused::BadProtocolOrState,
        Refused::NotNat,
        Refused::NoService,
        Refused::NoRealServer,
        Refused::TableFull,
    ];

    /// The counter's name.
    pub fn name(self) -> &'static str {
        match self {
            Refused::BadSize => "bad_size",
            Refused::ForeignSyncid => "foreign_syncid",
            Refused::BadVersion => "bad_version",
            Refused::BadEntry => "bad_entry",
            Refused::EntryVersion => "entry_version",
            Refused::BadOption => "bad_option",
            Refused::BadProtocolOrState => "bad_protocol_or_state",
            Refused::NotNat => "not_nat",
            Refused::NoService => "no_service",
            Refused::NoRealServer => "no_real_server",
            Refused::TableFull => "table_full",
        }
    }
}

/// Builds messages of at most `maxlen` bytes from entries pushed one at a time.
#[derive(Debug)]
pub struct Encoder {
    syncid: u8,
    maxlen: usize,
    buf: Vec<u8>,
    /// Where the last entry ended (the padding before the next one is written with it).
    end: usize,
    count: u8,
}

impl Encoder {
    /// `maxlen` is clamped so that one entry of either family always fits.
    pub fn new(syncid: u8, maxlen: usize) -> Encoder {
        let maxlen = maxlen.clamp(MIN_MAXLEN, usize::from(u16::MAX));
        Encoder {
            syncid,
            maxlen,
            buf: Vec::with_capacity(maxlen),
            end: 0,
            count: 0,
        }
    }

    /// Entries in the message being built.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds `c`; returns the finished message first when `c` does not fit in the current one.
    pub fn push(&mut self, c: &impl Encode) -> Option<Vec<u8>> {
        let pad = (4 - self.end % 4) % 4;
        let full = self.count > 0
            && (usize::from(self.count) >= MAX_CONNS
                || self.end + pad + c.wire_len() > self.maxlen);
        let done = if full { self.finish() } else { None };
        if self.count == 0 {
            self.buf.clear();
            self.buf
                .extend_from_slice(&[0, self.syncid, 0, 0, 0, VERSION, 0, 0]);
            self.end = HDR_LEN;
        } else {
            self.buf.resize(self.end + pad, 0);
        }
        c.put(&mut self.buf);
        self.end = self.buf.len();
        self.count += 1;
        done
    }

    /// The message being built, if it has any entry; the encoder starts a new one.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        self.buf.truncate(self.end);
        let size = u16::try_from(self.end).unwrap_or(u16::MAX).to_be_bytes();
        let mut msg = std::mem::take(&mut self.buf);
        if let Some(h) = msg.get_mut(2..5) {
            h.copy_from_slice(&[size[0], size[1], self.count]);
        }
        self.buf = Vec::with_capacity(self.maxlen);
        self.count = 0;
        self.end = 0;
        Some(msg)
    }
}

/// Appends `c` as an entry of its family without options.
fn put_entry<A: WireAddr>(out: &mut Vec<u8>, c: &SyncConn<A>) {
    out.push(A::TYPE);
    out.push(c.proto);
    out.extend_from_slice(&(A::LEN as u16 & SVER_MASK).to_be_bytes()); // version 0
    out.extend_from_slice(&c.flags().to_be_bytes());
    out.extend_from_slice(&c.wire_state().to_be_bytes());
    out.extend_from_slice(&c.client.1.to_be_bytes());
    out.extend_from_slice(&c.virt.1.to_be_bytes());
    out.extend_from_slice(&c.real.1.to_be_bytes());
    out.extend_from_slice(&c.fwmark.to_be_bytes());
    out.extend_from_slice(&c.timeout_s.to_be_bytes());
    c.client.0.put(out);
    c.virt.0.put(out);
    c.real.0.put(out);
}

/// Decodes the datagram `msg` for a backup of sync group `syncid` (0 takes every group, as the
/// kernel's): calls `entry` with each entry, decoded or refused. A refused message gives
/// `Err` and no entry; a structural error in an entry stops at it with `Err` after the entries
/// before it were handed out.
pub fn decode(
    msg: &[u8],
    syncid: u8,
    mut entry: impl FnMut(Result<SyncEntry, Refused>),
) -> Result<usize, Refused> {
    let hdr: [u8; HDR_LEN] = msg
        .get(..HDR_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(Refused::BadSize)?;
    if usize::from(be16(&hdr, 2)) != msg.len() {
        return Err(Refused::BadSize);
    }
    let (reserved, group, nr, version) = (hdr[0], hdr[1], hdr[4], hdr[5]);
    if syncid != 0 && group != syncid {
        return Err(Refused::ForeignSyncid);
    }
    if reserved != 0 || version != VERSION || be16(&hdr, 6) != 0 {
        return Err(Refused::BadVersion);
    }
    let mut at = HDR_LEN;
    for _ in 0..nr {
        let e = msg.get(at..).ok_or(Refused::BadEntry)?;
        // The kernel's first check is against the smaller (IPv4) layout, whatever the type;
        // an IPv6 entry short of its 72 bytes is refused by `decode_conn`.
        if e.len() < V4_LEN {
            return Err(Refused::BadEntry);
        }
        let ver_size = be16(e, 2);
        let size = usize::from(ver_size & SVER_MASK);
        let body = e.get(..size).ok_or(Refused::BadEntry)?;
        if ver_size >> SVER_SHIFT != 0 {
            return Err(Refused::EntryVersion);
        }
        entry(decode_entry(body)?);
        at += (size + 3) & !3;
    }
    Ok(usize::from(nr))
}

/// The big-endian u16 at `o` of `b` (0 past its end: callers check lengths first).
fn be16(b: &[u8], o: usize) -> u16 {
    b.get(o..o + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_be_bytes)
}

/// The big-endian u32 at `o` of `b` (0 past its end).
fn be32(b: &[u8], o: usize) -> u32 {
    b.get(o..o + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

/// One entry `e` (exactly its `size` bytes). `Err` is structural (drop the message); `Ok(Err)`
/// drops this entry only.
fn decode_entry(e: &[u8]) -> Result<Result<SyncEntry, Refused>, Refused> {
    let ty = *e.first().ok_or(Refused::BadEntry)?;
    // The kernel's test: the IPv6 bit makes an IPv6 entry whatever the other bits; without it
    // only type 0 (IPv4) is known.
    if ty & STYPE_F_INET6 != 0 {
        Ok(decode_conn::<Ipv6Addr>(e)?.map(SyncEntry::V6))
    } else if ty == 0 {
        Ok(decode_conn::<Ipv4Addr>(e)?.map(SyncEntry::V4))
    } else {
        Err(Refused::BadEntry)
    }
}

/// The entry `e` of family `A` (its fixed part, then its options).
fn decode_conn<A: WireAddr>(e: &[u8]) -> Result<Result<SyncConn<A>, Refused>, Refused> {
    let f = e.get(..A::LEN).ok_or(Refused::BadEntry)?;
    if let Err(r) = check_options(e.get(A::LEN..).unwrap_or_default())? {
        return Ok(Err(r));
    }
    let n = (A::LEN - ADDRS_AT) / 3;
    let addr = |i: usize| A::read(f, ADDRS_AT + i * n).ok_or(Refused::BadEntry);
    let (proto, flags, state) = (f.get(1).copied().unwrap_or(0), be32(f, 4), be16(f, 8));
    if flags & F_FWD_MASK != F_MASQ {
        return Ok(Err(Refused::NotNat));
    }
    if flags & F_SEQ_MASK != 0 {
        // Sequence adjustment (the kernel's FTP helper): rvs never rewrites payloads.
        return Ok(Err(Refused::BadOption));
    }
    let template = flags & F_TEMPLATE != 0;
    let state = match proto {
        _ if template => Some(ConnState::None),
        PROTO_TCP if state < TCP_STATES => ConnState::from_u8(state as u8),
        PROTO_UDP if state == 0 => Some(ConnState::Udp),
        _ => None,
    };
    let Some(state) = state.filter(|_| proto == PROTO_TCP || proto == PROTO_UDP) else {
        return Ok(Err(Refused::BadProtocolOrState));
    };
    Ok(Ok(SyncConn {
        proto,
        state,
        template,
        client: (addr(0)?, be16(f, 10)),
        virt: (addr(1)?, be16(f, 12)),
        real: (addr(2)?, be16(f, 14)),
        fwmark: be32(f, 16),
        timeout_s: be32(f, 20),
    }))
}

/// The options after an entry's fixed part: type, length (not 0), data. `Err` for a
/// structural error; `Ok(Err)` for options rvs cannot honour (PE data: rvs has no persistence
/// engines; an unknown mandatory option).
fn check_options(mut opts: &[u8]) -> Result<Result<(), Refused>, Refused> {
    let mut seen = 0u8;
    let mut verdict = Ok(());
    while !opts.is_empty() {
        let (&ty, &len) = (
            opts.first().ok_or(Refused::BadOption)?,
            opts.get(1).ok_or(Refused::BadOption)?,
        );
        let len = usize::from(len);
        let data = opts
            .get(2..2 + len)
            .filter(|_| len > 0)
            .ok_or(Refused::BadOption)?;
        let kind = ty & !OPT_F_PARAM;
        let bound = match kind {
            OPT_SEQ_DATA => SEQ_DATA_LEN,
            OPT_PE_DATA => PE_DATA_MAXLEN,
            OPT_PE_NAME => PE_NAME_MAXLEN,
            _ => 0,
        };
        if (1..=3).contains(&kind) {
            let bit = 1 << kind;
            if seen & bit != 0
                || (kind == OPT_SEQ_DATA && data.len() != bound)
                || data.len() > bound
            {
                return Err(Refused::BadOption);
            }
            seen |= bit;
            if kind != OPT_SEQ_DATA {
                verdict = Err(Refused::BadOption);
            }
        } else if ty & OPT_F_PARAM == 0 {
            // An unknown mandatory option: the kernel skips the entry there and then
            // (`retc = 20; goto out`), reading none of its later options.
            return Ok(Err(Refused::BadOption));
        }
        opts = opts.get(2 + len..).unwrap_or_default();
    }
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    const RIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    fn conn(state: ConnState) -> SyncConn {
        SyncConn {
            proto: PROTO_TCP,
            state,
            template: false,
            client: (CIP, 40000),
            virt: (VIP, 80),
            real: (RIP, 8080),
            timeout_s: 900,
            fwmark: 0,
        }
    }

    /// One ESTABLISHED TCP connection as the kernel's `ip_vs_sync_conn` writes it, byte by
    /// byte from `struct ip_vs_sync_mesg` and `struct ip_vs_sync_v4`.
    fn kernel_message() -> Vec<u8> {
        let mut m = vec![
            0, 7, 0, 44, // reserved, syncid 7, size 44
            1, 1, 0, 0, // nr_conns 1, version 1, spare
            0, 6, 0, 36, // type IPv4, TCP, version 0 | size 36
            0, 0, 0, 0, // flags: MASQ, active (no INACTIVE bit)
            0, 1, // state: IP_VS_TCP_S_ESTABLISHED
            0x9c, 0x40, 0, 80, 0x1f, 0x90, // cport 40000, vport 80, dport 8080
            0, 0, 0, 0, // fwmark
            0, 0, 0x03, 0x84, // timeout 900 s
        ];
        m.extend_from_slice(&CIP.octets());
        m.extend_from_slice(&VIP.octets());
        m.extend_from_slice(&RIP.octets());
        m
    }

    fn decode_all(
        msg: &[u8],
        syncid: u8,
    ) -> (Result<usize, Refused>, Vec<Result<SyncEntry, Refused>>) {
        let mut got = Vec::new();
        let r = decode(msg, syncid, |e| got.push(e));
        (r, got)
    }

    #[test]
    fn decodes_the_kernels_layout_and_encodes_it_byte_for_byte() {
        let msg = kernel_message();
        assert_eq!(
            decode_all(&msg, 7),
            (Ok(1), vec![Ok(conn(ConnState::Established).into())])
        );
        // syncid 0 takes every group, as the kernel's backup does.
        assert_eq!(decode_all(&msg, 0).0, Ok(1));
        let mut enc = Encoder::new(7, DEFAULT_MAXLEN);
        assert_eq!(enc.push(&conn(ConnState::Established)), None);
        assert_eq!(enc.finish(), Some(msg));
        assert_eq!(enc.finish(), None);
    }

    #[test]
    fn flags_and_states_as_the_kernel_numbers_them() {
        let mut enc = Encoder::new(1, DEFAULT_MAXLEN);
        enc.push(&conn(ConnState::FinWait));
        let udp = SyncConn {
            proto: PROTO_UDP,
            state: ConnState::Udp,
            ..conn(ConnState::Udp)
        };
        enc.push(&udp);
        let tpl = SyncConn {
            template: true,
            state: ConnState::None,
            client: (CIP, 0),
            ..conn(ConnState::None)
        };
        enc.push(&tpl);
        let m = enc.finish().unwrap();
        let entry = |i: usize| &m[HDR_LEN + i * V4_LEN..HDR_LEN + (i + 1) * V4_LEN];
        // FIN_WAIT is 4, and not ESTABLISHED: INACTIVE.
        assert_eq!(&entry(0)[4..10], &[0, 0, 0x01, 0x00, 0, 4]);
        // UDP's single state is the kernel's IP_VS_UDP_S_NORMAL, 0.
        assert_eq!(&entry(1)[4..10], &[0, 0, 0x01, 0x00, 0, 0]);
        // A template: the TEMPLATE bit, state 0.
        assert_eq!(&entry(2)[4..10], &[0, 0, 0x10, 0x00, 0, 0]);
        let (r, got) = decode_all(&m, 1);
        assert_eq!(r, Ok(3));
        assert_eq!(
            got,
            vec![
                Ok(conn(ConnState::FinWait).into()),
                Ok(udp.into()),
                Ok(tpl.into())
            ]
        );
    }

    #[test]
    fn message_refusals() {
        let good = kernel_message();
        assert_eq!(decode_all(&good[..7], 0).0, Err(Refused::BadSize));
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(decode_all(&longer, 0).0, Err(Refused::BadSize));
        assert_eq!(decode_all(&good, 8).0, Err(Refused::ForeignSyncid));
        for (at, v) in [(0, 1), (5, 0), (5, 2), (7, 1)] {
            let mut m = good.clone();
            m[at] = v;
            let (r, got) = decode_all(&m, 0);
            assert_eq!(r, Err(Refused::BadVersion), "byte {at} = {v}");
            assert!(got.is_empty());
        }
        // Every truncation (size fixed up or not) is refused, never a panic.
        for n in 0..good.len() {
            let mut m = good[..n].to_vec();
            if n >= 4 {
                m[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            }
            let (r, got) = decode_all(&m, 0);
            assert!(r.is_err() && got.is_empty(), "{n} bytes");
        }
    }

    /// `good` with its entry's size and the message's size raised by `extra.len()` and `extra`
    /// appended to the entry (as options).
    fn with_options(extra: &[u8]) -> Vec<u8> {
        let mut m = kernel_message();
        m.extend_from_slice(extra);
        let size = (m.len() as u16).to_be_bytes();
        m[2..4].copy_from_slice(&size);
        m[10..12].copy_from_slice(&((V4_LEN + extra.len()) as u16).to_be_bytes());
        m
    }

    #[test]
    fn entry_refusals() {
        // An entry version other than 0 drops the message.
        let mut m = kernel_message();
        m[10] |= 0x10;
        assert_eq!(decode_all(&m, 0).0, Err(Refused::EntryVersion));
        // An entry size past the message.
        let mut m = kernel_message();
        m[11] = 40;
        assert_eq!(decode_all(&m, 0).0, Err(Refused::BadEntry));
        // Forwarding method DR (2): the entry is refused, the message goes on.
        let mut m = kernel_message();
        m[15] = 2;
        assert_eq!(decode_all(&m, 0), (Ok(1), vec![Err(Refused::NotNat)]));
        // A TCP state past SYNACK, a protocol rvs does not balance.
        let mut m = kernel_message();
        m[17] = 11;
        assert_eq!(decode_all(&m, 0).1, vec![Err(Refused::BadProtocolOrState)]);
        let mut m = kernel_message();
        m[9] = 132;
        assert_eq!(decode_all(&m, 0).1, vec![Err(Refused::BadProtocolOrState)]);
        // Options: an optional unknown one is skipped; a mandatory unknown one or PE data
        // refuses the entry; a zero length, an overrun, a duplicate or a bad sequence-data
        // length drops the message.
        assert_eq!(
            decode_all(&with_options(&[OPT_F_PARAM | 9, 2, 0, 0]), 0).1,
            vec![Ok(conn(ConnState::Established).into())]
        );
        assert_eq!(
            decode_all(&with_options(&[9, 2, 0, 0]), 0).1,
            vec![Err(Refused::BadOption)]
        );
        assert_eq!(
            decode_all(&with_options(&[OPT_PE_DATA, 2, 1, 2]), 0).1,
            vec![Err(Refused::BadOption)]
        );
        // The kernel reads no option past an unknown mandatory one: a zero length after it
        // refuses that entry only, not the message.
        assert_eq!(
            decode_all(&with_options(&[9, 2, 0, 0, OPT_F_PARAM | 9, 0, 0, 0]), 0),
            (Ok(1), vec![Err(Refused::BadOption)])
        );
        assert_eq!(
            decode_all(&with_options(&[OPT_F_PARAM | 9, 0]), 0).0,
            Err(Refused::BadOption)
        );
        assert_eq!(
            decode_all(&with_options(&[OPT_F_PARAM | 9, 3, 0]), 0).0,
            Err(Refused::BadOption)
        );
        assert_eq!(
            decode_all(&with_options(&[OPT_SEQ_DATA, 2, 0, 0]), 0).0,
            Err(Refused::BadOption)
        );
        let seq = [&[OPT_SEQ_DATA, SEQ_DATA_LEN as u8][..], &[0; SEQ_DATA_LEN]].concat();
        assert_eq!(
            decode_all(&with_options(&[seq.clone(), seq].concat()), 0).0,
            Err(Refused::BadOption)
        );
    }

    const CIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x10);
    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
    const RIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x2, 0, 0, 0, 0, 2);

    fn conn6(state: ConnState) -> SyncConn<Ipv6Addr> {
        SyncConn {
            proto: PROTO_TCP,
            state,
            template: false,
            client: (CIP6, 40000),
            virt: (VIP6, 80),
            real: (RIP6, 8080),
            timeout_s: 900,
            fwmark: 0,
        }
    }

    /// The IPv4 message of [`kernel_message`] with one ESTABLISHED IPv6 TCP connection before
    /// its entry, as the kernel writes `struct ip_vs_sync_v6` (type `STYPE_F_INET6`, size 72,
    /// 16-byte addresses): the kernel mixes the families in one message.
    fn kernel_message6() -> Vec<u8> {
        let mut m = vec![
            0, 7, 0, 116, // reserved, syncid 7, size 8 + 72 + 36
            2, 1, 0, 0, // nr_conns 2, version 1, spare
            1, 6, 0, 72, // type STYPE_F_INET6, TCP, version 0 | size 72
            0, 0, 0, 0, // flags: MASQ, active
            0, 1, // state: IP_VS_TCP_S_ESTABLISHED
            0x9c, 0x40, 0, 80, 0x1f, 0x90, // cport 40000, vport 80, dport 8080
            0, 0, 0, 0, // fwmark
            0, 0, 0x03, 0x84, // timeout 900 s
            0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, // caddr
            0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // vaddr
            0x20, 0x01, 0x0d, 0xb8, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // daddr
        ];
        m.extend_from_slice(&kernel_message()[HDR_LEN..]);
        m
    }

    #[test]
    fn decodes_the_kernels_ipv6_layout_and_encodes_it_byte_for_byte() {
        let msg = kernel_message6();
        assert_eq!(msg.len(), 116);
        let want: Vec<Result<SyncEntry, Refused>> = vec![
            Ok(conn6(ConnState::Established).into()),
            Ok(conn(ConnState::Established).into()),
        ];
        assert_eq!(decode_all(&msg, 7), (Ok(2), want));
        let mut enc = Encoder::new(7, DEFAULT_MAXLEN);
        assert_eq!(enc.push(&conn6(ConnState::Established)), None);
        assert_eq!(enc.push(&conn(ConnState::Established)), None);
        assert_eq!(enc.finish(), Some(msg));
    }

    #[test]
    fn ipv6_entries_are_padded_and_mixed_with_ipv4_ones() {
        // An IPv4 entry (36 bytes, a multiple of 4) then an IPv6 template then a UDP one.
        let tpl = SyncConn {
            template: true,
            state: ConnState::None,
            client: (Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0), 0),
            ..conn6(ConnState::None)
        };
        let udp = SyncConn {
            proto: PROTO_UDP,
            state: ConnState::Udp,
            ..conn6(ConnState::Udp)
        };
        let entries: Vec<SyncEntry> =
            vec![conn(ConnState::TimeWait).into(), tpl.into(), udp.into()];
        let mut enc = Encoder::new(1, DEFAULT_MAXLEN);
        for e in &entries {
            assert_eq!(enc.push(e), None);
        }
        let m = enc.finish().unwrap();
        assert_eq!(m.len(), HDR_LEN + V4_LEN + 2 * V6_LEN);
        let at6 = HDR_LEN + V4_LEN;
        // Type, protocol, size; the template bit and state 0.
        assert_eq!(&m[at6..at6 + 10], &[1, 6, 0, 72, 0, 0, 0x10, 0x00, 0, 0]);
        // UDP: inactive, IP_VS_UDP_S_NORMAL.
        let at = at6 + V6_LEN;
        assert_eq!(&m[at..at + 10], &[1, 17, 0, 72, 0, 0, 0x01, 0x00, 0, 0]);
        assert_eq!(&m[at + 24..at + 40], &CIP6.octets());
        let (r, got) = decode_all(&m, 1);
        assert_eq!(r, Ok(3));
        assert_eq!(got, entries.into_iter().map(Ok).collect::<Vec<_>>());
    }

    #[test]
    fn ipv6_refusals() {
        let good = kernel_message6();
        // Any type with the IPv6 bit is IPv6 (the kernel's test); another type without it
        // drops the message.
        let mut m = good.clone();
        m[HDR_LEN] = 3;
        assert_eq!(decode_all(&m, 0).0, Ok(2));
        let mut m = good.clone();
        m[HDR_LEN] = 2;
        assert_eq!(decode_all(&m, 0), (Err(Refused::BadEntry), vec![]));
        // An IPv6 entry whose size is that of an IPv4 one (short of its addresses) drops the
        // message, as the kernel's `p > msg_end` does.
        let mut m = good.clone();
        m[HDR_LEN + 3] = 36;
        assert_eq!(decode_all(&m, 0), (Err(Refused::BadEntry), vec![]));
        // A size past the message.
        let mut m = good.clone();
        m[HDR_LEN + 3] = 200;
        assert_eq!(decode_all(&m, 0).0, Err(Refused::BadEntry));
        // Entry-level refusals keep the message: DR, an unknown protocol; the IPv4 entry
        // after them is taken.
        let v4 = Ok(conn(ConnState::Established).into());
        let mut m = good.clone();
        m[HDR_LEN + 7] = 2;
        assert_eq!(decode_all(&m, 0), (Ok(2), vec![Err(Refused::NotNat), v4]));
        let mut m = good.clone();
        m[HDR_LEN + 1] = 58;
        assert_eq!(decode_all(&m, 0).1[0], Err(Refused::BadProtocolOrState));
        // Options after the 72 bytes: an optional unknown one is skipped, PE data refuses
        // the entry.
        for (opt, want) in [
            (
                &[OPT_F_PARAM | 9, 2, 0, 0],
                Ok(conn6(ConnState::Established).into()),
            ),
            (&[OPT_PE_DATA, 2, 1, 2], Err(Refused::BadOption)),
        ] {
            let mut m = good[..HDR_LEN + V6_LEN].to_vec();
            m.extend_from_slice(opt);
            m.extend_from_slice(&good[HDR_LEN + V6_LEN..]);
            let size = (m.len() as u16).to_be_bytes();
            m[2..4].copy_from_slice(&size);
            m[HDR_LEN + 2..HDR_LEN + 4].copy_from_slice(&((V6_LEN + 4) as u16).to_be_bytes());
            assert_eq!(decode_all(&m, 0), (Ok(2), vec![want, v4]), "{opt:?}");
        }
        // Every truncation, size fixed up or not, is refused without a panic; the entries
        // before the cut may have been handed out, never one past it.
        for n in 0..good.len() {
            let mut m = good[..n].to_vec();
            if n >= 4 {
                m[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            }
            let (r, got) = decode_all(&m, 0);
            assert!(r.is_err(), "{n} bytes");
            assert!(got.len() <= usize::from(n >= HDR_LEN + V6_LEN), "{n} bytes");
        }
    }

    #[test]
    fn the_encoder_keeps_to_maxlen_and_255_entries() {
        let mut enc = Encoder::new(3, HDR_LEN + 3 * V4_LEN);
        let mut msgs: Vec<Vec<u8>> = (0..7)
            .filter_map(|_| enc.push(&conn(ConnState::Close)))
            .collect();
        msgs.extend(enc.finish());
        assert_eq!(
            msgs.iter().map(|m| m.len()).collect::<Vec<_>>(),
            vec![116, 116, 44]
        );
        // The configuration's bound is the encoder's.
        assert_eq!(usize::from(control::sync::MIN_MAXLEN), MIN_MAXLEN);
        let mut enc = Encoder::new(3, usize::from(u16::MAX));
        let n = (0..300)
            .filter_map(|_| enc.push(&conn(ConnState::Close)))
            .map(|m| m[4])
            .collect::<Vec<_>>();
        assert_eq!(n, vec![255]);
        assert_eq!(enc.len(), 45);
    }

    fn any_entry() -> impl Strategy<Value = SyncEntry> {
        let tcp = (0u8..11).prop_map(|s| (PROTO_TCP, ConnState::from_u8(s).unwrap(), false));
        let udp = Just((PROTO_UDP, ConnState::Udp, false));
        let tpl =
            prop_oneof![Just(PROTO_TCP), Just(PROTO_UDP)].prop_map(|p| (p, ConnState::None, true));
        (
            prop_oneof![tcp, udp, tpl],
            any::<[u128; 3]>(),
            any::<[u16; 3]>(),
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
        )
            .prop_map(|((proto, state, template), a, p, timeout_s, fwmark, v6)| {
                let v4 = SyncConn {
                    proto,
                    state,
                    template,
                    client: (Ipv4Addr::from(a[0] as u32), p[0]),
                    virt: (Ipv4Addr::from(a[1] as u32), p[1]),
                    real: (Ipv4Addr::from(a[2] as u32), p[2]),
                    timeout_s,
                    fwmark,
                };
                if v6 {
                    SyncEntry::V6(SyncConn {
                        client: (Ipv6Addr::from(a[0]), p[0]),
                        virt: (Ipv6Addr::from(a[1]), p[1]),
                        real: (Ipv6Addr::from(a[2]), p[2]),
                        proto,
                        state,
                        template,
                        timeout_s,
                        fwmark,
                    })
                } else {
                    SyncEntry::V4(v4)
                }
            })
    }

    proptest! {
        #[test]
        fn round_trip(conns in proptest::collection::vec(any_entry(), 0..600), maxlen in 44usize..3000, syncid: u8) {
            let mut enc = Encoder::new(syncid, maxlen);
            let mut msgs: Vec<Vec<u8>> = conns.iter().filter_map(|c| enc.push(c)).collect();
            msgs.extend(enc.finish());
            let mut back = Vec::new();
            for m in &msgs {
                prop_assert!(m.len() <= maxlen.max(MIN_MAXLEN));
                prop_assert!(decode(m, syncid, |e| back.push(e.unwrap())).is_ok());
            }
            prop_assert_eq!(back, conns);
        }

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&bytes, 0, |_| ());
        }
    }
}
