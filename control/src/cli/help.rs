//! `rvsadm -h` and `rvsadm -v`.

use super::{DEFAULT_PERSISTENCE, DEFAULT_SCHEDULER};
use crate::model::SchedulerKind;

/// `rvsadm -v`
pub fn version() -> String {
    format!(
        "rvsadm v{} (ipvsadm 1.31 syntax, rvs control protocol {})\n",
        env!("CARGO_PKG_VERSION"),
        crate::proto::PROTOCOL_VERSION
    )
}

/// `rvsadm -h`, shaped like ipvsadm's.
pub fn usage() -> String {
    let schedulers: Vec<&str> = SchedulerKind::ALL.iter().map(|k| k.name()).collect();
    format!(
        "{version}\
Usage:
  rvsadm -A|E -t|u service-address [-s scheduler] [-p [timeout]] [-M netmask] [-o] [-b sched-flags]
  rvsadm -D -t|u service-address
  rvsadm -C
  rvsadm -R
  rvsadm -S [-n]
  rvsadm -a|e -t|u service-address -r server-address [options]
  rvsadm -d -t|u service-address -r server-address
  rvsadm -L|l [options]
  rvsadm -Z [-t|u service-address]
  rvsadm --set tcp tcpfin udp
  rvsadm --start-daemon {{master|backup}} [--mcast-interface interface] [--syncid sid]
  rvsadm --stop-daemon {{master|backup}}
  rvsadm -h

Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options (unspecified options are kept)
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options (unspecified options are kept)
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --start-daemon              start connection sync daemon
  --stop-daemon               stop connection sync daemon
  --help            -h        display this help message
  --version         -v        display the version

Options:
  --tcp-service  -t service-address   service-address is host[:port]
  --udp-service  -u service-address   service-address is host[:port]
  --scheduler    -s scheduler         one of {schedulers},
                                      the default scheduler is {default}.
  --persistent   -p [timeout]         persistent service (default {persist} s; -E -p 0 turns it off)
  --netmask      -M netmask           persistent granularity mask (IPv6: prefix length 1..128)
  --ops          -o                   one-packet scheduling (UDP; -E -o turns it on)
  --sched-flags  -b flags             scheduler flags (comma-separated): sh-fallback,
                                      sh-port (sh), mh-fallback, mh-port (mh)
  --real-server  -r server-address    server-address is host (and port)
  --masquerading -m                   masquerading (NAT), the only method rvs implements (default)
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --connection   -c                   output of current connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --daemon                            output of daemon information
  --counters                          output of rvsd's packet counters (rx, tx, drops by reason)
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact        -X                   expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --numeric      -n                   numeric output of addresses and ports (rvsadm always is)
  --mcast-interface interface         multicast interface for connection sync
                                      (rvsd's is [sync]'s port's kernel twin; checked)
  --syncid sid                        syncID for connection sync (rvsd's is [sync]'s; checked)
  --socket       PATH                 rvsd's control socket (default ${env}, else {socket})

Not supported by rvs: -f (fwmark services, and so -6, which only goes with -f), -g and -i
(direct routing, tunneling), --pe and --persistent-conn. IPv6 services: -t|-u [addr]:port.
",
        version = version(),
        schedulers = schedulers.join("|"),
        default = DEFAULT_SCHEDULER,
        persist = DEFAULT_PERSISTENCE,
        env = crate::proto::SOCKET_ENV,
        socket = crate::proto::DEFAULT_SOCKET,
    )
}
