//! Running the VRRP instances: one raw IPPROTO_VRRP socket per interface and family (an rvsd
//! port's kernel twin: the adverts reach the wire through rvsd's exception path), one thread per
//! track script, notify scripts started and reaped, and the requests to rvsd. An IPv4 socket
//! sends to 224.0.0.18 from the interface's first IPv4 address and reads whole packets (the
//! TTL from the header); an IPv6 one sends to ff02::12 from the interface's link-local address
//! and reads the hop limit and destination from ancillary data (IPV6_RECVHOPLIMIT,
//! IPV6_RECVPKTINFO); both send with TTL (hop limit) 255 and accept nothing else.
//!
//! One thread ([`Vrrp::run`]) owns every instance: it waits in poll(2) for an advert or the
//! next timer (at most [`TICK`], to see the stop flag and script results), so an instance's
//! timers are late by a poll wake-up at most. On a change it talks to rvsd itself, on its own
//! control connection: entering MASTER, `SetVirtualAddrs held=true` for the instance's
//! addresses (port by port); leaving it, `held=false` first, then the notify scripts. With
//! global_defs `lvs_sync_daemon` naming the instance, `SetSyncRole` follows its state: always
//! receiving (`backup`), sending only as MASTER (`master`). Requests rvsd did not take (it was
//! restarting, say) are sent again every [`RETRY`] until it does.
//!
//! Every received packet is counted by what became of it ([`Counters`]); the counters are
//! logged at each state change and at exit.

use super::advert::{
    group_of, Advert, Received, Reject, PROTO_VRRP, VRRP_GROUP, VRRP_GROUP6, VRRP_TTL,
};
use super::machine::{Action, Heard, Machine, Params, State};
use crate::check::{self, Verdict};
use crate::conf::vrrp::{Instance, Script, VrrpConfig};
use crate::conf::MiscCheck;
use crate::engine::Lvs;
use control::config::IpCidr;
use control::proto::Request;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// The longest the loop sleeps without looking at the stop flag and the scripts.
pub const TICK: Duration = Duration::from_millis(50);
/// How often requests rvsd did not take are sent again.
pub const RETRY: Duration = Duration::from_secs(1);
/// keepalived's IP_TOS for adverts (IPTOS_PREC_INTERNETCONTROL).
const TOS_INTERNETCONTROL: libc::c_int = 0xc0;

/// What became of received packets and sent adverts, for all instances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Adverts for one of our instances that passed every check.
    pub adverts_rx: u64,
    pub adverts_tx: u64,
    /// Sends the kernel refused.
    pub tx_errors: u64,
    pub drop_ttl: u64,
    pub drop_version: u64,
    pub drop_type: u64,
    pub drop_checksum: u64,
    /// Truncated, or not IP, or not protocol 112.
    pub drop_length: u64,
    /// A VRID none of our instances on that interface has.
    pub drop_vrid: u64,
    /// Our own adverts (looped back by a peer or a bridge).
    pub drop_own: u64,
    /// Lower-priority adverts a preempting backup ignores (not an error).
    pub discarded_lower: u64,
    /// Adverts whose address list differs from ours (accepted, as keepalived does, and logged).
    pub addr_mismatch: u64,
    /// Requests to rvsd that failed.
    pub rvsd_errors: u64,
}

/// Why a received packet went no further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    Reject(Reject),
    /// Sent from our own address.
    Own,
    /// No instance of ours on that interface has this VRID.
    Vrid(u8),
}

impl Counters {
    fn dropped(&mut self, d: Dropped) {
        match d {
            Dropped::Reject(Reject::Length | Reject::Protocol(_)) => self.drop_length += 1,
            Dropped::Reject(Reject::Ttl(_)) => self.drop_ttl += 1,
            Dropped::Reject(Reject::Version(_)) => self.drop_version += 1,
            Dropped::Reject(Reject::Type(_)) => self.drop_type += 1,
            Dropped::Reject(Reject::Checksum) => self.drop_checksum += 1,
            Dropped::Own => self.drop_own += 1,
            Dropped::Vrid(_) => self.drop_vrid += 1,
        }
    }
}

/// Reads a packet as a raw socket gave it (its IP layer already read: [`Received`]): the
/// sender and its advert, or why it is dropped. `own` is the address our adverts leave from.
pub fn inspect(r: Result<Received<'_>, Reject>, own: IpAddr) -> Result<(IpAddr, Advert), Dropped> {
    let r = r.map_err(Dropped::Reject)?;
    if r.src == own {
        return Err(Dropped::Own);
    }
    let a = Advert::decode(r.payload, r.src, r.dst).map_err(Dropped::Reject)?;
    Ok((r.src, a))
}

/// rvsd's port for each kernel twin, from rvsd's configuration (`kernel_twin` of each port).
pub fn ports_by_twin(rvs_toml: &Path) -> Result<BTreeMap<String, String>, String> {
    let cfg = control::config::Config::load(rvs_toml).map_err(|e| e.to_string())?;
    Ok(cfg
        .ports
        .iter()
        .filter_map(|p| Some((p.kernel_twin.as_ref()?.as_str().to_string(), p.name.clone())))
        .collect())
}

/// A raw IPPROTO_VRRP socket bound to one interface, in 224.0.0.18 (ff02::12) there.
struct VrrpSocket {
    fd: OwnedFd,
    ifname: String,
    ifindex: u32,
    /// The source of our adverts: `unicast_src_ip`, else the interface's first IPv4 address or
    /// its IPv6 link-local address. Its family is the socket's.
    src: IpAddr,
}

fn check(rc: libc::c_int, what: &str, ifname: &str) -> io::Result<()> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what} on {ifname}: {e}")));
    }
    Ok(())
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, v: &T) -> libc::c_int {
    // SAFETY: `v` is a live value of the option's type and its exact size is passed.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    }
}

fn in_addr(a: Ipv4Addr) -> libc::in_addr {
    libc::in_addr {
        s_addr: u32::from_ne_bytes(a.octets()),
    }
}

fn in6_addr(a: Ipv6Addr) -> libc::in6_addr {
    libc::in6_addr {
        s6_addr: a.octets(),
    }
}

/// fe80::/10.
fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// The first address of `ifname` that `want` takes (IPv4 and IPv6 addresses, in the kernel's
/// order).
fn first_address(ifname: &str, want: impl Fn(IpAddr) -> bool) -> io::Result<Option<IpAddr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = None;
    let mut p = list;
    while !p.is_null() {
        // SAFETY: `p` is a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string of the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: ifa_addr is non-null; its family says which sockaddr it is.
        let family = unsafe { (*ifa.ifa_addr).sa_family };
        if name.to_bytes() != ifname.as_bytes() {
            continue;
        }
        let addr = match i32::from(family) {
            libc::AF_INET => {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
                IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
            }
            libc::AF_INET6 => {
                // SAFETY: an AF_INET6 address is a sockaddr_in6.
                let sin6 = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in6>() };
                IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
            }
            _ => continue,
        };
        if want(addr) {
            found = Some(addr);
            break;
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(found)
}

/// How long [`link_local_address`] waits for one to appear.
const LINK_LOCAL_WAIT: Duration = Duration::from_secs(5);

/// The IPv6 link-local address of `ifname`, waiting up to [`LINK_LOCAL_WAIT`] for one: the
/// kernel adds it only once the link is up, a moment after the interface exists.
fn link_local_address(ifname: &str) -> io::Result<Option<IpAddr>> {
    let until = Instant::now() + LINK_LOCAL_WAIT;
    loop {
        let found = first_address(ifname, |a| match a {
            IpAddr::V6(a) => is_link_local(a),
            IpAddr::V4(_) => false,
        })?;
        if found.is_some() || Instant::now() >= until {
            return Ok(found);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl VrrpSocket {
    /// The socket of `ipv6`'s family on `ifname`, sending from `src` when given.
    fn open(ifname: &str, src: Option<IpAddr>, ipv6: bool) -> io::Result<VrrpSocket> {
        let cname = CString::new(ifname)
            .map_err(|_| io::Error::other(format!("{ifname:?}: not an interface name")))?;
        // SAFETY: if_nametoindex reads a NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::other(format!("no interface {ifname}")));
        }
        let src = match src {
            Some(a) => a,
            None if ipv6 => link_local_address(ifname)?.ok_or_else(|| {
                io::Error::other(format!(
                    "{ifname} has no IPv6 link-local address to send VRRP adverts from"
                ))
            })?,
            None => first_address(ifname, |a| a.is_ipv4())?.ok_or_else(|| {
                io::Error::other(format!(
                    "{ifname} has no IPv4 address to send VRRP adverts from"
                ))
            })?,
        };
        let domain = if ipv6 { libc::AF_INET6 } else { libc::AF_INET };
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                domain,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::c_int::from(PROTO_VRRP),
            )
        };
        check(raw, "socket(SOCK_RAW, IPPROTO_VRRP)", ifname)?;
        // SAFETY: `raw` is a new descriptor this function owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the name and its length, without the NUL, as SO_BINDTODEVICE takes them.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                cname.as_ptr().cast(),
                ifname.len() as libc::socklen_t,
            )
        };
        check(rc, "SO_BINDTODEVICE", ifname)?;
        match src {
            IpAddr::V4(src) => Self::options4(&fd, ifname, ifindex, src)?,
            IpAddr::V6(_) => Self::options6(&fd, ifname, ifindex)?,
        }
        Ok(VrrpSocket {
            fd,
            ifname: ifname.to_string(),
            ifindex,
            src,
        })
    }

    /// IPv4: in 224.0.0.18, TTL 255, no loop, keepalived's TOS.
    fn options4(fd: &OwnedFd, ifname: &str, ifindex: u32, src: Ipv4Addr) -> io::Result<()> {
        let mreq = libc::ip_mreqn {
            imr_multiaddr: in_addr(VRRP_GROUP),
            imr_address: in_addr(src),
            imr_ifindex: ifindex as libc::c_int,
        };
        check(
            setsockopt(fd, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &mreq),
            "joining 224.0.0.18",
            ifname,
        )?;
        check(
            setsockopt(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreq),
            "IP_MULTICAST_IF",
            ifname,
        )?;
        let ttl = libc::c_int::from(VRRP_TTL);
        check(
            setsockopt(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, &ttl),
            "IP_MULTICAST_TTL",
            ifname,
        )?;
        check(
            setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &ttl),
            "IP_TTL",
            ifname,
        )?;
        let off: libc::c_int = 0;
        check(
            setsockopt(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, &off),
            "IP_MULTICAST_LOOP",
            ifname,
        )?;
        check(
            setsockopt(fd, libc::IPPROTO_IP, libc::IP_TOS, &TOS_INTERNETCONTROL),
            "IP_TOS",
            ifname,
        )
    }

    /// IPv6: in ff02::12, hop limit 255 both ways (multicast and unicast peers), no loop,
    /// keepalived's traffic class, and the hop limit and destination of what arrives reported
    /// (the header is not part of what a raw IPv6 socket reads).
    fn options6(fd: &OwnedFd, ifname: &str, ifindex: u32) -> io::Result<()> {
        let mreq = libc::ipv6_mreq {
            ipv6mr_multiaddr: in6_addr(VRRP_GROUP6),
            ipv6mr_interface: ifindex,
        };
        check(
            setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_ADD_MEMBERSHIP, &mreq),
            "joining ff02::12",
            ifname,
        )?;
        let index = ifindex as libc::c_int;
        let hops = libc::c_int::from(VRRP_TTL);
        let (on, off): (libc::c_int, libc::c_int) = (1, 0);
        for (name, value, what) in [
            (libc::IPV6_MULTICAST_IF, &index, "IPV6_MULTICAST_IF"),
            (libc::IPV6_MULTICAST_HOPS, &hops, "IPV6_MULTICAST_HOPS"),
            (libc::IPV6_UNICAST_HOPS, &hops, "IPV6_UNICAST_HOPS"),
            (libc::IPV6_MULTICAST_LOOP, &off, "IPV6_MULTICAST_LOOP"),
            (libc::IPV6_TCLASS, &TOS_INTERNETCONTROL, "IPV6_TCLASS"),
            (libc::IPV6_RECVHOPLIMIT, &on, "IPV6_RECVHOPLIMIT"),
            (libc::IPV6_RECVPKTINFO, &on, "IPV6_RECVPKTINFO"),
        ] {
            check(
                setsockopt(fd, libc::IPPROTO_IPV6, name, value),
                what,
                ifname,
            )?;
        }
        Ok(())
    }

    /// Sends `msg` to `dst` from `self.src` out of the interface (IP_PKTINFO or IPV6_PKTINFO
    /// says both).
    fn send(&self, dst: IpAddr, msg: &[u8]) -> io::Result<()> {
        match (self.src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: 0,
                    sin_addr: in_addr(dst),
                    sin_zero: [0; 8],
                };
                let info = libc::in_pktinfo {
                    ipi_ifindex: self.ifindex as libc::c_int,
                    ipi_spec_dst: in_addr(src),
                    ipi_addr: in_addr(Ipv4Addr::UNSPECIFIED),
                };
                self.send_with(&sin, libc::IPPROTO_IP, libc::IP_PKTINFO, info, msg)
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: 0,
                    sin6_flowinfo: 0,
                    sin6_addr: in6_addr(dst),
                    // ff02::12 and link-local peers are scoped to the interface.
                    sin6_scope_id: self.ifindex,
                };
                let info = libc::in6_pktinfo {
                    ipi6_addr: in6_addr(src),
                    ipi6_ifindex: self.ifindex,
                };
                self.send_with(&sin6, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, info, msg)
            }
            _ => Err(io::Error::other(format!(
                "{dst}: not of the family of {}",
                self.src
            ))),
        }
    }

    /// sendmsg(2) of `msg` to `name` with one control message `(level, kind)` holding `info`.
    fn send_with<N, I>(
        &self,
        name: &N,
        level: libc::c_int,
        kind: libc::c_int,
        info: I,
        msg: &[u8],
    ) -> io::Result<()> {
        // Room for one cmsghdr with an in_pktinfo or in6_pktinfo, aligned as cmsg(3) wants.
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: msg.as_ptr().cast_mut().cast(),
            iov_len: msg.len(),
        };
        // SAFETY: msghdr is plain data; every pointer field is set below.
        let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
        mh.msg_name = (name as *const N).cast_mut().cast();
        mh.msg_namelen = std::mem::size_of::<N>() as libc::socklen_t;
        mh.msg_iov = &mut iov;
        mh.msg_iovlen = 1;
        mh.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE only computes a size.
        mh.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<I>() as u32) } as usize;
        assert!(mh.msg_controllen <= std::mem::size_of_val(&control));
        // SAFETY: `control` holds CMSG_SPACE(size of I) bytes (checked above: 64 >= 40), so the
        // first header and its data lie inside it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&mh);
            (*c).cmsg_level = level;
            (*c).cmsg_type = kind;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<I>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<I>(), info);
        }
        // SAFETY: `mh` points at live buffers for the duration of the call.
        let n = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &mh, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// One packet if one is waiting, its IP layer read: IPv4 from its header, IPv6 from the
    /// sender's address and the ancillary hop limit and destination.
    fn recv<'b>(&self, buf: &'b mut [u8]) -> Option<Result<Received<'b>, Reject>> {
        if self.src.is_ipv4() {
            // SAFETY: recv writes at most buf.len() bytes into `buf`.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            return usize::try_from(n).ok().map(|n| Received::parse(&buf[..n]));
        }
        // SAFETY: sockaddr_in6 is plain data, filled by recvmsg.
        let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; every pointer field is set below.
        let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
        mh.msg_name = (&mut from as *mut libc::sockaddr_in6).cast();
        mh.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        mh.msg_iov = &mut iov;
        mh.msg_iovlen = 1;
        mh.msg_control = control.as_mut_ptr().cast();
        mh.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: `mh` points at live buffers of the sizes it says.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut mh, 0) };
        let n = usize::try_from(n).ok()?;
        // No hop limit reported: 0, refused as any hop limit but 255.
        let (mut hops, mut dst) = (0u8, Ipv6Addr::UNSPECIFIED);
        // SAFETY: the control messages recvmsg wrote lie within `control` (msg_controllen says
        // how far); each one's data is read unaligned at its type's size.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&mh);
            while !c.is_null() {
                match ((*c).cmsg_level, (*c).cmsg_type) {
                    (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => {
                        let h = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                        hops = u8::try_from(h).unwrap_or(0);
                    }
                    (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                        let info = std::ptr::read_unaligned(
                            libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>(),
                        );
                        dst = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                    }
                    _ => {}
                }
                c = libc::CMSG_NXTHDR(&mh, c);
            }
        }
        let src = Ipv6Addr::from(from.sin6_addr.s6_addr);
        Some(Received::ipv6(src, dst, hops, &buf[..n]))
    }
}

/// A track script's state with keepalived's rise and fall.
struct ScriptState {
    /// Known after its first run.
    good: Option<bool>,
    /// Results in a row against the current state.
    streak: u32,
}

impl ScriptState {
    fn result(&mut self, s: &Script, ok: bool) -> bool {
        match self.good {
            None => {
                self.good = Some(ok);
                true
            }
            Some(g) if g == ok => {
                self.streak = 0;
                false
            }
            Some(g) => {
                self.streak += 1;
                let need = if g { s.fall } else { s.rise };
                if self.streak >= need {
                    self.good = Some(ok);
                    self.streak = 0;
                    true
                } else {
                    false
                }
            }
        }
    }
}

struct InstanceRun {
    conf: Instance,
    machine: Machine,
    socket: usize,
    /// The instance's addresses by rvsd port.
    ports: Vec<(String, Vec<IpCidr>)>,
    /// The addresses in adverts.
    advertised: Vec<IpAddr>,
    /// rvsd did not take the last requests for this state: sent again.
    unsent: bool,
}

/// Everything VRRP in one rvs-healthd.
pub struct Vrrp<L: Lvs> {
    lvs: L,
    instances: Vec<InstanceRun>,
    sockets: Vec<VrrpSocket>,
    scripts: Vec<Script>,
    script_states: Vec<ScriptState>,
    sync_instance: Option<usize>,
    children: Vec<Child>,
    counters: Counters,
}

/// Runs a script to its verdict: exit 0 is good, as keepalived's vrrp_script.
fn run_script(s: &Script) -> bool {
    let m = MiscCheck {
        argv: s.argv.clone(),
        dynamic: false,
    };
    matches!(check::misc(&m, s.timeout), Verdict::Up(_))
}

impl<L: Lvs> Vrrp<L> {
    /// Opens a socket per interface. `port_of` maps a `dev` (kernel twin) to rvsd's port.
    pub fn new(
        cfg: &VrrpConfig,
        port_of: &BTreeMap<String, String>,
        lvs: L,
    ) -> Result<Vrrp<L>, String> {
        let mut sockets: Vec<VrrpSocket> = Vec::new();
        let mut instances = Vec::new();
        for i in &cfg.instances {
            let ipv6 = i.is_ipv6();
            let socket = match sockets
                .iter()
                .position(|s| s.ifname == i.interface && s.src.is_ipv6() == ipv6)
            {
                Some(s) => s,
                None => {
                    let s = VrrpSocket::open(&i.interface, i.unicast_src, ipv6)
                        .map_err(|e| format!("vrrp_instance {} ({}): {e}", i.name, i.pos))?;
                    sockets.push(s);
                    sockets.len() - 1
                }
            };
            let mut ports: Vec<(String, Vec<IpCidr>)> = Vec::new();
            for a in &i.addrs {
                let port = port_of.get(&a.dev).ok_or_else(|| {
                    format!(
                        "vrrp_instance {} ({}): {} is no rvsd port's kernel_twin (twins: {})",
                        i.name,
                        i.pos,
                        a.dev,
                        port_of.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                })?;
                match ports.iter_mut().find(|(p, _)| p == port) {
                    Some((_, v)) => v.push(a.cidr),
                    None => ports.push((port.clone(), vec![a.cidr])),
                }
            }
            let machine = Machine::new(Params {
                vrid: i.vrid,
                priority: i.priority,
                interval_cs: i.interval_cs,
                preempt: i.preempt,
                preempt_delay: i.preempt_delay,
                primary: sockets[socket].src,
            });
            instances.push(InstanceRun {
                advertised: i.addrs.iter().map(|a| a.cidr.addr()).collect(),
                conf: i.clone(),
                machine,
                socket,
                ports,
                unsent: false,
            });
        }
        let sync_instance = cfg
            .sync_daemon
            .as_ref()
            .and_then(|s| cfg.instances.iter().position(|i| i.name == s.instance));
        let mut vrrp = Vrrp {
            lvs,
            instances,
            sockets,
            script_states: cfg
                .scripts
                .iter()
                .map(|_| ScriptState {
                    good: None,
                    streak: 0,
                })
                .collect(),
            scripts: cfg.scripts.clone(),
            sync_instance,
            children: Vec::new(),
            counters: Counters::default(),
        };
        // Named at once, not held, before the track scripts' first run and before the caller
        // installs any service: rvsd then never announces an IPv6 VIP an instance names with
        // the unsolicited neighbour advertisements it sends for a new VIP (a BACKUP's would
        // take the VIP's neighbours from the MASTER). What rvsd does not take is sent again.
        for ii in 0..vrrp.instances.len() {
            vrrp.tell_rvsd(ii);
        }
        Ok(vrrp)
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Each instance's name and state.
    pub fn states(&self) -> Vec<(String, State)> {
        self.instances
            .iter()
            .map(|i| (i.conf.name.clone(), i.machine.state()))
            .collect()
    }

    /// The track scripts any instance uses.
    fn tracked(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .instances
            .iter()
            .flat_map(|i| i.conf.tracks.iter().map(|t| t.script))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The weight sum and fault of instance `ii` from its scripts' states.
    fn weight_and_fault(&self, ii: usize) -> (i32, bool) {
        let mut w = 0;
        let mut fault = false;
        for t in &self.instances[ii].conf.tracks {
            let good = self.script_states[t.script].good.unwrap_or(false);
            match (t.weight, good) {
                (0, false) => fault = true,
                (w2, true) if w2 > 0 => w += w2,
                (w2, false) if w2 < 0 => w += w2,
                _ => {}
            }
        }
        (w, fault)
    }

    fn rescore(&mut self, ii: usize, now: Instant) {
        let (w, fault) = self.weight_and_fault(ii);
        let mut out = self.instances[ii].machine.set_weight(now, w);
        out.extend(self.instances[ii].machine.set_fault(now, fault));
        self.apply(ii, out);
    }

    /// Runs until `stop` is set, then releases: a MASTER sends priority 0 and gives its
    /// addresses back.
    pub fn run(&mut self, stop: &AtomicBool) {
        // The scripts' first verdicts decide the start (keepalived waits for them too).
        let tracked = self.tracked();
        for &s in &tracked {
            let ok = run_script(&self.scripts[s]);
            self.script_states[s].result(&self.scripts[s], ok);
        }
        let now = Instant::now();
        for ii in 0..self.instances.len() {
            let (w, fault) = self.weight_and_fault(ii);
            let mut out = self.instances[ii].machine.set_weight(now, w);
            out.extend(if fault {
                self.instances[ii].machine.set_fault(now, true)
            } else {
                self.instances[ii].machine.start(now)
            });
            self.apply(ii, out);
        }
        let (tx, rx) = mpsc::channel::<(usize, bool)>();
        let stop_scripts = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for s in tracked {
            let script = self.scripts[s].clone();
            let tx = tx.clone();
            let stop = stop_scripts.clone();
            let t = std::thread::Builder::new()
                .name(format!("vrrp-script-{s}"))
                .spawn(move || {
                    let mut next = Instant::now() + script.interval;
                    while !stop.load(Ordering::Relaxed) {
                        if Instant::now() < next {
                            std::thread::sleep(TICK.min(next - Instant::now()));
                            continue;
                        }
                        let ok = run_script(&script);
                        if tx.send((s, ok)).is_err() {
                            return;
                        }
                        next = Instant::now() + script.interval;
                    }
                });
            match t {
                Ok(t) => threads.push(t),
                Err(e) => tracing::error!(error = %e, "cannot start a vrrp_script thread"),
            }
        }
        drop(tx);
        let mut buf = vec![0u8; 2048];
        let mut last_retry = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            self.retry_unsent(&mut last_retry);
            let now = Instant::now();
            let wait = self
                .instances
                .iter()
                .filter_map(|i| i.machine.deadline())
                .min()
                .map_or(TICK, |d| d.saturating_duration_since(now))
                .min(TICK);
            self.poll(wait, &mut buf);
            let now = Instant::now();
            for ii in 0..self.instances.len() {
                let out = self.instances[ii].machine.tick(now);
                self.apply(ii, out);
            }
            while let Ok((s, ok)) = rx.try_recv() {
                if self.script_states[s].result(&self.scripts[s], ok) {
                    tracing::info!(script = %self.scripts[s].name, good = ok, "vrrp_script changed");
                    let now = Instant::now();
                    for ii in 0..self.instances.len() {
                        if self.instances[ii].conf.tracks.iter().any(|t| t.script == s) {
                            self.rescore(ii, now);
                        }
                    }
                }
            }
            self.children
                .retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        }
        stop_scripts.store(true, Ordering::Relaxed);
        for ii in 0..self.instances.len() {
            let out = self.instances[ii].machine.shutdown();
            self.apply(ii, out);
        }
        for t in threads {
            let _ = t.join();
        }
        // Give the notify scripts a moment to finish, as keepalived does at exit.
        let until = Instant::now() + Duration::from_secs(2);
        while !self.children.is_empty() && Instant::now() < until {
            self.children
                .retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::info!(counters = ?self.counters, "vrrp stopped");
    }

    /// Waits up to `wait` for adverts and handles every one waiting.
    fn poll(&mut self, wait: Duration, buf: &mut [u8]) {
        let mut fds: Vec<libc::pollfd> = self
            .sockets
            .iter()
            .map(|s| libc::pollfd {
                fd: s.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = libc::c_int::try_from(wait.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: `fds` is a live array of fds.len() pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n <= 0 {
            return;
        }
        for (si, p) in fds.iter().enumerate() {
            if p.revents & libc::POLLIN == 0 {
                continue;
            }
            while let Some(packet) = self.sockets[si].recv(buf) {
                self.received(si, packet);
            }
        }
    }

    /// One packet from socket `si` (its IP layer read): checked, then given to the instance of
    /// its VRID.
    pub(crate) fn received(&mut self, si: usize, packet: Result<Received<'_>, Reject>) {
        let socket = &self.sockets[si];
        let (src, a) = match inspect(packet, socket.src) {
            Ok(x) => x,
            Err(d) => {
                tracing::debug!(interface = %socket.ifname, reason = ?d, "VRRP packet dropped");
                return self.counters.dropped(d);
            }
        };
        let Some(ii) = self
            .instances
            .iter()
            .position(|i| i.socket == si && i.conf.vrid == a.vrid)
        else {
            return self.counters.dropped(Dropped::Vrid(a.vrid));
        };
        self.counters.adverts_rx += 1;
        if a.priority != 0 && a.addrs != self.instances[ii].advertised {
            self.counters.addr_mismatch += 1;
        }
        let (heard, out) = self.instances[ii].machine.advert(Instant::now(), src, &a);
        if heard == Heard::Discarded {
            self.counters.discarded_lower += 1;
        }
        self.apply(ii, out);
    }

    fn apply(&mut self, ii: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send { priority } => self.send(ii, priority),
                Action::Enter(state) => self.entered(ii, state),
                Action::Announce => {
                    tracing::info!(instance = %self.instances[ii].conf.name, "another master heard: announcing the addresses again");
                    self.tell_rvsd(ii);
                }
            }
        }
    }

    fn send(&mut self, ii: usize, priority: u8) {
        let i = &self.instances[ii];
        let s = &self.sockets[i.socket];
        let advert = Advert {
            vrid: i.conf.vrid,
            priority,
            interval_cs: i.conf.interval_cs,
            addrs: i.advertised.clone(),
        };
        let dsts: Vec<IpAddr> = if i.conf.unicast_peers.is_empty() {
            vec![group_of(s.src)]
        } else {
            i.conf.unicast_peers.clone()
        };
        for dst in dsts {
            match s.send(dst, &advert.encode(s.src, dst)) {
                Ok(()) => self.counters.adverts_tx += 1,
                Err(e) => {
                    self.counters.tx_errors += 1;
                    tracing::warn!(instance = %i.conf.name, to = %dst, error = %e, "sending a VRRP advert failed");
                }
            }
        }
    }

    /// Sends `request`; false (logged and counted) when rvsd refused it or was unreachable.
    fn call(&mut self, request: Request) -> bool {
        let what = format!("{request:?}");
        match self.lvs.call(request) {
            Ok(_) => true,
            Err(e) => {
                self.counters.rvsd_errors += 1;
                tracing::error!(request = %what, error = %e, "rvsd refused");
                false
            }
        }
    }

    /// Tells rvsd what instance `ii`'s state means: its addresses held (MASTER) or not, and
    /// the sync role when `lvs_sync_daemon` names it. What fails is sent again by
    /// [`Vrrp::retry_unsent`].
    fn tell_rvsd(&mut self, ii: usize) {
        let i = &self.instances[ii];
        let master = i.machine.state() == State::Master;
        let mut requests: Vec<Request> = i
            .ports
            .iter()
            .map(|(port, addrs)| Request::SetVirtualAddrs {
                instance: i.conf.name.clone(),
                port: port.clone(),
                addrs: addrs.clone(),
                held: master,
            })
            .collect();
        if self.sync_instance == Some(ii) {
            requests.push(Request::SetSyncRole {
                master,
                backup: true,
            });
        }
        let mut ok = true;
        for r in requests {
            ok &= self.call(r);
        }
        self.instances[ii].unsent = !ok;
    }

    /// Sends again what rvsd did not take (rvsd restarting, say), at most every [`RETRY`].
    fn retry_unsent(&mut self, last: &mut Instant) {
        if last.elapsed() < RETRY {
            return;
        }
        *last = Instant::now();
        for ii in 0..self.instances.len() {
            if self.instances[ii].unsent {
                self.tell_rvsd(ii);
            }
        }
    }

    fn entered(&mut self, ii: usize, state: State) {
        let i = &self.instances[ii];
        tracing::info!(
            instance = %i.conf.name,
            state = state.name(),
            priority = i.machine.priority(),
            master = ?i.machine.master(),
            counters = ?self.counters,
            "VRRP state"
        );
        // Entering MASTER: held. Leaving it, or starting: released (rvsd may hold them from
        // before a restart of this daemon).
        self.tell_rvsd(ii);
        let i = &self.instances[ii];
        let n = &i.conf.notify;
        let specific = match state {
            State::Master => n.master.clone(),
            State::Backup => n.backup.clone(),
            State::Fault => n.fault.clone(),
            State::Init => n.stop.clone(),
        };
        let state_word = if state == State::Init {
            "STOP"
        } else {
            state.name()
        };
        let generic = n.any.clone().map(|mut argv| {
            argv.extend([
                "INSTANCE".to_string(),
                i.conf.name.clone(),
                state_word.to_string(),
                i.machine.priority().to_string(),
            ]);
            argv
        });
        let name = i.conf.name.clone();
        for argv in [specific, generic].into_iter().flatten() {
            self.notify(&name, &argv);
        }
    }

    fn notify(&mut self, instance: &str, argv: &[String]) {
        let Some((prog, args)) = argv.split_first() else {
            return;
        };
        match Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => self.children.push(c),
            Err(e) => {
                tracing::error!(instance, script = %argv.join(" "), error = %e, "notify script did not start")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    const OWN4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const PEER: IpAddr = IpAddr::V4(PEER4);
    const OWN: IpAddr = IpAddr::V4(OWN4);
    const GROUP: IpAddr = IpAddr::V4(VRRP_GROUP);

    /// An IPv4 packet from `src` to 224.0.0.18 with `ttl` around a VRRP message.
    fn packet(src: Ipv4Addr, ttl: u8, msg: &[u8]) -> Vec<u8> {
        let total = u16::try_from(20 + msg.len()).unwrap();
        let mut p = vec![0x45, 0xc0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, ttl, PROTO_VRRP, 0, 0]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&VRRP_GROUP.octets());
        p.extend_from_slice(msg);
        p
    }

    fn advert(vrid: u8) -> Advert {
        Advert {
            vrid,
            priority: 100,
            interval_cs: 100,
            addrs: vec![Ipv4Addr::new(192, 0, 2, 100).into()],
        }
    }

    #[test]
    fn each_bad_packet_is_dropped_and_counted_by_its_reason() {
        let good = advert(51).encode(PEER, GROUP);
        assert_eq!(
            inspect(Received::parse(&packet(PEER4, 255, &good)), OWN),
            Ok((PEER, advert(51)))
        );
        let mut v2 = good.clone();
        v2[0] = 0x21;
        let mut bad_sum = good.clone();
        bad_sum[7] ^= 1;
        let cases = [
            (packet(PEER4, 254, &good), Dropped::Reject(Reject::Ttl(254))),
            (packet(PEER4, 255, &v2), Dropped::Reject(Reject::Version(2))),
            (
                packet(PEER4, 255, &bad_sum),
                Dropped::Reject(Reject::Checksum),
            ),
            (
                packet(PEER4, 255, &good[..6]),
                Dropped::Reject(Reject::Length),
            ),
            (
                packet(OWN4, 255, &advert(51).encode(OWN, GROUP)),
                Dropped::Own,
            ),
        ];
        let mut c = Counters::default();
        for (p, want) in &cases {
            let got = inspect(Received::parse(p), OWN).unwrap_err();
            assert_eq!(got, *want);
            c.dropped(got);
        }
        // IPv6: the same checks, from what recvmsg reported.
        let ll = |last| IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, last));
        let (peer6, own6, group6) = (ll(2), ll(1), IpAddr::V6(VRRP_GROUP6));
        let mut a6 = advert(51);
        a6.addrs = vec!["2001:db8:100::1".parse().unwrap()];
        let good6 = a6.encode(peer6, group6);
        let recv6 = |src: IpAddr, hops: u8, msg: &[u8]| {
            let (IpAddr::V6(src), IpAddr::V6(dst)) = (src, group6) else {
                unreachable!()
            };
            inspect(Received::ipv6(src, dst, hops, msg), own6)
        };
        assert_eq!(recv6(peer6, 255, &good6), Ok((peer6, a6.clone())));
        let got = recv6(peer6, 64, &good6).unwrap_err();
        assert_eq!(got, Dropped::Reject(Reject::Ttl(64)));
        c.dropped(got);
        let got = recv6(own6, 255, &a6.encode(own6, group6)).unwrap_err();
        assert_eq!(got, Dropped::Own);
        c.dropped(got);
        c.dropped(Dropped::Vrid(52));
        assert_eq!(
            c,
            Counters {
                drop_ttl: 2,
                drop_version: 1,
                drop_checksum: 1,
                drop_length: 1,
                drop_own: 2,
                drop_vrid: 1,
                ..Counters::default()
            }
        );
    }

    #[test]
    fn rise_and_fall_need_results_in_a_row() {
        let s = Script {
            pos: crate::conf::Pos {
                file: Arc::new("k.conf".into()),
                line: 1,
            },
            name: "chk".into(),
            argv: vec!["/bin/true".into()],
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            weight: -10,
            rise: 2,
            fall: 3,
        };
        let mut st = ScriptState {
            good: None,
            streak: 0,
        };
        assert!(st.result(&s, true), "the first result decides");
        assert!(!st.result(&s, false));
        assert!(!st.result(&s, true), "a success resets the count");
        assert!(!st.result(&s, false) && !st.result(&s, false));
        assert!(st.result(&s, false), "the third failure in a row");
        assert_eq!(st.good, Some(false));
        assert!(!st.result(&s, true));
        assert!(st.result(&s, true), "the second success in a row");
        assert_eq!(st.good, Some(true));
    }
}
