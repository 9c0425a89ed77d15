//! rvsadm's side of the control protocol: JSON lines over the Unix socket, one connection per
//! run (opened at the first request), each request answered before the next is sent.

use crate::proto::{
    Request, RequestEnvelope, Response, ResponseEnvelope, DEFAULT_SOCKET, PROTOCOL_VERSION,
};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long rvsadm waits for the daemon to answer before giving up.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to rvsd at {path}: {source} (is rvsd running? --socket PATH or ${env} pick another socket)", env = crate::proto::SOCKET_ENV)]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("talking to rvsd at {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("unexpected answer from rvsd at {path}: {message}")]
    Protocol { path: String, message: String },
    /// The daemon refused the request; the message is the daemon's.
    #[error("{0}")]
    Daemon(String),
}

/// The socket to use: `--socket`, else `$RVS_SOCKET` (when set and not empty), else the default.
pub fn socket_path(flag: Option<&str>, env: Option<OsString>) -> PathBuf {
    match (flag, env) {
        (Some(path), _) => PathBuf::from(path),
        (None, Some(path)) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(DEFAULT_SOCKET),
    }
}

pub struct Client {
    path: PathBuf,
    /// The open connection: a writer and a buffered reader on the same socket.
    conn: Option<(UnixStream, BufReader<UnixStream>)>,
}

impl Client {
    pub fn new(path: impl Into<PathBuf>) -> Client {
        Client {
            path: path.into(),
            conn: None,
        }
    }

    /// Sends one request and returns the answer; a `Response::Error` comes back as
    /// [`ClientError::Daemon`].
    pub fn call(&mut self, request: Request) -> Result<Response, ClientError> {
        let path = self.path.display().to_string();
        let io = |source| ClientError::Io {
            path: path.clone(),
            source,
        };
        let protocol = |message: String| ClientError::Protocol {
            path: path.clone(),
            message,
        };
        let mut line = serde_json::to_string(&RequestEnvelope::new(request))
            .map_err(|e| protocol(e.to_string()))?;
        line.push('\n');
        let (writer, reader) = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(connect(&self.path)?),
        };
        writer.write_all(line.as_bytes()).map_err(io)?;

        let mut answer = String::new();
        reader.read_line(&mut answer).map_err(io)?;
        if answer.is_empty() {
            return Err(protocol("the connection closed without an answer".into()));
        }
        let envelope: ResponseEnvelope =
            serde_json::from_str(&answer).map_err(|e| protocol(e.to_string()))?;
        if envelope.version != PROTOCOL_VERSION {
            return Err(protocol(format!(
                "rvsd speaks protocol version {}, this rvsadm speaks {PROTOCOL_VERSION}",
                envelope.version
            )));
        }
        match envelope.result {
            Response::Error(message) => Err(ClientError::Daemon(message)),
            response => Ok(response),
        }
    }
}

fn connect(path: &Path) -> Result<(UnixStream, BufReader<UnixStream>), ClientError> {
    let failed = |source| ClientError::Connect {
        path: path.display().to_string(),
        source,
    };
    let stream = UnixStream::connect(path).map_err(failed)?;
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(failed)?;
    let reader = BufReader::new(stream.try_clone().map_err(failed)?);
    Ok((stream, reader))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_option_then_environment_then_default() {
        let env = || Some(OsString::from("/env/rvs.sock"));
        assert_eq!(
            socket_path(Some("/opt/rvs.sock"), env()),
            PathBuf::from("/opt/rvs.sock")
        );
        assert_eq!(socket_path(None, env()), PathBuf::from("/env/rvs.sock"));
        assert_eq!(
            socket_path(None, Some(OsString::new())),
            PathBuf::from(DEFAULT_SOCKET)
        );
        assert_eq!(socket_path(None, None), PathBuf::from(DEFAULT_SOCKET));
    }
}
