//! The exposition and routes on a service manager without DPDK: a one-arm director that has
//! scheduled two connections.

use super::exposition::{self, counter_metric, Kind};
use super::{route, Method, Reading, Sources};
use control::proto::Request;
use dataplane::pipeline::Pipeline;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use testkit::director::one_arm;
use testkit::plan::{CLIENT_MAC, ONE_ARM_MAC, VIP};
use testkit::{tcp_frame, SYN};

const RS1: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const RS2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);

/// Two real servers (weights 1 and 2) behind TCP VIP:80, one SYN scheduled to each, one frame
/// to a port without a service; the device counters name port `device_port`.
fn sources(device_port: &str) -> Sources {
    let (dp, mut mgr) = one_arm(1024, 2, &[RS1, RS2, CLIENT], [2, 0, 0, 0, 0, 9]);
    testkit::services::rvsadm(
        &mut mgr,
        "-A -t 198.51.100.1:80 -s rr\n\
         -a -t 198.51.100.1:80 -r 198.51.100.2:80 -m -w 1\n\
         -a -t 198.51.100.1:80 -r 198.51.100.3:8080 -m -w 2\n\
         -A -t [2001:db8:100::1]:443 -s rr\n\
         -a -t [2001:db8:100::1]:443 -r [2001:db8:2::2]:443 -m -w 5\n",
    );
    let mut pipe = Pipeline::new(dp.clone(), 1);
    pipe.begin_burst(dp.now_ms());
    for (sport, dport) in [(1000, 80), (1001, 80), (1002, 81)] {
        let mut f = tcp_frame(
            ONE_ARM_MAC,
            CLIENT_MAC,
            (CLIENT, sport),
            (VIP, dport),
            SYN,
            b"",
        );
        pipe.process(0, &mut f);
    }
    dp.stats().worker(1).poll(true);
    dp.stats().worker(1).poll(false);
    let name = device_port.to_string();
    Sources {
        manager: Arc::new(Mutex::new(mgr)),
        device_counters: Arc::new(move || vec![(format!("port.{name}.hw_rx_missed"), 7)]),
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

const BACKEND1: &str = r#"{local_address="198.51.100.1",local_port="80",remote_address="198.51.100.2",remote_port="80",proto="TCP",local_mark=""}"#;
const BACKEND2: &str = r#"{local_address="198.51.100.1",local_port="80",remote_address="198.51.100.3",remote_port="8080",proto="TCP",local_mark=""}"#;

#[test]
fn ipvs_metrics_carry_node_exporters_names_help_and_labels() {
    let reading = sources("lan").read();
    let text = exposition::encode(&reading);
    let l = lines(&text);
    for expected in [
        "# HELP node_ipvs_connections The total number of connections made.",
        "# TYPE node_ipvs_connections counter",
        "node_ipvs_connections_total 2",
        "# TYPE node_ipvs_incoming_packets counter",
        "node_ipvs_incoming_packets_total 2",
        "node_ipvs_outgoing_packets_total 0",
        "# HELP node_ipvs_incoming_bytes The total amount of incoming data.",
        "node_ipvs_outgoing_bytes_total 0",
        "# HELP node_ipvs_backend_connections_active The current active connections by local and remote address.",
        "# TYPE node_ipvs_backend_connections_active gauge",
        &format!("node_ipvs_backend_connections_active{BACKEND1} 0"),
        &format!("node_ipvs_backend_connections_inactive{BACKEND1} 1"),
        &format!("node_ipvs_backend_connections_inactive{BACKEND2} 1"),
        "# TYPE node_ipvs_backend_weight gauge",
        &format!("node_ipvs_backend_weight{BACKEND1} 1"),
        &format!("node_ipvs_backend_weight{BACKEND2} 2"),
        // IPv6 addresses as node_exporter writes them: plain, no brackets.
        r#"node_ipvs_backend_weight{local_address="2001:db8:100::1",local_port="443",remote_address="2001:db8:2::2",remote_port="443",proto="TCP",local_mark=""} 5"#,
        &format!("rvs_backend_connections_total{BACKEND2} 1"),
        "rvs_drops_total{reason=\"no_service\"} 1",
        "rvs_events_total{event=\"conns_created\"} 2",
        "rvs_port_rx_packets_total{port=\"lan\"} 3",
        "rvs_port_hw_rx_missed_total{port=\"lan\"} 7",
        "rvs_worker_packets_total{worker=\"1\",direction=\"rx\"} 3",
        "rvs_worker_packets_total{worker=\"0\",direction=\"rx\"} 0",
        "rvs_worker_polls_total{worker=\"1\",state=\"busy\"} 1",
        "rvs_worker_polls_total{worker=\"1\",state=\"idle\"} 1",
        "# TYPE rvs_conntrack_entries gauge",
        "rvs_conntrack_entries{family=\"ipv4\"} 2",
        "rvs_conntrack_capacity{family=\"ipv4\"} 1024",
        "rvs_conntrack_evictions_total{family=\"ipv4\"} 0",
        "rvs_conntrack_entries{family=\"ipv6\"} 0",
        "rvs_conntrack_capacity{family=\"ipv6\"} 1024",
        // A table this small (under 2 MiB) is never put on hugepages.
        "rvs_conntrack_hugetlb{family=\"ipv4\"} 0",
        "rvs_conntrack_hugetlb{family=\"ipv6\"} 0",
        &format!(
            "rvs_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
    ] {
        assert!(l.contains(&expected), "missing {expected:?} in\n{text}");
    }
    assert_eq!(l.last(), Some(&"# EOF"));
    // The table's memory: at least its 1024 IPv4 entries of 32 bytes.
    let bytes: u64 = l
        .iter()
        .find_map(|x| x.strip_prefix("rvs_conntrack_bytes{family=\"ipv4\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no IPv4 rvs_conntrack_bytes in\n{text}"));
    assert!(bytes >= 1024 * 32, "{bytes}");
    // Exactly one series per real server in each backend family.
    let series = l
        .iter()
        .filter(|x| x.starts_with("node_ipvs_backend_weight{"))
        .count();
    assert_eq!(series, 3);
}

#[test]
fn every_counter_rvs_has_is_a_metric() {
    let reading = sources("lan").read();
    assert!(reading.counters.len() > 50);
    for (name, _) in &reading.counters {
        assert!(
            counter_metric(name).is_some(),
            "no metric for counter {name}"
        );
    }
    let m = counter_metric("conntrack.entries").unwrap();
    assert_eq!(m.kind, Kind::Gauge);
    let m = counter_metric("conntrack6.evictions").unwrap();
    assert_eq!(
        (m.family.as_str(), m.kind),
        ("rvs_conntrack_evictions", Kind::Counter)
    );
    assert_eq!(m.labels, vec![("family", "ipv6".to_string())]);
    assert_eq!(counter_metric("conntrack6.bogus"), None);
    // A port name with dots keeps them; the counter is the last part.
    let m = counter_metric("port.a.b.hw_rx_errors").unwrap();
    assert_eq!(m.family, "rvs_port_hw_rx_errors");
    assert_eq!(m.labels, vec![("port", "a.b".to_string())]);
    assert_eq!(counter_metric("port.nodot"), None);
    assert_eq!(counter_metric("worker.0.bogus"), None);
    assert_eq!(counter_metric("no_such_counter"), None);
}

#[test]
fn label_values_are_escaped() {
    let text = exposition::encode(&sources("a\"b\\c\nd").read());
    assert!(
        text.contains(r#"rvs_port_hw_rx_missed_total{port="a\"b\\c\nd"} 7"#),
        "{text}"
    );
    // No raw newline inside a series: every line is a comment or name{...} value.
    for l in text.lines() {
        assert!(
            l.starts_with('#') || l.split_whitespace().count() == 2,
            "bad line {l:?}"
        );
    }
}

#[test]
fn classic_format_names_counters_by_their_series() {
    let om = exposition::encode(&sources("lan").read());
    let classic = exposition::to_classic(&om);
    let l = lines(&classic);
    assert!(l.contains(&"# HELP node_ipvs_connections_total The total number of connections made."));
    assert!(l.contains(&"# TYPE node_ipvs_connections_total counter"));
    assert!(l.contains(&"# TYPE rvs_drops_total counter"));
    assert!(l.contains(&"# TYPE node_ipvs_backend_weight gauge"));
    assert!(l.contains(&"node_ipvs_connections_total 2"));
    assert!(!classic.contains("# EOF"));
    assert!(!l.contains(&"# TYPE node_ipvs_connections counter"));
    // Samples are left alone.
    let samples = |t: &str| t.lines().filter(|x| !x.starts_with('#')).count();
    assert_eq!(samples(&om), samples(&classic));
}

#[test]
fn routes_answer_by_path_and_method() {
    let s = sources("lan");
    let read = || s.read();
    let a = route(Method::Get, "/metrics", None, read);
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type, exposition::CLASSIC_TYPE);
    let a = route(
        Method::Get,
        "/metrics?x=1",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
        read,
    );
    assert_eq!(a.content_type, exposition::OPENMETRICS_TYPE);
    assert!(String::from_utf8(a.body).unwrap().ends_with("# EOF\n"));

    let page = route(Method::Head, "/", None, Reading::default);
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    let html = String::from_utf8(page.body).unwrap();
    assert!(
        html.contains("status.json") && !html.contains("http://") && !html.contains("https://")
    );

    let a = route(Method::Get, "/status.json", None, read);
    assert_eq!(a.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    let dests = &v["services"][0]["dests"];
    assert_eq!(dests[1]["spec"]["port"], 8080);
    assert_eq!(dests[1]["spec"]["weight"], 2);
    assert_eq!(dests[1]["inactive_conns"], 1);
    assert_eq!(v["health_checks"], false);
    assert!(v["at_ms"].is_u64());

    let never = || -> Reading { panic!("no figures needed") };
    assert_eq!(route(Method::Get, "/nope", None, never).status, 404);
    assert_eq!(route(Method::Get, "/metrics/x", None, never).status, 404);
    assert_eq!(route(Method::Other, "/metrics", None, never).status, 405);
    // The manager is still usable: nothing above held its lock.
    assert!(matches!(
        s.manager.lock().unwrap().handle(Request::Counters),
        control::proto::Response::Counters(_)
    ));
}
