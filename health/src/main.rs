//! rvs-healthd: keepalived's LVS health checks driving rvsd. See docs/keepalived.md.

use clap::Parser;
use health::conf;
use health::engine::{ControlSocket, Engine, DEFAULT_CHECK_THREADS};
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
    if args.config_test {
        println!(
            "{}: {} virtual servers, {checks} checkers: OK",
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
    let mut engine = Engine::new(&config, ControlSocket::new(socket));
    let installed = engine.install();
    if let Err(e) = installed {
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
    if !args.dont_release_ipvs {
        engine.release();
    }
    Ok(())
}
