//! The listener thread and one small thread per connection.
//!
//! Clients are bounded: at most [`MAX_CONNECTIONS`] are served at once, fewer
//! when the descriptor limit is low (see [`connection_cap`]); the listener waits
//! for a free slot before it accepts, so the rest queue in the socket's backlog
//! instead of using descriptors. A connection costs exactly one descriptor (its
//! reader, writer and forwarder share it), so a slot once taken cannot fail for
//! lack of descriptors half way through a request. A connection must send its
//! first request within [`FIRST_LINE_TIMEOUT`] and may then idle for
//! [`IDLE_TIMEOUT`]; a `watch` subscriber that stops reading is dropped after
//! [`SLOW_READER_TIMEOUT`] (and by the loop when its queue of 256 small events
//! is full). When `accept` fails for lack of descriptors, the listener backs off
//! and logs it once, not every 100 ms.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use crossbeam_channel::Sender;
use serde_json::Value;

use super::protocol::{Incoming, Request, error_reply};

/// Longest request line accepted.
const MAX_REQUEST: u64 = 1 << 20;
/// How long a connection waits for the loop's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; more wait in the listen backlog.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// A client sends its request right after connecting; an idle socket is let go.
const FIRST_LINE_TIMEOUT: Duration = Duration::from_secs(2);
/// Between requests on a connection that already made one.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// A subscriber that does not take an event for this long is dropped.
const SLOW_READER_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections to serve at once with `soft_limit` descriptors: a quarter of
/// them (the daemon needs the rest for task logs, pipes, the registry and audio), at
/// least 4, at most [`MAX_CONNECTIONS`].
pub(crate) fn connection_cap(soft_limit: u64) -> usize {
    usize::try_from(soft_limit / 4).unwrap_or(MAX_CONNECTIONS).clamp(4, MAX_CONNECTIONS)
}

/// Connections being served, and a condition to wait for a free slot.
struct Slots {
    cap: usize,
    used: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Slots {
    fn new(cap: usize) -> Self {
        Self { cap, used: std::sync::Mutex::new(0), freed: std::sync::Condvar::new() }
    }

    fn take(&self) {
        let mut used = self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while *used >= self.cap {
            used = self.freed.wait(used).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *used += 1;
    }

    fn give_back(&self) {
        let mut used = self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *used = used.saturating_sub(1);
        self.freed.notify_one();
    }
}

/// Gives the slot back when a connection thread ends, however it ends.
struct SlotGuard(std::sync::Arc<Slots>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.give_back();
    }
}

/// Binds the socket (0600) and starts the listener thread.
pub(crate) fn start(path: &Path, to_loop: Sender<Incoming>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // We hold the daemon lock, so a socket file here is stale.
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot bind the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot chmod 0600 {}", path.display()))?;
    let uid = nix::unistd::geteuid().as_raw();
    let soft =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    let cap = connection_cap(soft);
    log::debug!("control: serving up to {cap} connections at once ({soft} descriptors)");
    let slots = std::sync::Arc::new(Slots::new(cap));
    std::thread::Builder::new().name("control".into()).spawn(move || {
        let mut backoff: Option<Duration> = None;
        let mut warned_at: Option<std::time::Instant> = None;
        loop {
            slots.take();
            match listener.accept() {
                Ok((stream, _)) => {
                    if backoff.take().is_some() {
                        log::debug!("control: accepting connections again");
                    }
                    let tx = to_loop.clone();
                    let guard = SlotGuard(slots.clone());
                    let spawned = std::thread::Builder::new().name("control-conn".into()).stack_size(256 * 1024).spawn(
                        move || {
                            let _slot = guard;
                            serve(stream, uid, tx)
                        },
                    );
                    if let Err(e) = spawned {
                        log::error!("control: cannot start a connection thread: {e}");
                    }
                }
                Err(e) => {
                    slots.give_back();
                    // Out of descriptors (EMFILE/ENFILE) or memory: wait for connections to end, doubling
                    // the pause up to 2 s; say so once (again only after a quiet minute), not at every retry.
                    let pause = backoff.map_or(Duration::from_millis(50), |b| (b * 2).min(Duration::from_secs(2)));
                    if warned_at.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        log::warn!("control: accept failed: {e}; backing off until connections end (logged once)");
                        warned_at = Some(std::time::Instant::now());
                    } else {
                        log::debug!("control: accept failed: {e}");
                    }
                    backoff = Some(pause);
                    std::thread::sleep(pause);
                }
            }
        }
    })?;
    Ok(())
}

/// Is a peer with `peer_uid` allowed to talk to a daemon of `our_uid`?
pub(crate) fn peer_allowed(peer_uid: u32, our_uid: u32) -> bool {
    peer_uid == our_uid
}

fn serve(stream: UnixStream, uid: u32, to_loop: Sender<Incoming>) {
    let peer = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials);
    // One descriptor per connection: the reader and the writer (and a live client's forwarder)
    // share the stream instead of `try_clone`, which could fail for lack of descriptors.
    let stream = std::sync::Arc::new(stream);
    let writer = &*stream;
    match peer {
        Ok(cred) if peer_allowed(cred.uid(), uid) => {}
        Ok(cred) => {
            log::warn!("control: refused a connection from uid {} (pid {})", cred.uid(), cred.pid());
            let _ = write_line(writer, &error_reply(format!("permission denied: this daemon belongs to uid {uid}")));
            return;
        }
        Err(e) => {
            log::warn!("control: cannot read peer credentials: {e}");
            return;
        }
    }
    // A silent client is let go (its slot and descriptors are for those that talk).
    let _ = stream.set_read_timeout(Some(FIRST_LINE_TIMEOUT));
    let mut reader = BufReader::new(&*stream);
    let mut first = true;
    loop {
        let mut line = Vec::new();
        match (&mut reader).take(MAX_REQUEST).read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(_) => return,
        }
        if std::mem::take(&mut first) {
            let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
        }
        if line.last() != Some(&b'\n') && line.len() as u64 >= MAX_REQUEST {
            let _ = write_line(writer, &error_reply("request too long"));
            return;
        }
        if line.trim_ascii().is_empty() {
            continue;
        }
        let request: Request = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(e) => {
                if write_line(writer, &error_reply(format!("bad request: {e}"))).is_err() {
                    return;
                }
                continue;
            }
        };
        if request == Request::Subscribe {
            stream_events(stream.clone(), &to_loop);
            return;
        }
        if request == Request::LiveAttach {
            // A text conversation may stay quiet for as long as the user likes.
            let _ = stream.set_read_timeout(None);
            let leftover = reader.buffer().to_vec();
            drop(reader);
            live_client(stream, leftover, &to_loop);
            return;
        }
        // A permission request waits for a person; the daemon answers it in the end whatever happens
        // (an answer, its timeout, the task's end, shutdown drops the sender). A sync waits for the loop to
        // be idle. Both are answered as a `Value` that this thread writes.
        let waits_for_a_person = matches!(request, Request::PermissionAsk { .. });
        if waits_for_a_person || request == Request::Sync {
            let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
            if to_loop.send(Incoming::Request { request, reply: reply_tx }).is_err() {
                let _ = write_line(writer, &error_reply("the daemon is stopping"));
                return;
            }
            let reply = if waits_for_a_person {
                reply_rx.recv().unwrap_or_else(|_| error_reply("the daemon stopped before the request was answered"))
            } else {
                reply_rx
                    .recv_timeout(REPLY_TIMEOUT)
                    .unwrap_or_else(|_| error_reply("the daemon did not answer in time"))
            };
            if write_line(writer, &reply).is_err() {
                return;
            }
            continue;
        }
        // Everything else: the loop writes the reply itself, this thread only what the socket did not take.
        let (replier, wait) = super::direct::replier(stream.clone());
        if to_loop.send(Incoming::Call { request, replier }).is_err() {
            let _ = write_line(writer, &error_reply("the daemon is stopping"));
            return;
        }
        let written = match wait.wait(REPLY_TIMEOUT) {
            Ok(rest) if rest.is_empty() => Ok(()),
            Ok(rest) => {
                let mut w = writer;
                w.write_all(&rest)
            }
            Err(super::direct::NoReply::Late) => write_line(writer, &error_reply("the daemon did not answer in time")),
            Err(super::direct::NoReply::Dropped) => {
                write_line(writer, &error_reply("the daemon stopped before the request was answered"))
            }
        };
        if written.is_err() {
            return;
        }
    }
}

fn stream_events(stream: std::sync::Arc<UnixStream>, to_loop: &Sender<Incoming>) {
    // The loop writes the events itself while the socket takes them (see `super::direct`); this thread
    // writes only what it had to queue. A subscriber that stops reading is dropped once the socket's buffer
    // is full for this long, and by the loop when its queue (256 events) is full.
    let _ = stream.set_write_timeout(Some(SLOW_READER_TIMEOUT));
    let (subscriber, backlog) = super::direct::subscriber(stream.clone());
    if to_loop.send(Incoming::Subscribe { subscriber }).is_err() {
        return;
    }
    backlog.drain(|bytes| {
        let mut w = &*stream;
        w.write_all(bytes)
    });
}

/// An attached `ptt live --text`: a forwarder thread writes the session's
/// lines, this thread reads `say` lines until the client hangs up.
fn live_client(stream: std::sync::Arc<UnixStream>, leftover: Vec<u8>, to_loop: &Sender<Incoming>) {
    let writer = &*stream;
    let (tx, rx) = crossbeam_channel::bounded(1024);
    let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
    if to_loop.send(Incoming::LiveAttach { events: tx, reply: reply_tx }).is_err() {
        return;
    }
    let id = match reply_rx.recv_timeout(REPLY_TIMEOUT) {
        Ok(Ok(id)) => id,
        Ok(Err(message)) => {
            let _ = write_line(writer, &super::reply::to_value(&super::reply::LiveLine::Error { message }));
            return;
        }
        Err(_) => {
            let _ = write_line(writer, &error_reply("the daemon did not answer in time"));
            return;
        }
    };
    let out = stream.clone();
    let forwarder = std::thread::Builder::new().name("control-live".into()).spawn(move || {
        for ev in rx {
            if write_line(&out, &ev).is_err() {
                return;
            }
        }
    });
    if forwarder.is_err() {
        let _ = to_loop.send(Incoming::LiveDetach { id });
        return;
    }
    // Lines the client sent right behind `live_attach` were already buffered by the first reader.
    let mut reader = BufReader::new(std::io::Cursor::new(leftover).chain(&*stream));
    loop {
        let mut line = Vec::new();
        match (&mut reader).take(MAX_REQUEST).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        match serde_json::from_slice::<Request>(&line) {
            Ok(Request::Say { text }) => {
                if to_loop.send(Incoming::LiveInput { text }).is_err() {
                    break;
                }
            }
            Ok(other) => log::debug!("control: ignoring {other:?} on a live connection"),
            Err(e) => log::debug!("control: bad line on a live connection: {e}"),
        }
    }
    let _ = to_loop.send(Incoming::LiveDetach { id });
}

fn write_line(mut w: &UnixStream, v: &Value) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    bytes.push(b'\n');
    w.write_all(&bytes)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_leaves_descriptors_for_the_daemon() {
        assert_eq!(connection_cap(1024), MAX_CONNECTIONS);
        assert_eq!(connection_cap(64), 16, "a quarter of a low limit");
        assert_eq!(connection_cap(8), 4, "but never fewer than 4");
        assert_eq!(connection_cap(u64::MAX), MAX_CONNECTIONS);
    }

    #[test]
    fn only_the_same_uid_is_allowed() {
        assert!(peer_allowed(1000, 1000));
        assert!(!peer_allowed(65534, 1000));
        assert!(!peer_allowed(0, 1000), "not even root talks to a user's daemon");
    }
}
