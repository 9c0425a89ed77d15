//! pcap files, as DPDK's `net_pcap` reads (`rx_pcap`) and writes (`tx_pcap`) them.

use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// Writes `frames` to `out` as one pcap stream (header, then the frames 1 µs apart); the
/// microsecond count goes on from `first` so that a stream written in parts keeps its order.
pub fn write_frames<W: Write>(out: &mut PcapWriter<W>, first: usize, frames: &[Vec<u8>]) {
    for (i, f) in frames.iter().enumerate() {
        out.write_packet(&PcapPacket::new(
            Duration::from_micros((first + i) as u64),
            f.len() as u32,
            f,
        ))
        .expect("write a pcap frame");
    }
}

/// Writes `frames` as a new pcap file at `path`.
pub fn write(path: &Path, frames: &[Vec<u8>]) {
    let file =
        std::fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut w = PcapWriter::new(file).expect("pcap header");
    write_frames(&mut w, 0, frames);
}

/// The frames of the pcap file at `path` so far: none while it does not exist or has no
/// header yet, and only whole frames while a writer is still at it.
pub fn read(path: &Path) -> Vec<Vec<u8>> {
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let Ok(mut r) = PcapReader::new(file) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while let Some(Ok(p)) = r.next_packet() {
        out.push(p.data.into_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn frames_written_are_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f.pcap");
        assert!(super::read(&path).is_empty(), "no file: no frames");
        let frames = vec![vec![1u8; 60], vec![2u8; 1514], vec![3u8; 61]];
        super::write(&path, &frames);
        assert_eq!(super::read(&path), frames);
    }
}
