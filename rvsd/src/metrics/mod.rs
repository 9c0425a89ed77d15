//! The metrics listener (`[metrics]` in rvs.toml): an HTTP/1.1 server on a thread of its own,
//! never on a worker lcore, serving
//!
//! - `/metrics`: Prometheus metrics ([`exposition`]): OpenMetrics when the scraper asks for it
//!   (Prometheus does), the classic text format otherwise;
//! - `/`: the status page, one self-contained HTML file that fetches `/status.json` every
//!   second and redraws in place;
//! - `/status.json`: what the page shows ([`Reading`] as JSON).
//!
//! Every figure comes from the service manager through the control socket's own requests
//! (`List`, `Counters`) plus the ports' device counters, under the same mutex the control
//! socket takes, held only while the two requests run. Each answer is written on a thread of
//! its own (at most `MAX_IN_FLIGHT` at once, then 503), so a client that stalls holds only its
//! own. Anything but GET and HEAD is answered 405, an unknown path 404, a malformed request 400
//! (tiny_http); a panic while answering is caught and answered 500.

pub mod exposition;

use crate::control_server::{all_counters, DeviceCounters};
use control::config::MetricsConfig;
use control::model::ServiceStatus;
use control::proto::{Request, Response};
use dataplane::service::ServiceManager;
use serde::Serialize;
use std::net::{SocketAddr, TcpListener};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The status page.
const STATUS_HTML: &str = include_str!("status.html");

/// How long the serving thread waits for a request before it looks at `running` again.
const POLL: Duration = Duration::from_millis(100);
/// Requests answered at once; each further one gets 503 at once.
const MAX_IN_FLIGHT: usize = 16;

/// Where the figures come from: the control socket's manager and the ports' own counters.
#[derive(Clone)]
pub struct Sources {
    pub manager: Arc<Mutex<ServiceManager>>,
    pub device_counters: DeviceCounters,
}

/// One reading of every figure the listener serves.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reading {
    pub version: &'static str,
    /// When it was read: milliseconds on rvsd's monotonic clock (the page's per-second figures
    /// divide by the difference, not by the browser's clock).
    pub at_ms: u64,
    /// The connection table's size, as `-L` prints it.
    pub table_size: u64,
    /// As `-L --stats --rate` lists them.
    pub services: Vec<ServiceStatus>,
    /// As `Request::Counters` answers, device counters included.
    pub counters: Vec<(String, u64)>,
    /// Whether rvsd holds health verdicts: it does not (a health checker acts on real servers
    /// through the control socket), so the page shows "-" in its health column.
    pub health_checks: bool,
}

impl Sources {
    /// Reads every figure: `List` and `Counters` under the manager's mutex, then the ports'
    /// counters without it.
    pub fn read(&self) -> Reading {
        let mut m = self.manager.lock().unwrap_or_else(PoisonError::into_inner);
        let (table_size, services) = match m.handle(Request::List { service: None }) {
            Response::Services {
                table_size,
                services,
            } => (table_size, services),
            _ => (0, Vec::new()),
        };
        let counters = match m.handle(Request::Counters) {
            Response::Counters(c) => c,
            _ => Vec::new(),
        };
        drop(m);
        let counters = all_counters(counters, &self.device_counters);
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        let at_ms = EPOCH.get_or_init(Instant::now).elapsed().as_millis();
        Reading {
            version: env!("CARGO_PKG_VERSION"),
            at_ms: u64::try_from(at_ms).unwrap_or(u64::MAX),
            table_size,
            services,
            counters,
            health_checks: false,
        }
    }
}

/// The bound listener, before it serves (bound early, so an address in use fails start-up
/// before EAL takes the ports).
pub struct MetricsListener {
    addr: SocketAddr,
    listener: TcpListener,
}

impl MetricsListener {
    /// Binds `[metrics] listen`. An address that cannot be bound is an error naming it, or,
    /// with `optional = true`, a warning and no listener.
    pub fn bind(cfg: &MetricsConfig) -> Result<Option<MetricsListener>, String> {
        match TcpListener::bind(cfg.listen) {
            Ok(listener) => Ok(Some(MetricsListener {
                addr: cfg.listen,
                listener,
            })),
            Err(e) if cfg.optional => {
                tracing::warn!(
                    "metrics.listen {}: {e}; starting without the metrics listener \
                     (metrics.optional = true)",
                    cfg.listen
                );
                Ok(None)
            }
            Err(e) => Err(format!(
                "metrics.listen {}: {e} (set metrics.optional = true to start without it)",
                cfg.listen
            )),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts the serving thread; it returns once `running` is cleared.
    pub fn spawn(
        self,
        sources: Sources,
        running: &'static AtomicBool,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let addr = self.addr;
        let server = tiny_http::Server::from_listener(self.listener, None)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let handle = std::thread::Builder::new()
            .name("rvs-metrics".into())
            .spawn(move || serve(&server, &sources, running))?;
        tracing::info!(%addr, "metrics listener ready: /metrics, status page /");
        Ok(handle)
    }
}

fn serve(server: &tiny_http::Server, sources: &Sources, running: &AtomicBool) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    while running.load(Ordering::Relaxed) {
        let request = match server.recv_timeout(POLL) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!("metrics listener: {e}");
                std::thread::sleep(POLL);
                continue;
            }
        };
        // Each answer on a thread of its own: a client that does not read its answer holds
        // that thread only, never the listener.
        if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            let _ = request.respond(response(Answer::text(503, "too many requests\n")));
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (sources, count) = (sources.clone(), in_flight.clone());
        let spawned = std::thread::Builder::new()
            .name("rvs-metrics-req".into())
            .spawn(move || {
                let answer = catch_unwind(AssertUnwindSafe(|| answer(&request, &sources)))
                    .unwrap_or_else(|_| {
                        tracing::error!("internal error while answering a metrics request");
                        Answer::text(500, "internal error\n")
                    });
                // A client that went away is its own problem.
                let _ = request.respond(response(answer));
                count.fetch_sub(1, Ordering::Relaxed);
            });
        if let Err(e) = spawned {
            in_flight.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!("cannot start a metrics request thread: {e}");
        }
    }
}

fn response(answer: Answer) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let mut response = tiny_http::Response::from_data(answer.body).with_status_code(answer.status);
    let mut headers = vec![
        ("Content-Type", answer.content_type),
        ("Cache-Control", "no-store"),
    ];
    if answer.status == 405 {
        headers.push(("Allow", "GET, HEAD"));
    }
    for (name, value) in headers {
        if let Ok(h) = tiny_http::Header::from_bytes(name, value) {
            response.add_header(h);
        }
    }
    response
}

/// A response before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Answer {
    fn text(status: u16, body: &str) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
        }
    }
}

fn answer(request: &tiny_http::Request, sources: &Sources) -> Answer {
    let accept = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Accept"))
        .map(|h| h.value.as_str());
    let method = match request.method() {
        tiny_http::Method::Get => Method::Get,
        tiny_http::Method::Head => Method::Head,
        _ => Method::Other,
    };
    route(method, request.url(), accept, || sources.read())
}

/// The request methods the listener tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    /// Answered as GET; the server leaves the body out.
    Head,
    Other,
}

/// The answer to `method url`; `read` is called only for a page that needs figures.
pub fn route(
    method: Method,
    url: &str,
    accept: Option<&str>,
    read: impl FnOnce() -> Reading,
) -> Answer {
    if method == Method::Other {
        return Answer::text(405, "only GET and HEAD\n");
    }
    let path = url.split(['?', '#']).next().unwrap_or_default();
    match path {
        "/metrics" => {
            let text = exposition::encode(&read());
            if exposition::wants_openmetrics(accept) {
                Answer {
                    status: 200,
                    content_type: exposition::OPENMETRICS_TYPE,
                    body: text.into_bytes(),
                }
            } else {
                Answer {
                    status: 200,
                    content_type: exposition::CLASSIC_TYPE,
                    body: exposition::to_classic(&text).into_bytes(),
                }
            }
        }
        "/" | "/index.html" => Answer {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: STATUS_HTML.as_bytes().to_vec(),
        },
        "/status.json" => match serde_json::to_vec(&read()) {
            Ok(body) => Answer {
                status: 200,
                content_type: "application/json",
                body,
            },
            Err(e) => Answer::text(500, &format!("cannot encode the status: {e}\n")),
        },
        _ => Answer::text(404, "not found: try /metrics or /\n"),
    }
}

#[cfg(test)]
mod tests;
