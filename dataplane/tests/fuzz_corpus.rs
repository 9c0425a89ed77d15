//! Replays the fuzz corpus (fuzz/corpus/<target>/*) through the fuzz targets' oracles, so that
//! every input the fuzzers found interesting, and every crash they found (fixed since), is checked
//! by a plain `cargo test`, without cargo-fuzz or a nightly toolchain. The oracles are the fuzz
//! crate's own files, included by path.
//!
//! `cargo test -p dataplane --test fuzz_corpus -- --ignored write_seeds` rewrites the hand-made
//! seed inputs (fuzz/corpus/<target>/seed-*) from the frame builders in tests/common.

#[path = "../../fuzz/src/oracle.rs"]
#[allow(dead_code)]
mod oracle;
#[path = "../../fuzz/src/packet.rs"]
mod packet;
#[path = "../../fuzz/src/sync.rs"]
mod sync;

use oracle::{CIP, CLIENT_MAC, DIP, EXT_IP, EXT_MAC, INT_MAC, RIP1, RS1_MAC, VIP};
use oracle::{CIP6, DIP6, EXT6, RIP6_1, VIP6};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use testkit::ipv6 as t6;
use testkit::ipv6::{DEST_OPTS, FRAGMENT, HOP_BY_HOP, ICMPV6, ROUTING};
use testkit::*;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn files(target: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus_dir(target))
        .unwrap_or_else(|e| panic!("fuzz/corpus/{target}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

#[test]
fn pipeline_corpus_replays_through_the_oracle() {
    let f = files("pipeline");
    assert!(
        f.len() >= 10,
        "the pipeline corpus is there ({} files)",
        f.len()
    );
    for p in f {
        let data = std::fs::read(&p).unwrap();
        let r = std::panic::catch_unwind(|| oracle::Harness::new().run(&data));
        assert!(r.is_ok(), "{} fails the oracle", p.display());
    }
}

#[test]
fn sync_corpus_replays_through_the_checks() {
    let f = files("sync");
    assert!(f.len() >= 3, "the sync corpus is there ({} files)", f.len());
    for p in f {
        let data = std::fs::read(&p).unwrap();
        let r = std::panic::catch_unwind(|| sync::check(&oracle::Harness::new(), &data));
        assert!(r.is_ok(), "{} fails the sync checks", p.display());
    }
}

#[test]
fn packet_corpus_replays_through_the_checks() {
    let f = files("packet");
    assert!(
        f.len() >= 5,
        "the packet corpus is there ({} files)",
        f.len()
    );
    for p in f {
        let data = std::fs::read(&p).unwrap();
        let r = std::panic::catch_unwind(|| packet::check(&data));
        assert!(r.is_ok(), "{} fails the checks", p.display());
    }
}

// ---------------------------------------------------------------------------------------------
// seeds

/// One oracle operation: ctrl byte, length, frame.
fn op(ctrl: u8, frame: &[u8]) -> Vec<u8> {
    let mut v = vec![ctrl];
    v.extend_from_slice(&(frame.len() as u16).to_be_bytes());
    v.extend_from_slice(frame);
    v
}

fn ops(list: &[(u8, Vec<u8>)]) -> Vec<u8> {
    list.iter().flat_map(|(c, f)| op(*c, f)).collect()
}

fn icmp_error(ty: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(quoted);
    let c = inet_checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

fn ip_of(frame: &[u8]) -> Vec<u8> {
    let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    frame[14..14 + total].to_vec()
}

fn pipeline_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let ext = |ip: Vec<u8>| eth(EXT_MAC, CLIENT_MAC, 0x0800, &ip);
    let int = |ip: Vec<u8>| eth(INT_MAC, RS1_MAC, 0x0800, &ip);
    let syn = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 40000), (VIP, 80), SYN, b"");
    let synack = tcp_frame(INT_MAC, RS1_MAC, (RIP1, 80), (CIP, 40000), SYN | ACK, b"");
    let ack = tcp_frame(
        EXT_MAC,
        CLIENT_MAC,
        (CIP, 40000),
        (VIP, 80),
        ACK,
        b"GET / HTTP/1.0\r\n\r\n",
    );
    let data = tcp_frame(
        INT_MAC,
        RS1_MAC,
        (RIP1, 80),
        (CIP, 40000),
        ACK | PSH,
        b"HTTP/1.0 200 OK\r\n",
    );
    let fin = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 40000), (VIP, 80), FIN | ACK, b"");
    let rst = tcp_frame(INT_MAC, RS1_MAC, (RIP1, 80), (CIP, 40000), RST, b"");
    let q = udp_frame(EXT_MAC, CLIENT_MAC, (CIP, 5000), (VIP, 53), b"query", true);
    let a = udp_frame(INT_MAC, RS1_MAC, (RIP1, 5353), (CIP, 5000), b"answer", true);
    let q0 = udp_frame(
        EXT_MAC,
        CLIENT_MAC,
        (CIP, 5001),
        (VIP, 53),
        b"nocsum",
        false,
    );
    // What RS1 got for q (DNATed, TTL 63), for the ICMP errors it may send back.
    let mut q_at_rs = ip_of(&udp_frame(
        EXT_MAC,
        CLIENT_MAC,
        (CIP, 5000),
        (RIP1, 5353),
        b"query",
        true,
    ));
    q_at_rs[8] = 63;
    q_at_rs[10] = 0;
    q_at_rs[11] = 0;
    let c = inet_checksum(&q_at_rs[..20]);
    q_at_rs[10..12].copy_from_slice(&c.to_be_bytes());
    let a_at_client = ip_of(&udp_frame(
        INT_MAC,
        RS1_MAC,
        (VIP, 53),
        (CIP, 5000),
        b"answer",
        true,
    ));
    let big = vec![0x42u8; 1450];
    let useg = udp_seg(CIP, 6000, VIP, 53, &[7u8; 300], true);
    let frags: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            let end = ((i + 1) * 104).min(useg.len());
            let mf = if end < useg.len() { 0x2000 } else { 0 };
            ext(ipv4_with(
                CIP,
                VIP,
                UDP,
                64,
                0x777,
                mf | (i * 13) as u16,
                &useg[i * 104..end],
            ))
        })
        .collect();
    let mut vlan = syn.clone();
    vlan.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    let mut v6 = syn.clone();
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    let mut bcast = q.clone();
    bcast[0..6].copy_from_slice(&[0xff; 6]);
    let mut opts = vec![0x46, 0];
    let sseg = tcp_seg(CIP, 40001, VIP, 80, SYN, b"");
    opts.extend_from_slice(&((24 + sseg.len()) as u16).to_be_bytes());
    opts.extend_from_slice(&[0, 0, 0x40, 0, 64, TCP, 0, 0]);
    opts.extend_from_slice(&CIP.octets());
    opts.extend_from_slice(&VIP.octets());
    opts.extend_from_slice(&[1, 1, 1, 0]);
    opts.extend_from_slice(&sseg);

    vec![
        (
            "seed-tcp-flow",
            ops(&[
                (0, syn.clone()),
                (1, synack.clone()),
                (0, ack),
                (1, data),
                (0, fin),
                (1, rst),
            ]),
        ),
        ("seed-udp-flow", ops(&[(0, q.clone()), (1, a), (0, q0)])),
        (
            "seed-echo",
            ops(&[
                (
                    0,
                    ext(ipv4(CIP, VIP, ICMP, 64, &icmp_echo(8, 1, 1, b"ping"))),
                ),
                (
                    0,
                    ext(ipv4(CIP, EXT_IP, ICMP, 64, &icmp_echo(8, 1, 2, b"ping"))),
                ),
                (
                    1,
                    int(ipv4(RIP1, DIP, ICMP, 64, &icmp_echo(8, 1, 3, b"ping"))),
                ),
            ]),
        ),
        (
            "seed-arp",
            ops(&[
                (
                    0,
                    eth(
                        [0xff; 6],
                        CLIENT_MAC,
                        0x0806,
                        &arp(1, CLIENT_MAC, CIP, [0; 6], VIP),
                    ),
                ),
                (
                    1,
                    eth(
                        INT_MAC,
                        RS1_MAC,
                        0x0806,
                        &arp(2, RS1_MAC, RIP1, INT_MAC, DIP),
                    ),
                ),
            ]),
        ),
        (
            "seed-ttl",
            ops(&[
                (
                    0,
                    ext(ipv4(CIP, VIP, TCP, 1, &tcp_seg(CIP, 1, VIP, 80, SYN, b""))),
                ),
                (
                    1,
                    int(ipv4(
                        RIP1,
                        CIP,
                        UDP,
                        1,
                        &udp_seg(RIP1, 1, CIP, 2, b"x", true),
                    )),
                ),
                (
                    1,
                    int(ipv4(RIP1, CIP, ICMP, 1, &icmp_echo(8, 9, 9, b"trace"))),
                ),
            ]),
        ),
        (
            "seed-df-mtu",
            ops(&[(
                0,
                ext(ipv4(
                    CIP,
                    VIP,
                    UDP,
                    64,
                    &udp_seg(CIP, 7, VIP, 53, &big, true),
                )),
            )]),
        ),
        (
            "seed-fragments",
            ops(&[
                (0, frags[0].clone()),
                (0, frags[1].clone()),
                (0, frags[2].clone()),
            ]),
        ),
        (
            "seed-fragments-reversed",
            ops(&[
                (0, frags[2].clone()),
                (0, frags[1].clone()),
                (0, frags[0].clone()),
            ]),
        ),
        (
            "seed-icmp-error-from-rs",
            ops(&[
                (0, q.clone()),
                (
                    1,
                    int(ipv4(RIP1, CIP, ICMP, 64, &icmp_error(3, 3, &q_at_rs))),
                ),
            ]),
        ),
        (
            "seed-icmp-error-from-client",
            ops(&[
                (0, q.clone()),
                (
                    0,
                    ext(ipv4(CIP, VIP, ICMP, 64, &icmp_error(3, 3, &a_at_client))),
                ),
            ]),
        ),
        (
            "seed-icmp-time-exceeded-tcp",
            ops(&[
                (0, syn.clone()),
                (
                    1,
                    int(ipv4(
                        Ipv4Addr::new(192, 0, 2, 254),
                        CIP,
                        ICMP,
                        64,
                        &icmp_error(11, 0, &{
                            let s = ip_of(&tcp_frame(
                                EXT_MAC,
                                CLIENT_MAC,
                                (CIP, 40000),
                                (RIP1, 80),
                                SYN,
                                b"",
                            ));
                            s[..28].to_vec()
                        }),
                    )),
                ),
            ]),
        ),
        (
            "seed-l2",
            ops(&[
                (0, vlan),
                (0, v6),
                (0, bcast),
                (0, opts.clone()),
                (2, ext(opts)),
            ]),
        ),
        (
            "seed-protocols",
            ops(&[
                (0, ext(ipv4(CIP, VIP, 47, 64, &[0u8; 24]))),
                (1, int(ipv4(RIP1, CIP, 47, 64, &[0u8; 24]))),
                (
                    1,
                    int(ipv4(
                        RIP1,
                        DIP,
                        17,
                        64,
                        &udp_seg(RIP1, 1, DIP, 2, b"", true),
                    )),
                ),
                (
                    0,
                    tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 1), (VIP, 8080), SYN, b""),
                ),
            ]),
        ),
        (
            "seed-bad-fragments",
            ops(&[
                (0, ext(ipv4_with(CIP, VIP, TCP, 64, 5, 1, &[0u8; 16]))),
                (
                    0,
                    ext(ipv4_with(
                        CIP,
                        VIP,
                        TCP,
                        64,
                        6,
                        0x2000,
                        &tcp_seg(CIP, 1, VIP, 80, SYN, b"")[..16],
                    )),
                ),
                (
                    0,
                    ext(ipv4_with(
                        CIP,
                        VIP,
                        ICMP,
                        64,
                        7,
                        0x2000,
                        &icmp_echo(8, 1, 1, &[0u8; 16]),
                    )),
                ),
            ]),
        ),
        (
            "seed-truncated",
            ops(&[
                (0, syn[..30].to_vec()),
                (0, syn[..10].to_vec()),
                (3, synack[..40].to_vec()),
            ]),
        ),
        ("seed-fixup", ops(&[(6, syn), (7, synack)])),
    ]
}

fn packet_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let hdr = |sel: u8, room: u16| -> Vec<u8> {
        let mut v = vec![sel, 192, 0, 2, 3];
        v.extend_from_slice(&8080u16.to_be_bytes());
        v.extend_from_slice(&room.to_be_bytes());
        v
    };
    let tcp = ip_of(&tcp_frame(
        EXT_MAC,
        CLIENT_MAC,
        (CIP, 1234),
        (VIP, 80),
        SYN,
        b"x",
    ));
    let udp = ip_of(&udp_frame(
        EXT_MAC,
        CLIENT_MAC,
        (CIP, 1234),
        (VIP, 53),
        b"q",
        true,
    ));
    let err = ipv4(RIP1, CIP, ICMP, 64, &icmp_error(3, 3, &udp));
    let frag = ipv4_with(
        CIP,
        VIP,
        UDP,
        64,
        9,
        0x2000,
        &udp_seg(CIP, 1, VIP, 53, &[1u8; 40], true)[..32],
    );
    let arp_frame = eth(
        [0xff; 6],
        CLIENT_MAC,
        0x0806,
        &arp(1, CLIENT_MAC, CIP, [0; 6], VIP),
    );
    let cat =
        |a: Vec<u8>, b: &[u8]| -> Vec<u8> { a.into_iter().chain(b.iter().copied()).collect() };
    vec![
        ("seed-dnat-tcp", cat(hdr(4 | 8, 0), &tcp)),
        ("seed-snat-udp", cat(hdr(0, 0), &udp)),
        ("seed-icmp-nat", cat(hdr(1 | 8, 0), &err)),
        ("seed-build-error", cat(hdr(2, 600), &tcp)),
        ("seed-frag-rewrite", cat(hdr(3 | 4, 0), &frag)),
        ("seed-arp", cat(hdr(0, 0), &arp_frame)),
    ]
}

// ---------------------------------------------------------------------------------------------
// IPv6 seeds

/// IPv6 packets of the oracle's plan (testkit::ipv6's builders, not the dataplane's).
struct V6;

impl V6 {
    fn udp(src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16), hop: u8, data: &[u8]) -> Vec<u8> {
        t6::ipv6(src.0, dst.0, UDP, hop, &t6::udp_seg6(src, dst, data))
    }

    fn tcp(src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16), flags: u8) -> Vec<u8> {
        t6::ipv6(src.0, dst.0, TCP, 64, &t6::tcp_seg6(src, dst, flags, b""))
    }

    /// An ICMPv6 error (`ty`/`code`, word 0) from `src` to `dst` quoting `quoted`.
    fn error(src: Ipv6Addr, dst: Ipv6Addr, ty: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
        let body = [&[0u8; 4][..], quoted].concat();
        t6::ipv6(src, dst, ICMPV6, 64, &t6::icmp6(src, dst, ty, code, &body))
    }

    fn echo(src: Ipv6Addr, dst: Ipv6Addr, seq: u8) -> Vec<u8> {
        let m = t6::icmp6(src, dst, 128, 0, &[0, 1, 0, seq, b'p', b'i', b'n', b'g']);
        t6::ipv6(src, dst, ICMPV6, 64, &m)
    }

    /// The UDP datagram `useg` (CIP6 -> VIP6) in fragments of 104 bytes, id `id`.
    fn fragments(useg: &[u8], id: u32) -> Vec<Vec<u8>> {
        useg.chunks(104)
            .enumerate()
            .map(|(i, c)| {
                let more = (i + 1) * 104 < useg.len();
                let f = t6::frag_header(UDP, i * 104, more, id, c);
                t6::ipv6(CIP6, VIP6, FRAGMENT, 64, &f)
            })
            .collect()
    }
}

/// The pipeline seeds for IPv6 (fuzz/corpus/pipeline/seed-v6-*).
fn pipeline_seeds6() -> Vec<(&'static str, Vec<u8>)> {
    let ext = |ip: Vec<u8>| t6::eth6(EXT_MAC, CLIENT_MAC, &ip);
    let int = |ip: Vec<u8>| t6::eth6(INT_MAC, RS1_MAC, &ip);
    let c = (CIP6, 40000);
    let syn = ext(V6::tcp(c, (VIP6, 80), SYN));
    let synack = int(V6::tcp((RIP6_1, 80), c, SYN | ACK));
    let q = ext(V6::udp((CIP6, 5000), (VIP6, 53), 64, b"query"));
    let a = int(V6::udp((RIP6_1, 5353), (CIP6, 5000), 64, b"answer"));
    let mut q0 = q.clone();
    q0[14 + 40 + 6..14 + 40 + 8].copy_from_slice(&[0, 0]); // no checksum: refused in IPv6
                                                           // What RS1 got for q (DNATed, hop limit 63), and what the client got for a.
    let q_at_rs = V6::udp((CIP6, 5000), (RIP6_1, 5353), 63, b"query");
    let a_at_client = V6::udp((VIP6, 53), (CIP6, 5000), 63, b"answer");
    let useg = t6::udp_seg6((CIP6, 6000), (VIP6, 53), &[7u8; 300]);
    let frags: Vec<Vec<u8>> = V6::fragments(&useg, 0x777).into_iter().map(ext).collect();
    let udp_seg = t6::udp_seg6((CIP6, 5001), (VIP6, 53), b"opts");
    let chain = |first: u8, body: Vec<u8>| ext(t6::ipv6(CIP6, VIP6, first, 64, &body));
    // hop-by-hop, destination options, then UDP: walked and NATed.
    let good = chain(
        HOP_BY_HOP,
        t6::ext_header(DEST_OPTS, 0, &t6::ext_header(UDP, 1, &udp_seg)),
    );
    // A chain that loops (destination options three times), hop-by-hop twice, a header that
    // runs past the packet, an unknown one (mobility, 135), a routing header with segments left.
    let dd = t6::ext_header(DEST_OPTS, 0, &t6::ext_header(UDP, 0, &udp_seg));
    let looping = chain(DEST_OPTS, t6::ext_header(DEST_OPTS, 0, &dd));
    let hbh_twice = chain(
        HOP_BY_HOP,
        t6::ext_header(HOP_BY_HOP, 0, &t6::ext_header(UDP, 0, &udp_seg)),
    );
    let mut over = t6::ext_header(UDP, 0, &udp_seg);
    over[1] = 40; // 328 bytes long, in a 64-byte payload
    let overrun = chain(DEST_OPTS, over);
    let unknown = chain(135, t6::ext_header(UDP, 0, &udp_seg));
    let mut rh = t6::ext_header(UDP, 2, &udp_seg);
    rh[3] = 1; // segments left
    let routing = chain(ROUTING, rh);
    let nested = chain(
        FRAGMENT,
        t6::frag_header(
            FRAGMENT,
            0,
            true,
            1,
            &t6::frag_header(UDP, 0, true, 2, &udp_seg),
        ),
    );
    let ns = |target: Ipv6Addr| t6::neighbour_solicitation(CLIENT_MAC, CIP6, target);
    let mut ns_bad_hop = ns(VIP6);
    ns_bad_hop[14 + 7] = 64;
    let mut ns_bad_sum = ns(VIP6);
    ns_bad_sum[14 + 40 + 2] ^= 0xff;
    let mut ns_zero_opt = ns(VIP6);
    ns_zero_opt[14 + 40 + 25] = 0;
    let na = t6::neighbour_advertisement(EXT_MAC, CLIENT_MAC, CIP6, EXT6);
    let big = ext(V6::udp((CIP6, 7), (VIP6, 53), 64, &[0x42; 1400]));
    let mut hop1 = V6::tcp((CIP6, 1), (VIP6, 80), SYN);
    hop1[7] = 1;
    vec![
        (
            "seed-v6-tcp-flow",
            ops(&[
                (0, syn.clone()),
                (1, synack.clone()),
                (0, ext(V6::tcp(c, (VIP6, 80), ACK))),
                (0, ext(V6::tcp(c, (VIP6, 80), FIN | ACK))),
                (1, int(V6::tcp((RIP6_1, 80), c, RST))),
            ]),
        ),
        ("seed-v6-udp-flow", ops(&[(0, q.clone()), (1, a), (0, q0)])),
        (
            "seed-v6-ext-headers",
            ops(&[
                (0, good),
                (0, looping),
                (0, hbh_twice),
                (0, overrun),
                (0, unknown),
                (0, routing),
            ]),
        ),
        ("seed-v6-nested-fragment", ops(&[(0, nested)])),
        (
            "seed-v6-fragments",
            ops(&[
                (0, frags[0].clone()),
                (0, frags[1].clone()),
                (0, frags[2].clone()),
            ]),
        ),
        (
            "seed-v6-fragments-reversed",
            ops(&[
                (0, frags[2].clone()),
                (0, frags[1].clone()),
                (0, frags[0].clone()),
            ]),
        ),
        (
            "seed-v6-ndp",
            ops(&[
                (0, ns(VIP6)),
                (0, ns(EXT6)),
                (1, t6::neighbour_solicitation(RS1_MAC, RIP6_1, DIP6)),
                (0, ns("2001:db8:100::99".parse().unwrap())),
                (0, na),
                (0, ns_bad_hop),
                (0, ns_bad_sum),
                (2, ns_zero_opt), // checksums fixed: the option is what is wrong
            ]),
        ),
        (
            "seed-v6-echo",
            ops(&[
                (0, ext(V6::echo(CIP6, VIP6, 1))),
                (0, ext(V6::echo(CIP6, EXT6, 2))),
                (1, int(V6::echo(RIP6_1, DIP6, 3))),
            ]),
        ),
        (
            "seed-v6-icmp-error-unknown-flow",
            ops(&[
                (0, ext(V6::error(CIP6, VIP6, 1, 4, &a_at_client))),
                (1, int(V6::error(RIP6_1, CIP6, 1, 4, &q_at_rs))),
            ]),
        ),
        (
            "seed-v6-icmp-error-tracked",
            ops(&[
                (0, q.clone()),
                (1, int(V6::error(RIP6_1, CIP6, 1, 4, &q_at_rs))),
                (0, ext(V6::error(CIP6, VIP6, 1, 4, &a_at_client))),
                (1, int(V6::error(RIP6_1, CIP6, 2, 0, &q_at_rs[..48]))),
            ]),
        ),
        (
            "seed-v6-too-big-hop-limit",
            ops(&[(0, big), (0, ext(hop1))]),
        ),
        (
            "seed-v6-truncated",
            ops(&[
                (0, syn[..50].to_vec()),
                (0, syn[..60].to_vec()),
                (1, synack[..70].to_vec()),
            ]),
        ),
        ("seed-v6-fixup", ops(&[(6, syn), (7, synack)])),
    ]
}

/// The packet seeds for IPv6 (fuzz/corpus/packet/seed-v6-*): selector, address, port, room,
/// then an IPv6 packet.
fn packet_seeds6() -> Vec<(&'static str, Vec<u8>)> {
    let hdr = |sel: u8, room: u16| -> Vec<u8> {
        let mut v = vec![sel, 0, 2, 0, 3];
        v.extend_from_slice(&8080u16.to_be_bytes());
        v.extend_from_slice(&room.to_be_bytes());
        v
    };
    let cat =
        |a: Vec<u8>, b: &[u8]| -> Vec<u8> { a.into_iter().chain(b.iter().copied()).collect() };
    let tcp = t6::ipv6(
        CIP6,
        VIP6,
        HOP_BY_HOP,
        64,
        &t6::ext_header(TCP, 0, &t6::tcp_seg6((CIP6, 1234), (VIP6, 80), SYN, b"x")),
    );
    let udp = V6::udp((CIP6, 1234), (VIP6, 53), 64, b"q");
    let err = V6::error(RIP6_1, CIP6, 1, 4, &udp);
    let later = V6::fragments(&t6::udp_seg6((CIP6, 1), (VIP6, 53), &[1; 300]), 9)[1].clone();
    let ns = t6::neighbour_solicitation(CLIENT_MAC, CIP6, VIP6)[14..].to_vec();
    let dd = t6::ext_header(DEST_OPTS, 0, &t6::ext_header(UDP, 0, &[0; 8]));
    let looping = t6::ipv6(
        CIP6,
        VIP6,
        DEST_OPTS,
        64,
        &t6::ext_header(DEST_OPTS, 0, &dd),
    );
    let nested = t6::ipv6(
        CIP6,
        VIP6,
        FRAGMENT,
        64,
        &t6::frag_header(
            FRAGMENT,
            0,
            true,
            1,
            &t6::frag_header(UDP, 0, true, 2, &[0; 16]),
        ),
    );
    vec![
        ("seed-v6-dnat-tcp", cat(hdr(4 | 8, 0), &tcp)),
        ("seed-v6-snat-udp", cat(hdr(0, 0), &udp)),
        ("seed-v6-icmp-nat", cat(hdr(1 | 8, 0), &err)),
        ("seed-v6-build-error", cat(hdr(2, 600), &tcp)),
        ("seed-v6-echo", cat(hdr(3, 0), &V6::echo(CIP6, VIP6, 1))),
        ("seed-v6-frag-rewrite", cat(hdr(3 | 4, 0), &later)),
        ("seed-v6-ndp", cat(hdr(1, 0), &ns)),
        ("seed-v6-ext-loop", cat(hdr(0, 0), &looping)),
        ("seed-v6-nested-fragment", cat(hdr(0, 0), &nested)),
    ]
}

/// The IPv6 seeds are in the corpus as written here (so `cargo test` replays them), and each
/// reaches the verdicts it is there for: the oracle's director counts them.
#[test]
fn ipv6_seeds_replay_with_their_verdicts() {
    use dataplane::stats::{DropReason as D, Event as E};
    let dir = corpus_dir("pipeline");
    for (name, data) in pipeline_seeds6() {
        let stored = std::fs::read(dir.join(name)).unwrap_or_default();
        assert_eq!(
            stored, data,
            "fuzz/corpus/pipeline/{name} is current (write_seeds)"
        );
        let mut h = oracle::Harness::new();
        h.run(&data);
        let s = h.dp.stats();
        let (ev, dr) = (|e| s.events(e), |r| s.drops(r));
        match name {
            "seed-v6-tcp-flow" => assert!(ev(E::Dnat) >= 3 && ev(E::Snat) >= 2),
            "seed-v6-udp-flow" => {
                assert_eq!((ev(E::Dnat), ev(E::Snat)), (1, 1));
                // pipeline/conn.rs's l4_error folds ParseError::BadChecksum into malformed.
                assert_eq!(dr(D::Malformed), 1, "UDP checksum 0");
            }
            "seed-v6-ext-headers" => {
                assert_eq!(ev(E::Dnat), 1);
                assert_eq!(
                    dr(D::BadExtHeader),
                    4,
                    "loop, hop-by-hop twice, overrun, routing"
                );
                assert_eq!(dr(D::UnknownExtHeader), 1);
            }
            "seed-v6-nested-fragment" => assert_eq!(dr(D::BadFragment), 1),
            "seed-v6-fragments" | "seed-v6-fragments-reversed" => {
                assert_eq!(ev(E::FragFirst), 1);
                assert_eq!(ev(E::FragFollowed), 2);
            }
            "seed-v6-ndp" => {
                assert_eq!(ev(E::NdpReplied), 3);
                assert_eq!(dr(D::NdpNotOurs), 1);
                assert_eq!(dr(D::NdpConsumed), 1);
                assert_eq!(dr(D::Malformed), 3, "bad hop limit, checksum, option");
            }
            "seed-v6-echo" => assert_eq!(ev(E::EchoReplied), 3),
            "seed-v6-icmp-error-unknown-flow" => {
                assert_eq!(dr(D::IcmpUnrelated), 1);
                assert_eq!(ev(E::Forwarded), 1);
            }
            "seed-v6-icmp-error-tracked" => assert_eq!(ev(E::IcmpNat), 3),
            "seed-v6-too-big-hop-limit" => {
                assert_eq!(dr(D::MtuExceeded), 1);
                assert_eq!(dr(D::TtlExpired), 1);
                assert_eq!(ev(E::IcmpFragNeeded), 1);
                assert_eq!(ev(E::IcmpTimeExceeded), 1);
            }
            "seed-v6-truncated" => assert_eq!(s.dropped(), 3),
            "seed-v6-fixup" => assert!(ev(E::Dnat) == 1 && ev(E::Snat) == 1),
            _ => panic!("{name}: no expectation"),
        }
    }
    let dir = corpus_dir("packet");
    for (name, data) in packet_seeds6() {
        let stored = std::fs::read(dir.join(name)).unwrap_or_default();
        assert_eq!(
            stored, data,
            "fuzz/corpus/packet/{name} is current (write_seeds)"
        );
    }
}

#[test]
#[ignore = "rewrites the seed files; run by hand"]
fn write_seeds() {
    for (target, seeds) in [
        ("pipeline", [pipeline_seeds(), pipeline_seeds6()].concat()),
        ("packet", [packet_seeds(), packet_seeds6()].concat()),
        ("sync", sync_seeds()),
    ] {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in seeds {
            std::fs::write(dir.join(name), data).unwrap();
        }
    }
}

/// Sync datagrams (after the syncid byte): the oracle director's web and dns connections, a
/// template, and a message of another group.
fn sync_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use dataplane::conntrack::ConnState;
    use dataplane::sync::{Encoder, SyncConn};
    let web = SyncConn {
        proto: TCP,
        state: ConnState::Established,
        template: false,
        client: (CIP, 40000),
        virt: (VIP, 80),
        real: (RIP1, 80),
        timeout_s: 900,
        fwmark: 0,
    };
    let dns = SyncConn {
        proto: UDP,
        state: ConnState::Udp,
        real: (RIP1, 5353),
        virt: (VIP, 53),
        timeout_s: 300,
        ..web
    };
    let tpl = SyncConn {
        template: true,
        state: ConnState::None,
        client: (CIP, 0),
        timeout_s: 300,
        ..web
    };
    let msg = |syncid: u8, conns: &[SyncConn]| {
        let mut enc = Encoder::new(syncid, 1472);
        for c in conns {
            assert!(enc.push(c).is_none());
        }
        [vec![syncid], enc.finish().unwrap()].concat()
    };
    vec![
        ("seed-established", msg(1, &[web])),
        ("seed-three", msg(0, &[web, dns, tpl])),
        (
            "seed-foreign-group",
            [vec![2], msg(1, &[web])[1..].to_vec()].concat(),
        ),
    ]
}
