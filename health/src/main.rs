//! rvs-healthd: keepalived's LVS health checks and VRRP driving rvsd. See docs/keepalived.md.

use clap::Parser;
use health::conf;
use health::engine::{ControlSocket, Engine, DEFAULT_CHECK_THREADS};
use health::vrrp;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// keepalived's health checks for rvs: reads keepalived.conf's virtual_server blocks, installs
/// them in rvsd and keeps their real servers in or out by their checks.
#[derive(Debug, Parser)]
#[command(name = "rvs-healthd", version)]
struct Args {
    /// The configuration file (keepalived's -f).
    #[arg(
        short = 'f',
        long = "use-file",
        default_value = "/etc/keepalived/keepalived.conf"
    )]
    file: PathBuf,
    /// Check the configuration and exit: 0 when rvs-healthd can run it (keepalived's -t).
    #[arg(short = 't', long)]
    config_test: bool,
    /// rvsd's control socket (default: $RVS_SOCKET, else /run/rvs/rvs.sock).
    #[arg(long)]
    socket: Option<String>,
    /// Leave the virtual servers in rvsd on exit (keepalived's -I).
    #[arg(short = 'I', long)]
    dont_release_ipvs: bool,
    /// Threads running checks at the same time.
    #[arg(long, default_value_t = DEFAULT_CHECK_THREADS)]
    check_threads: usize,
    /// rvsd's configuration, read for its ports' kernel twins when keepalived.conf has a
    /// vrrp_instance (a `dev` names a twin; rvsd's requests name the port).
    #[arg(long, default_value = "/etc/rvs/rvs.toml")]
    rvs_config: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = std::env::var("RVS_LOG").unwrap_or_else(|_| "info".into());
    let filter = match tracing_subscriber::EnvFilter::try_new(&filter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("rvs-healthd: RVS_LOG: bad log level {filter:?}: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rvs-healthd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let config =
        conf::load(&args.file).map_err(|e| format!("{} refused:\n{e}", args.file.display()))?;
    for n in &config.notes {
        tracing::warn!("{n}");
    }
    let checks: usize = config
        .services
        .iter()
        .flat_map(|v| &v.real_servers)
        .map(|r| r.checkers.len())
        .sum();
    let vrrp_instances = config.vrrp.instances.len();
    if args.config_test {
        println!(
            "{}: {} virtual servers, {checks} checkers, {vrrp_instances} vrrp instances: OK",
            args.file.display(),
            config.services.len()
        );
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("signal {sig}: {e}"))?;
    }
    let socket = control::client::socket_path(
        args.socket.as_deref(),
        std::env::var_os(control::proto::SOCKET_ENV),
    );
    tracing::info!(config = %args.file.display(), socket = %socket.display(), services = config.services.len(), checks, "starting");
    // VRRP first: its sockets and rvsd's port names are checked before anything is installed.
    let vrrp = if vrrp_instances > 0 {
        let ports = vrrp::run::ports_by_twin(&args.rvs_config).map_err(|e| {
            format!(
                "{} (for the vrrp_instance interfaces): {e}",
                args.rvs_config.display()
            )
        })?;
        Some(vrrp::run::Vrrp::new(
            &config.vrrp,
            &ports,
            ControlSocket::new(socket.clone()),
        )?)
    } else {
        None
    };
    let vrrp_thread = match vrrp {
        Some(mut v) => {
            let stop = stop.clone();
            Some(
                std::thread::Builder::new()
                    .name("vrrp".into())
                    .spawn(move || v.run(&stop))
                    .map_err(|e| format!("cannot start the VRRP thread: {e}"))?,
            )
        }
        None => None,
    };
    let mut engine = Engine::new(&config, ControlSocket::new(socket));
    let installed = engine.install();
    if let Err(e) = installed {
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        join_vrrp(vrrp_thread);
        if !args.dont_release_ipvs {
            engine.release();
        }
        return Err(e);
    }
    let started = std::time::Instant::now();
    engine.run(&stop, args.check_threads);
    let secs = started.elapsed().as_secs_f64();
    // The check load this daemon sustained, for `checks / seconds` in the logs.
    tracing::info!(
        checks_completed = engine.completed(),
        seconds = format_args!("{secs:.1}"),
        "stopping"
    );
    // The VRRP thread saw the same flag: a MASTER advertises priority 0 and gives its addresses
    // back, so the backup takes over before the services go.
    join_vrrp(vrrp_thread);
    if !args.dont_release_ipvs {
        engine.release();
    }
    Ok(())
}

fn join_vrrp(t: Option<std::thread::JoinHandle<()>>) {
    if let Some(t) = t {
        if t.join().is_err() {
            tracing::error!("the VRRP thread panicked");
        }
    }
}
