//! A `watch` subscriber as the main loop sees it: events written straight to
//! the client's socket from the loop, with the connection thread as a fallback.
//!
//! Why: an event handed to the connection thread costs a thread wake-up on its
//! way to the client (issue 11: child exit → `task_ended` was two hand-offs,
//! reaper → loop → connection thread, against the one of an asyncio loop). A
//! subscriber's socket buffer is nearly always empty, so the loop tries a
//! non-blocking `send` first and only queues what the socket did not take.
//!
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
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender};

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
    use std::io::{BufRead, BufReader, Write};

    fn pair() -> (Arc<UnixStream>, UnixStream) {
        let (a, b) = UnixStream::pair().expect("socketpair");
        (Arc::new(a), b)
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
