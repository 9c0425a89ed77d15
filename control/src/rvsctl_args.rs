//! rvsctl's command line, in a file of its own so that rvsd's rvsd-docs can build rvsctl's man
//! page and shell completions from the same parser.

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "rvsctl",
    version,
    about = "rvsd's controls beyond ipvsadm's language"
)]
pub struct Args {
    /// rvsd's control socket (default: $RVS_SOCKET, else /run/rvs/rvs.sock).
    #[arg(long, global = true)]
    pub socket: Option<String>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Show IPVS sysctls (all, or those named), or set them with -w, as sysctl(8) does.
    Sysctl {
        /// NAME=VALUE pairs to set (all are checked before any is applied).
        #[arg(short = 'w', long = "write", value_name = "NAME=VALUE")]
        write: Vec<String>,
        /// Names to show (with or without the net.ipv4.vs. prefix).
        names: Vec<String>,
    },
    /// Every dataplane counter, one `name value` a line.
    Counters,
    /// Neighbours as ip-neigh(8) words them: `neigh [show]`,
    /// `neigh add ADDR lladdr MAC dev PORT` (static: learning never changes it),
    /// `neigh del ADDR dev PORT`.
    #[command(alias = "neighbour", alias = "neighbor")]
    Neigh {
        /// show | add ADDR lladdr MAC dev PORT | del ADDR dev PORT
        words: Vec<String>,
    },
    /// VRRP-held (virtual) addresses, one a line: `vaddr [show]`; and by hand, as rvs-healthd's
    /// VRRP does: `vaddr hold|release INSTANCE dev PORT ADDR/LEN...` (IPv4 or IPv6; rvsd answers
    /// ARP or neighbour solicitations for them and has them on the port's twin only while
    /// held), `vaddr del INSTANCE dev PORT`.
    #[command(alias = "vaddrs")]
    Vaddr {
        /// show | hold|release INSTANCE dev PORT ADDR/LEN... | del INSTANCE dev PORT
        words: Vec<String>,
    },
    /// Re-read rvsd's configuration file and apply what changed since it was last loaded (as
    /// SIGHUP does); a file with an error changes nothing. Prints each change.
    Reload,
    /// rvsd's ports: DPDK device, driver, MAC, link, MTU and the device's counters.
    #[command(alias = "port")]
    Ports {
        /// Also the driver's extended counters (DPDK xstats).
        #[arg(short = 's', long = "stats")]
        stats: bool,
    },
    /// rvsctl's version, and rvsd's: its version, DPDK's, and EAL's file prefix.
    Version,
    /// Prints the dpdk-dumpcap command that captures a port of this rvsd (all ports without
    /// PORT); runs nothing.
    Capture {
        /// The port's name in rvs.toml (ext, int, ...).
        port: Option<String>,
        /// The pcapng file to write (default: /tmp/rvs-PORT.pcapng).
        #[arg(short = 'w', long = "write", value_name = "FILE")]
        file: Option<String>,
    },
}
