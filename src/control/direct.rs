//! Replies and `watch` events written straight to the client's socket by the
//! main loop, with the connection thread as the fallback.
//!
//! Why: a line handed to the connection thread costs a thread wake-up on its
//! way to the client (issue 11: child exit → `task_ended` was two hand-offs,
//! reaper → loop → connection thread, against the one of an asyncio loop; a
//! start's reply waited for the connection thread to be scheduled while the
//! new child was being exec'd on the other core). A client's socket buffer is
//! nearly always empty, so the loop tries a non-blocking `send` first and
//! hands the connection thread only what the socket did not take.
//!
//! **Replies** ([`Replier`], [`ReplyWait`]): the connection thread waits for
//! "what is left to write" instead of the reply. Invariant: a request gets
//! exactly one reply line. The loop writes only if it claims the request
//! before the thread gives up on it (an atomic `PENDING → ANSWERED`); a thread
//! that times out claims it the other way (`PENDING → ABANDONED`) and writes
//! its error line, and the loop's late answer is dropped. Two requests keep
//! the plain `Sender<Value>` reply (`Incoming::Request`): a `permission_ask`,
//! answered later by the task supervisor's permission board (which knows
//! nothing of sockets), and a `sync`, answered when the loop is idle; neither
//! is on a latency path.
//!
//! **Subscribers** ([`Subscriber`], [`Backlog`]):
//! Invariant: events reach the client whole and in the loop's order. The loop
//! writes directly only while nothing is queued or being written by the
//! thread (`queued == 0`); it is the only producer, and the thread lowers the
//! count only after an item is fully written, so a direct write can never
//! overtake a queued one. The rest of a partial direct write is queued.
//!
//! Invariant: the loop never blocks on a client. Direct writes use
//! `MSG_DONTWAIT`; the thread's blocking writes have a timeout (a reader that
//! stops taking events is dropped), and the loop drops a subscriber whose
//! queue is full or whose socket failed.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde_json::Value;

const PENDING: u8 = 0;
const ANSWERED: u8 = 1;
const ABANDONED: u8 = 2;

/// The loop's handle on one request's reply.
pub(crate) struct Replier {
    stream: Arc<UnixStream>,
    state: Arc<AtomicU8>,
    rest: Sender<Vec<u8>>,
}

impl std::fmt::Debug for Replier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replier").field("state", &self.state.load(Ordering::Relaxed)).finish()
    }
}

/// The connection thread's side of one request.
pub(crate) struct ReplyWait {
    state: Arc<AtomicU8>,
    rest: Receiver<Vec<u8>>,
}

/// Why the connection thread writes an error line instead of the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoReply {
    /// The loop did not answer within the timeout.
    Late,
    /// The loop dropped the request unanswered (it is stopping).
    Dropped,
}

/// A replier for a request read from `stream`, and the wait for it.
pub(crate) fn replier(stream: Arc<UnixStream>) -> (Replier, ReplyWait) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let state = Arc::new(AtomicU8::new(PENDING));
    (Replier { stream, state: state.clone(), rest: tx }, ReplyWait { state, rest: rx })
}

impl Replier {
    /// Writes `answer` as the reply line: as much as the socket takes now, the rest by the connection thread.
    pub(crate) fn answer(self, answer: &Value) {
        if self.state.compare_exchange(PENDING, ANSWERED, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return; // the thread gave up and wrote its error line
        }
        let mut line = serde_json::to_vec(answer).unwrap_or_else(|_| b"{}".to_vec());
        line.push(b'\n');
        // A failed send (the client left) leaves the whole line to the thread, whose write fails too.
        let written = send_now(&self.stream, &line).unwrap_or(0);
        let _ = self.rest.send(line.split_off(written));
    }
}

impl ReplyWait {
    /// What is left of the reply line for the caller to write (empty when the loop wrote it all), or why
    /// there is no reply (the caller writes an error line then; the loop will write nothing).
    pub(crate) fn wait(self, timeout: Duration) -> Result<Vec<u8>, NoReply> {
        let why = match self.rest.recv_timeout(timeout) {
            Ok(rest) => return Ok(rest),
            Err(RecvTimeoutError::Timeout) => NoReply::Late,
            Err(RecvTimeoutError::Disconnected) => NoReply::Dropped,
        };
        if self.state.compare_exchange(PENDING, ABANDONED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            return Err(why);
        }
        // The loop claimed it just now: what it did not write follows at once.
        self.rest.recv().map_err(|_| why)
    }
}

/// Items the connection thread may hold before the loop drops a subscriber.
const QUEUE: usize = 256;

/// The loop's handle on one subscriber.
pub(crate) struct Subscriber {
    stream: Arc<UnixStream>,
    queue: Sender<Vec<u8>>,
    /// Items queued for the connection thread and not yet fully written by it.
    queued: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber").field("queued", &self.queued.load(Ordering::Relaxed)).finish()
    }
}

/// The connection thread's side: what it must write, in order.
pub(crate) struct Backlog {
    items: Receiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
}

impl Backlog {
    /// Writes queued items until the loop drops the subscriber or `write` fails.
    pub(crate) fn drain(self, mut write: impl FnMut(&[u8]) -> std::io::Result<()>) {
        for item in self.items {
            if write(&item).is_err() {
                return;
            }
            self.queued.fetch_sub(1, Ordering::Release);
        }
    }
}

/// A subscriber on `stream` and the backlog its connection thread drains.
pub(crate) fn subscriber(stream: Arc<UnixStream>) -> (Subscriber, Backlog) {
    let (tx, rx) = crossbeam_channel::bounded(QUEUE);
    let queued = Arc::new(AtomicUsize::new(0));
    (Subscriber { stream, queue: tx, queued: queued.clone() }, Backlog { items: rx, queued })
}

impl Subscriber {
    /// Sends one line (with its newline). False: the subscriber is gone or too
    /// slow, and the loop drops it.
    pub(crate) fn send_line(&self, line: &[u8]) -> bool {
        let mut rest = line;
        if self.queued.load(Ordering::Acquire) == 0 {
            match send_now(&self.stream, line) {
                Ok(n) if n == line.len() => return true,
                Ok(n) => rest = &line[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted => {
                }
                Err(_) => return false,
            }
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.queue.try_send(rest.to_vec()).is_ok()
    }
}

/// One non-blocking `send` that never raises `SIGPIPE`: how many bytes the socket took.
fn send_now(stream: &UnixStream, bytes: &[u8]) -> std::io::Result<usize> {
    // SAFETY: `bytes` is a valid buffer of `bytes.len()` bytes; the descriptor is owned by `stream`.
    let n = unsafe {
        libc::send(stream.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n as usize) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};

    fn pair() -> (Arc<UnixStream>, UnixStream) {
        let (a, b) = UnixStream::pair().expect("socketpair");
        (Arc::new(a), b)
    }

    #[test]
    fn a_reply_is_written_by_the_loop_and_the_thread_writes_nothing() {
        let (ours, theirs) = pair();
        let (answerer, wait) = replier(ours);
        answerer.answer(&serde_json::json!({"status": "ok"}));
        assert_eq!(wait.wait(Duration::from_secs(5)), Ok(Vec::new()));
        let mut line = String::new();
        BufReader::new(theirs).read_line(&mut line).expect("read");
        assert_eq!(line, "{\"status\":\"ok\"}\n");
    }

    #[test]
    fn a_reply_larger_than_the_socket_takes_is_finished_by_the_thread() {
        let (ours, theirs) = pair();
        nix::sys::socket::setsockopt(&*ours, nix::sys::socket::sockopt::SndBuf, &4096).expect("sndbuf");
        let (answerer, wait) = replier(ours.clone());
        let big = "y".repeat(300_000);
        answerer.answer(&serde_json::json!({"big": big}));
        let rest = wait.wait(Duration::from_secs(5)).expect("answered");
        assert!(!rest.is_empty() && rest.len() < 300_000, "{}", rest.len());
        let writer = std::thread::spawn(move || {
            let mut w = &*ours;
            w.write_all(&rest)
        });
        let mut line = String::new();
        BufReader::new(theirs).read_line(&mut line).expect("read");
        writer.join().expect("join").expect("write");
        let v: serde_json::Value = serde_json::from_str(&line).expect("one whole JSON line");
        assert_eq!(v["big"].as_str().map(str::len), Some(300_000));
    }

    #[test]
    fn a_late_answer_after_the_thread_gave_up_is_not_written() {
        let (ours, theirs) = pair();
        // `ours` stays open: no bytes and no end of file either.
        let (answerer, wait) = replier(ours.clone());
        assert_eq!(wait.wait(Duration::from_millis(1)), Err(NoReply::Late));
        answerer.answer(&serde_json::json!({"status": "ok"}));
        theirs.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 16];
        let got = (&theirs).read(&mut buf);
        assert!(matches!(&got, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "{got:?}");

        let (ours, _theirs) = pair();
        let (answerer, wait) = replier(ours);
        drop(answerer);
        assert_eq!(wait.wait(Duration::from_secs(5)), Err(NoReply::Dropped));
    }

    #[test]
    fn lines_go_straight_to_the_socket_while_nothing_is_queued() {
        let (ours, theirs) = pair();
        let (sub, backlog) = subscriber(ours);
        assert!(sub.send_line(b"{\"n\":1}\n"));
        assert!(sub.send_line(b"{\"n\":2}\n"));
        // Nothing went through the backlog: the thread has nothing to write.
        assert_eq!(sub.queued.load(Ordering::Relaxed), 0);
        assert!(backlog.items.is_empty());
        let mut lines = BufReader::new(theirs).lines();
        assert_eq!(lines.next().expect("line").expect("read"), "{\"n\":1}");
        assert_eq!(lines.next().expect("line").expect("read"), "{\"n\":2}");
    }

    #[test]
    fn a_full_socket_queues_and_order_is_kept_through_the_thread() {
        let (ours, theirs) = pair();
        // A small send buffer fills quickly.
        nix::sys::socket::setsockopt(&*ours, nix::sys::socket::sockopt::SndBuf, &4096).expect("sndbuf");
        let (sub, backlog) = subscriber(ours.clone());
        let line = |i: usize| format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(500));
        let mut i = 0;
        // Direct writes until the socket refuses part of a line: the rest is queued.
        while sub.queued.load(Ordering::Relaxed) == 0 {
            assert!(sub.send_line(line(i).as_bytes()), "line {i}");
            i += 1;
            assert!(i < 10_000, "the socket never filled");
        }
        // From now on everything is queued behind it, even though the thread has not started.
        for _ in 0..20 {
            assert!(sub.send_line(line(i).as_bytes()));
            i += 1;
        }
        assert!(sub.queued.load(Ordering::Relaxed) > 1);
        let total = i;
        let writer = std::thread::spawn(move || {
            backlog.drain(|bytes| {
                let mut w = &*ours;
                w.write_all(bytes)
            })
        });
        let mut lines = BufReader::new(theirs).lines();
        for want in 0..total {
            let got = lines.next().expect("line").expect("read");
            let v: serde_json::Value = serde_json::from_str(&got).expect("whole JSON line");
            assert_eq!(v["n"], want, "order");
        }
        // Drained: direct writes again.
        while sub.queued.load(Ordering::Acquire) != 0 {
            std::thread::yield_now();
        }
        assert!(sub.send_line(line(total).as_bytes()));
        let got = lines.next().expect("line").expect("read");
        assert!(got.starts_with(&format!("{{\"n\":{total},")), "{got}");
        drop(sub);
        writer.join().expect("writer");
    }

    #[test]
    fn a_gone_client_or_a_full_queue_drops_the_subscriber() {
        let (ours, theirs) = pair();
        let (sub, _backlog) = subscriber(ours);
        drop(theirs);
        assert!(!sub.send_line(b"{}\n"), "EPIPE, no SIGPIPE");

        let (ours, _theirs) = pair();
        nix::sys::socket::setsockopt(&*ours, nix::sys::socket::sockopt::SndBuf, &4096).expect("sndbuf");
        let (sub, backlog) = subscriber(ours);
        let big = vec![b'x'; 64 * 1024];
        // Nobody drains the backlog: after QUEUE items the loop gives up on this reader.
        let accepted = (0..QUEUE + 10).take_while(|_| sub.send_line(&big)).count();
        assert!(accepted <= QUEUE + 1, "{accepted}");
        drop(backlog);
    }
}
