//! rvsadm's grammar: ipvsadm 1.31's commands, options, matrix and messages, and rvs's own
//! refusals and extensions.
//!
//! One file, past 600 lines: a table of ipvsadm's grammar cases, checked by one set of helpers.

mod common;

use common::{key, state};
use control::cli::{
    parse_args, parse_restore, Change, Command, DestEdit, ListCommand, ServiceEdit, Table,
};
use control::format::{self, ListFormat, View};
use control::model::{
    default_netmask, DestSpec, Forward, Netmask, Protocol, SchedFlags, SchedulerKind, ServiceKey,
    ServiceSpec, Timeouts,
};
use control::proto::Request;
use std::net::IpAddr;

const VIP: &str = "198.51.100.1";

fn parse(line: &str) -> Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    parse_args(&words).map(|i| i.command).map_err(|e| e.0)
}

fn err(line: &str) -> String {
    match parse(line) {
        Ok(command) => panic!("`{line}` parsed as {command:?}"),
        Err(message) => message,
    }
}

/// The request a change that needs no merging becomes.
fn request(line: &str) -> Request {
    match parse(line) {
        Ok(Command::Change(Change::Apply(r))) => r,
        other => panic!("`{line}`: {other:?}"),
    }
}

fn vip(protocol: Protocol, port: u16) -> ServiceKey {
    key(protocol, port)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn mask(s: &str) -> Netmask {
    s.parse().unwrap()
}

fn spec(port: u16, scheduler: SchedulerKind, persistence: Option<u32>) -> ServiceSpec {
    ServiceSpec {
        key: vip(Protocol::Tcp, port),
        scheduler,
        persistence,
        netmask: default_netmask(),
        sched_flags: Default::default(),
        ops: false,
    }
}

fn dest(addr: &str, port: u16, weight: u32) -> DestSpec {
    DestSpec {
        addr: ip(addr),
        port,
        weight,
        forward: Forward::Masq,
        upper_threshold: 0,
        lower_threshold: 0,
    }
}

// --- services ---------------------------------------------------------------------------------

#[test]
fn add_service_defaults_to_wlc_not_persistent_host_mask() {
    assert_eq!(
        request(&format!("-A -t {VIP}:80")),
        Request::AddService(spec(80, SchedulerKind::Wlc, None))
    );
}

#[test]
fn add_service_long_forms() {
    assert_eq!(
        request(&format!(
            "--add-service --udp-service {VIP}:53 --scheduler rr --persistent 600 --netmask 255.255.255.0"
        )),
        Request::AddService(ServiceSpec {
            key: vip(Protocol::Udp, 53),
            scheduler: SchedulerKind::Rr,
            persistence: Some(600),
            netmask: mask("255.255.255.0"),
            sched_flags: Default::default(),
            ops: false,
        })
    );
}

#[test]
fn persistent_takes_an_optional_value() {
    let persistence = |line: &str| match request(line) {
        Request::AddService(s) => (s.persistence, s.scheduler),
        other => panic!("{other:?}"),
    };
    let t = format!("-A -t {VIP}:80");
    assert_eq!(
        persistence(&format!("{t} -p")),
        (Some(360), SchedulerKind::Wlc)
    );
    assert_eq!(
        persistence(&format!("{t} -p 600")),
        (Some(600), SchedulerKind::Wlc)
    );
    assert_eq!(
        persistence(&format!("{t} -p600")),
        (Some(600), SchedulerKind::Wlc)
    );
    assert_eq!(
        persistence(&format!("{t} --persistent=600")),
        (Some(600), SchedulerKind::Wlc)
    );
    assert_eq!(
        persistence(&format!("{t} --persistent")),
        (Some(360), SchedulerKind::Wlc)
    );
    // A following option is not taken as the value.
    assert_eq!(
        persistence(&format!("{t} -p -s rr")),
        (Some(360), SchedulerKind::Rr)
    );
    assert_eq!(
        persistence(&format!("{t} -p 2678400")),
        (Some(2_678_400), SchedulerKind::Wlc)
    );
}

#[test]
fn persistent_timeout_range_is_1_to_31_days() {
    let t = format!("-A -t {VIP}:80");
    assert_eq!(
        err(&format!("{t} -p 0")),
        "invalid timeout value `0' specified"
    );
    assert_eq!(
        err(&format!("{t} -p 2678401")),
        "invalid timeout value `2678401' specified"
    );
    assert_eq!(
        err(&format!("{t} -p soon")),
        "invalid timeout value `soon' specified"
    );
}

#[test]
fn zero_port_only_for_persistent_services() {
    assert_eq!(
        err(&format!("-A -t {VIP}")),
        "Zero port specified for non-persistent service"
    );
    assert_eq!(
        err(&format!("-A -t {VIP}:0 -s rr")),
        "Zero port specified for non-persistent service"
    );
    assert_eq!(
        request(&format!("-A -t {VIP} -p")),
        Request::AddService(spec(0, SchedulerKind::Wlc, Some(360)))
    );
}

#[test]
fn every_scheduler_name_and_an_unknown_one() {
    for kind in SchedulerKind::ALL {
        match request(&format!("-A -t {VIP}:80 -s {kind}")) {
            Request::AddService(s) => assert_eq!(s.scheduler, kind),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        err(&format!("-A -t {VIP}:80 -s fancy")),
        "Scheduler not found: 'fancy' (one of rr, wrr, lc, wlc, sed, nq, sh, dh, mh)"
    );
}

#[test]
fn netmask_must_be_an_address() {
    assert_eq!(
        err(&format!("-A -t {VIP}:80 -p -M 24")),
        "illegal virtual server persistent mask specified"
    );
}

#[test]
fn delete_service() {
    assert_eq!(
        request(&format!("-D -u {VIP}:53")),
        Request::DelService(vip(Protocol::Udp, 53))
    );
}

#[test]
fn edit_service_keeps_what_is_not_given() {
    assert_eq!(
        parse(&format!("-E -t {VIP}:80 -s rr")),
        Ok(Command::Change(Change::EditService(ServiceEdit {
            key: vip(Protocol::Tcp, 80),
            scheduler: Some(SchedulerKind::Rr),
            persistence: None,
            netmask: None,
            sched_flags: None,
            ops: false,
        })))
    );
    // -E -p 0 (an rvsadm extension) turns persistence off; -A refuses 0.
    assert_eq!(
        parse(&format!("-E -t {VIP}:80 -p 0")),
        Ok(Command::Change(Change::EditService(ServiceEdit {
            key: vip(Protocol::Tcp, 80),
            scheduler: None,
            persistence: Some(0),
            netmask: None,
            sched_flags: None,
            ops: false,
        })))
    );
}

// --- -b scheduler flags ----------------------------------------------------------------------

fn flags_of(line: &str) -> SchedFlags {
    match request(line) {
        Request::AddService(s) => s.sched_flags,
        other => panic!("{other:?}"),
    }
}

#[test]
fn sched_flags_are_comma_separated_and_belong_to_their_scheduler() {
    let sh_both = SchedFlags {
        sh_fallback: true,
        sh_port: true,
        ..Default::default()
    };
    assert_eq!(
        flags_of(&format!("-A -t {VIP}:80 -s sh -b sh-fallback,sh-port")),
        sh_both
    );
    // Option order does not matter (ipvsadm checks the flags after all options), nor does
    // the flags' order; long forms work.
    assert_eq!(
        flags_of(&format!("-A -t {VIP}:80 -b sh-port,sh-fallback -s sh")),
        sh_both
    );
    assert_eq!(
        flags_of(&format!("-A -t {VIP}:80 --sched-flags=mh-port -s mh")),
        SchedFlags {
            mh_port: true,
            ..Default::default()
        }
    );
    assert_eq!(
        flags_of(&format!("-A -t {VIP}:80 -s mh --sched-flags mh-fallback")),
        SchedFlags {
            mh_fallback: true,
            ..Default::default()
        }
    );
    assert_eq!(
        flags_of(&format!("-A -t {VIP}:80 -s sh")),
        SchedFlags::default()
    );
    // ipvsadm's messages.
    assert_eq!(
        err(&format!("-A -t {VIP}:80 -s mh -b sh-port")),
        "incompatible scheduler flag `sh-port'"
    );
    assert_eq!(
        err(&format!("-A -t {VIP}:80 -b mh-port")),
        "incompatible scheduler flag `mh-port'",
        "the default scheduler is wlc"
    );
    assert_eq!(
        err(&format!("-A -t {VIP}:80 -s sh -b sh-port,fast")),
        "invalid scheduler flag `fast'"
    );
    assert_eq!(
        err(&format!("-A -t {VIP}:80 -s sh -b ,")),
        "invalid scheduler flag `,'"
    );
    assert_eq!(
        err(&format!("-a -t {VIP}:80 -r 192.0.2.2 -b sh-port")),
        "Illegal 'sched-flags' option with the 'add-server' command"
    );
    assert_eq!(
        err(&format!("-A -t {VIP}:80 -s sh -b sh-port -b sh-fallback")),
        "multiple 'sched-flags' options specified"
    );
}

#[test]
fn edit_service_replaces_or_keeps_the_flags() {
    let mut current = spec(80, SchedulerKind::Sh, None);
    current.sched_flags.sh_port = true;
    let edit = |line: &str| match parse(line) {
        Ok(Command::Change(Change::EditService(e))) => e.apply(&current).map_err(|e| e.0),
        other => panic!("{other:?}"),
    };
    // Not given: kept.
    assert_eq!(
        edit(&format!("-E -t {VIP}:80 -p 60")).unwrap().sched_flags,
        current.sched_flags
    );
    // Given: replaced, and checked against the service's scheduler.
    assert_eq!(
        edit(&format!("-E -t {VIP}:80 -b sh-fallback"))
            .unwrap()
            .sched_flags,
        SchedFlags {
            sh_fallback: true,
            ..Default::default()
        }
    );
    assert_eq!(
        edit(&format!("-E -t {VIP}:80 -b mh-port")),
        Err("incompatible scheduler flag `mh-port'".into())
    );
    // A new scheduler drops the flags that do not belong to it.
    let to_rr = edit(&format!("-E -t {VIP}:80 -s rr")).unwrap();
    assert_eq!(to_rr.scheduler, SchedulerKind::Rr);
    assert!(to_rr.sched_flags.is_empty());
    let to_mh = edit(&format!("-E -t {VIP}:80 -s mh -b mh-port")).unwrap();
    assert_eq!(
        to_mh.sched_flags,
        SchedFlags {
            mh_port: true,
            ..Default::default()
        }
    );
}

#[test]
fn sched_flags_survive_save_and_restore() {
    save_and_restore(&format!("-A -t {VIP}:80 -s sh -b sh-fallback,sh-port"));
}

/// `line` (an `-A`) as `-S` saves the service it adds is `line` itself, and `-R` of that adds
/// the same service again; returns the service.
fn save_and_restore(line: &str) -> ServiceSpec {
    let Request::AddService(spec) = request(line) else {
        panic!("{line}")
    };
    let saved = format::save(&[control::model::ServiceStatus {
        spec: spec.clone(),
        dests: vec![],
        stats: Default::default(),
    }]);
    assert_eq!(saved, format!("{line}\n"));
    let restored = parse_restore(&saved).unwrap();
    assert_eq!(
        restored,
        vec![(1, Change::Apply(Request::AddService(spec.clone())))]
    );
    spec
}

// --- service addresses ------------------------------------------------------------------------

#[test]
fn port_names_come_from_the_services_database() {
    assert_eq!(
        request(&format!("-A -t {VIP}:http -s rr")),
        Request::AddService(spec(80, SchedulerKind::Rr, None))
    );
    match request(&format!("-D -u {VIP}:domain")) {
        Request::DelService(k) => assert_eq!(k.port, 53),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_addresses() {
    for bad in [
        "12345",
        ":80",
        "198.51.100.1:99999",
        "198.51.100.1:no-such-service-name",
    ] {
        assert_eq!(
            err(&format!("-A -t {bad}")),
            "illegal virtual server address[:port] specified",
            "{bad}"
        );
    }
    assert_eq!(
        err(&format!("-a -t {VIP}:80 -r 192.0.2.2:99999")),
        "illegal real server address[:port] specified"
    );
}

#[test]
fn ipv6_services_and_real_servers() {
    let v6 = |addr: &str, port| ServiceKey {
        protocol: Protocol::Tcp,
        addr: ip(addr),
        port,
    };
    assert_eq!(
        request("-A -t [2001:db8:100::1]:80 -s rr"),
        Request::AddService(ServiceSpec {
            key: v6("2001:db8:100::1", 80),
            scheduler: SchedulerKind::Rr,
            persistence: None,
            netmask: Netmask::V6(128),
            sched_flags: Default::default(),
            ops: false,
        })
    );
    assert_eq!(
        request("-a -t [2001:db8:100::1]:80 -r [2001:db8:2::2]:80 -m"),
        Request::AddDest {
            service: v6("2001:db8:100::1", 80),
            dest: dest("2001:db8:2::2", 80, 1),
        }
    );
    // Without a port (bare address, ipvsadm's form), the real server takes the virtual port.
    assert_eq!(
        request("-a -t [2001:db8:100::1]:443 -r 2001:db8:2::3 -m -w 3"),
        Request::AddDest {
            service: v6("2001:db8:100::1", 443),
            dest: dest("2001:db8:2::3", 443, 3),
        }
    );
    assert_eq!(
        request("-d -t [2001:db8:100::1]:80 -r [2001:db8:2::2]:80"),
        Request::DelDest {
            service: v6("2001:db8:100::1", 80),
            addr: ip("2001:db8:2::2"),
            port: 80,
        }
    );
    assert_eq!(
        err("-A -t [2001:db8:100::1] -s rr"),
        "illegal virtual server address[:port] specified"
    );
    assert_eq!(
        err("-a -t [2001:db8:100::1]:80 -r [2001:db8:2::2]"),
        "illegal real server address[:port] specified"
    );
}

#[test]
fn ipv6_persistence_mask_is_a_prefix_length() {
    let Request::AddService(spec) = request("-A -t [2001:db8:100::1]:80 -p 60 -M 64") else {
        panic!()
    };
    assert_eq!(spec.netmask, Netmask::V6(64));
    // rvsadm reads -M by the service's family wherever it stands.
    let Request::AddService(spec) = request("-A -M 48 -u [2001:db8:100::1]:53 -p") else {
        panic!()
    };
    assert_eq!(spec.netmask, Netmask::V6(48));
    for bad in ["0", "129", "255.255.255.0", "x", "-1"] {
        assert_eq!(
            err(&format!("-A -t [2001:db8:100::1]:80 -p -M {bad}")),
            "illegal ipv6 netmask specified",
            "{bad}"
        );
    }
    assert_eq!(
        err(&format!("-A -t {VIP}:80 -p -M 64")),
        "illegal virtual server persistent mask specified"
    );
    save_and_restore("-A -t [2001:db8:100::1]:80 -s rr -p 60 -M 64");
    save_and_restore("-A -u [2001:db8:100::1]:53 -s sh -p 300");
}

#[test]
fn mixed_families_are_refused() {
    let m = err(&format!("-a -t {VIP}:80 -r [2001:db8:2::2]:80 -m"));
    assert!(
        m.starts_with("Operation not supported with specified address family"),
        "{m}"
    );
    let m = err("-e -t [2001:db8:100::1]:80 -r 192.0.2.2:80 -w 2");
    assert!(
        m.starts_with("Operation not supported with specified address family"),
        "{m}"
    );
    // A delete goes to the daemon, which finds no such destination (as the kernel).
    assert!(parse("-d -t [2001:db8:100::1]:80 -r 192.0.2.2:80").is_ok());
}

#[test]
fn six_goes_with_fwmark_only() {
    // ipvsadm takes -6 only after -f; rvs has no -f, refused first when given first.
    assert_eq!(err("-A -f 1 -6"), err("-A -f 1"));
    assert!(err("-L -6").starts_with("-6 used before -f"));
    assert!(err("-A -6 -t [2001:db8::1]:80").starts_with("-6 used before -f"));
}

#[test]
fn fwmark_services_are_refused_clearly() {
    let message = err("-A -f 1 -s rr");
    assert!(message.contains("firewall-mark"), "{message}");
    assert_eq!(err("--add-service --fwmark-service 1"), message);
}

// --- real servers -----------------------------------------------------------------------------

#[test]
fn add_server_defaults_to_nat_weight_1_and_the_virtual_port() {
    assert_eq!(
        request(&format!("-a -t {VIP}:80 -r 192.0.2.2")),
        Request::AddDest {
            service: vip(Protocol::Tcp, 80),
            dest: dest("192.0.2.2", 80, 1)
        }
    );
    // Same with -r before -t, and with an explicit -m.
    assert_eq!(
        request(&format!("-a -r 192.0.2.2 -m -t {VIP}:80")),
        request(&format!("-a -t {VIP}:80 -r 192.0.2.2"))
    );
}

#[test]
fn add_server_long_forms() {
    assert_eq!(
        request(&format!(
            "--add-server --tcp-service {VIP}:80 --real-server 192.0.2.3:8080 --masquerading \
             --weight 5 --u-threshold 100 --l-threshold 50"
        )),
        Request::AddDest {
            service: vip(Protocol::Tcp, 80),
            dest: DestSpec {
                upper_threshold: 100,
                lower_threshold: 50,
                ..dest("192.0.2.3", 8080, 5)
            }
        }
    );
}

#[test]
fn direct_routing_and_tunneling_are_refused_never_treated_as_nat() {
    let a = format!("-a -t {VIP}:80 -r 192.0.2.2");
    for switch in ["-g", "--gatewaying"] {
        let message = err(&format!("{a} {switch}"));
        assert!(message.contains("masquerading (NAT, -m) only"), "{message}");
        assert!(message.contains("-g"), "{message}");
    }
    for switch in ["-i", "--ipip"] {
        let message = err(&format!("{a} {switch}"));
        assert!(message.contains("masquerading (NAT, -m) only"), "{message}");
        assert!(message.contains("-i"), "{message}");
    }
    assert_eq!(
        err(&format!("-e -t {VIP}:80 -r 192.0.2.2 -g")),
        err(&format!("{a} -g"))
    );
}

#[test]
fn weight_range() {
    let a = format!("-a -t {VIP}:80 -r 192.0.2.2");
    for ok in [0, 65535] {
        match request(&format!("{a} -w {ok}")) {
            Request::AddDest { dest, .. } => assert_eq!(dest.weight, ok),
            other => panic!("{other:?}"),
        }
    }
    for bad in ["65536", "-1", "x", "1.5"] {
        assert_eq!(
            err(&format!("{a} -w {bad}")),
            "illegal weight specified",
            "{bad}"
        );
    }
}

#[test]
fn thresholds() {
    let a = format!("-a -t {VIP}:80 -r 192.0.2.2");
    assert_eq!(
        err(&format!("{a} -x many")),
        "illegal u_threshold specified"
    );
    assert_eq!(err(&format!("{a} -y -3")), "illegal l_threshold specified");
    assert_eq!(
        err(&format!("{a} -x 10 -y 20")),
        "the lower threshold (-y 20) is higher than the upper threshold (-x 10)"
    );
    assert_eq!(
        err(&format!("{a} -y 5")),
        "the lower threshold (-y 5) is higher than the upper threshold (-x 0)"
    );
    match request(&format!("{a} -x 20 -y 20")) {
        Request::AddDest { dest, .. } => {
            assert_eq!((dest.upper_threshold, dest.lower_threshold), (20, 20))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn edit_and_delete_server() {
    assert_eq!(
        parse(&format!("-e -t {VIP}:80 -r 192.0.2.2:8080 -w 0")),
        Ok(Command::Change(Change::EditDest(DestEdit {
            service: vip(Protocol::Tcp, 80),
            addr: ip("192.0.2.2"),
            port: 8080,
            weight: Some(0),
            upper_threshold: None,
            lower_threshold: None,
        })))
    );
    assert_eq!(
        request(&format!("-d -t {VIP}:80 -r 192.0.2.2")),
        Request::DelDest {
            service: vip(Protocol::Tcp, 80),
            addr: ip("192.0.2.2"),
            port: 80
        }
    );
}

// --- the other commands -----------------------------------------------------------------------

#[test]
fn clear_zero_and_set() {
    assert_eq!(request("-C"), Request::Clear);
    assert_eq!(request("--clear"), Request::Clear);
    assert_eq!(request("-Z"), Request::Zero { service: None });
    assert_eq!(
        request(&format!("--zero -t {VIP}:80")),
        Request::Zero {
            service: Some(vip(Protocol::Tcp, 80))
        }
    );
    assert_eq!(
        request("--set 900 0 300"),
        Request::SetTimeouts(Timeouts {
            tcp: 900,
            tcp_fin: 0,
            udp: 300
        })
    );
}

#[test]
fn set_needs_three_valid_timeouts() {
    assert_eq!(
        err("--set 900 120"),
        "--set option requires 3 timeout values"
    );
    assert_eq!(err("--set"), "--set option requires 3 timeout values");
    assert_eq!(err("--set 900 120 300 60"), "unexpected argument 60");
    assert_eq!(
        err("--set 900 -1 300"),
        "-1: unknown option\nTry `rvsadm -h' or 'rvsadm --help' for more information."
    );
    assert_eq!(
        err("--set 900 soon 300"),
        "invalid timeout value `soon' specified"
    );
    assert_eq!(
        err("--set 900 120 2678401"),
        "invalid timeout value `2678401' specified"
    );
}

#[test]
fn list_forms() {
    let services = |service, view, exact, sort| {
        Ok(Command::List(ListCommand::Services {
            service,
            format: ListFormat { view, exact, sort },
        }))
    };
    assert_eq!(parse("-L"), services(None, View::Default, false, true));
    assert_eq!(parse("-l -n"), services(None, View::Default, false, true));
    assert_eq!(parse("-Ln"), services(None, View::Default, false, true));
    assert_eq!(
        parse("--list --numeric --stats"),
        services(None, View::Stats, false, true)
    );
    assert_eq!(
        parse("-L --rate --exact"),
        services(None, View::Rate, true, true)
    );
    assert_eq!(
        parse("-L -X --thresholds --nosort"),
        services(None, View::Thresholds, true, false)
    );
    assert_eq!(
        parse("-L --stats --rate"),
        services(None, View::Stats, false, true)
    );
    assert_eq!(
        parse("-L --sort"),
        services(None, View::Default, false, true)
    );
    assert_eq!(
        parse(&format!("-L -n -t {VIP}:80")),
        services(Some(vip(Protocol::Tcp, 80)), View::Default, false, true)
    );
    assert_eq!(parse("-L -n -c"), Ok(Command::List(ListCommand::Conns)));
    assert_eq!(parse("-Lnc"), Ok(Command::List(ListCommand::Conns)));
    assert_eq!(
        parse("-L --timeout"),
        Ok(Command::List(ListCommand::Timeouts))
    );
}

#[test]
fn no_arguments_lists_the_table() {
    let none: [&str; 0] = [];
    let invocation = parse_args(&none).unwrap();
    assert_eq!(invocation.command, parse("-L").unwrap());
    assert_eq!(invocation.socket, None);
}

#[test]
fn socket_option() {
    let inv = parse_args(&["--socket", "/tmp/rvs.sock"]).unwrap();
    assert_eq!(
        (inv.command, inv.socket.as_deref()),
        (parse("-L").unwrap(), Some("/tmp/rvs.sock"))
    );
    let inv = parse_args(&["-C", "--socket=/tmp/other.sock"]).unwrap();
    assert_eq!(inv.socket.as_deref(), Some("/tmp/other.sock"));
    assert_eq!(
        parse_args(&["-C", "--socket", "/a", "--socket", "/b"])
            .unwrap_err()
            .0,
        "multiple 'socket' options specified"
    );
}

#[test]
fn save_restore_help_version() {
    assert_eq!(parse("-S"), Ok(Command::Save));
    assert_eq!(parse("--save -n"), Ok(Command::Save));
    assert_eq!(parse("-R"), Ok(Command::Restore));
    assert_eq!(parse("-h"), Ok(Command::Help));
    assert_eq!(parse("--help"), Ok(Command::Help));
    assert_eq!(parse("-v"), Ok(Command::Version));
    let usage = control::cli::usage();
    assert!(usage.starts_with("rvsadm v"), "{usage}");
    for needle in [
        "--add-service     -A",
        "-p [timeout]",
        "--set tcp tcpfin udp",
        "--socket",
    ] {
        assert!(usage.contains(needle), "{needle}");
    }
}

// --- ipvsadm's messages -----------------------------------------------------------------------

#[test]
fn commands_and_options_follow_ipvsadm_s_matrix() {
    let t = format!("-t {VIP}:80");
    let cases: Vec<(String, &str)> = vec![
        ("-A".into(), "You need to supply the 'service-address' option for the 'add-service' command"),
        ("-E -s rr".into(), "You need to supply the 'service-address' option for the 'edit-service' command"),
        ("-D".into(), "You need to supply the 'service-address' option for the 'delete-service' command"),
        (format!("-a {t}"), "You need to supply the 'real-server' option for the 'add-server' command"),
        (format!("-e {t} -w 3"), "You need to supply the 'real-server' option for the 'edit-server' command"),
        ("-d -r 192.0.2.2".into(), "You need to supply the 'service-address' option for the 'delete-server' command"),
        (format!("-A {t} -n"), "Illegal 'numeric' option with the 'add-service' command"),
        (format!("-A {t} -r 192.0.2.2"), "Illegal 'real-server' option with the 'add-service' command"),
        (format!("-A {t} -m"), "Illegal 'forwarding-method' option with the 'add-service' command"),
        (format!("-A {t} -w 2"), "Illegal 'weight' option with the 'add-service' command"),
        (format!("-E {t} -x 2"), "Illegal 'u-threshold' option with the 'edit-service' command"),
        (format!("-D {t} -s rr"), "Illegal 'scheduler' option with the 'delete-service' command"),
        (format!("-D {t} -p"), "Illegal 'persistent' option with the 'delete-service' command"),
        ("-C -n".into(), "Illegal 'numeric' option with the 'flush' command"),
        (format!("-C {t}"), "Illegal 'service-address' option with the 'flush' command"),
        (format!("-a {t} -s rr"), "Illegal 'scheduler' option with the 'add-server' command"),
        (format!("-a {t} -r 192.0.2.2 -p 10"), "Illegal 'persistent' option with the 'add-server' command"),
        (format!("-a {t} -r 192.0.2.2 -M 255.0.0.0"), "Illegal 'netmask' option with the 'add-server' command"),
        (format!("-a {t} -r 192.0.2.2 --stats"), "Illegal 'stats' option with the 'add-server' command"),
        (format!("-d {t} -r 192.0.2.2 -w 1"), "Illegal 'weight' option with the 'delete-server' command"),
        (format!("-d {t} -r 192.0.2.2 -m"), "Illegal 'forwarding-method' option with the 'delete-server' command"),
        ("-L -s rr".into(), "Illegal 'scheduler' option with the 'list' command"),
        ("-L -r 192.0.2.2".into(), "Illegal 'real-server' option with the 'list' command"),
        ("-L -w 1".into(), "Illegal 'weight' option with the 'list' command"),
        ("-Z -n".into(), "Illegal 'numeric' option with the 'zero' command"),
        ("-Z --stats".into(), "Illegal 'stats' option with the 'zero' command"),
        ("-S -c".into(), "Illegal 'connection' option with the 'save' command"),
        (format!("-S {t}"), "Illegal 'service-address' option with the 'save' command"),
        ("-S --nosort".into(), "Illegal 'nosort' option with the 'save' command"),
        ("-R -n".into(), "Illegal 'numeric' option with the 'restore' command"),
        ("--set 1 2 3 -n".into(), "Illegal 'numeric' option with the 'set' command"),
        ("-h -n".into(), "Illegal 'numeric' option with the 'help' command"),
        // The exclusive ones of -L: -c, a service, --timeout.
        (format!("-L -c {t}"), "The option 'service-address' conflicts with the 'connection' option in the 'list' command"),
        ("-L -c --timeout".into(), "The option 'timeout' conflicts with the 'connection' option in the 'list' command"),
        (format!("-L --timeout {t}"), "The option 'timeout' conflicts with the 'service-address' option in the 'list' command"),
        ("-L -c --stats".into(), "options conflicts in the list command"),
        ("-L --timeout --rate".into(), "options conflicts in the list command"),
        ("-L -c --thresholds".into(), "options conflicts in the list command"),
    ];
    for (line, message) in cases {
        assert_eq!(err(&line), message, "{line}");
    }
}

#[test]
fn one_command_one_of_each_option() {
    assert_eq!(
        err(&format!("-A -D -t {VIP}:80")),
        "multiple commands specified"
    );
    assert_eq!(err("-L -l"), "multiple commands specified");
    assert_eq!(err("-L --list"), "multiple commands specified");
    assert_eq!(err("-C -Z"), "multiple commands specified");
    assert_eq!(
        err(&format!("-A -t {VIP}:80 -u {VIP}:53")),
        "multiple 'service-address' options specified"
    );
    assert_eq!(
        err(&format!("-a -t {VIP}:80 -r 192.0.2.2 -m -m")),
        "multiple 'forwarding-method' options specified"
    );
    assert_eq!(
        err(&format!("-a -t {VIP}:80 -r 192.0.2.2 -m -g")),
        "multiple 'forwarding-method' options specified"
    );
    assert_eq!(err("-L -n -n"), "multiple 'numeric' options specified");
}

#[test]
fn unknown_options_missing_values_stray_arguments() {
    let hint = "Try `rvsadm -h' or 'rvsadm --help' for more information.";
    assert_eq!(
        err("-L --frobnicate"),
        format!("--frobnicate: unknown option\n{hint}")
    );
    assert_eq!(err("-Lq"), format!("-q: unknown option\n{hint}"));
    assert_eq!(err("-A -t"), "-t: missing argument");
    assert_eq!(err("-A --tcp-service"), "--tcp-service: missing argument");
    assert_eq!(
        err("-L --numeric=yes"),
        "--numeric: option does not take an argument"
    );
    assert_eq!(err("-L extra"), "unexpected argument extra");
    assert_eq!(err("-n"), format!("no command specified\n{hint}"));
}

#[test]
fn options_ipvsadm_has_and_rvs_does_not() {
    for (line, needle) in [
        (format!("-A -t {VIP}:80 -s sh -b flag-1"), "flag-1"),
        (format!("-A -t {VIP}:80 --pe sip"), "persistence engines"),
        ("-L --persistent-conn".to_string(), "persistent connections"),
    ] {
        let message = err(&line);
        assert!(message.contains(needle), "{line}: {message}");
    }
}

// --- the sync daemons ------------------------------------------------------------------------

#[test]
fn start_and_stop_daemon_as_ipvsadm_takes_them() {
    use control::cli::DaemonCommand;
    let daemon = |line: &str| match parse(line) {
        Ok(Command::Daemon(d)) => d,
        other => panic!("`{line}`: {other:?}"),
    };
    assert_eq!(
        daemon("--start-daemon master --mcast-interface rvs-int0 --syncid 7"),
        DaemonCommand {
            start: true,
            master: true,
            interface: Some("rvs-int0".into()),
            syncid: Some(7)
        }
    );
    assert_eq!(
        daemon("--start-daemon=backup"),
        DaemonCommand {
            start: true,
            master: false,
            interface: None,
            syncid: None
        }
    );
    assert_eq!(
        daemon("--stop-daemon master"),
        DaemonCommand {
            start: false,
            master: true,
            interface: None,
            syncid: None
        }
    );
    assert_eq!(
        parse("-L --daemon"),
        Ok(Command::List(ListCommand::Daemons))
    );
    for (line, needle) in [
        (
            "--start-daemon primary",
            "illegal start-daemon parameter specified: primary",
        ),
        (
            "--stop-daemon both",
            "illegal stop-daemon parameter specified: both",
        ),
        (
            "--start-daemon master --syncid 256",
            "illegal syncid specified: 256",
        ),
        ("--start-daemon", "missing argument"),
        (
            "--stop-daemon master --syncid 1",
            "Illegal 'syncid' option with the 'stop-daemon' command",
        ),
        ("-L --daemon -c", "conflicts with"),
        (
            "-A -t 198.51.100.1:80 --mcast-interface x",
            "Illegal 'mcast-interface' option",
        ),
    ] {
        let message = err(line);
        assert!(message.contains(needle), "{line}: {message}");
    }
}

// --- -o one-packet scheduling ----------------------------------------------------------------

#[test]
fn ops_is_a_udp_service_flag() {
    for line in [
        format!("-A -u {VIP}:53 -o"),
        format!("-A --udp-service {VIP}:53 --ops"),
    ] {
        let Request::AddService(spec) = request(&line) else {
            panic!("{line}")
        };
        assert!(spec.ops, "{line}");
        assert_eq!(spec.scheduler, SchedulerKind::Wlc);
    }
    let Request::AddService(plain) = request(&format!("-A -u {VIP}:53 -s rr")) else {
        panic!()
    };
    assert!(!plain.ops);
    // ipvsadm's refusal, for -A and -E alike.
    assert_eq!(
        err(&format!("-A -t {VIP}:80 -o")),
        "One-Packet Scheduling is only for UDP virtual services"
    );
    let mut current = spec(80, SchedulerKind::Rr, None);
    let Ok(Command::Change(Change::EditService(edit))) = parse(&format!("-E -t {VIP}:80 -o"))
    else {
        panic!()
    };
    assert_eq!(
        edit.apply(&current).unwrap_err().0,
        "One-Packet Scheduling is only for UDP virtual services"
    );
    // -E -o turns it on; an -E without -o keeps it.
    current.key.protocol = Protocol::Udp;
    let on = edit.apply(&current).unwrap();
    assert!(on.ops);
    let Ok(Command::Change(Change::EditService(edit))) = parse(&format!("-E -u {VIP}:80 -s wrr"))
    else {
        panic!()
    };
    assert!(!edit.ops);
    let kept = edit.apply(&on).unwrap();
    assert!(kept.ops && kept.scheduler == SchedulerKind::Wrr);
    // rvs needs a virtual port to map replies back.
    assert!(err(&format!("-A -u {VIP}:0 -p 60 -o")).contains("virtual port"));
    // Only -A and -E take it.
    for (line, cmd) in [
        (format!("-a -u {VIP}:53 -r 192.0.2.2 -o"), "add-server"),
        (format!("-e -u {VIP}:53 -r 192.0.2.2 -o"), "edit-server"),
        (format!("-D -u {VIP}:53 -o"), "delete-service"),
        ("-L -o".to_string(), "list"),
        ("-S -o".to_string(), "save"),
    ] {
        assert_eq!(
            err(&line),
            format!("Illegal 'ops' option with the '{cmd}' command"),
            "{line}"
        );
    }
}

#[test]
fn ops_survives_save_and_restore() {
    assert!(save_and_restore(&format!("-A -u {VIP}:53 -s rr -p 60 -o")).ops);
}

// --- -R ---------------------------------------------------------------------------------------

#[test]
fn restore_skips_comments_blank_lines_and_the_program_name() {
    let input = "\
# saved by rvsadm -S
ipvsadm -A -t 198.51.100.1:80 -s rr   # the web

rvsadm -a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 1
/sbin/ipvsadm -a -t 198.51.100.1:80 -r 192.0.2.3:80 -m -w 2
ipvsadm
-E -t 198.51.100.1:80 -s wrr
";
    let changes = parse_restore(input).unwrap();
    let lines: Vec<usize> = changes.iter().map(|(n, _)| *n).collect();
    assert_eq!(lines, [2, 4, 5, 7]);
    assert_eq!(
        changes[0].1,
        Change::Apply(Request::AddService(spec(80, SchedulerKind::Rr, None)))
    );
    assert!(matches!(changes[3].1, Change::EditService(_)));
}

#[test]
fn restore_names_the_first_bad_line() {
    let input = "-A -t 198.51.100.1:80 -s rr\n\n-a -t 198.51.100.1:80 -r 192.0.2.2 -g\n-C -n\n";
    assert_eq!(
        parse_restore(input).unwrap_err().0,
        "line 3: rvs implements masquerading (NAT, -m) only: -g (gatewaying, direct routing) is not supported"
    );
    assert_eq!(
        parse_restore("-C\n-A -t 198.51.100.1:80 -s rr -s wrr\n")
            .unwrap_err()
            .0,
        "line 2: multiple 'scheduler' options specified"
    );
}

#[test]
fn restore_accepts_changes_only() {
    for line in ["-L", "-S", "-R", "-h", "-L -c"] {
        assert_eq!(
            parse_restore(&format!("-C\n{line}\n")).unwrap_err().0,
            "line 2: only -A, -E, -D, -a, -e, -d, -C, -Z and --set can be restored",
            "{line}"
        );
    }
    assert_eq!(
        parse_restore("-C --socket /tmp/x\n").unwrap_err().0,
        "line 1: --socket is not allowed in restore input"
    );
}

#[test]
fn save_then_restore_gives_back_the_same_requests() {
    let services = state();
    let mut expected = Vec::new();
    let mut sorted = services.clone();
    sorted.sort_by_key(|s| s.spec.key);
    for s in &sorted {
        expected.push(Request::AddService(s.spec.clone()));
        let mut dests: Vec<DestSpec> = s.dests.iter().map(|d| d.spec.clone()).collect();
        dests.sort_by_key(|d| (d.addr, d.port));
        for dest in dests {
            expected.push(Request::AddDest {
                service: s.spec.key,
                dest,
            });
        }
    }
    let mut table = Table::default();
    let replayed: Vec<Request> = parse_restore(&format::save(&services))
        .unwrap()
        .iter()
        .map(|(_, change)| table.resolve(change).unwrap())
        .collect();
    assert_eq!(replayed, expected);
}

// --- merging -E / -e with the daemon's state --------------------------------------------------

#[test]
fn edit_service_merges_with_the_current_state() {
    let mut table = Table::new(&state());
    let edit = |line: &str| match parse(line) {
        Ok(Command::Change(c)) => c,
        other => panic!("{other:?}"),
    };
    // The UDP service is persistent 300 with a /24 mask: only the scheduler changes.
    assert_eq!(
        table.resolve(&edit(&format!("-E -u {VIP}:53 -s rr"))),
        Ok(Request::EditService(ServiceSpec {
            key: vip(Protocol::Udp, 53),
            scheduler: SchedulerKind::Rr,
            persistence: Some(300),
            netmask: mask("255.255.255.0"),
            sched_flags: Default::default(),
            ops: false,
        }))
    );
    assert_eq!(
        table.resolve(&edit(&format!("-E -t {VIP}:443 -p 0"))),
        Ok(Request::EditService(spec(443, SchedulerKind::Sh, None)))
    );
    assert_eq!(
        table
            .resolve(&edit(&format!("-E -t {VIP}:8080 -s rr")))
            .unwrap_err()
            .0,
        "No such service"
    );
}

#[test]
fn edit_server_merges_with_the_current_state() {
    let mut table = Table::new(&state());
    let edit = |line: &str| match parse(line) {
        Ok(Command::Change(c)) => c,
        other => panic!("{other:?}"),
    };
    // 192.0.2.2:53 has -x 100 -y 50 and weight 1.
    assert_eq!(
        table.resolve(&edit(&format!("-e -u {VIP}:53 -r 192.0.2.2 -w 7"))),
        Ok(Request::EditDest {
            service: vip(Protocol::Udp, 53),
            dest: DestSpec {
                upper_threshold: 100,
                lower_threshold: 50,
                ..dest("192.0.2.2", 53, 7)
            }
        })
    );
    assert_eq!(
        table
            .resolve(&edit(&format!("-e -u {VIP}:53 -r 192.0.2.2 -x 20")))
            .unwrap_err()
            .0,
        "the lower threshold (-y 50) is higher than the upper threshold (-x 20)"
    );
    assert_eq!(
        table
            .resolve(&edit(&format!("-e -u {VIP}:54 -r 192.0.2.2 -w 1")))
            .unwrap_err()
            .0,
        "Service not defined"
    );
    assert_eq!(
        table
            .resolve(&edit(&format!("-e -u {VIP}:53 -r 192.0.2.9 -w 1")))
            .unwrap_err()
            .0,
        "No such destination"
    );
}

#[test]
fn restore_edits_see_services_added_earlier_in_the_same_input() {
    let input = "\
-A -t 198.51.100.1:8080 -s rr -p 60
-a -t 198.51.100.1:8080 -r 192.0.2.2 -w 3
-e -t 198.51.100.1:8080 -r 192.0.2.2 -x 9
-E -t 198.51.100.1:8080 -s wrr
-D -t 198.51.100.1:8080
-E -t 198.51.100.1:8080 -s lc
";
    let changes = parse_restore(input).unwrap();
    let mut table = Table::default();
    let results: Vec<_> = changes.iter().map(|(_, c)| table.resolve(c)).collect();
    assert_eq!(
        results[2],
        Ok(Request::EditDest {
            service: vip(Protocol::Tcp, 8080),
            dest: DestSpec {
                upper_threshold: 9,
                ..dest("192.0.2.2", 8080, 3)
            }
        })
    );
    assert_eq!(
        results[3],
        Ok(Request::EditService(spec(
            8080,
            SchedulerKind::Wrr,
            Some(60)
        )))
    );
    assert_eq!(results[5].clone().unwrap_err().0, "No such service");
}

#[test]
fn edit_to_a_zero_port_service_keeps_it_persistent() {
    let mut table = Table::default();
    for line in ["-A -t 198.51.100.1:0 -p 30", "-E -t 198.51.100.1:0 -s rr"] {
        let (_, change) = parse_restore(line).unwrap().remove(0);
        table.resolve(&change).unwrap();
    }
    let (_, change) = parse_restore("-E -t 198.51.100.1 -p 0").unwrap().remove(0);
    assert_eq!(
        table.resolve(&change).unwrap_err().0,
        "Zero port specified for non-persistent service"
    );
}
