//! The Realtime WebSocket: one I/O thread that owns the socket, and one
//! keepalive thread that asks it to ping.
//!
//! The I/O thread deals in text frames only: it knows nothing of event types
//! (the pure session machine does). It waits with `poll` on two descriptors,
//! the TCP socket and a wake pipe, so an outbound frame queued by the main loop
//! goes out at once (a tool call's answer must not wait for a read timeout),
//! and a ping that tungstenite queued in reply to the server's is flushed on
//! the next turn. The socket is non-blocking after the handshake; every
//! `read` is repeated until `WouldBlock`, which also drains what rustls has
//! already decrypted.
//!
//! The keepalive thread sleeps until its next deadline: the next ping
//! (`ping_every` after the last), or, while a ping is unanswered, that ping's
//! pong deadline (`pong_timeout` after it), so a stall is reported at most
//! `ping_every + pong_timeout` after it starts. And when the server owes us an
//! answer ([`Connection::expect_reply`]: the session machine says so, from its
//! own state, when it sends `response.create` or commits a turn), it pings at
//! once: a link that stalls in the middle of a conversation is noticed
//! `pong_timeout` later, not at the next scheduled ping. Without a pong in time
//! it reports the link dead, and the loop reconnects.

use std::io::ErrorKind;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Identifies one connection attempt; events of an old one are ignored.
pub(crate) type ConnId = u64;

/// What the connection threads tell the main loop.
#[derive(Debug)]
pub(crate) enum ConnEvent {
    /// The handshake succeeded.
    Opened,
    /// A text frame from the server.
    Frame(String),
    /// The connection is over. `fatal` is set for failures a retry cannot fix
    /// (HTTP 401/403/404 on the upgrade).
    Closed { reason: String, fatal: bool },
    /// No pong in time: the loop should drop this connection and reconnect.
    Dead,
}

/// `(connection id, event)`, on one channel shared by every connection.
pub(crate) type ConnMessage = (ConnId, ConnEvent);

/// How to reach the server.
#[derive(Clone)]
pub(crate) struct ConnectSpec {
    /// `wss://api.openai.com/v1/realtime?model=gpt-realtime` (or `ws://` in tests).
    pub(crate) url: String,
    /// Sent as `Authorization: Bearer <key>`; never logged.
    pub(crate) api_key: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) ping_every: Duration,
    pub(crate) pong_timeout: Duration,
}

impl std::fmt::Debug for ConnectSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectSpec").field("url", &self.url).field("api_key", &"[redacted]").finish()
    }
}

/// What the loop (and the keepalive thread) queue for the I/O thread.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outbound {
    Text(String),
    Ping,
    Close,
}

/// The loop's handle on a connection: queue frames, close it.
pub(crate) struct Connection {
    pub(crate) id: ConnId,
    tx: Sender<Outbound>,
    /// Asks the keepalive thread to ping now (a reply is awaited); `None` for a detached connection, whose
    /// "keepalive" queues the ping itself.
    urgent: Option<Sender<()>>,
    wake: Arc<OwnedFd>,
}

impl Connection {
    /// Starts the I/O and keepalive threads; the handshake happens on the I/O
    /// thread, and its outcome arrives as `Opened` or `Closed`.
    pub(crate) fn open(id: ConnId, spec: ConnectSpec, events: Sender<ConnMessage>) -> std::io::Result<Connection> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (wake_r, wake_w) = nix::unistd::pipe().map_err(std::io::Error::from)?;
        for fd in [&wake_r, &wake_w] {
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK))
                .map_err(std::io::Error::from)?;
        }
        let wake = Arc::new(wake_w);
        let (urgent, urgent_rx) = crossbeam_channel::bounded(1);
        let io = IoThread {
            id,
            spec,
            rx,
            wake_r,
            keepalive_tx: tx.clone(),
            keepalive_wake: wake.clone(),
            urgent_rx,
            events,
        };
        std::thread::Builder::new().name(format!("ws-io-{id}")).spawn(move || io.run())?;
        Ok(Connection { id, tx, urgent: Some(urgent), wake })
    }

    /// Queues a text frame (sent at once by the I/O thread).
    pub(crate) fn send(&self, text: String) {
        self.push(Outbound::Text(text));
    }

    /// The server owes us an answer to what was just sent: the keepalive pings at once (queued behind those
    /// frames), so a silent link is reported dead one pong timeout from now.
    pub(crate) fn expect_reply(&self) {
        match &self.urgent {
            Some(urgent) => {
                let _ = urgent.try_send(());
            }
            None => self.push(Outbound::Ping),
        }
    }

    /// Sends a close frame and ends the threads.
    pub(crate) fn close(&self) {
        self.push(Outbound::Close);
    }

    /// A connection with no threads and no socket: what the loop queues
    /// arrives on the returned receiver. For unit tests of the glue.
    #[cfg(test)]
    pub(crate) fn detached(id: ConnId) -> std::io::Result<(Connection, Receiver<Outbound>)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (wake_r, wake_w) = nix::unistd::pipe().map_err(std::io::Error::from)?;
        for fd in [&wake_r, &wake_w] {
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK))
                .map_err(std::io::Error::from)?;
        }
        // The read end is never read: the write end (non-blocking) just fills up. Keeping it
        // open (leaked, a test's lifetime) spares the writer an EPIPE.
        std::mem::forget(wake_r);
        Ok((Connection { id, tx, urgent: None, wake: Arc::new(wake_w) }, rx))
    }

    fn push(&self, msg: Outbound) {
        if self.tx.send(msg).is_ok() {
            wake(&self.wake);
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

fn wake(fd: &OwnedFd) {
    // A full pipe means the I/O thread is already due to wake up.
    let _ = nix::unistd::write(fd, &[1u8]);
}

struct IoThread {
    id: ConnId,
    spec: ConnectSpec,
    rx: Receiver<Outbound>,
    wake_r: OwnedFd,
    /// Handed to the keepalive thread: it queues pings like the loop queues frames.
    keepalive_tx: Sender<Outbound>,
    keepalive_wake: Arc<OwnedFd>,
    /// From the loop's handle: ping now. Disconnected when the handle is dropped.
    urgent_rx: Receiver<()>,
    events: Sender<ConnMessage>,
}

impl IoThread {
    fn emit(&self, ev: ConnEvent) {
        let _ = self.events.send((self.id, ev));
    }

    fn run(self) {
        let (reason, fatal) = match connect(&self.spec) {
            Ok(ws) => {
                self.emit(ConnEvent::Opened);
                self.serve(ws)
            }
            Err(e) => (e.reason, e.fatal),
        };
        self.emit(ConnEvent::Closed { reason, fatal });
    }

    /// Pumps frames until the connection ends; returns why.
    fn serve(&self, mut ws: WebSocket<MaybeTlsStream<TcpStream>>) -> (String, bool) {
        let last_pong = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let keepalive_stop = Arc::new(AtomicBool::new(false));
        self.start_keepalive(last_pong.clone(), started, keepalive_stop.clone());
        let result = self.pump(&mut ws, &last_pong, started);
        keepalive_stop.store(true, Ordering::Relaxed);
        result
    }

    fn pump(
        &self,
        ws: &mut WebSocket<MaybeTlsStream<TcpStream>>,
        last_pong: &AtomicU64,
        started: Instant,
    ) -> (String, bool) {
        let tcp_fd = tcp_of(ws).as_raw_fd();
        let mut want_write = false;
        let mut wake_buf = [0u8; 64];
        loop {
            // 1. Read everything available.
            loop {
                match ws.read() {
                    Ok(Message::Text(t)) => self.emit(ConnEvent::Frame(t.as_str().to_owned())),
                    Ok(Message::Binary(_)) => log::debug!("realtime: ignoring a binary frame"),
                    Ok(Message::Pong(_)) => last_pong.store(started.elapsed().as_millis() as u64, Ordering::Relaxed),
                    Ok(Message::Ping(_)) | Ok(Message::Frame(_)) => want_write = true,
                    Ok(Message::Close(frame)) => {
                        let why = frame
                            .map(|f| format!("server closed the connection ({}: {})", u16::from(f.code), f.reason))
                            .unwrap_or_else(|| "server closed the connection".into());
                        let _ = ws.flush();
                        return (why, false);
                    }
                    Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::Interrupted => {}
                    Err(tungstenite::Error::ConnectionClosed) | Err(tungstenite::Error::AlreadyClosed) => {
                        return ("connection closed".into(), false);
                    }
                    Err(e) => return (format!("connection lost: {e}"), false),
                }
            }
            // 2. Queue everything the loop (or the keepalive thread) sent.
            while nix::unistd::read(&self.wake_r, &mut wake_buf).is_ok_and(|n| n > 0) {}
            for out in self.rx.try_iter() {
                let msg = match out {
                    Outbound::Text(t) => Message::text(t),
                    Outbound::Ping => Message::Ping(Vec::new().into()),
                    Outbound::Close => {
                        let _ = ws.close(None);
                        let _ = ws.flush();
                        return ("closed by ptt".into(), false);
                    }
                };
                match ws.write(msg) {
                    Ok(()) => {}
                    Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return (format!("send failed: {e}"), false),
                }
                want_write = true;
            }
            // 3. Flush; if the socket is full, poll for writability.
            if want_write {
                match ws.flush() {
                    Ok(()) => want_write = false,
                    Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return (format!("send failed: {e}"), false),
                }
            }
            // `read` ran until WouldBlock, so neither tungstenite nor rustls holds
            // unread bytes: sleeping in poll is safe.
            if self.rx.is_empty() {
                let mut tcp_events = nix::poll::PollFlags::POLLIN;
                if want_write {
                    tcp_events |= nix::poll::PollFlags::POLLOUT;
                }
                // SAFETY: the fd belongs to the socket `ws` owns, alive for this call.
                let tcp = unsafe { std::os::fd::BorrowedFd::borrow_raw(tcp_fd) };
                let mut fds = [
                    nix::poll::PollFd::new(tcp, tcp_events),
                    nix::poll::PollFd::new(self.wake_r.as_fd(), nix::poll::PollFlags::POLLIN),
                ];
                match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(1000u16)) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return (format!("poll failed: {e}"), false),
                }
            }
        }
    }

    fn start_keepalive(&self, last_pong: Arc<AtomicU64>, started: Instant, stop: Arc<AtomicBool>) {
        let (tx, wake_fd, urgent) = (self.keepalive_tx.clone(), self.keepalive_wake.clone(), self.urgent_rx.clone());
        let (events, id, every, timeout) = (self.events.clone(), self.id, self.spec.ping_every, self.spec.pong_timeout);
        let spawned = std::thread::Builder::new().name(format!("ws-keepalive-{id}")).spawn(move || {
            let timeout_ms = timeout.as_millis() as u64;
            // Milliseconds since `started` (the I/O thread stamps pongs on the same clock).
            let mut ping_sent_at: Option<u64> = None;
            let mut next_ping = every;
            loop {
                // The one deadline that matters now: the pong's while a ping is out, else the next ping.
                let wake_at = match ping_sent_at {
                    Some(sent) => Duration::from_millis(sent + timeout_ms),
                    None => next_ping,
                };
                let urgent_ping = match urgent.recv_timeout(wake_at.saturating_sub(started.elapsed())) {
                    Ok(()) => true,
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => false,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                };
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let now_ms = started.elapsed().as_millis() as u64;
                if let Some(sent) = ping_sent_at {
                    if last_pong.load(Ordering::Relaxed) >= sent {
                        ping_sent_at = None;
                    } else if now_ms.saturating_sub(sent) >= timeout_ms {
                        log::warn!("realtime: no pong within {timeout:?}; the link is dead");
                        let _ = events.send((id, ConnEvent::Dead));
                        return;
                    }
                }
                if ping_sent_at.is_none() && (urgent_ping || started.elapsed() >= next_ping) {
                    if tx.send(Outbound::Ping).is_err() {
                        return;
                    }
                    wake(&wake_fd);
                    ping_sent_at = Some(now_ms.max(1));
                    next_ping = started.elapsed() + every;
                }
            }
        });
        if let Err(e) = spawned {
            log::error!("realtime: cannot start the keepalive thread: {e}");
        }
    }
}

struct ConnectError {
    reason: String,
    fatal: bool,
}

/// TCP connect with a timeout, then the (TLS and) WebSocket handshake, then
/// switch the socket to non-blocking.
fn connect(spec: &ConnectSpec) -> Result<WebSocket<MaybeTlsStream<TcpStream>>, ConnectError> {
    let err = |reason: String| ConnectError { reason, fatal: false };
    let mut request = spec
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| ConnectError { reason: format!("bad live.url {}: {e}", spec.url), fatal: true })?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", spec.api_key)).map_err(|_| ConnectError {
        reason: "the OpenAI API key contains characters that cannot be sent in a header".into(),
        fatal: true,
    })?;
    request.headers_mut().insert("Authorization", bearer);
    let uri = request.uri().clone();
    let host = uri.host().unwrap_or("localhost").trim_matches(['[', ']']).to_string();
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("wss") { 443 } else { 80 });
    let addrs: Vec<_> =
        (host.as_str(), port).to_socket_addrs().map_err(|e| err(format!("cannot resolve {host}: {e}")))?.collect();
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, spec.connect_timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let stream = stream.ok_or_else(|| {
        err(format!("cannot connect to {host}:{port}: {}", last.map(|e| e.to_string()).unwrap_or_default()))
    })?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(spec.connect_timeout));
    let _ = stream.set_write_timeout(Some(spec.connect_timeout));
    let (ws, _response) = tungstenite::client_tls_with_config(request, stream, None, None).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp)) => {
            let status = resp.status().as_u16();
            let body = resp.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            ConnectError {
                reason: format!("the server refused the upgrade with HTTP {status}: {}", crate::text::clip(&body, 300)),
                fatal: matches!(status, 401 | 403 | 404),
            }
        }
        tungstenite::HandshakeError::Failure(e) => err(format!("handshake failed: {e}")),
        tungstenite::HandshakeError::Interrupted(_) => err("handshake interrupted".into()),
    })?;
    tcp_of(&ws).set_nonblocking(true).map_err(|e| err(format!("cannot make the socket non-blocking: {e}")))?;
    Ok(ws)
}

fn tcp_of(ws: &WebSocket<MaybeTlsStream<TcpStream>>) -> &TcpStream {
    match ws.get_ref() {
        MaybeTlsStream::Plain(s) => s,
        MaybeTlsStream::Rustls(s) => s.get_ref(),
        _ => unreachable_stream(),
    }
}

#[allow(clippy::panic)]
fn unreachable_stream() -> ! {
    panic!("tungstenite built with a TLS backend ptt does not enable")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn spec(url: String) -> ConnectSpec {
        ConnectSpec {
            url,
            api_key: "sk-test".into(),
            connect_timeout: Duration::from_secs(5),
            ping_every: Duration::from_millis(200),
            pong_timeout: Duration::from_millis(300),
        }
    }

    fn next(rx: &Receiver<ConnMessage>) -> ConnEvent {
        rx.recv_timeout(Duration::from_secs(5)).expect("event").1
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn frames_flow_both_ways_with_the_bearer_and_no_beta_header() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().expect("accept");
            let mut headers = Vec::new();
            let mut ws = tungstenite::accept_hdr(tcp, |req: &tungstenite::handshake::server::Request, resp| {
                headers =
                    req.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
                Ok(resp)
            })
            .expect("handshake");
            ws.send(Message::text("{\"type\":\"session.created\"}")).expect("send");
            let got = ws.read().expect("read");
            ws.send(Message::text("bye")).expect("send");
            (headers, got.into_text().expect("text").to_string())
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let conn = Connection::open(7, spec(format!("ws://127.0.0.1:{port}/v1/realtime?model=m")), tx).expect("open");
        assert!(matches!(next(&rx), ConnEvent::Opened));
        assert!(matches!(next(&rx), ConnEvent::Frame(f) if f == "{\"type\":\"session.created\"}"));
        conn.send("hello".into());
        let (headers, got) = server.join().expect("server");
        assert_eq!(got, "hello");
        assert!(headers.iter().any(|(k, v)| k == "authorization" && v == "Bearer sk-test"), "{headers:?}");
        assert!(!headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("openai-beta")));
        assert!(matches!(next(&rx), ConnEvent::Frame(f) if f == "bye"));
        // The server is gone: the connection reports a close.
        assert!(matches!(next(&rx), ConnEvent::Closed { fatal: false, .. }));
    }

    #[test]
    fn http_401_on_the_upgrade_is_fatal() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut tcp, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 4096];
            let _ = tcp.read(&mut buf);
            let body = r#"{"error":{"code":"invalid_api_key","message":"Incorrect API key"}}"#;
            // One write, as a real server sends it: the body arrives with the headers.
            let response = format!("HTTP/1.1 401 Unauthorized\r\ncontent-length: {}\r\n\r\n{body}", body.len());
            let _ = tcp.write_all(response.as_bytes());
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let _conn = Connection::open(1, spec(format!("ws://127.0.0.1:{port}/")), tx).expect("open");
        match next(&rx) {
            ConnEvent::Closed { reason, fatal } => {
                assert!(fatal, "{reason}");
                assert!(reason.contains("401") && reason.contains("invalid_api_key"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_server_that_never_answers_pings_is_reported_dead() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().expect("accept");
            let ws = tungstenite::accept(tcp).expect("handshake");
            // Never read again: pings pile up unanswered.
            std::thread::sleep(Duration::from_secs(3));
            drop(ws);
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let started = Instant::now();
        let _conn = Connection::open(2, spec(format!("ws://127.0.0.1:{port}/")), tx).expect("open");
        assert!(matches!(next(&rx), ConnEvent::Opened));
        assert!(matches!(next(&rx), ConnEvent::Dead));
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        drop(_conn);
        let _ = server.join();
    }

    /// A server that accepts and then never reads again (no pongs) and holds the socket open.
    fn stalled_server() -> (u16, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().expect("accept");
            let ws = tungstenite::accept(tcp).expect("handshake");
            std::thread::sleep(Duration::from_secs(12));
            drop(ws);
        });
        (port, server)
    }

    #[test]
    fn the_pong_deadline_is_a_deadline_of_its_own() {
        // Before: pings were checked on a tick of min(ping, pong) = 2.9 s, so this stall was seen at
        // 8.7 s (the second tick after the ping at 5.8 s). Now: the ping at 3 s, dead at 5.9 s.
        let (port, _server) = stalled_server();
        let (tx, rx) = crossbeam_channel::unbounded();
        let slow = ConnectSpec {
            ping_every: Duration::from_secs(3),
            pong_timeout: Duration::from_millis(2900),
            ..spec(format!("ws://127.0.0.1:{port}/"))
        };
        let started = Instant::now();
        let conn = Connection::open(4, slow, tx).expect("open");
        assert!(matches!(next(&rx), ConnEvent::Opened));
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok((_, ConnEvent::Dead)) => {}
            other => panic!("{other:?}"),
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(5900), "dead before the pong was due: {took:?}");
        assert!(took < Duration::from_millis(8000), "ping_every + pong_timeout = 5.9 s, took {took:?}");
        drop(conn);
    }

    #[test]
    fn a_stall_while_a_reply_is_awaited_is_noticed_after_one_pong_timeout() {
        let (port, _server) = stalled_server();
        let (tx, rx) = crossbeam_channel::unbounded();
        // Scheduled pings are far away: only the urgent one can find the stall.
        let spec = ConnectSpec {
            ping_every: Duration::from_secs(60),
            pong_timeout: Duration::from_secs(1),
            ..spec(format!("ws://127.0.0.1:{port}/"))
        };
        let conn = Connection::open(5, spec, tx).expect("open");
        assert!(matches!(next(&rx), ConnEvent::Opened));
        // Frames alone start no ping, whatever they are: only the machine knows a reply is owed.
        conn.send(r#"{"type":"input_audio_buffer.append","audio":""}"#.into());
        conn.send(r#"{"type":"response.create","response":{}}"#.into());
        assert!(rx.recv_timeout(Duration::from_millis(1500)).is_err(), "no ping, no verdict");
        let sent = Instant::now();
        conn.expect_reply();
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok((_, ConnEvent::Dead)) => {}
            other => panic!("{other:?}"),
        }
        assert!(sent.elapsed() < Duration::from_secs(4), "{:?}", sent.elapsed());
    }

    #[test]
    fn a_live_server_keeps_the_link_alive() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            let (tcp, _) = listener.accept().expect("accept");
            let mut ws = tungstenite::accept(tcp).expect("handshake");
            // Reading answers pings automatically.
            while ws.read().is_ok() {}
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        // Pings every 200 ms; a pong may take up to 1 s (a loaded CI machine).
        let relaxed = ConnectSpec { pong_timeout: Duration::from_secs(1), ..spec(format!("ws://127.0.0.1:{port}/")) };
        let conn = Connection::open(3, relaxed, tx).expect("open");
        assert!(matches!(next(&rx), ConnEvent::Opened));
        // Several ping periods pass with no Dead.
        assert!(rx.recv_timeout(Duration::from_millis(1200)).is_err());
        conn.close();
        assert!(matches!(next(&rx), ConnEvent::Closed { .. }));
    }
}
