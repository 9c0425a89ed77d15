//! `/metrics`: one [`Reading`] in the OpenMetrics text format (prometheus-client), or in the
//! classic Prometheus text format (0.0.4) for clients that do not ask for OpenMetrics.
//!
//! The IPVS figures carry node_exporter's IPVS collector names, help texts and labels, so a
//! dashboard made for kernel IPVS through node_exporter works on rvs unchanged. Everything else
//! is rvs's own, under `rvs_`, mapped from the control socket's counter names by
//! [`counter_metric`]: one table, read by eye.

use super::Reading;
use control::model::{DestStatus, ServiceStatus};
use dataplane::stats::Event;
use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The Content-Type of [`encode`]'s output.
pub const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Content-Type of [`to_classic`]'s output.
pub const CLASSIC_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value, escaped as both text formats want it (`\\`, `\"`, `\n`): prometheus-client
/// writes label values as they are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Value(pub String);

impl EncodeLabelValue for Value {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

type Labels = Vec<(&'static str, Value)>;

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (*k, Value((*v).into())))
        .collect()
}

/// What kind of metric a counter of the control socket becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One control-socket counter as a metric: its family (without `_total`), help, kind, labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterMetric {
    pub family: String,
    pub help: &'static str,
    pub kind: Kind,
    pub labels: Vec<(&'static str, String)>,
}

/// The metric for the control socket's counter `name` (see `Request::Counters`), or None for a
/// name this table does not know (the unit tests check that rvs has none).
pub fn counter_metric(name: &str) -> Option<CounterMetric> {
    let m = |family: &str, help, kind, labels: &[(&'static str, &str)]| {
        Some(CounterMetric {
            family: family.to_string(),
            help,
            kind,
            labels: labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect(),
        })
    };
    use Kind::{Counter as C, Gauge as G};
    match name {
        "rx_packets" => return m("rvs_rx_packets", "Frames the workers received.", C, &[]),
        "tx_packets" => return m("rvs_tx_packets", "Frames the workers sent.", C, &[]),
        _ if name.starts_with("conntrack") => {}
        "frag.capacity" => return m("rvs_frag_capacity", "Size of the fragment table.", G, &[]),
        _ => {}
    }
    // One family per figure, the table's address family as a label.
    let table = match name.split_once('.') {
        Some(("conntrack", what)) => Some(("ipv4", what)),
        Some(("conntrack6", what)) => Some(("ipv6", what)),
        _ => None,
    };
    if let Some((family, what)) = table {
        let (metric, help, kind) = match what {
            "entries" => ("rvs_conntrack_entries", "Connections in the table now.", G),
            "capacity" => ("rvs_conntrack_capacity", "Size of the connection table.", G),
            "evictions" => (
                "rvs_conntrack_evictions",
                "Connections evicted from a full table bucket.",
                C,
            ),
            "bytes" => (
                "rvs_conntrack_bytes",
                "Memory the connection table holds, in bytes.",
                G,
            ),
            "hugetlb" => (
                "rvs_conntrack_hugetlb",
                "1 if the connection table is on reserved 2 MB hugepages, else 0.",
                G,
            ),
            _ => return None,
        };
        return m(metric, help, kind, &[("family", family)]);
    }
    if let Some(reason) = name.strip_prefix("drop.") {
        return m(
            "rvs_drops",
            "Frames dropped, by reason (docs/packet-verdicts.md).",
            C,
            &[("reason", reason)],
        );
    }
    if let Some(rest) = name.strip_prefix("port.") {
        // The port's name may hold dots; the counter's never does.
        let (port, what) = rest.rsplit_once('.')?;
        let (family, help) = match what {
            "rx_packets" => (
                "rvs_port_rx_packets",
                "Frames the workers received on the port.",
            ),
            "tx_packets" => (
                "rvs_port_tx_packets",
                "Frames the workers sent on the port.",
            ),
            "hw_rx_packets" => ("rvs_port_hw_rx_packets", "Frames the NIC received."),
            "hw_tx_packets" => ("rvs_port_hw_tx_packets", "Frames the NIC sent."),
            "hw_rx_bytes" => ("rvs_port_hw_rx_bytes", "Bytes the NIC received."),
            "hw_tx_bytes" => ("rvs_port_hw_tx_bytes", "Bytes the NIC sent."),
            "hw_rx_missed" => (
                "rvs_port_hw_rx_missed",
                "Frames the NIC dropped for want of room in the receive ring.",
            ),
            "hw_rx_errors" => ("rvs_port_hw_rx_errors", "Bad frames the NIC received."),
            "hw_tx_errors" => ("rvs_port_hw_tx_errors", "Frames the NIC failed to send."),
            "hw_rx_nombuf" => (
                "rvs_port_hw_rx_nombuf",
                "Frames the NIC dropped for want of an mbuf.",
            ),
            _ => return None,
        };
        return m(family, help, C, &[("port", port)]);
    }
    if let Some(rest) = name.strip_prefix("worker.") {
        let (worker, what) = rest.split_once('.')?;
        let (family, help, label) = match what {
            "rx_packets" => ("rvs_worker_packets", WORKER_PACKETS, ("direction", "rx")),
            "tx_packets" => ("rvs_worker_packets", WORKER_PACKETS, ("direction", "tx")),
            "busy_polls" => ("rvs_worker_polls", WORKER_POLLS, ("state", "busy")),
            "idle_polls" => ("rvs_worker_polls", WORKER_POLLS, ("state", "idle")),
            "dnat" | "snat" => ("rvs_worker_nat", WORKER_NAT, ("rewrite", what)),
            _ => return None,
        };
        return m(family, help, C, &[("worker", worker), label]);
    }
    if let Some(rest) = name.strip_prefix("sync.") {
        if let Some(reason) = rest.strip_prefix("refused.") {
            return m(
                "rvs_sync_refused",
                "Sync messages or entries a backup refused, by reason (docs/sync.md).",
                C,
                &[("reason", reason)],
            );
        }
        let (family, help) = match rest {
            "msgs_sent" => ("rvs_sync_messages_sent", "Sync messages the master sent."),
            "conns_sent" => (
                "rvs_sync_connections_sent",
                "Connections in the sync messages sent.",
            ),
            "send_errors" => (
                "rvs_sync_send_errors",
                "Sync messages the socket refused to send.",
            ),
            "msgs_received" => (
                "rvs_sync_messages_received",
                "Sync messages the backup received.",
            ),
            "conns_installed" => (
                "rvs_sync_connections_installed",
                "Synced connections and templates the backup installed anew.",
            ),
            "conns_updated" => (
                "rvs_sync_connections_updated",
                "Synced connections and templates the backup updated.",
            ),
            _ => return None,
        };
        return m(family, help, C, &[]);
    }
    if Event::ALL.iter().any(|e| e.name() == name) {
        return m(
            "rvs_events",
            "Things that happened to frames that were not dropped, by event.",
            C,
            &[("event", name)],
        );
    }
    None
}

const WORKER_PACKETS: &str = "Frames each worker received (rx) and sent (tx).";
const WORKER_NAT: &str = "Packets each worker rewrote, client to real server (dnat) and \
     back (snat): replies may reach any worker.";
const WORKER_POLLS: &str = "Rounds of rx bursts over every port that received frames \
     (busy) or none (idle): a worker's busy share is busy / (busy + idle).";

const BACKEND_LABELS: [&str; 6] = [
    "local_address",
    "local_port",
    "remote_address",
    "remote_port",
    "proto",
    "local_mark",
];

/// node_exporter's backend labels of real server `d` of service `s` (`local_mark` is empty:
/// rvs has no firewall-mark services).
fn backend_labels(s: &ServiceStatus, d: &DestStatus) -> Labels {
    let values = [
        s.spec.key.addr.to_string(),
        s.spec.key.port.to_string(),
        d.spec.addr.to_string(),
        d.spec.port.to_string(),
        s.spec.key.protocol.label().to_string(),
        String::new(),
    ];
    BACKEND_LABELS
        .iter()
        .zip(values)
        .map(|(k, v)| (*k, Value(v)))
        .collect()
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Families created on demand and registered, in name order, at the end; one without labels
/// becomes a plain metric (`name 3`, not `name{} 3`).
#[derive(Default)]
struct Families {
    families: BTreeMap<String, FamilyValues>,
}

/// A family's help, kind and series.
type FamilyValues = (&'static str, Kind, Vec<(Labels, u64)>);

impl Families {
    fn add(&mut self, kind: Kind, family: &str, help: &'static str, labels: &Labels, v: u64) {
        let (_, _, series) = self
            .families
            .entry(family.to_string())
            .or_insert_with(|| (help, kind, Vec::new()));
        series.push((labels.clone(), v));
    }

    fn counter(&mut self, family: &str, help: &'static str, labels: &Labels, v: u64) {
        self.add(Kind::Counter, family, help, labels, v);
    }

    fn gauge(&mut self, family: &str, help: &'static str, labels: &Labels, v: u64) {
        self.add(Kind::Gauge, family, help, labels, v);
    }

    fn register(self, registry: &mut Registry) {
        for (name, (help, kind, series)) in self.families {
            register(registry, &name, help, kind, &series);
        }
    }
}

/// Registers one family: a plain metric for a single series without labels.
fn register(registry: &mut Registry, name: &str, help: &str, kind: Kind, series: &[(Labels, u64)]) {
    // prometheus-client ends every help text with a full stop of its own.
    let help = help.trim_end_matches('.');
    match (kind, series) {
        (Kind::Counter, [(l, v)]) if l.is_empty() => {
            let c = Counter::<u64>::default();
            c.inc_by(*v);
            registry.register(name, help, c);
        }
        (Kind::Gauge, [(l, v)]) if l.is_empty() => {
            let g = Gauge::<i64>::default();
            g.set(gauge_value(*v));
            registry.register(name, help, g);
        }
        (Kind::Counter, _) => {
            let f = Family::<Labels, Counter>::default();
            for (l, v) in series {
                f.get_or_create(l).inc_by(*v);
            }
            registry.register(name, help, f);
        }
        (Kind::Gauge, _) => {
            let f = Family::<Labels, Gauge>::default();
            for (l, v) in series {
                f.get_or_create(l).set(gauge_value(*v));
            }
            registry.register(name, help, f);
        }
    }
}

/// The node_exporter IPVS metrics: totals over every service, and per real server.
fn ipvs(registry: &mut Registry, services: &[ServiceStatus]) {
    let mut total = control::model::Stats::default();
    for s in services {
        total.conns = total.conns.wrapping_add(s.stats.conns);
        total.in_pkts = total.in_pkts.wrapping_add(s.stats.in_pkts);
        total.out_pkts = total.out_pkts.wrapping_add(s.stats.out_pkts);
        total.in_bytes = total.in_bytes.wrapping_add(s.stats.in_bytes);
        total.out_bytes = total.out_bytes.wrapping_add(s.stats.out_bytes);
    }
    let totals = [
        (
            "node_ipvs_connections",
            "The total number of connections made.",
            total.conns,
        ),
        (
            "node_ipvs_incoming_packets",
            "The total number of incoming packets.",
            total.in_pkts,
        ),
        (
            "node_ipvs_outgoing_packets",
            "The total number of outgoing packets.",
            total.out_pkts,
        ),
        (
            "node_ipvs_incoming_bytes",
            "The total amount of incoming data.",
            total.in_bytes,
        ),
        (
            "node_ipvs_outgoing_bytes",
            "The total amount of outgoing data.",
            total.out_bytes,
        ),
    ];
    for (name, help, v) in totals {
        register(registry, name, help, Kind::Counter, &[(Vec::new(), v)]);
    }
    let mut backends = Families::default();
    let mut own = Families::default();
    for s in services {
        for d in &s.dests {
            let l = backend_labels(s, d);
            backends.gauge(
                "node_ipvs_backend_connections_active",
                "The current active connections by local and remote address.",
                &l,
                d.active_conns,
            );
            backends.gauge(
                "node_ipvs_backend_connections_inactive",
                "The current inactive connections by local and remote address.",
                &l,
                d.inactive_conns,
            );
            backends.gauge(
                "node_ipvs_backend_weight",
                "The current backend weight by local and remote address.",
                &l,
                u64::from(d.spec.weight),
            );
            let st = &d.stats;
            for (family, help, v) in [
                (
                    "rvs_backend_connections",
                    "Connections scheduled to the real server.",
                    st.conns,
                ),
                (
                    "rvs_backend_incoming_packets",
                    "Packets from clients to the real server.",
                    st.in_pkts,
                ),
                (
                    "rvs_backend_outgoing_packets",
                    "Packets from the real server to clients.",
                    st.out_pkts,
                ),
                (
                    "rvs_backend_incoming_bytes",
                    "Bytes from clients to the real server.",
                    st.in_bytes,
                ),
                (
                    "rvs_backend_outgoing_bytes",
                    "Bytes from the real server to clients.",
                    st.out_bytes,
                ),
            ] {
                own.counter(family, help, &l, v);
            }
        }
    }
    backends.register(registry);
    own.register(registry);
}

/// `reading` in the OpenMetrics text format (ending in `# EOF`).
pub fn encode(reading: &Reading) -> String {
    let mut registry = Registry::default();
    ipvs(&mut registry, &reading.services);
    let mut own = Families::default();
    own.gauge(
        "rvs_build_info",
        "rvsd's version; always 1.",
        &labels(&[("version", env!("CARGO_PKG_VERSION"))]),
        1,
    );
    for (name, v) in &reading.counters {
        let Some(m) = counter_metric(name) else {
            tracing::debug!(counter = %name, "counter without a metric");
            continue;
        };
        let l: Labels = m.labels.into_iter().map(|(k, v)| (k, Value(v))).collect();
        match m.kind {
            Kind::Counter => own.counter(&m.family, m.help, &l, *v),
            Kind::Gauge => own.gauge(&m.family, m.help, &l, *v),
        }
    }
    own.register(&mut registry);
    let mut out = String::new();
    // Writing into a String cannot fail; a value the encoder refuses cannot occur (gauges are
    // i64, counters u64), so an error leaves what was written.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!("metrics encoding failed: {e}");
    }
    out
}

/// OpenMetrics text rewritten in the classic text format (0.0.4), what `promtool check
/// metrics` and older scrapers read: a counter's `# HELP`/`# TYPE` name its `_total` series,
/// and `# EOF` and `# UNIT` go.
pub fn to_classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|t| t.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                let _ = writeln!(out, "{prefix}{name}{suffix} {tail}");
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Whether an `Accept` header asks for OpenMetrics (Prometheus does).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}
