//! rvs's own DPDK telemetry commands, beside DPDK's (`/ethdev/stats`, ...): what
//! `dpdk-telemetry.py` (or any client of the `dpdk_telemetry.v2` socket in EAL's runtime
//! folder) shows of the director.
//!
//! | command          | answer                                                              |
//! |------------------|---------------------------------------------------------------------|
//! | `/rvs/services`  | services with their real servers, weights and connection counts     |
//! | `/rvs/stats`     | every counter of `rvsctl counters`, `.` in a name written `/`       |
//! | `/rvs/ports`     | every port: device, driver, MAC, link, MTU, device counters         |
//! | `/rvs/info`      | versions, file prefix, workers, connection table capacity and fill  |
//!
//! The callbacks run on DPDK's telemetry thread, never on a worker: they read the state the
//! control socket reads (the service manager under its mutex, which no worker takes; the
//! ports' counters, which DPDK lets any thread read) through [`STATE`], set once at start.
//!
//! DPDK 22.11's telemetry data puts limits on what a command answers: names of letters,
//! digits, `_` and `/` only (so a service is `TCP/198_51_100_1/80`, its address spelled out in
//! a value), 256 entries per dictionary, and 16 KiB of JSON per answer, past which DPDK leaves
//! entries out; `rvsadm -L` lists any number of services.

use crate::control_server::{all_counters, DeviceCounters, PortInfos};
use control::model::ServiceStatus;
use control::proto::{Request, Response, VersionInfo};
use dataplane::service::ServiceManager;
use dpdk_sys as sys;
use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// What the telemetry commands read.
pub struct TelemetryState {
    pub manager: Arc<Mutex<ServiceManager>>,
    pub device_counters: DeviceCounters,
    pub ports: PortInfos,
    pub version: VersionInfo,
    /// The worker lcores.
    pub workers: Vec<u32>,
}

static STATE: OnceLock<TelemetryState> = OnceLock::new();

/// What a command answers: the answer dictionary filled from the state.
type Fill = fn(&TelemetryState, &Dict);

/// The commands: name, answer, help (DPDK keeps under 64 bytes of help).
const COMMANDS: [(&str, Fill, &str); 4] = [
    (
        "/rvs/services",
        fill_services,
        "rvs services and real servers. No parameters",
    ),
    (
        "/rvs/stats",
        fill_stats,
        "rvs counters (rvsctl counters). No parameters",
    ),
    (
        "/rvs/ports",
        fill_ports,
        "rvs ports: device, link, counters. No parameters",
    ),
    (
        "/rvs/info",
        fill_info,
        "rvsd version, workers, table fill. No parameters",
    ),
];

/// Registers the `/rvs/...` commands, reading `state`. Once per process, after EAL init.
pub fn register(state: TelemetryState) -> Result<(), String> {
    STATE
        .set(state)
        .map_err(|_| "telemetry commands registered twice".to_string())?;
    for (name, _, help) in COMMANDS {
        let cname = CString::new(name).map_err(|e| e.to_string())?;
        let chelp = CString::new(help).map_err(|e| e.to_string())?;
        // SAFETY: valid C strings, which DPDK copies; a callback with DPDK's signature.
        let ret = unsafe {
            sys::rte_telemetry_register_cmd(cname.as_ptr(), Some(command), chelp.as_ptr())
        };
        if ret != 0 {
            return Err(format!(
                "cannot register telemetry command {name}: {}",
                super::errno_text(ret)
            ));
        }
    }
    Ok(())
}

/// A name DPDK accepts for a dictionary entry: `.` becomes `/`, anything else outside letters,
/// digits, `_` and `/` becomes `_`.
pub fn entry_name(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '.' => '/',
            c if c.is_ascii_alphanumeric() || c == '_' || c == '/' => c,
            _ => '_',
        })
        .collect()
}

/// A telemetry dictionary being filled. Entries DPDK refuses (full dictionary) are left out.
struct Dict(*mut sys::rte_tel_data);

impl Dict {
    /// Starts `d` as a dictionary.
    ///
    /// # Safety
    /// `d` is a telemetry data object DPDK handed to a callback, or one from
    /// `rte_tel_data_alloc`, not yet started.
    unsafe fn start(d: *mut sys::rte_tel_data) -> Dict {
        sys::rte_tel_data_start_dict(d);
        Dict(d)
    }

    fn u64(&self, name: &str, value: u64) {
        let name = c_name(name);
        // SAFETY: a started dictionary and a C string DPDK copies.
        unsafe { sys::rte_tel_data_add_dict_u64(self.0, name.as_ptr(), value) };
    }

    fn str(&self, name: &str, value: &str) {
        let name = c_name(name);
        let value = CString::new(value.replace('\0', "")).unwrap_or_default();
        // SAFETY: as above; DPDK copies (and cuts at 128 bytes) the value.
        unsafe { sys::rte_tel_data_add_dict_string(self.0, name.as_ptr(), value.as_ptr()) };
    }

    /// A dictionary under `name`, filled by `fill`; DPDK frees it after the answer is sent.
    fn dict(&self, name: &str, fill: impl FnOnce(&Dict)) {
        // SAFETY: plain allocation; null on failure.
        let child = unsafe { sys::rte_tel_data_alloc() };
        if child.is_null() {
            return;
        }
        // SAFETY: a fresh object from rte_tel_data_alloc.
        let inner = unsafe { Dict::start(child) };
        fill(&inner);
        let name = c_name(name);
        // SAFETY: a started dictionary and a filled child; keep = 0 hands the child to DPDK.
        let ret = unsafe { sys::rte_tel_data_add_dict_container(self.0, name.as_ptr(), child, 0) };
        if ret < 0 {
            // Refused (dictionary full): DPDK did not take it.
            // SAFETY: allocated above and not handed over.
            unsafe { sys::rte_tel_data_free(child) };
        }
    }
}

fn c_name(name: &str) -> CString {
    CString::new(entry_name(name)).unwrap_or_default()
}

/// Every `/rvs/...` command's callback: finds the command's [`Fill`] by name and runs it on
/// the answer dictionary. No state yet, an unknown command or a panic answer null rather than
/// unwinding into DPDK.
unsafe extern "C" fn command(
    cmd: *const c_char,
    _params: *const c_char,
    d: *mut sys::rte_tel_data,
) -> c_int {
    if cmd.is_null() || d.is_null() {
        return -1;
    }
    // SAFETY: DPDK passes the command as a NUL-terminated string.
    let cmd = unsafe { std::ffi::CStr::from_ptr(cmd) }.to_bytes();
    let Some((_, fill, _)) = COMMANDS.iter().find(|(name, _, _)| name.as_bytes() == cmd) else {
        return -1;
    };
    let Some(state) = STATE.get() else {
        return -1;
    };
    let ran = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: DPDK hands every callback a data object to fill.
        let dict = unsafe { Dict::start(d) };
        fill(state, &dict);
    }));
    if ran.is_err() {
        return -1;
    }
    0
}

/// The service manager's answer to `request`, under its lock (never held by a worker).
fn ask(state: &TelemetryState, request: Request) -> Response {
    state
        .manager
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .handle(request)
}

/// The entry name of a service: `TCP/198_51_100_1/80`.
pub fn service_entry(s: &ServiceStatus) -> String {
    let k = &s.spec.key;
    format!("{}/{}/{}", k.protocol.label(), address_name(k.addr), k.port)
}

/// An address as part of an entry name: `198_51_100_1`, `2001_db8__1` (telemetry names
/// take no dots or colons).
fn address_name(addr: std::net::IpAddr) -> String {
    addr.to_string().replace(['.', ':'], "_")
}

fn fill_services(state: &TelemetryState, d: &Dict) {
    let Response::Services { services, .. } = ask(state, Request::List { service: None }) else {
        return;
    };
    for s in &services {
        d.dict(&service_entry(s), |sd| {
            let k = &s.spec.key;
            sd.str("protocol", k.protocol.label());
            sd.str("address", &k.addr.to_string());
            sd.u64("port", u64::from(k.port));
            sd.str("scheduler", s.spec.scheduler.name());
            sd.u64("persistent", u64::from(s.spec.persistence.unwrap_or(0)));
            sd.u64("conns", s.stats.conns);
            sd.u64("in_pkts", s.stats.in_pkts);
            sd.u64("out_pkts", s.stats.out_pkts);
            sd.u64("in_bytes", s.stats.in_bytes);
            sd.u64("out_bytes", s.stats.out_bytes);
            sd.dict("real_servers", |rd| {
                for dest in &s.dests {
                    let spec = &dest.spec;
                    rd.dict(
                        &format!("{}/{}", address_name(spec.addr), spec.port),
                        |dd| {
                            dd.str("address", &spec.addr.to_string());
                            dd.u64("port", u64::from(spec.port));
                            dd.str("forward", spec.forward.label());
                            dd.u64("weight", u64::from(spec.weight));
                            dd.u64("active_conns", dest.active_conns);
                            dd.u64("inactive_conns", dest.inactive_conns);
                            dd.u64("conns", dest.stats.conns);
                            dd.u64("in_pkts", dest.stats.in_pkts);
                            dd.u64("out_pkts", dest.stats.out_pkts);
                        },
                    );
                }
            });
        });
    }
}

fn fill_stats(state: &TelemetryState, dict: &Dict) {
    let counters = match ask(state, Request::Counters) {
        Response::Counters(c) => c,
        _ => Vec::new(),
    };
    for (name, value) in all_counters(counters, &state.device_counters) {
        dict.u64(&name, value);
    }
}

fn fill_ports(state: &TelemetryState, dict: &Dict) {
    for p in (state.ports)(false) {
        dict.dict(&p.name, |pd| {
            pd.str("device", &p.device);
            pd.u64("port_id", u64::from(p.port_id));
            pd.str("driver", &p.driver);
            pd.str("mac", &p.mac.to_string());
            pd.str("link", if p.link_up { "up" } else { "down" });
            pd.u64("speed_mbps", u64::from(p.speed_mbps));
            pd.str("duplex", if p.full_duplex { "full" } else { "half" });
            pd.u64("mtu", u64::from(p.mtu));
            pd.u64("rx_packets", p.rx_packets);
            pd.u64("tx_packets", p.tx_packets);
            pd.u64("rx_bytes", p.rx_bytes);
            pd.u64("tx_bytes", p.tx_bytes);
            pd.u64("rx_missed", p.rx_missed);
            pd.u64("rx_errors", p.rx_errors);
            pd.u64("tx_errors", p.tx_errors);
            pd.u64("rx_nombuf", p.rx_nombuf);
        });
    }
}

fn fill_info(state: &TelemetryState, dict: &Dict) {
    let v = &state.version;
    dict.str("version", &v.rvsd);
    dict.str("dpdk", &v.dpdk);
    dict.str("file_prefix", &v.file_prefix);
    dict.str("runtime_dir", &v.runtime_dir);
    dict.u64("workers", state.workers.len() as u64);
    dict.str(
        "worker_lcores",
        &state
            .workers
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    if let Response::Counters(c) = ask(state, Request::Counters) {
        for (name, value) in c {
            if let Some(what) = name.strip_prefix("conntrack.") {
                dict.u64(&format!("conntrack_{what}"), value);
            } else if let Some(what) = name.strip_prefix("conntrack6.") {
                dict.u64(&format!("conntrack6_{what}"), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_keep_to_dpdks_alphabet() {
        assert_eq!(entry_name("port.ext.hw_rx_missed"), "port/ext/hw_rx_missed");
        assert_eq!(entry_name("drop.no_route"), "drop/no_route");
        assert_eq!(entry_name("TCP/198.51.100.1/80"), "TCP/198/51/100/1/80");
        assert_eq!(entry_name("int-2 x:y"), "int_2_x_y");
    }
}
