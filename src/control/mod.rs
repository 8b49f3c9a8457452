//! The control socket: JSON lines over a Unix socket in `$XDG_RUNTIME_DIR/ptt`.
//!
//! The listener thread accepts connections; each connection gets a small
//! thread that checks the peer's uid (`SO_PEERCRED`), reads one request per
//! line and hands it to the main loop with a reply channel of its own. The
//! thread never touches daemon state: the loop answers, the thread writes the
//! answer back. The CLI's client commands are the other end ([`client`]).

pub(crate) mod client;
pub(crate) mod direct;
pub(crate) mod protocol;
pub(crate) mod reply;
pub(crate) mod server;

pub(crate) use protocol::{Incoming, Request};
