//! Starting a child the cheap way: `clone(CLONE_VM | CLONE_VFORK)`, a few
//! system calls on a stack of its own, then `execve`.
//!
//! Why not `std::process::Command`: a task child needs the user's umask (the
//! daemon runs with 077), `PR_SET_PDEATHSIG` (it dies with the daemon, even a
//! SIGKILLed one) and a process group of its own. std can do the last through
//! `posix_spawn`, but the first two need a `pre_exec` hook, and a hook makes
//! std `fork()` the whole daemon: copying its page tables cost 0.5-0.8 ms per
//! start, most of the start → child's first instruction latency (issue 11).
//! glibc's `posix_spawn` is the same `clone` as here (`sysdeps/unix/sysv/linux/
//! spawni.c`); it only has no attribute for the umask or the death signal.
//!
//! How it stays sound. The child shares the daemon's memory until it calls
//! `execve` (or `_exit`), and the calling thread is suspended until then
//! (`CLONE_VFORK`). So:
//! - everything the child touches is prepared in the parent before the clone:
//!   the absolute program path (the `PATH` lookup is done here), `argv` and
//!   `envp` as NUL-terminated pointer arrays, the working directory, the
//!   descriptors, the old signal mask; the child allocates nothing, takes no
//!   lock and calls only async-signal-safe functions (`sigaction`, `setpgid`,
//!   `umask`, `prctl`, `getppid`, `kill`, `dup2`, `chdir`, `rt_sigprocmask`,
//!   `execve`, `_exit`); errno it writes is the suspended thread's own;
//! - it runs on a stack mapped for it (64 KiB and a guard page), never on the
//!   parent's, so nothing the parent will read again is overwritten;
//! - no signal handler may run in the child (it would run the daemon's code on
//!   the daemon's memory, e.g. signal-hook writing to the daemon's self-pipe):
//!   the parent blocks every signal around the clone (the raw system call, so
//!   glibc's internal ones too), the child sets every caught signal back to its
//!   default action, and only then restores the mask the parent had;
//! - SIGPIPE goes back to its default action, as std does for its children
//!   (Rust programs ignore it, and an ignored signal stays ignored across exec);
//! - a failure before `execve` is reported through an atomic in the shared
//!   memory and `_exit(127)`; the parent reads it once `clone` returns (the
//!   child has exec'ed or exited by then), reaps that child and returns the
//!   errno, so a missing program is `ENOENT` with no zombie left behind;
//! - descriptors other than 0, 1 and 2 do not reach the program: every
//!   descriptor the crate opens is close-on-exec (std's default), and the
//!   three that are handed over are duplicated onto 0, 1 and 2, which clears
//!   the flag on the copies only.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that spawned the child exits, not
//! the process: spawn from a thread that lives as long as the children should
//! (the daemon spawns tasks from its main loop, on the main thread).
//!
//! A leaf like its parent module: it knows no other module of the crate.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};

/// The exit status of a child that failed before `execve` (as `posix_spawn`'s).
const SPAWN_FAILED: libc::c_int = 127;
/// The child's stack: its frames are a few hundred bytes, glibc's `posix_spawn` gives 32 KiB.
const STACK_SIZE: usize = 64 * 1024;
/// Signals 1..=64 (the kernel's `_NSIG` on Linux is 64; libc has no constant for it).
const LAST_SIGNAL: libc::c_int = 64;
/// The kernel's signal set: one bit per signal, 8 bytes (what `rt_sigprocmask` takes as its size).
type KernelSigset = u64;

/// What to start and how.
pub(crate) struct Request<'a> {
    /// A path with a slash (relative ones are taken from the current directory, not from `cwd`), or a
    /// name looked up on the `PATH` of `env`.
    pub(crate) program: &'a Path,
    /// `argv[1..]`; `argv[0]` is `program` as given.
    pub(crate) args: &'a [OsString],
    /// The whole environment of the child (nothing is inherited); a later entry wins over an earlier one.
    pub(crate) env: &'a [(OsString, OsString)],
    pub(crate) cwd: &'a Path,
    /// Descriptors to become the child's 0, 1 and 2; `None` inherits the parent's.
    pub(crate) stdin: Option<BorrowedFd<'a>>,
    pub(crate) stdout: Option<BorrowedFd<'a>>,
    pub(crate) stderr: Option<BorrowedFd<'a>>,
    pub(crate) umask: libc::mode_t,
    /// `setpgid(0, 0)`: the child leads a process group of its own.
    pub(crate) own_group: bool,
    /// `PR_SET_PDEATHSIG`: sent to the child when the spawning thread exits.
    pub(crate) death_signal: Option<libc::c_int>,
}

/// A started child: waited for with `waitpid`, like [`std::process::Child`] (nothing happens on drop).
#[derive(Debug)]
pub(crate) struct Child {
    pid: libc::pid_t,
    status: Option<ExitStatus>,
}

impl Child {
    pub(crate) fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Waits for the child to exit (at most once with the kernel; later calls return the same status).
    pub(crate) fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let mut raw = 0;
        loop {
            // SAFETY: waitpid on our own child, with a valid pointer for the status.
            if unsafe { libc::waitpid(self.pid, &mut raw, 0) } >= 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        let status = ExitStatus::from_raw(raw);
        self.status = Some(status);
        Ok(status)
    }

    /// The exit status if the child has exited, without blocking.
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let mut raw = 0;
        // SAFETY: as in `wait`.
        let pid = unsafe { libc::waitpid(self.pid, &mut raw, libc::WNOHANG) };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            return Ok(None);
        }
        let status = ExitStatus::from_raw(raw);
        self.status = Some(status);
        Ok(Some(status))
    }

    /// SIGKILL, unless the child was already reaped (its pid may belong to someone else by now).
    pub(crate) fn kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        // SAFETY: kill with integer arguments.
        if unsafe { libc::kill(self.pid, libc::SIGKILL) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Starts `req.program`; returns once it runs (its `execve` succeeded) or with the errno that stopped it.
pub(crate) fn spawn(req: &Request<'_>) -> io::Result<Child> {
    let program = resolve(req.program, req.env)?;
    let program = cstring(program.as_os_str())?;
    let mut argv = Vec::with_capacity(req.args.len() + 1);
    argv.push(cstring(req.program.as_os_str())?);
    for arg in req.args {
        argv.push(cstring(arg)?);
    }
    let mut envp = Vec::with_capacity(req.env.len());
    for (i, (name, value)) in req.env.iter().enumerate() {
        if req.env[i + 1..].iter().any(|(later, _)| later == name) {
            continue;
        }
        let mut entry = Vec::with_capacity(name.len() + value.len() + 1);
        entry.extend_from_slice(name.as_bytes());
        entry.push(b'=');
        entry.extend_from_slice(value.as_bytes());
        envp.push(CString::new(entry).map_err(|_| nul_error())?);
    }
    let argv_ptrs = pointers(&argv);
    let envp_ptrs = pointers(&envp);
    let cwd = cstring(req.cwd.as_os_str())?;
    // A descriptor that already is 0, 1 or 2 could be overwritten by an earlier dup2, and dup2 onto itself
    // would keep its close-on-exec flag: such ones are copied above 2 first (close-on-exec, closed on return).
    let mut lifted: Vec<OwnedFd> = Vec::new();
    let mut fds = [-1; 3];
    for (slot, fd) in fds.iter_mut().zip([req.stdin, req.stdout, req.stderr]) {
        let Some(fd) = fd else { continue };
        *slot = if fd.as_raw_fd() > 2 {
            fd.as_raw_fd()
        } else {
            // SAFETY: fcntl on a descriptor the caller lends us; the new one is ours.
            let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
            if copy < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `copy` is a fresh descriptor nobody else owns.
            lifted.push(unsafe { OwnedFd::from_raw_fd(copy) });
            copy
        };
    }
    let stack = Stack::new()?;
    let all: KernelSigset = !0;
    let mut old_mask: KernelSigset = 0;
    // SAFETY: rt_sigprocmask with valid pointers to 8-byte sets.
    if unsafe { libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &all, &mut old_mask, 8usize) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let args = ChildArgs {
        program: program.as_ptr(),
        argv: argv_ptrs.as_ptr(),
        envp: envp_ptrs.as_ptr(),
        cwd: cwd.as_ptr(),
        fds,
        umask: req.umask,
        own_group: req.own_group,
        death_signal: req.death_signal.unwrap_or(0),
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        old_mask,
        error: AtomicI32::new(0),
        #[cfg(test)]
        caught_before_exec: std::sync::atomic::AtomicU64::new(0),
    };
    // SAFETY: the child runs `child_main` on `stack` (which outlives it: the clone returns only once the
    // child has exec'ed or exited), only reads `args` (alive on this frame; its one written field is an
    // atomic) and follows the rules in the module doc. SIGCHLD makes it an ordinary child for waitpid.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&args as *const ChildArgs).cast_mut().cast(),
        )
    };
    let clone_error = (pid < 0).then(io::Error::last_os_error);
    // SAFETY: as above, restoring the mask the first call saved.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &old_mask,
            std::ptr::null_mut::<KernelSigset>(),
            8usize,
        );
    }
    drop(stack);
    drop(lifted);
    if let Some(e) = clone_error {
        return Err(e);
    }
    let mut child = Child { pid, status: None };
    let errno = args.error.load(Ordering::SeqCst);
    #[cfg(test)]
    LAST_CAUGHT.with(|c| c.set(args.caught_before_exec.load(Ordering::SeqCst)));
    if errno != 0 {
        // The child has exited (127): reap it, so a failed spawn leaves no zombie.
        let _ = child.wait();
        return Err(io::Error::from_raw_os_error(errno));
    }
    Ok(child)
}

/// The path to exec: a path with a slash made absolute, a bare name found on the child's `PATH`.
fn resolve(program: &Path, env: &[(OsString, OsString)]) -> io::Result<std::path::PathBuf> {
    let bytes = program.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    if bytes.contains(&b'/') {
        return std::path::absolute(program);
    }
    let path = env.iter().rev().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_os_str());
    let name = program.to_str().ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
    super::find_executable(name, path).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| nul_error())
}

fn nul_error() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "nul byte found in a program, argument, variable or directory")
}

/// A NULL-terminated array of pointers into `strings` (which must outlive it).
fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
}

/// What the child reads (and, for errors, writes) in the shared memory.
struct ChildArgs {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    /// For 0, 1, 2; -1 keeps the inherited one.
    fds: [RawFd; 3],
    umask: libc::mode_t,
    own_group: bool,
    /// 0 for none.
    death_signal: libc::c_int,
    parent: libc::pid_t,
    old_mask: KernelSigset,
    /// The errno that stopped the child before `execve`; 0 if none.
    error: AtomicI32,
    /// Test probe: the signals that still had a handler (and SIGPIPE if not default) right before `execve`.
    #[cfg(test)]
    caught_before_exec: std::sync::atomic::AtomicU64,
}

#[cfg(test)]
thread_local! {
    /// The probe of this thread's last spawn.
    static LAST_CAUGHT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The child: runs on its own stack in the parent's memory until `execve`.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` the suspended parent keeps alive.
    let args = unsafe { &*(arg as *const ChildArgs) };
    // SAFETY: see the module doc; only async-signal-safe calls on prepared data.
    let errno = unsafe { exec_child(args) };
    args.error.store(if errno == 0 { libc::ECHILD } else { errno }, Ordering::SeqCst);
    // SAFETY: _exit ends this process only, without running the parent's exit handlers.
    unsafe { libc::_exit(SPAWN_FAILED) }
}

/// Sets the child up and execs; returns the errno if anything failed.
///
/// # Safety
/// Only in the child of `spawn`'s clone, with `args` prepared there.
unsafe fn exec_child(args: &ChildArgs) -> libc::c_int {
    // SAFETY (whole body): system calls on prepared, NUL-terminated data and stack-local structs.
    unsafe {
        // Every signal with a handler, and SIGPIPE, back to the default action; signals are all blocked.
        for sig in 1..=LAST_SIGNAL {
            let mut old: libc::sigaction = std::mem::zeroed();
            // glibc refuses its two internal signals (EINVAL): nothing to do for them.
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            let handled = old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN;
            if handled || (sig == libc::SIGPIPE && old.sa_sigaction != libc::SIG_DFL) {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                if libc::sigaction(sig, &default, std::ptr::null_mut()) != 0 {
                    return errno();
                }
            }
        }
        if args.own_group && libc::setpgid(0, 0) != 0 {
            return errno();
        }
        libc::umask(args.umask);
        if args.death_signal != 0 {
            if libc::prctl(libc::PR_SET_PDEATHSIG, args.death_signal as libc::c_ulong, 0, 0, 0) != 0 {
                return errno();
            }
            // The parent may have died before the prctl: the signal is delivered once the mask is restored.
            if libc::getppid() != args.parent {
                libc::kill(libc::getpid(), args.death_signal);
            }
        }
        for (target, fd) in (0..).zip(args.fds) {
            if fd >= 0 && libc::dup2(fd, target) < 0 {
                return errno();
            }
        }
        if libc::chdir(args.cwd) != 0 {
            return errno();
        }
        #[cfg(test)]
        args.caught_before_exec.store(caught_signals(), Ordering::SeqCst);
        if libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &args.old_mask,
            std::ptr::null_mut::<KernelSigset>(),
            8usize,
        ) != 0
        {
            return errno();
        }
        libc::execve(args.program, args.argv, args.envp);
        errno()
    }
}

/// Bit `sig - 1` set for every signal with a handler, and for SIGPIPE unless it has its default action.
#[cfg(test)]
unsafe fn caught_signals() -> u64 {
    let mut bits = 0u64;
    for sig in 1..=LAST_SIGNAL {
        // SAFETY: a query into a stack-local struct.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
            continue;
        }
        let handled = old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN;
        if handled || (sig == libc::SIGPIPE && old.sa_sigaction != libc::SIG_DFL) {
            bits |= 1 << (sig - 1);
        }
    }
    bits
}

fn errno() -> libc::c_int {
    // SAFETY: the calling thread's errno (in the child: the suspended parent thread's, unused meanwhile).
    unsafe { *libc::__errno_location() }
}

/// The child's stack: an anonymous mapping with a guard page below it.
struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

impl Stack {
    fn new() -> io::Result<Stack> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(4096);
        let len = STACK_SIZE + page;
        // SAFETY: a fresh anonymous private mapping.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Stack { base, len };
        // SAFETY: the lowest page of our own mapping; an overflow then faults instead of writing elsewhere.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The highest address (stacks grow down); page-aligned, so 16-byte aligned.
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, as a stack top.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: our mapping, no longer used (the child has exec'ed or exited).
        unsafe {
            libc::munmap(self.base, self.len);
        }
    }
}

#[cfg(test)]
mod tests;
