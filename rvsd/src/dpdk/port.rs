//! Port set-up: one RX and one TX queue per worker, one mempool per port, RSS across the queues.

use super::{errno_text, DpdkError};
use control::config::{MacAddr, PortConfig};
use control::proto::PortInfo;
use dpdk_sys as sys;
use std::ffi::{CStr, CString};

/// RSS hash types rvs asks for: IPv4 addresses and TCP/UDP ports (rte_ethdev.h's RTE_ETH_RSS_*
/// bits, which are macros bindgen cannot see). Whatever the port supports of these is used.
const RSS_IPV4_L3_L4: u64 = (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 7);

/// A started DPDK port.
pub struct Port {
    pub name: String,
    /// The DPDK device name (rvs.toml's `device`).
    pub device: String,
    /// The DPDK port id.
    pub id: u16,
    pub mac: [u8; 6],
    /// The mempool RX fills and rvs allocates generated packets (ARP requests) from.
    pub pool: *mut sys::rte_mempool,
    pub driver: String,
}

// SAFETY: the mempool pointer is DPDK's thread-safe pool; Port holds no thread-bound state.
unsafe impl Send for Port {}
unsafe impl Sync for Port {}

impl Port {
    /// Finds the device by name, configures `queues` RX/TX queue pairs and starts it.
    pub fn start(cfg: &PortConfig, queues: u16, mbufs: u32) -> Result<Port, DpdkError> {
        let err = |message: String| DpdkError::Port {
            name: cfg.name.clone(),
            message,
        };
        let dev = CString::new(cfg.device.as_str()).map_err(|_| err("bad device name".into()))?;
        let mut id = 0u16;
        // SAFETY: valid C string and out pointer.
        if unsafe { sys::rte_eth_dev_get_port_by_name(dev.as_ptr(), &mut id) } != 0 {
            return Err(err(format!(
                "no DPDK device named {:?} (check the --vdev/-a arguments in [eal] args and that \
                 the NIC is bound to a DPDK driver)",
                cfg.device
            )));
        }

        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: valid port id and out pointer.
        let ret = unsafe { sys::rte_eth_dev_info_get(id, &mut info) };
        if ret != 0 {
            return Err(err(format!("rte_eth_dev_info_get: {}", errno_text(ret))));
        }
        let driver = if info.driver_name.is_null() {
            String::from("?")
        } else {
            // SAFETY: DPDK's static driver name string.
            unsafe { std::ffi::CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        if queues > info.max_rx_queues || queues > info.max_tx_queues {
            return Err(err(format!(
                "{queues} workers need {queues} RX and TX queues, {driver} offers {} RX / {} TX \
                 (for net_af_packet set qpairs={queues} in its --vdev)",
                info.max_rx_queues, info.max_tx_queues
            )));
        }

        let mut conf = sys::rte_eth_conf::default();
        let rss = info.flow_type_rss_offloads & RSS_IPV4_L3_L4;
        if queues > 1 && rss != 0 {
            conf.rxmode.mq_mode = sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = rss;
        }
        // SAFETY: valid port id and configuration.
        let ret = unsafe { sys::rte_eth_dev_configure(id, queues, queues, &conf) };
        if ret != 0 {
            return Err(err(format!("rte_eth_dev_configure: {}", errno_text(ret))));
        }
        let (mut nrx, mut ntx) = (cfg.rx_ring, cfg.tx_ring);
        // SAFETY: valid port id and out pointers.
        unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut nrx, &mut ntx) };

        // SAFETY: valid port id.
        let socket = unsafe { sys::rte_eth_dev_socket_id(id) };
        let socket = if socket < 0 { 0 } else { socket };
        let pool_name = CString::new(format!("rvs_pool_{id}")).unwrap();
        // SAFETY: valid arguments; DPDK copies the name.
        let pool = unsafe {
            sys::rte_pktmbuf_pool_create(
                pool_name.as_ptr(),
                mbufs,
                256,
                0,
                sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
                socket,
            )
        };
        if pool.is_null() {
            return Err(err(format!(
                "cannot create a mempool of {mbufs} mbufs: {} (reserve more hugepages or lower \
                 workers.mbufs_per_port)",
                super::last_error()
            )));
        }

        for q in 0..queues {
            // SAFETY: valid port, queue index below the configured count, live mempool.
            let ret = unsafe {
                sys::rte_eth_rx_queue_setup(id, q, nrx, socket as u32, std::ptr::null(), pool)
            };
            if ret != 0 {
                return Err(err(format!("rx queue {q}: {}", errno_text(ret))));
            }
            // SAFETY: as above.
            let ret =
                unsafe { sys::rte_eth_tx_queue_setup(id, q, ntx, socket as u32, std::ptr::null()) };
            if ret != 0 {
                return Err(err(format!("tx queue {q}: {}", errno_text(ret))));
            }
        }

        // Not every vdev can change its MTU (af_packet follows the kernel interface): keep going.
        // SAFETY: valid port id.
        let ret = unsafe { sys::rte_eth_dev_set_mtu(id, cfg.mtu) };
        if ret != 0 {
            tracing::warn!(port = %cfg.name, mtu = cfg.mtu, "cannot set MTU: {}", errno_text(ret));
        }
        // SAFETY: valid, configured port.
        let ret = unsafe { sys::rte_eth_dev_start(id) };
        if ret != 0 {
            return Err(err(format!("rte_eth_dev_start: {}", errno_text(ret))));
        }
        let mut hw = sys::rte_ether_addr::default();
        // SAFETY: valid port id and out pointer.
        unsafe { sys::rte_eth_macaddr_get(id, &mut hw) };
        let mut mac = hw.addr_bytes;
        if let Some(configured) = cfg.mac {
            mac = configured.0;
            let mut addr = sys::rte_ether_addr { addr_bytes: mac };
            // SAFETY: valid port id and address.
            let ret = unsafe { sys::rte_eth_dev_default_mac_addr_set(id, &mut addr) };
            if ret != 0 {
                // The device cannot take the address (net_pcap, for one): rvs still uses it in
                // the frames it writes, and promiscuous mode lets frames to it in.
                tracing::warn!(port = %cfg.name, "cannot set MAC {configured} on the device ({}); \
                               using it in software with promiscuous mode", errno_text(ret));
                // SAFETY: valid, started port.
                unsafe { sys::rte_eth_promiscuous_enable(id) };
            }
        }
        Ok(Port {
            name: cfg.name.clone(),
            device: cfg.device.clone(),
            id,
            mac,
            pool,
            driver,
        })
    }

    /// The NIC's own counters (`rte_eth_stats`) as `(name, value)` pairs named after the port:
    /// what the device received and sent, and what it lost before or after rvsd (`imissed`:
    /// frames the receive ring had no room for; `rx_nombuf`: no mbuf to receive into;
    /// `ierrors`/`oerrors`: bad frames and failed sends). None when the driver keeps none.
    pub fn hw_counters(&self) -> Option<Vec<(String, u64)>> {
        let mut st = sys::rte_eth_stats::default();
        // SAFETY: valid port id and out pointer; rte_eth_stats_get is safe from any thread.
        if unsafe { sys::rte_eth_stats_get(self.id, &mut st) } != 0 {
            return None;
        }
        let name = &self.name;
        Some(
            [
                ("hw_rx_packets", st.ipackets),
                ("hw_tx_packets", st.opackets),
                ("hw_rx_bytes", st.ibytes),
                ("hw_tx_bytes", st.obytes),
                ("hw_rx_missed", st.imissed),
                ("hw_rx_errors", st.ierrors),
                ("hw_tx_errors", st.oerrors),
                ("hw_rx_nombuf", st.rx_nombuf),
            ]
            .into_iter()
            .map(|(what, v)| (format!("port.{name}.{what}"), v))
            .collect(),
        )
    }

    /// The port as `rvsctl ports`, `/rvs/ports` and `rvsctl capture` show it: device, link,
    /// MTU and the device's counters; with `xstats`, the driver's extended counters too. Only
    /// DPDK calls that are safe beside the workers (no `_wait` link query: it may sleep).
    pub fn info(&self, xstats: bool) -> PortInfo {
        let mut link = sys::rte_eth_link::default();
        // SAFETY: valid port id and out pointer; the nowait query never blocks.
        let link_ok = unsafe { sys::rte_eth_link_get_nowait(self.id, &mut link) } == 0;
        let mut mtu = 0u16;
        // SAFETY: valid port id and out pointer.
        if unsafe { sys::rte_eth_dev_get_mtu(self.id, &mut mtu) } != 0 {
            mtu = 0;
        }
        let mut st = sys::rte_eth_stats::default();
        // SAFETY: valid port id and out pointer; rte_eth_stats_get is safe from any thread.
        if unsafe { sys::rte_eth_stats_get(self.id, &mut st) } != 0 {
            st = sys::rte_eth_stats::default();
        }
        let speed = link.link_speed;
        PortInfo {
            name: self.name.clone(),
            device: self.device.clone(),
            port_id: self.id,
            driver: self.driver.clone(),
            mac: MacAddr(self.mac),
            link_up: link_ok && u32::from(link.link_status()) == sys::RTE_ETH_LINK_UP,
            // RTE_ETH_SPEED_NUM_UNKNOWN is u32::MAX.
            speed_mbps: if link_ok && speed != u32::MAX {
                speed
            } else {
                0
            },
            full_duplex: link_ok && u32::from(link.link_duplex()) == sys::RTE_ETH_LINK_FULL_DUPLEX,
            mtu,
            rx_packets: st.ipackets,
            tx_packets: st.opackets,
            rx_bytes: st.ibytes,
            tx_bytes: st.obytes,
            rx_missed: st.imissed,
            rx_errors: st.ierrors,
            tx_errors: st.oerrors,
            rx_nombuf: st.rx_nombuf,
            xstats: if xstats { self.xstats() } else { Vec::new() },
        }
    }

    /// The driver's extended counters (`rte_eth_xstats_get`) by name; empty when it has none.
    fn xstats(&self) -> Vec<(String, u64)> {
        // SAFETY: a null array with size 0 asks for the count only.
        let n = unsafe { sys::rte_eth_xstats_get_names(self.id, std::ptr::null_mut(), 0) };
        let Ok(n) = usize::try_from(n) else {
            return Vec::new();
        };
        if n == 0 {
            return Vec::new();
        }
        let mut names = vec![sys::rte_eth_xstat_name::default(); n];
        let mut values = vec![sys::rte_eth_xstat::default(); n];
        // SAFETY: both arrays hold n entries, the size passed.
        let got_names =
            unsafe { sys::rte_eth_xstats_get_names(self.id, names.as_mut_ptr(), n as u32) };
        // SAFETY: as above.
        let got = unsafe { sys::rte_eth_xstats_get(self.id, values.as_mut_ptr(), n as u32) };
        // A count that changed between the calls (a driver adding queues): report nothing
        // rather than mismatched names.
        if usize::try_from(got_names) != Ok(n) || usize::try_from(got) != Ok(n) {
            return Vec::new();
        }
        values
            .iter()
            .filter_map(|v| {
                let name = names.get(usize::try_from(v.id).ok()?)?;
                // SAFETY: DPDK writes NUL-terminated names into the fixed-size array.
                let name = unsafe { CStr::from_ptr(name.name.as_ptr()) };
                Some((name.to_string_lossy().into_owned(), v.value))
            })
            .collect()
    }

    /// Stops and closes the port (at shutdown, after the workers are gone).
    pub fn stop(&self) {
        // SAFETY: valid port id; no worker uses the port any more.
        unsafe {
            sys::rte_eth_dev_stop(self.id);
            sys::rte_eth_dev_close(self.id);
        }
    }
}
