//! Asking a Wayland compositor which protocols it offers, so `auto` picks wtype only where it can work.
//!
//! wtype types through the virtual-keyboard protocol (`zwp_virtual_keyboard_manager_v1`). wlroots compositors
//! (sway, Hyprland, river, labwc, ...) and KDE offer it; GNOME's mutter does not, and there wtype fails with
//! "Compositor does not support the virtual keyboard protocol" after the user has already spoken. Asking first
//! lets `auto` fall back to the clipboard or ydotool and lets `ptt doctor` say why.
//!
//! The question is one round trip of the Wayland wire protocol, written by hand instead of linking
//! libwayland-client: connect to the socket, send `wl_display.get_registry` and `wl_display.sync`, and read
//! `wl_registry.global` events until the sync's `wl_callback.done`. Messages are a header of two native-endian
//! 32-bit words (object id; size << 16 | opcode) followed by 32-bit arguments; strings are a length (with the
//! NUL) and the bytes padded to 4. Bounded: a 1 s timeout for the whole exchange and at most 1 MiB read.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The protocol wtype needs.
pub(crate) const VIRTUAL_KEYBOARD: &str = "zwp_virtual_keyboard_manager_v1";

const TIMEOUT: Duration = Duration::from_secs(1);
const MAX_READ: usize = 1 << 20;

/// The socket `WAYLAND_DISPLAY` names: an absolute path as is, else relative to `XDG_RUNTIME_DIR`.
pub(crate) fn socket_path(wayland_display: &str, runtime_dir: Option<&str>) -> Option<PathBuf> {
    let p = Path::new(wayland_display);
    if p.is_absolute() {
        return Some(p.to_path_buf());
    }
    runtime_dir.filter(|d| !d.is_empty()).map(|d| Path::new(d).join(wayland_display))
}

/// The interface names of every global the compositor at `socket` advertises.
pub(crate) fn globals(socket: &Path) -> Result<BTreeSet<String>, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
    let deadline = Instant::now() + TIMEOUT;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let mut request = Vec::with_capacity(24);
    // wl_display (object 1).get_registry (opcode 1) → new wl_registry 2; wl_display.sync (opcode 0) → callback 3.
    for (opcode, new_id) in [(1u32, 2u32), (0, 3)] {
        request.extend_from_slice(&1u32.to_ne_bytes());
        request.extend_from_slice(&((12u32 << 16) | opcode).to_ne_bytes());
        request.extend_from_slice(&new_id.to_ne_bytes());
    }
    stream.write_all(&request).map_err(|e| format!("cannot talk to the compositor: {e}"))?;

    let mut buf: Vec<u8> = Vec::new();
    let mut found = BTreeSet::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Parse every complete message in the buffer.
        let mut at = 0;
        while let Some(msg) = next_message(&buf[at..]) {
            at += msg.size;
            match (msg.object, msg.opcode) {
                (2, 0) => {
                    if let Some(name) = global_interface(msg.args) {
                        found.insert(name);
                    }
                }
                (3, 0) => return Ok(found),
                (1, 0) => return Err("the compositor reported a protocol error".to_string()),
                _ => {}
            }
        }
        buf.drain(..at);
        if buf.len() >= 8 && message_size(&buf).is_none() {
            return Err("the compositor sent a malformed message".to_string());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("the compositor did not answer within 1 s".to_string());
        }
        stream.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Err("the compositor closed the connection".to_string()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("no answer from the compositor: {e}")),
        };
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_READ {
            return Err("the compositor's answer is too large".to_string());
        }
    }
}

struct Message<'a> {
    object: u32,
    opcode: u32,
    size: usize,
    args: &'a [u8],
}

fn word(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
}

/// The size of the message at the start of `b`, when its header is sane (at least the header, a multiple of 4).
fn message_size(b: &[u8]) -> Option<usize> {
    let size = (word(b, 4)? >> 16) as usize;
    (size >= 8 && size.is_multiple_of(4)).then_some(size)
}

fn next_message(b: &[u8]) -> Option<Message<'_>> {
    let object = word(b, 0)?;
    let size = message_size(b)?;
    let opcode = word(b, 4)? & 0xffff;
    let args = b.get(8..size)?;
    Some(Message { object, opcode, size, args })
}

/// `wl_registry.global(name: uint, interface: string, version: uint)` → the interface.
fn global_interface(args: &[u8]) -> Option<String> {
    let len = word(args, 4)? as usize; // with the terminating NUL
    let bytes = args.get(8..8 + len.checked_sub(1)?)?;
    String::from_utf8(bytes.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn global(name: u32, interface: &str) -> Vec<u8> {
        let mut args = name.to_ne_bytes().to_vec();
        let len = interface.len() as u32 + 1;
        args.extend_from_slice(&len.to_ne_bytes());
        args.extend_from_slice(interface.as_bytes());
        args.push(0);
        while !args.len().is_multiple_of(4) {
            args.push(0);
        }
        args.extend_from_slice(&1u32.to_ne_bytes());
        message(2, 0, &args)
    }

    fn message(object: u32, opcode: u32, args: &[u8]) -> Vec<u8> {
        let mut m = object.to_ne_bytes().to_vec();
        m.extend_from_slice(&((((args.len() + 8) as u32) << 16) | opcode).to_ne_bytes());
        m.extend_from_slice(args);
        m
    }

    /// A fake compositor that checks the two requests, then answers with `reply` in pieces of `piece` bytes.
    fn serve(reply: Vec<u8>, piece: usize) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<Vec<u8>>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wayland-9");
        let listener = UnixListener::bind(&path).expect("bind");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut got = vec![0u8; 24];
            s.read_exact(&mut got).expect("requests");
            for p in reply.chunks(piece.max(1)) {
                if s.write_all(p).is_err() {
                    break; // the client is done reading (it stops at wl_callback.done)
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            got
        });
        (dir, path, server)
    }

    #[test]
    fn lists_the_globals_until_the_sync_is_done() {
        let mut reply = global(1, "wl_compositor");
        reply.extend(global(2, VIRTUAL_KEYBOARD));
        reply.extend(global(3, "wl_seat"));
        reply.extend(message(1, 1, &3u32.to_ne_bytes())); // delete_id: ignored
        reply.extend(message(3, 0, &7u32.to_ne_bytes())); // wl_callback.done
        reply.extend(global(4, "after_done"));
        let (_dir, path, server) = serve(reply, 5);
        let found = globals(&path).expect("globals");
        let want: BTreeSet<String> = ["wl_compositor", "wl_seat", VIRTUAL_KEYBOARD].map(String::from).into();
        assert_eq!(found, want);
        let sent = server.join().expect("server");
        let words: Vec<u32> = sent.chunks(4).map(|w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]])).collect();
        assert_eq!(words, [1, (12 << 16) | 1, 2, 1, 12 << 16, 3]);
    }

    #[test]
    fn errors_are_reported_not_hung_on() {
        let (_dir, path, _server) = serve(message(1, 0, &[0; 12]), 64);
        assert!(globals(&path).unwrap_err().contains("protocol error"));
        let (_dir, path, _server) = serve(vec![1, 0, 0, 0, 0, 0, 3, 0], 64); // size 3: malformed
        assert!(globals(&path).unwrap_err().contains("malformed"));
        let (_dir, path, _server) = serve(global(1, "wl_seat"), 64); // then closes without done
        assert!(globals(&path).unwrap_err().contains("closed"));
        let missing = std::env::temp_dir().join("ptt-no-such-wayland-socket");
        assert!(globals(&missing).unwrap_err().contains("cannot connect"));
    }

    #[test]
    fn the_socket_is_found_like_libwayland_does() {
        assert_eq!(socket_path("/run/w/wayland-0", None), Some(PathBuf::from("/run/w/wayland-0")));
        assert_eq!(socket_path("wayland-1", Some("/run/user/1000")), Some(PathBuf::from("/run/user/1000/wayland-1")));
        assert_eq!(socket_path("wayland-1", None), None);
    }
}
