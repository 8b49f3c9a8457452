//! The client side: one request, one reply, clear errors.
//!
//! Before anything is sent, the client checks who listens (`SO_PEERCRED`): the
//! socket path is only a name, and a runtime directory another user can reach
//! could hold their socket. A task's text must never reach anyone but our own
//! daemon (or root, who could read it anyway).

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::protocol::Request;

/// Why a request could not be made.
#[derive(Debug)]
pub(crate) enum ClientError {
    /// No daemon listens on the socket.
    NotRunning(String),
    /// The socket exists but we may not use it.
    Forbidden(String),
    /// Anything else (I/O, a garbled reply).
    Other(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NotRunning(m) | ClientError::Forbidden(m) | ClientError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ClientError {}

/// May a daemon running as `peer_uid` receive the requests of `our_uid`?
pub(crate) fn daemon_trusted(peer_uid: u32, our_uid: u32) -> bool {
    peer_uid == our_uid || peer_uid == 0
}

/// Connects to the daemon's socket and checks that the listener is our own
/// user (or root) before anything is sent.
pub(crate) fn connect(socket: &Path) -> Result<UnixStream, ClientError> {
    let stream = connect_unchecked(socket)?;
    let ours = nix::unistd::geteuid().as_raw();
    match nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials) {
        Ok(cred) if daemon_trusted(cred.uid(), ours) => Ok(stream),
        Ok(cred) => Err(ClientError::Forbidden(format!(
            "refusing to talk to {}: it is served by uid {} (pid {}), not by you (uid {ours}); \
             another user may have planted it. Nothing was sent.",
            socket.display(),
            cred.uid(),
            cred.pid()
        ))),
        Err(e) => Err(ClientError::Other(format!("cannot check who serves {}: {e}", socket.display()))),
    }
}

fn connect_unchecked(socket: &Path) -> Result<UnixStream, ClientError> {
    UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => ClientError::NotRunning(format!(
            "the ptt daemon is not running (no one listens on {}).\nStart it with `ptt run` (foreground) or `systemctl --user start ptt`.",
            socket.display()
        )),
        std::io::ErrorKind::PermissionDenied => ClientError::Forbidden(format!(
            "permission denied on {}: the daemon belongs to another user",
            socket.display()
        )),
        _ => ClientError::Other(format!("cannot connect to {}: {e}", socket.display())),
    })
}

/// Sends one request and reads its reply.
pub(crate) fn request(socket: &Path, req: &Request) -> Result<Value, ClientError> {
    request_within(socket, req, Some(Duration::from_secs(60)))
}

/// Sends one request whose reply may take as long as a person does
/// (`permission_ask`): no read timeout.
pub(crate) fn request_waiting(socket: &Path, req: &Request) -> Result<Value, ClientError> {
    request_within(socket, req, None)
}

fn request_within(socket: &Path, req: &Request, timeout: Option<Duration>) -> Result<Value, ClientError> {
    let stream = connect(socket)?;
    let _ = stream.set_read_timeout(timeout);
    let mut line = serde_json::to_vec(req).map_err(|e| ClientError::Other(e.to_string()))?;
    line.push(b'\n');
    // A daemon that refuses us (another uid) answers and hangs up before reading: even if the
    // write fails, what it said is worth reading.
    let sent = send_all(&stream, &line);
    let mut reply = String::new();
    let read = BufReader::new(stream).read_line(&mut reply);
    match (sent, read) {
        (_, Ok(n)) if n > 0 => {}
        (Err(e), _) => return Err(ClientError::Other(format!("cannot send the request: {e}"))),
        (Ok(()), Err(e)) => return Err(ClientError::Other(format!("cannot read the reply: {e}"))),
        (Ok(()), Ok(_)) => {}
    }
    if reply.trim().is_empty() {
        return Err(ClientError::Other("the daemon closed the connection without a reply".into()));
    }
    let v: Value = serde_json::from_str(&reply).map_err(|e| ClientError::Other(format!("garbled reply: {e}")))?;
    if let Some(failure) = super::reply::Failure::of(&v) {
        let err = failure.message;
        return Err(if err.starts_with("permission denied") {
            ClientError::Forbidden(err)
        } else {
            ClientError::Other(err)
        });
    }
    Ok(v)
}

/// Writes all of `bytes` to the socket with `MSG_NOSIGNAL`: a daemon that went away is an `EPIPE` error we
/// report, never a SIGPIPE, whatever the process does with SIGPIPE (the CLI restores its default action so
/// that `ptt doctor | head -1` ends quietly).
pub(crate) fn send_all(stream: &UnixStream, mut bytes: &[u8]) -> std::io::Result<()> {
    use nix::sys::socket::{MsgFlags, send};
    use std::os::fd::AsRawFd;
    while !bytes.is_empty() {
        match send(stream.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Subscribes and calls `on_event` for each event until it returns false or
/// the daemon goes away.
pub(crate) fn subscribe(socket: &Path, mut on_event: impl FnMut(&Value) -> bool) -> Result<(), ClientError> {
    let stream = connect(socket)?;
    send_all(&stream, b"{\"cmd\":\"subscribe\"}\n")
        .map_err(|e| ClientError::Other(format!("cannot send the request: {e}")))?;
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
        if v.get("subscribed").is_some() {
            continue;
        }
        if !on_event(&v) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_uid_or_root_may_answer() {
        assert!(daemon_trusted(1000, 1000));
        assert!(daemon_trusted(0, 1000));
        assert!(!daemon_trusted(65534, 1000));
        assert!(daemon_trusted(0, 0));
        assert!(!daemon_trusted(65534, 0));
    }
}
