//! A local stand-in for the server `ptt model download` fetches from (`models.base_url`): serves files by
//! name, honours `Range: bytes=N-` with `206 Partial Content`, and can cut a response short (full
//! `Content-Length` announced, fewer bytes sent, connection closed) to test resuming. Every request is recorded
//! (path and `Range` header) before it is answered, with a hook that runs at that moment, so a test can look at
//! the disk while the client waits.
#![allow(dead_code)] // each test binary uses its own subset of the common code

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
}

type Hook = Box<dyn Fn(usize, &Seen) + Send>;

#[derive(Default)]
struct State {
    files: HashMap<String, Arc<Vec<u8>>>,
    /// Cut the n-th response (0-based, counting every request) after this many body bytes.
    cuts: HashMap<usize, usize>,
    seen: Vec<Seen>,
    hook: Option<Hook>,
}

pub struct ModelServer {
    /// `http://127.0.0.1:PORT/models` (no trailing slash).
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl ModelServer {
    pub fn start() -> ModelServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || serve(stream, &s));
            }
        });
        ModelServer { base: format!("http://127.0.0.1:{port}/models"), state }
    }

    /// Serves `bytes` at `{base}/{name}`.
    pub fn put(&self, name: &str, bytes: Vec<u8>) {
        self.state.lock().expect("lock").files.insert(format!("/models/{name}"), Arc::new(bytes));
    }

    /// The `n`-th request (0-based) gets only `after` bytes of its body, then the connection closes.
    pub fn cut(&self, n: usize, after: usize) {
        self.state.lock().expect("lock").cuts.insert(n, after);
    }

    /// Runs at each request, before it is answered.
    pub fn on_request(&self, hook: impl Fn(usize, &Seen) + Send + 'static) {
        self.state.lock().expect("lock").hook = Some(Box::new(hook));
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().expect("lock").seen.clone()
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut out = stream;
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_string());
        }
    }
    let seen = Seen { path: path.clone(), range: range.clone() };
    let (n, file, cut) = {
        let mut st = state.lock().expect("lock");
        let n = st.seen.len();
        st.seen.push(seen.clone());
        if let Some(hook) = &st.hook {
            hook(n, &seen);
        }
        (n, st.files.get(&path).cloned(), st.cuts.get(&n).copied())
    };
    let _ = n;
    let Some(file) = file else {
        let _ = out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found");
        return;
    };
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse::<usize>().ok());
    let head = match start {
        Some(s) if s >= file.len() => {
            let _ = write!(
                out,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                file.len()
            );
            return;
        }
        Some(s) => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            file.len() - 1,
            file.len(),
            file.len() - s
        ),
        None => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", file.len()),
    };
    let body = &file[start.unwrap_or(0)..];
    let body = match cut {
        Some(c) => &body[..c.min(body.len())],
        None => body,
    };
    if out.write_all(head.as_bytes()).is_ok() {
        let _ = out.write_all(body);
    }
    let _ = out.flush();
    let _ = out.shutdown(std::net::Shutdown::Both);
}
