//! rvsd's command line, in a file of its own so that src/bin/rvsd-docs.rs can build the man page
//! and shell completions from the same parser.

use clap::Parser;
use std::path::PathBuf;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "rvsd",
    version,
    about = "rvs: LVS VS/NAT load balancer on DPDK",
    long_about = "rvs: LVS VS/NAT load balancer on DPDK.\n\n\
        SIGHUP (or `rvsctl reload`) re-reads the configuration file rvsd started from (the \
        embedded one with --lab-config) and applies the difference between the configuration \
        last loaded and the new one, as keepalived does on reload: services and real servers \
        added, changed or removed (a removed real server's connections go on, as with \
        `rvsadm -d`), timeouts, IPVS sysctls and static neighbours. What an operator or a health \
        checker changed live and the file did not change is left alone. EAL arguments, ports, \
        workers, the table capacity, the control socket and log settings need a restart: a \
        reload reports them and leaves them as they are. A file with any error is refused whole, \
        naming the key or line, and rvsd runs on unchanged. See docs/reload.md."
)]
pub struct Args {
    /// Configuration file [default: /etc/rvs/rvs.toml].
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Run the embedded lab configuration (DESIGN.md's namespace lab) instead of a file.
    #[arg(long, conflicts_with = "config")]
    pub lab_config: bool,
    /// Control socket path, overriding [control] socket.
    #[arg(long)]
    pub socket: Option<String>,
    /// Extra EAL arguments, appended to [eal] args (e.g. "--no-huge -m 256").
    #[arg(long, allow_hyphen_values = true)]
    pub eal_args: Option<String>,
    /// Check the configuration and exit.
    #[arg(long)]
    pub check: bool,
    /// Print the embedded lab configuration (what --lab-config runs) and exit.
    #[arg(long)]
    pub print_default_config: bool,
}
