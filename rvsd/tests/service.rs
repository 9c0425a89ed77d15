//! What running rvsd as a service relies on: it tells systemd when it is ready and when it
//! stops (sd_notify on `$NOTIFY_SOCKET`), and the example /etc/rvs/rvs.toml the package
//! installs (packaging/rvs.toml) is one rvsd accepts.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use testkit::daemon::{net_null, workspace_root, Launch, Rvsd, RvsdConfig, VdevPort};

#[test]
fn rvsd_notifies_systemd_when_ready_and_when_stopping() {
    let dir = tempfile::tempdir().expect("temp dir");
    let notify = dir.path().join("notify.sock");
    let listener = UnixDatagram::bind(&notify).expect("bind the notify socket");
    listener
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let socket = dir.path().join("rvs.sock");
    let config = RvsdConfig::new(&socket).port(VdevPort::one_arm(net_null(0)));
    let path = dir.path().join("rvs.toml");
    config.write(&path);
    let mut c = Command::new(env!("CARGO_BIN_EXE_rvsd"));
    c.arg("--config").arg(&path).env("NOTIFY_SOCKET", &notify);
    let mut rvsd = Rvsd::spawn(
        c,
        Launch {
            socket,
            log: dir.path().join("rvsd.log"),
            file_prefix: Some(config.file_prefix().to_string()),
        },
    );
    let mut buf = [0u8; 256];
    let n = listener
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no READY=1 ({e}):\n{}", rvsd.log_text()));
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means serving: the control socket answers now.
    rvsd.wait_ready(Duration::from_secs(1));
    assert!(rvsd.stop().success(), "{}", rvsd.log_text());
    let n = listener.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
}

#[test]
fn the_packaged_example_config_passes_the_check() {
    let example = workspace_root().join("packaging/rvs.toml");
    assert!(Path::new(&example).exists());
    let out = Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .arg("--check")
        .arg("--config")
        .arg(&example)
        .env("RVS_LOG", "error")
        .output()
        .expect("run rvsd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
}
