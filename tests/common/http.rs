//! One HTTP/1.1 request reader for the test stubs (the transcription stub, the Anthropic stub): strict,
//! because a stub that accepts what a real server refuses hides bugs in the client.
//!
//! It understands keep-alive, `Content-Length` and chunked bodies and `Expect: 100-continue`, and never
//! panics: what is wrong with a request becomes one of its `problems`, and `fatal` says the framing is
//! broken so the connection cannot be reused. [`Server`] is the listener both stubs run on (a thread per
//! connection); reads give up once the stub is dropped ([`StopAwareStream`]).

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Largest header section / request body accepted.
const MAX_HEADER_BYTES: usize = 256 * 1024;
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// A stub's shared state holds a stop flag, set when the stub is dropped; readers and loops watch it.
pub trait StopFlag: Send + Sync {
    fn flag(&self) -> &AtomicBool;

    fn stopped(&self) -> bool {
        self.flag().load(Ordering::SeqCst)
    }

    fn stop(&self) {
        self.flag().store(true, Ordering::SeqCst);
    }
}

/// A stub's listener on `127.0.0.1:0`: `serve(stream, number, shared)` runs on a thread of its own for each
/// connection (numbered from 1 in accept order). Dropping it sets the stop flag and ends the accept thread.
pub struct Server {
    pub addr: SocketAddr,
    stop: Arc<dyn StopFlag>,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start<S: StopFlag + 'static>(
        name: &'static str,
        shared: Arc<S>,
        serve: fn(TcpStream, u64, Arc<S>),
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{name}: bind 127.0.0.1:0: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{name}: local address: {e}"));
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("{name}-accept"))
                .spawn(move || {
                    let mut number = 0;
                    for conn in listener.incoming() {
                        if shared.stopped() {
                            break;
                        }
                        let Ok(stream) = conn else { continue };
                        number += 1;
                        let (shared, n) = (Arc::clone(&shared), number);
                        // If the thread cannot be spawned the connection is simply dropped.
                        let _ =
                            thread::Builder::new().name(format!("{name}-conn")).spawn(move || serve(stream, n, shared));
                    }
                })
                .unwrap_or_else(|e| panic!("{name}: spawn the accept thread: {e}"))
        };
        Server { addr, stop: shared, acceptor: Some(acceptor) }
    }
}

/// A connection's two ends: a buffered reader that gives up once the stub stops (its blocking reads wake every
/// `poll` to check), and a writer. `None` when the socket cannot be set up: the connection is then dropped.
pub fn connection<S: StopFlag>(
    stream: TcpStream,
    shared: &Arc<S>,
    poll: Duration,
) -> Option<(BufReader<StopAwareStream<S>>, TcpStream)> {
    let _ = stream.set_nodelay(true);
    stream.set_read_timeout(Some(poll)).ok()?;
    let writer = stream.try_clone().ok()?;
    Some((BufReader::new(StopAwareStream { stream, shared: Arc::clone(shared) }), writer))
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.stop();
        // Wake the blocking accept() so the accept thread sees the flag; join it only if that worked, so a
        // drop can never hang. Connection threads notice the flag at their next read timeout.
        let woke = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        if let (Some(handle), true) = (self.acceptor.take(), woke) {
            let _ = handle.join();
        }
    }
}

/// A socket reader whose blocking reads give up once the stub is dropped.
pub struct StopAwareStream<S: StopFlag> {
    pub stream: TcpStream,
    pub shared: Arc<S>,
}

impl<S: StopFlag> Read for StopAwareStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.shared.stopped() {
                return Err(io::Error::other("stub stopped"));
            }
            match self.stream.read(buf) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                other => return other,
            }
        }
    }
}

/// A request as read off the wire.
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub keep_alive: bool,
    /// Problems with the HTTP framing itself.
    pub problems: Vec<String>,
    /// The framing is broken: the connection cannot be reused.
    pub fatal: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// Reads one request. `None` when the peer closed the connection between requests (or the stub
/// stopped) before anything arrived; otherwise a request, whose `problems` say what was wrong
/// with its framing (a truncated body, a bad header, ...).
pub fn read_request<R: BufRead>(reader: &mut R, writer: &mut TcpStream) -> Option<Request> {
    let mut header_bytes = 0usize;
    let mut request = Request {
        method: String::new(),
        target: String::new(),
        headers: Vec::new(),
        body: Vec::new(),
        keep_alive: true,
        problems: Vec::new(),
        fatal: false,
    };
    let fail = |mut request: Request, problem: String| {
        request.problems.push(problem);
        request.fatal = true;
        Some(request)
    };

    // Request line, skipping stray empty lines before it (tolerated by RFC 9112).
    let request_line = loop {
        match read_line(reader, &mut header_bytes) {
            Ok(None) => return None,
            Ok(Some(line)) if line.is_empty() => continue,
            Ok(Some(line)) => break line,
            Err(_) if header_bytes == 0 => return None,
            Err(e) => return fail(request, format!("reading the request line: {e}")),
        }
    };
    let parts: Vec<&str> = request_line.split(' ').collect();
    let [method, target, version] = parts.as_slice() else {
        return fail(request, format!("malformed request line {request_line:?}"));
    };
    request.method = method.to_string();
    request.target = target.to_string();
    if *version != "HTTP/1.1" && *version != "HTTP/1.0" {
        return fail(request, format!("unsupported HTTP version {version:?}"));
    }

    loop {
        let line = match read_line(reader, &mut header_bytes) {
            Ok(Some(line)) => line,
            Ok(None) => return fail(request, "connection closed inside the headers".into()),
            Err(e) => return fail(request, format!("reading headers: {e}")),
        };
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            return fail(request, format!("obsolete folded header line {line:?}"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return fail(request, format!("malformed header line {line:?}"));
        };
        if name.is_empty() || name.ends_with([' ', '\t']) {
            return fail(request, format!("malformed header name in {line:?}"));
        }
        request.headers.push((name.to_string(), value.trim_matches([' ', '\t']).to_string()));
    }

    let connection = request.header("connection").unwrap_or("").to_ascii_lowercase();
    request.keep_alive =
        if *version == "HTTP/1.0" { connection.contains("keep-alive") } else { !connection.contains("close") };
    if request.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("host")).count() != 1 {
        request.problems.push("expected exactly one Host header".into());
    }

    if let Some(expect) = request.header("expect") {
        if expect.eq_ignore_ascii_case("100-continue") {
            if writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").and_then(|()| writer.flush()).is_err() {
                return fail(request, "could not send 100 Continue".into());
            }
        } else {
            request.problems.push(format!("unsupported Expect: {expect}"));
        }
    }

    let transfer_encoding = request.header("transfer-encoding").map(str::to_ascii_lowercase);
    let lengths: Vec<String> = request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.clone())
        .collect();
    match (transfer_encoding, lengths.as_slice()) {
        (Some(te), lengths) => {
            if te != "chunked" {
                return fail(request, format!("unsupported Transfer-Encoding: {te}"));
            }
            if !lengths.is_empty() {
                return fail(request, "both Transfer-Encoding and Content-Length".into());
            }
            match read_chunked_body(reader) {
                Ok(body) => request.body = body,
                Err(e) => return fail(request, format!("chunked body: {e}")),
            }
        }
        (None, []) => {}
        (None, [len]) => {
            let Ok(len) = len.parse::<usize>() else {
                return fail(request, format!("bad Content-Length {len:?}"));
            };
            if len > MAX_BODY_BYTES {
                return fail(request, format!("body of {len} bytes is too large"));
            }
            let mut body = Vec::with_capacity(len);
            match reader.take(len as u64).read_to_end(&mut body) {
                Ok(n) if n == len => request.body = body,
                Ok(n) => return fail(request, format!("connection closed after {n} of {len} body bytes")),
                Err(e) => return fail(request, format!("after {} of {len} body bytes: {e}", body.len())),
            }
        }
        (None, _) => return fail(request, format!("several Content-Length headers: {lengths:?}")),
    }
    Some(request)
}

/// Reads one CRLF-terminated line, without its CRLF; `None` at a clean end of stream.
fn read_line<R: BufRead>(reader: &mut R, total: &mut usize) -> io::Result<Option<String>> {
    let mut raw = Vec::new();
    let limit = MAX_HEADER_BYTES.saturating_sub(*total) + 1;
    let n = reader.take(limit as u64).read_until(b'\n', &mut raw)?;
    *total += n;
    if n == 0 {
        return Ok(None);
    }
    if *total > MAX_HEADER_BYTES {
        return Err(invalid("header section too large"));
    }
    if !raw.ends_with(b"\r\n") {
        return Err(invalid(&format!("line not ended by CRLF: {:?}", String::from_utf8_lossy(&raw))));
    }
    raw.truncate(raw.len() - 2);
    String::from_utf8(raw).map(Some).map_err(|_| invalid("line is not UTF-8"))
}

fn read_chunked_body<R: BufRead>(reader: &mut R) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut meta_bytes = 0usize;
    loop {
        let Some(size_line) = read_line(reader, &mut meta_bytes)? else {
            return Err(invalid("connection closed inside the chunked body"));
        };
        let size_text = size_line.split(';').next().unwrap_or("").trim_end_matches([' ', '\t']);
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| invalid(&format!("bad chunk size line {size_line:?}")))?;
        if size == 0 {
            // Trailer section, ended by an empty line.
            loop {
                match read_line(reader, &mut meta_bytes)? {
                    None => return Err(invalid("connection closed inside the chunked trailer")),
                    Some(line) if line.is_empty() => return Ok(body),
                    Some(_) => {}
                }
            }
        }
        if body.len() + size > MAX_BODY_BYTES {
            return Err(invalid("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(invalid("chunk data not followed by CRLF"));
        }
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, message.to_string())
}
