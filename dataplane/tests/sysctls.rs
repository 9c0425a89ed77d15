//! IPVS sysctls through the ServiceManager: listed with the kernel's defaults, set all or
//! none, published to the workers with the next snapshot.

use control::proto::{Request, Response};
use control::sysctl::{IpvsSysctls, KNOBS};
use dataplane::service::ServiceManager;
use testkit::director;

fn manager() -> (
    std::sync::Arc<dataplane::pipeline::Dataplane>,
    ServiceManager,
) {
    let dp = dataplane::pipeline::Dataplane::new(dataplane::pipeline::DataplaneConfig {
        ports: director::two_arm_ports(None, 1500),
        conn_capacity: 1024,
        timeouts: Default::default(),
        workers: 1,
    });
    (dp.clone(), ServiceManager::new(dp))
}

fn listed(m: &mut ServiceManager) -> Vec<(String, u32)> {
    match m.handle(Request::GetSysctls) {
        Response::Sysctls(v) => v,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn every_knob_is_listed_with_the_kernel_default() {
    let (_, mut m) = manager();
    let got = listed(&mut m);
    let want: Vec<(String, u32)> = KNOBS
        .iter()
        .map(|k| (k.name.to_string(), k.default))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn a_set_is_all_or_none_and_reaches_the_workers_snapshot() {
    let (dp, mut m) = manager();
    let before = listed(&mut m);
    let r = m.handle(Request::SetSysctls(vec![
        ("expire_nodest_conn".into(), 1),
        ("secure_tcp".into(), 7),
    ]));
    assert!(
        matches!(r, Response::Error(ref e) if e.contains("secure_tcp")),
        "{r:?}"
    );
    assert_eq!(listed(&mut m), before, "a refused set changed something");
    assert_eq!(dp.snapshot().sysctls, IpvsSysctls::default());

    let r = m.handle(Request::SetSysctls(vec![
        ("expire_nodest_conn".into(), 1),
        ("net.ipv4.vs.sloppy_tcp".into(), 1),
    ]));
    assert_eq!(r, Response::Ok);
    let snap = dp.snapshot();
    assert_eq!(snap.sysctls.expire_nodest_conn, 1);
    assert_eq!(snap.sysctls.sloppy_tcp, 1);
    let r = m.handle(Request::SetSysctls(vec![("no_such_knob".into(), 1)]));
    assert!(matches!(r, Response::Error(ref e) if e.contains("expire_quiescent_template")));
}
