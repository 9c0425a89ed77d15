//! EAL start-up and lcore queries.

use super::{last_error, DpdkError};
use std::ffi::CString;
use std::os::raw::c_char;

/// Starts EAL with `args` (without the program name), its log routed through tracing. EAL can
/// start once per process.
pub fn init(args: &[String]) -> Result<(), DpdkError> {
    super::eal_log::install().map_err(DpdkError::Eal)?;
    let mut owned: Vec<CString> = Vec::with_capacity(args.len() + 1);
    owned.push(CString::new("rvsd").unwrap());
    for a in args {
        owned.push(
            CString::new(a.as_str())
                .map_err(|_| DpdkError::Eal(format!("argument {a:?} contains a NUL byte")))?,
        );
    }
    // EAL may permute argv, so hand it a copy of the pointers; the strings outlive the call and
    // are leaked on purpose because EAL keeps pointers into them (e.g. for --file-prefix).
    let mut argv: Vec<*mut c_char> = owned.iter().map(|s| s.as_ptr() as *mut c_char).collect();
    std::mem::forget(owned);
    // SAFETY: argv holds argc valid NUL-terminated strings that are never freed.
    let ret = unsafe { dpdk_sys::rte_eal_init(argv.len() as i32, argv.as_mut_ptr()) };
    std::mem::forget(argv);
    if ret < 0 {
        return Err(DpdkError::Eal(last_error()));
    }
    Ok(())
}

/// Releases EAL resources (hugepage files, vdevs) at exit.
pub fn cleanup() {
    // SAFETY: called once, after every worker has returned.
    unsafe {
        dpdk_sys::rte_eal_cleanup();
    }
}

pub fn main_lcore() -> u32 {
    // SAFETY: plain query after EAL init.
    unsafe { dpdk_sys::rte_get_main_lcore() }
}

/// Every lcore EAL enabled, main lcore included, in ascending order.
pub fn enabled_lcores() -> Vec<u32> {
    (0..dpdk_sys::RTE_MAX_LCORE)
        // SAFETY: plain query after EAL init.
        .filter(|&l| unsafe { dpdk_sys::rte_lcore_is_enabled(l) } != 0)
        .collect()
}

pub fn lcore_socket(lcore: u32) -> i32 {
    // SAFETY: plain query after EAL init.
    unsafe { dpdk_sys::rte_lcore_to_socket_id(lcore) as i32 }
}

/// TSC ticks per second, for the workers' millisecond clock.
pub fn tsc_hz() -> u64 {
    // SAFETY: plain query after EAL init.
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}

/// The time stamp counter, as `rte_get_tsc_cycles` reads it. On x86_64 that is one `rdtsc`,
/// done here: DPDK's function is inline C, which the workers could only reach through an
/// out-of-line wrapper, a call per loop. (DPDK reads it with `rdpmc` instead only when built
/// with VMware's TSC map support and run with `--vmware-tsc-map`; Debian's build has no such
/// option.)
#[inline]
pub fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions; every x86_64 CPU has it.
        unsafe { std::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: reads the time stamp counter.
        unsafe { dpdk_sys::rte_get_tsc_cycles() }
    }
}

/// What EAL was asked for, as far as the advice below needs it.
#[derive(Debug, Default)]
struct EalArgs {
    no_huge: bool,
    in_memory: bool,
    no_pci: bool,
    huge_dir: Option<String>,
    /// `-l` as a list, or `-c` as a mask; `--lcores` maps lcore ids to CPUs and is not read.
    lcores: Vec<u32>,
    lcore_arg: Option<String>,
    /// `-a`/`--allow`, devargs stripped.
    allowed: Vec<String>,
    /// `--vdev` names, devargs stripped.
    vdevs: Vec<String>,
}

impl EalArgs {
    fn parse(args: &[String]) -> EalArgs {
        let mut out = EalArgs::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            // "--opt=value", "--opt value", "-xvalue" and "-x value".
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) if a.starts_with("--") => (n, Some(v.to_string())),
                _ if !a.starts_with("--") && a.len() > 2 => (&a[..2], Some(a[2..].to_string())),
                _ => (a.as_str(), None),
            };
            let mut value = || inline.clone().or_else(|| it.next().cloned());
            match name {
                "--no-huge" => out.no_huge = true,
                "--in-memory" => out.in_memory = true,
                "--no-pci" => out.no_pci = true,
                "--huge-dir" => out.huge_dir = value(),
                "-l" => {
                    if let Some(v) = value() {
                        out.lcores = parse_cpu_list(&v);
                        out.lcore_arg = Some(format!("-l {v}"));
                    }
                }
                "-c" => {
                    if let Some(v) = value() {
                        let mask =
                            u128::from_str_radix(v.trim_start_matches("0x"), 16).unwrap_or(0);
                        out.lcores = (0..128).filter(|b| mask >> b & 1 == 1).collect();
                        out.lcore_arg = Some(format!("-c {v}"));
                    }
                }
                "-a" | "--allow" => out.allowed.extend(value().map(|v| devargs_name(&v))),
                "--vdev" => out.vdevs.extend(value().map(|v| devargs_name(&v))),
                _ => {}
            }
        }
        out
    }
}

fn devargs_name(devargs: &str) -> String {
    devargs.split(',').next().unwrap_or_default().to_string()
}

/// A CPU list as the kernel and EAL's `-l` write it: "0-3,8".
fn parse_cpu_list(list: &str) -> Vec<u32> {
    let mut cpus = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(lo), Ok(hi)) = (lo.trim().parse::<u32>(), hi.trim().parse::<u32>()) {
            cpus.extend(lo..=hi);
        }
    }
    cpus
}

/// "2-5,7" for [2, 3, 4, 5, 7].
fn cpu_list_text(cpus: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// The machine state the advice reads: /proc/meminfo, /proc/mounts, the online CPUs, and a
/// PCI device's driver.
struct Host {
    meminfo: String,
    mounts: String,
    cpus: Vec<u32>,
    pci_device: Box<dyn Fn(&str) -> PciDevice>,
}

/// A PCI address as sysfs sees it.
enum PciDevice {
    Absent,
    NoDriver,
    Driver(String),
}

impl Host {
    fn this_machine() -> Host {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Host {
            meminfo: read("/proc/meminfo"),
            mounts: read("/proc/mounts"),
            cpus: parse_cpu_list(&read("/sys/devices/system/cpu/online")),
            pci_device: Box::new(|addr| {
                let dev = std::path::Path::new("/sys/bus/pci/devices").join(addr);
                if !dev.exists() {
                    return PciDevice::Absent;
                }
                match std::fs::read_link(dev.join("driver")) {
                    Ok(d) => PciDevice::Driver(
                        d.file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    ),
                    Err(_) => PciDevice::NoDriver,
                }
            }),
        }
    }

    fn meminfo(&self, key: &str) -> Option<u64> {
        self.meminfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k == key).then(|| v.split_whitespace().next()?.parse().ok())?
        })
    }

    fn hugetlbfs_mounts(&self) -> Vec<&str> {
        self.mounts
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&"hugetlbfs")).then(|| f[1])
            })
            .collect()
    }
}

const NO_HUGEPAGES: &str = "no hugepages: run scripts/setup.sh or reserve them (echo 1024 > \
    /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages; mount -t hugetlbfs nodev \
    /dev/hugepages), or run with --no-huge for a test";

/// Drivers through which DPDK drives a PCI NIC (mlx5 and mlx4 keep their kernel driver).
const DPDK_DRIVERS: [&str; 5] = [
    "vfio-pci",
    "uio_pci_generic",
    "igb_uio",
    "mlx5_core",
    "mlx4_core",
];

/// After `rte_eal_init` refused `args`: one line saying what to do, where the arguments or the
/// machine show the cause; None where EAL's own message is all there is.
pub fn init_advice(args: &[String]) -> Option<String> {
    advise_init(&EalArgs::parse(args), &Host::this_machine())
}

/// After a port's device could not be found or started: what to do about `device`.
pub fn device_advice(device: &str, args: &[String]) -> Option<String> {
    advise_device(device, &EalArgs::parse(args), &Host::this_machine())
}

fn advise_init(args: &EalArgs, host: &Host) -> Option<String> {
    if args.no_huge && args.in_memory {
        return Some(
            "--no-huge and --in-memory do not go together in EAL: drop --in-memory (without \
             hugepages no files are left behind anyway), or drop --no-huge to run on hugepages"
                .into(),
        );
    }
    let missing: Vec<u32> = args
        .lcores
        .iter()
        .copied()
        .filter(|l| !host.cpus.contains(l))
        .collect();
    if let (false, Some(arg)) = (missing.is_empty(), &args.lcore_arg) {
        return Some(format!(
            "{arg} names lcores {} that this machine does not have (its CPUs: {}): give [eal] \
             args an -l within those, and workers.lcores within -l",
            cpu_list_text(&missing),
            cpu_list_text(&host.cpus)
        ));
    }
    if !args.no_huge {
        if host.meminfo("HugePages_Total") == Some(0) {
            return Some(NO_HUGEPAGES.into());
        }
        let mounts = host.hugetlbfs_mounts();
        match &args.huge_dir {
            Some(dir) if !mounts.contains(&dir.trim_end_matches('/')) => {
                return Some(format!(
                    "--huge-dir {dir} is not a hugetlbfs mount: mount one there (mkdir -p {dir}; \
                     mount -t hugetlbfs nodev {dir}), or drop --huge-dir to use /dev/hugepages"
                ));
            }
            None if mounts.is_empty() => return Some(NO_HUGEPAGES.into()),
            _ => {}
        }
    }
    args.allowed
        .iter()
        .find_map(|d| advise_device(d, args, host))
}

/// A PCI address in EAL's forms, "0000:03:00.0" or "03:00.0", as sysfs names it.
fn pci_address(device: &str) -> Option<String> {
    let full = if device.matches(':').count() == 1 {
        format!("0000:{device}")
    } else {
        device.to_string()
    };
    let ok = full.len() == 12
        && full.char_indices().all(|(i, c)| match i {
            4 | 7 => c == ':',
            10 => c == '.',
            _ => c.is_ascii_hexdigit(),
        });
    ok.then(|| full.to_ascii_lowercase())
}

fn advise_device(device: &str, args: &EalArgs, host: &Host) -> Option<String> {
    let Some(addr) = pci_address(device) else {
        if args.vdevs.iter().any(|v| v == device) {
            return None;
        }
        return Some(format!(
            "{device} is not a PCI address and no --vdev creates it: \
             add --vdev={device}[,options] to [eal] args"
        ));
    };
    let bind =
        format!("bind it to a DPDK driver: modprobe vfio-pci; dpdk-devbind.py -b vfio-pci {addr}");
    let allowed = args.allowed.is_empty()
        || args
            .allowed
            .iter()
            .any(|a| pci_address(a).as_deref() == Some(addr.as_str()));
    match (host.pci_device)(&addr) {
        PciDevice::Absent => Some(format!(
            "there is no PCI device {addr} on this machine: \
             `dpdk-devbind.py --status` lists the NICs and their addresses"
        )),
        PciDevice::NoDriver => Some(format!("{addr} has no driver: {bind}")),
        PciDevice::Driver(driver) if !DPDK_DRIVERS.contains(&driver.as_str()) => Some(format!(
            "{addr} is bound to the kernel driver {driver}, which DPDK cannot use: \
             take its interface down and {bind}"
        )),
        PciDevice::Driver(_) if args.no_pci => Some(format!(
            "--no-pci keeps EAL off {addr}: drop it from [eal] args"
        )),
        PciDevice::Driver(_) if !allowed => Some(format!(
            "{addr} is not among the -a devices: add -a {addr} to [eal] args"
        )),
        PciDevice::Driver(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(meminfo: &str, mounts: &str, cpus: &str) -> Host {
        Host {
            meminfo: meminfo.into(),
            mounts: mounts.into(),
            cpus: parse_cpu_list(cpus),
            pci_device: Box::new(|addr| match addr {
                "0000:03:00.0" => PciDevice::Driver("vfio-pci".into()),
                "0000:03:00.1" => PciDevice::Driver("ixgbe".into()),
                "0000:03:00.2" => PciDevice::NoDriver,
                _ => PciDevice::Absent,
            }),
        }
    }

    const MEM: &str = "MemTotal: 1000 kB\nHugePages_Total:    1024\nHugePages_Free:  1024\n";
    const MOUNTS: &str =
        "proc /proc proc rw 0 0\nnodev /dev/hugepages hugetlbfs rw,pagesize=2M 0 0\n";

    fn advice(args: &str, host: &Host) -> Option<String> {
        let args: Vec<String> = args.split_whitespace().map(String::from).collect();
        advise_init(&EalArgs::parse(&args), host)
    }

    #[test]
    fn a_healthy_machine_gets_no_advice() {
        let h = host(MEM, MOUNTS, "0-1");
        assert_eq!(advice("-l 0-1 --file-prefix rvs -a 0000:03:00.0", &h), None);
        assert_eq!(advice("-l0 --huge-dir=/dev/hugepages/", &h), None);
    }

    #[test]
    fn each_cause_gets_its_line() {
        let h = host(MEM, MOUNTS, "0-1");
        let a = advice("--no-huge -m 256 --in-memory", &h).unwrap();
        assert!(a.contains("--no-huge and --in-memory"), "{a}");
        let a = advice("-l 0-63", &h).unwrap();
        assert!(
            a.contains("-l 0-63 names lcores 2-63") && a.contains("CPUs: 0-1"),
            "{a}"
        );
        let a = advice("-c 0x5", &h).unwrap();
        assert!(a.contains("lcores 2 ") && a.contains("-c 0x5"), "{a}");
        let a = advice("--huge-dir /nonexistent", &h).unwrap();
        assert!(
            a.contains("--huge-dir /nonexistent is not a hugetlbfs mount"),
            "{a}"
        );
        assert_eq!(advice("--huge-dir /nonexistent --no-huge", &h), None);
        let a = advice("-l 0", &host(MEM, "proc /proc proc rw 0 0\n", "0-1")).unwrap();
        assert!(a.starts_with("no hugepages:"), "{a}");
        let a = advice("-l 0", &host("HugePages_Total: 0\n", MOUNTS, "0-1")).unwrap();
        assert!(a.starts_with("no hugepages:"), "{a}");
        let a = advice("-a 0000:99:00.0", &h).unwrap();
        assert!(a.contains("no PCI device 0000:99:00.0"), "{a}");
        let a = advice("-a 03:00.1", &h).unwrap();
        assert!(
            a.contains("kernel driver ixgbe") && a.contains("-b vfio-pci 0000:03:00.1"),
            "{a}"
        );
    }

    #[test]
    fn a_port_device_is_checked_against_the_machine_and_the_args() {
        let h = host(MEM, MOUNTS, "0-1");
        let dev = |d: &str, args: &str| {
            let args: Vec<String> = args.split_whitespace().map(String::from).collect();
            advise_device(d, &EalArgs::parse(&args), &h)
        };
        assert_eq!(dev("0000:03:00.0", "-a 0000:03:00.0"), None);
        assert_eq!(dev("0000:03:00.0", ""), None);
        assert!(dev("0000:03:00.0", "-a 0000:03:00.3")
            .unwrap()
            .contains("add -a 0000:03:00.0"));
        assert!(dev("0000:03:00.0", "--no-pci")
            .unwrap()
            .contains("--no-pci"));
        assert!(dev("0000:03:00.2", "").unwrap().contains("has no driver"));
        assert!(dev("0000:99:00.0", "").unwrap().contains("no PCI device"));
        assert_eq!(dev("net_null0", "--vdev=net_null0,size=64"), None);
        assert!(dev("net_null1", "--vdev net_null0")
            .unwrap()
            .contains("--vdev=net_null1"));
    }
}
