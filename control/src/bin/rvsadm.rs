//! rvsadm: ipvsadm's language for rvsd, over its control socket.
//!
//! Exit status: 0 done, 1 the daemon refused or could not be reached, 2 a usage error (nothing
//! was sent).

use control::cli::{self, Command, ListCommand, Table};
use control::client::{socket_path, Client, ClientError};
use control::format;
use control::model::ServiceStatus;
use control::proto::{Request, Response};
use std::io::{Read, Write};
use std::process::ExitCode;

/// A failed run: what to print and the exit status.
struct Failure {
    status: u8,
    message: String,
}

impl Failure {
    /// A malformed command line or restore input: nothing was sent.
    fn usage(message: impl ToString) -> Failure {
        Failure {
            status: 2,
            message: message.to_string(),
        }
    }

    /// The daemon could not be reached, or refused.
    fn runtime(message: impl ToString) -> Failure {
        Failure {
            status: 1,
            message: message.to_string(),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        Failure::runtime(e)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::parse_args(&args).map_err(Failure::usage).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{}", failure.message);
            ExitCode::from(failure.status)
        }
    }
}

fn run(invocation: cli::Invocation) -> Result<(), Failure> {
    let mut client = Client::new(socket_path(
        invocation.socket.as_deref(),
        std::env::var_os(control::proto::SOCKET_ENV),
    ));
    match invocation.command {
        Command::Help => emit(&cli::usage()),
        Command::Version => emit(&cli::version()),
        Command::Change(change) => {
            let mut table = match change.edited_service() {
                Some(key) => Table::new(&services(&mut client, Some(key))?.1),
                None => Table::default(),
            };
            let request = table.resolve(&change).map_err(Failure::runtime)?;
            expect_ok(client.call(request)?)
        }
        Command::Restore => restore(&mut client),
        Command::Save => emit(&format::save(&services(&mut client, None)?.1)),
        Command::List(ListCommand::Services { service, format }) => {
            let (table_size, list) = services(&mut client, service)?;
            match (service, list.first()) {
                (None, _) => emit(&format::list(table_size, &list, &format)),
                (Some(_), Some(one)) => emit(&format::list_service(one, &format)),
                (Some(_), None) => Err(Failure::runtime("No such service")),
            }
        }
        Command::List(ListCommand::Conns) => match client.call(Request::ListConns)? {
            Response::Conns(conns) => emit(&format::conns(&conns)),
            other => Err(unexpected(&other)),
        },
        Command::List(ListCommand::Timeouts) => match client.call(Request::GetTimeouts)? {
            Response::Timeouts(t) => emit(&format::timeouts(&t)),
            other => Err(unexpected(&other)),
        },
        Command::List(ListCommand::Daemons) => emit(&sync_status(&mut client)?.ipvsadm_lines()),
        Command::Daemon(d) => daemon(&mut client, &d),
        Command::List(ListCommand::Counters) => match client.call(Request::Counters)? {
            Response::Counters(c) => emit(
                &c.iter()
                    .map(|(name, value)| format!("{name} {value}\n"))
                    .collect::<String>(),
            ),
            other => Err(unexpected(&other)),
        },
    }
}

fn sync_status(client: &mut Client) -> Result<control::sync::SyncStatus, Failure> {
    match client.call(Request::SyncStatus)? {
        Response::Sync(s) => Ok(s),
        other => Err(unexpected(&other)),
    }
}

/// `--start-daemon` / `--stop-daemon`: turns one sync daemon on or off, keeping the other as
/// it is. An interface or syncid that is not `[sync]`'s is refused before anything changes.
fn daemon(client: &mut Client, d: &cli::DaemonCommand) -> Result<(), Failure> {
    let now = sync_status(client)?;
    if let Some(ifname) = d.interface.as_deref().filter(|i| *i != now.interface) {
        return Err(Failure::runtime(format!(
            "rvsd's sync runs on {} (the kernel twin of [sync] port {:?}), not {ifname}",
            now.interface, now.port
        )));
    }
    if let Some(id) = d.syncid.filter(|id| *id != now.syncid) {
        return Err(Failure::runtime(format!(
            "rvsd's syncid is {} ([sync] syncid in rvs.toml), not {id}",
            now.syncid
        )));
    }
    let (mut master, mut backup) = (now.master, now.backup);
    if d.master {
        master = d.start;
    } else {
        backup = d.start;
    }
    expect_ok(client.call(Request::SetSyncRole { master, backup })?)
}

/// `-R`: every line is parsed and resolved before the first is sent.
fn restore(client: &mut Client) -> Result<(), Failure> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| Failure::runtime(format!("cannot read stdin: {e}")))?;
    let changes = cli::parse_restore(&input).map_err(Failure::usage)?;
    let mut table = if changes.iter().any(|(_, c)| c.edited_service().is_some()) {
        Table::new(&services(client, None)?.1)
    } else {
        Table::default()
    };
    let requests = changes
        .iter()
        .map(|(line, change)| {
            table
                .resolve(change)
                .map(|r| (*line, r))
                .map_err(|e| Failure::runtime(format!("line {line}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (index, (line, request)) in requests.into_iter().enumerate() {
        let answer = client
            .call(request)
            .map_err(Failure::from)
            .and_then(expect_ok);
        if let Err(Failure { message, .. }) = answer {
            let applied = match index {
                0 => "nothing was applied".to_string(),
                n => format!("the {n} command(s) before it were applied, none after it"),
            };
            return Err(Failure::runtime(format!(
                "line {line}: {message} ({applied})"
            )));
        }
    }
    Ok(())
}

/// `Request::List`: the table size and the services.
fn services(
    client: &mut Client,
    service: Option<control::model::ServiceKey>,
) -> Result<(u64, Vec<ServiceStatus>), Failure> {
    match client.call(Request::List { service })? {
        Response::Services {
            table_size,
            services,
        } => Ok((table_size, services)),
        other => Err(unexpected(&other)),
    }
}

fn expect_ok(response: Response) -> Result<(), Failure> {
    match response {
        Response::Ok => Ok(()),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(response: &Response) -> Failure {
    Failure::runtime(format!("unexpected answer from rvsd: {response:?}"))
}

/// Writes to stdout; a closed pipe (`rvsadm -L | head`) is not an error worth a panic.
fn emit(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::runtime(format!("cannot write output: {e}"))),
    }
}
