//! rvsd: the rvs daemon. Reads rvs.toml, starts EAL, ports and one poll-mode worker per worker
//! lcore, and serves the control socket until SIGINT or SIGTERM; SIGHUP reloads rvs.toml.

use clap::Parser;
use control::config::{Config, LogConfig, LogFormat, MacAddr, DEFAULT_CONFIG};
use dataplane::pipeline::{Dataplane, DataplaneConfig, PortSetup, VirtualAddrs};
use dataplane::service::ServiceManager;
use rvsd::control_server::{self, ControlServer};
use rvsd::dpdk::{capture, eal, exception, port::Port, telemetry, worker};
use rvsd::metrics::{MetricsListener, Sources};
use rvsd::reload::{self, Reloader};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

// Shared with the rvsd-docs generator (man page and completions), which needs the parser only.
#[path = "args.rs"]
mod args;
use args::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rvsd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where rvsd looks for its configuration when given neither `--config` nor `--lab-config`.
const DEFAULT_CONFIG_PATH: &str = "/etc/rvs/rvs.toml";

fn load_config(args: &Args) -> Result<Config, String> {
    let mut cfg = match &args.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None if args.lab_config => {
            Config::parse(DEFAULT_CONFIG, "embedded lab config").map_err(|e| e.to_string())?
        }
        None => {
            let path = std::path::Path::new(DEFAULT_CONFIG_PATH);
            if !path.exists() {
                return Err(format!(
                    "{DEFAULT_CONFIG_PATH} does not exist: write one (README.md, \
                     \"Running rvsd on real NICs\", shows how), name another with --config FILE, or run the lab's \
                     embedded configuration with --lab-config"
                ));
            }
            Config::load(path).map_err(|e| e.to_string())?
        }
    };
    if let Some(s) = &args.socket {
        cfg.control.socket = s.clone();
    }
    if let Some(extra) = &args.eal_args {
        cfg.eal
            .args
            .extend(extra.split_whitespace().map(str::to_owned));
    }
    Ok(cfg)
}

/// Tells systemd (Type=notify) about a state change: one datagram to `$NOTIFY_SOCKET`, a path
/// or, with a leading '@', an abstract name. Without the variable (not under systemd) nothing.
fn sd_notify(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = target.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(&target),
    };
    let sent = addr.and_then(|addr| UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr));
    if let Err(e) = sent {
        tracing::warn!("cannot notify systemd ({state}) at {target:?}: {e}");
    }
}

/// Where the configuration came from, for error messages.
fn config_origin(args: &Args) -> String {
    match &args.config {
        Some(path) => path.display().to_string(),
        None if args.lab_config => "embedded lab config".into(),
        None => DEFAULT_CONFIG_PATH.into(),
    }
}

/// Logs to stderr: `RVS_LOG` over `[log] level` (default info), `RVS_LOG_FORMAT` over
/// `[log] format`; text is coloured only on a terminal, so a log file or journal gets none.
fn init_logging(log: &LogConfig, origin: &str) -> Result<(), String> {
    let env = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    let (level, key) = match env("RVS_LOG") {
        Some(v) => (v, "RVS_LOG".to_string()),
        None => (
            log.level.clone().unwrap_or_else(|| "info".into()),
            format!("{origin}: log.level"),
        ),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .map_err(|e| format!("{key}: bad log level {level:?}: {e}"))?;
    let format = match env("RVS_LOG_FORMAT") {
        Some(v) => v
            .parse::<LogFormat>()
            .map_err(|e| format!("RVS_LOG_FORMAT: {e}"))?,
        None => log.format,
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// `error`, then a last line saying what to do where rvsd can tell.
fn with_advice(error: String, advice: Option<String>) -> String {
    match advice {
        Some(advice) => format!("{error}\nrvsd: {advice}"),
        None => error,
    }
}

fn run(args: Args) -> Result<(), String> {
    let cfg = load_config(&args)?;
    init_logging(&cfg.log, &config_origin(&args))?;
    if args.check {
        println!("configuration OK");
        return Ok(());
    }

    // SAFETY: the handlers only store to an atomic, which is async-signal-safe.
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        unsafe {
            signal_hook::low_level::register(sig, || {
                worker::RUNNING.store(false, Ordering::Relaxed)
            })
        }
        .map_err(|e| format!("cannot install a signal handler: {e}"))?;
    }
    // SIGHUP reloads (see rvsd::reload); installed before EAL starts so that an early one
    // never takes the default action, which ends the process.
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        signal_hook::low_level::register(signal_hook::consts::SIGHUP, || {
            reload::REQUESTED.store(true, Ordering::Relaxed)
        })
    }
    .map_err(|e| format!("cannot install a signal handler: {e}"))?;

    // The control socket is this daemon's single-instance lock: taken before EAL touches a
    // device, so a second rvsd refuses without grabbing the ports of the one that runs.
    let server = ControlServer::bind(std::path::Path::new(&cfg.control.socket))
        .map_err(|e| format!("control socket {}: {e}", cfg.control.socket))?;
    // Bound here too, so an address in use stops start-up before EAL takes the ports.
    let metrics = match &cfg.metrics {
        Some(m) => MetricsListener::bind(m)?,
        None => None,
    };

    eal::init(&cfg.eal.args)
        .map_err(|e| with_advice(e.to_string(), eal::init_advice(&cfg.eal.args)))?;
    capture::init()?;
    let main_lcore = eal::main_lcore();
    let enabled = eal::enabled_lcores();
    let lcores: Vec<u32> = if cfg.workers.lcores.is_empty() {
        let others: Vec<u32> = enabled
            .iter()
            .copied()
            .filter(|&l| l != main_lcore)
            .collect();
        if others.is_empty() {
            vec![main_lcore]
        } else {
            others
        }
    } else {
        cfg.workers.lcores.clone()
    };
    if let Some(bad) = lcores.iter().find(|l| !enabled.contains(l)) {
        return Err(format!(
            "workers.lcores: lcore {bad} is not enabled in EAL (EAL has {enabled:?}; see -l in [eal] args)"
        ));
    }

    let queues = lcores.len() as u16;
    let mut ports = Vec::with_capacity(cfg.ports.len());
    for p in &cfg.ports {
        let port = Port::start(p, queues, cfg.workers.mbufs_per_port).map_err(|e| {
            with_advice(e.to_string(), eal::device_advice(&p.device, &cfg.eal.args))
        })?;
        tracing::info!(
            port = %port.name, id = port.id, driver = %port.driver,
            mac = %MacAddr(port.mac), "port started"
        );
        ports.push(port);
    }
    let ports = Arc::new(ports);
    let macs: Vec<[u8; 6]> = ports.iter().map(|p| p.mac).collect();
    let exception = exception::ExceptionPath::start(&cfg, &macs, lcores.len())?;

    let setups = cfg
        .ports
        .iter()
        .zip(ports.iter())
        .map(|(pc, p)| PortSetup {
            name: pc.name.clone(),
            mac: p.mac,
            role: pc.role,
            addrs: pc.addresses.clone(),
            gateway: pc.gateway,
            addrs6: pc
                .ipv6_addresses()
                .iter()
                .map(|c| (c.addr, c.prefix_len))
                .collect(),
            gateway6: pc.gateway6,
            mtu: pc.mtu,
        })
        .collect();
    let dataplane = Dataplane::with_kernel_path(
        DataplaneConfig {
            ports: setups,
            conn_capacity: cfg.conntrack.capacity as usize,
            timeouts: cfg.conntrack.timeouts.unwrap_or_default(),
            workers: lcores.len(),
        },
        exception::kernel_path(&cfg),
    );
    log_tables(&dataplane);

    let sync = rvsd::sync::SyncDaemon::start(&cfg, dataplane.clone())?;
    let mut manager = ServiceManager::new(dataplane.clone());
    reload::apply_config(&mut manager, &cfg)?;
    let manager = Arc::new(Mutex::new(manager));
    let loader_args = args.clone();
    let reloader = Reloader::new(
        Box::new(move || load_config(&loader_args)),
        manager.clone(),
        cfg.clone(),
    );

    let port_list = ports.clone();
    let exception_counters = exception.counters_fn();
    let device_counters: control_server::DeviceCounters = Arc::new(move || {
        let mut c: Vec<_> = port_list
            .iter()
            .filter_map(Port::hw_counters)
            .flatten()
            .collect();
        c.extend(exception_counters());
        c
    });
    let port_list = ports.clone();
    let port_info: control_server::PortInfos =
        Arc::new(move |xstats| port_list.iter().map(|p| p.info(xstats)).collect());
    let version = capture::version_info(&cfg.eal.args);
    telemetry::register(telemetry::TelemetryState {
        manager: manager.clone(),
        device_counters: device_counters.clone(),
        ports: port_info.clone(),
        version: version.clone(),
        workers: lcores.clone(),
    })?;
    let server = server
        .with_device_counters(device_counters.clone())
        .with_port_info(port_info)
        .with_version(version.clone())
        .with_sync(sync.clone())
        .with_reload(control_server::Reload {
            requested: &reload::REQUESTED,
            run: Arc::new(move |trigger| reloader.reload(trigger)),
        })
        .with_virtual_addrs(
            control_server::VirtualAddrHook::new(
                VirtualAddrs::new(dataplane.clone()),
                Arc::new(exception::twin_address_setter(&cfg)),
            ),
            cfg.ports.iter().map(|p| p.name.clone()).collect(),
        );
    let metrics_thread = match metrics {
        Some(listener) => {
            let addr = listener.addr();
            let sources = Sources {
                manager: manager.clone(),
                device_counters,
            };
            let thread = listener
                .spawn(sources, &worker::RUNNING)
                .map_err(|e| format!("cannot start the metrics listener on {addr}: {e}"))?;
            Some(thread)
        }
        None => None,
    };
    let control_thread = std::thread::Builder::new()
        .name("rvs-control".into())
        .spawn(move || server.serve(manager, &worker::RUNNING))
        .map_err(|e| format!("cannot start the control thread: {e}"))?;
    tracing::info!(socket = %cfg.control.socket, workers = ?lcores, "rvsd ready");
    sd_notify("READY=1");

    let mut main_is_worker = None;
    for (index, &lcore) in lcores.iter().enumerate() {
        let setup = worker::WorkerSetup {
            index,
            queue: index as u16,
            ports: ports.clone(),
            dataplane: dataplane.clone(),
            kernel: (!exception.is_empty())
                .then(|| exception.worker(index))
                .flatten(),
        };
        if lcore == main_lcore {
            main_is_worker = Some(setup);
        } else if let Err(e) = worker::launch(lcore, setup) {
            worker::RUNNING.store(false, Ordering::Relaxed);
            worker::wait_all();
            return Err(e.to_string());
        }
    }
    let exception_thread = if exception.is_empty() {
        None
    } else {
        Some(exception.spawn(&worker::RUNNING)?)
    };
    let sync_thread = match sync {
        Some(s) => Some(s.spawn(&worker::RUNNING)?),
        None => None,
    };
    match main_is_worker {
        Some(setup) => worker::run(setup),
        None => {
            while worker::RUNNING.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }

    tracing::info!("shutting down");
    sd_notify("STOPPING=1");
    worker::wait_all();
    let _ = control_thread.join();
    if let Some(t) = exception_thread {
        let _ = t.join();
    }
    if let Some(t) = sync_thread {
        let _ = t.join();
    }
    if let Some(t) = metrics_thread {
        let _ = t.join();
    }
    capture::uninit();
    for p in ports.iter() {
        p.stop();
    }
    eal::cleanup();
    if !version.in_memory {
        let n = control::eal_files::remove_hugepage_files(&version.file_prefix);
        tracing::debug!(files = n, "hugepage files removed");
    }
    Ok(())
}

/// Says what the connection tables hold and what backs them, and warns when a table large
/// enough for hugepages got none reserved (transparent ones if the kernel gives them, else
/// 4 KB pages): then a packet's table lookup can cost a TLB miss, which the burst prefetch
/// does not hide.
fn log_tables(dp: &Dataplane) {
    use dataplane::conntrack::{Backing, ConnTable, Family};
    fn log_one<F: Family>(family: &str, t: &ConnTable<F>) {
        tracing::info!(
            family,
            capacity = t.capacity(),
            bytes = t.memory_bytes(),
            backing = %t.backing(),
            "connection table ready"
        );
        if t.hugepage_sized() && t.backing() != Backing::HugeTlb {
            tracing::warn!(
                family,
                backing = %t.backing(),
                "connection table not on reserved hugepages (a lookup may then miss the TLB): \
                 reserve more 2 MB pages (vm.nr_hugepages) beside DPDK's"
            );
        }
    }
    log_one("ipv4", dp.conns());
    log_one("ipv6", dp.conns6());
}
