//! The IPVS sync codec and the backup's install on arbitrary bytes: input `syncid:u8` then a
//! datagram as it would arrive on the sync socket.
//!
//! Checks: nothing panics; every entry the decoder takes encodes into messages that decode to
//! the same entries; a connection the install takes is then in the table, mapped to the real
//! server the entry named.

#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use crate::oracle::Harness;
use dataplane::conntrack::{ConnTable, Family, Tuple};
use dataplane::sync::{codec::DEFAULT_MAXLEN, decode, Encoder, Installed, SyncConn, SyncEntry};

pub fn check(h: &Harness, data: &[u8]) {
    let Some((&syncid, msg)) = data.split_first() else {
        return;
    };
    let mut taken: Vec<SyncEntry> = Vec::new();
    let _ = decode(msg, syncid, |e| taken.extend(e));

    let mut enc = Encoder::new(syncid, DEFAULT_MAXLEN);
    let mut msgs: Vec<Vec<u8>> = taken.iter().filter_map(|c| enc.push(c)).collect();
    msgs.extend(enc.finish());
    let mut again = Vec::new();
    for m in &msgs {
        assert!(m.len() <= DEFAULT_MAXLEN);
        decode(m, syncid, |e| {
            again.push(e.expect("re-encoded entry decodes"))
        })
        .expect("re-encoded message decodes");
    }
    assert_eq!(again, taken, "decode(encode(entries)) = entries");

    for e in &taken {
        let Ok(how) = h.dp.install_synced(e, h.now) else {
            continue;
        };
        assert!(matches!(how, Installed::New | Installed::Updated));
        match e {
            SyncEntry::V4(c) => installed(h.dp.conns(), c, h.now),
            SyncEntry::V6(c) => installed(h.dp.conns6(), c, h.now),
        }
    }
}

/// A connection the install took is in its family's table, mapped as synced.
fn installed<F: Family>(conns: &ConnTable<F>, c: &SyncConn<F::Addr>, now: u64) {
    if c.template {
        return;
    }
    let inbound = Tuple {
        proto: c.proto,
        src: c.client.0,
        sport: c.client.1,
        dst: c.virt.0,
        dport: c.virt.1,
    };
    let hit = conns
        .lookup(&inbound, now)
        .expect("an installed connection is in the table");
    assert_eq!(
        (hit.real, hit.state),
        (c.real, c.state),
        "installed as synced"
    );
}
