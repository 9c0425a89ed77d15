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
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
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

#[test]
#[ignore = "rewrites the seed files; run by hand"]
fn write_seeds() {
    for (target, seeds) in [
        ("pipeline", pipeline_seeds()),
        ("packet", packet_seeds()),
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
