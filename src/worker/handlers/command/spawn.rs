//! Starting the program without copying the worker.
//!
//! `fork` copies the page tables of the whole multi-threaded worker, and every page the
//! worker writes until the child's `exec` then faults to be copied; per job that cost
//! more than the program (`true`) itself. std's `Command` forks as soon as a `pre_exec`
//! hook is set, and also when it must search a `PATH` of the child's own (our clean
//! environment has one); posix_spawn, which does not fork, cannot set the parent-death
//! signal. So this does what glibc's posix_spawn does, `clone(CLONE_VM | CLONE_VFORK)`:
//! the child borrows the worker's memory and the calling thread waits until it has
//! exec'd, and in between it runs only the system calls below, all async-signal-safe,
//! on a stack of its own, touching nothing but memory prepared before the clone.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString, c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

use super::PROGRESS_FD;

/// The child's stack, used only until its `exec`.
const CHILD_STACK: usize = 64 * 1024;
/// Search path of a child without `PATH`, as `execvp` has it.
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

/// What to run: program (looked up in the child's `PATH` unless it holds a `/`),
/// arguments, the complete environment and the working directory.
pub(super) struct Spec {
    pub(super) program: OsString,
    pub(super) args: Vec<String>,
    pub(super) env: BTreeMap<OsString, OsString>,
    pub(super) cwd: Option<PathBuf>,
}

/// A started program in its own process group, with piped stdio; killed (and reaped)
/// when dropped before it was waited for.
pub(super) struct Child {
    pid: libc::pid_t,
    /// How its exit is awaited; `None` once reaped.
    exit: Option<Exit>,
    status: Option<ExitStatus>,
    pub(super) stdin: Option<pipe::Sender>,
    pub(super) stdout: Option<pipe::Receiver>,
    pub(super) stderr: Option<pipe::Receiver>,
}

/// How a child's exit is awaited.
enum Exit {
    /// Its pidfd, readable once it has exited (Linux 5.3 and later).
    Pidfd(AsyncFd<OwnedFd>),
    /// Without pidfds (older kernels, a seccomp filter refusing `pidfd_open`): a thread
    /// blocked in `waitpid`, which reaps it and sends the raw status.
    Thread(tokio::sync::oneshot::Receiver<c_int>),
}

/// Everything the child reads, prepared by the parent: the child may not allocate.
struct ChildArgs {
    /// Paths to try in order, each NUL-terminated.
    candidates: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// `/bin/sh`, a candidate (filled in by the child), the arguments: for a script
    /// without `#!`, as `execvp` runs it.
    sh_argv: Vec<*const libc::c_char>,
    cwd: Option<CString>,
    /// The child's stdin, stdout, stderr and progress descriptors.
    fds: [RawFd; 4],
    parent: libc::pid_t,
    /// The errno of the step that failed; written by the child, read after it exec'd or
    /// exited.
    error: c_int,
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "nul byte found in provided data",
        )
    })
}

fn pipe_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into the array; both are owned below.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors from pipe2, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The paths `execvp` would try for `program` with the child's environment `env`.
fn candidates(program: &OsStr, env: &BTreeMap<OsString, OsString>) -> io::Result<Vec<CString>> {
    let name = program.as_bytes();
    if name.contains(&b'/') {
        return Ok(vec![cstring(name)?]);
    }
    if name.is_empty() {
        return Err(io::ErrorKind::NotFound.into());
    }
    let path = env
        .get(OsStr::new("PATH"))
        .map_or(DEFAULT_PATH, |v| v.as_bytes());
    path.split(|&b| b == b':')
        .map(|dir| {
            // An empty entry is the working directory.
            let mut full = dir.to_vec();
            if !full.is_empty() {
                full.push(b'/');
            }
            full.extend_from_slice(name);
            cstring(&full)
        })
        .collect()
}

/// Starts `spec` with stdio piped, `progress` as descriptor [`PROGRESS_FD`], a process
/// group of its own and SIGKILL as its parent-death signal.
pub(super) fn spawn(spec: &Spec, progress: &OwnedFd) -> io::Result<Child> {
    spawn_awaited(spec, progress, true)
}

/// [`spawn`], its exit awaited on a pidfd if `pidfds` and the kernel has them, else by a
/// thread.
fn spawn_awaited(spec: &Spec, progress: &OwnedFd, pidfds: bool) -> io::Result<Child> {
    let program = cstring(spec.program.as_bytes())?;
    let args = spec
        .args
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<Vec<_>>>()?;
    let env = spec
        .env
        .iter()
        .map(|(k, v)| cstring(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
        .collect::<io::Result<Vec<_>>>()?;
    let sh = c"/bin/sh";
    let (stdin_r, stdin_w) = pipe_pair()?;
    let (stdout_r, stdout_w) = pipe_pair()?;
    let (stderr_r, stderr_w) = pipe_pair()?;
    let nul = std::ptr::null();
    let mut child = ChildArgs {
        candidates: candidates(&spec.program, &spec.env)?,
        argv: std::iter::once(program.as_ptr())
            .chain(args.iter().map(|a| a.as_ptr()))
            .chain([nul])
            .collect(),
        envp: env.iter().map(|e| e.as_ptr()).chain([nul]).collect(),
        sh_argv: [sh.as_ptr(), nul]
            .into_iter()
            .chain(args.iter().map(|a| a.as_ptr()))
            .chain([nul])
            .collect(),
        cwd: match &spec.cwd {
            Some(dir) => Some(cstring(dir.as_os_str().as_bytes())?),
            None => None,
        },
        fds: [
            stdin_r.as_raw_fd(),
            stdout_w.as_raw_fd(),
            stderr_w.as_raw_fd(),
            progress.as_raw_fd(),
        ],
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        error: 0,
    };
    let mut stack = vec![0u8; CHILD_STACK];
    let pid = clone_vfork(&mut child, &mut stack)?;
    // SAFETY: the child has exec'd or exited (CLONE_VFORK), so nothing writes `error`
    // any more; the read is volatile because the write came from "another thread".
    let error = unsafe { std::ptr::read_volatile(&child.error) };
    if error != 0 {
        reap(pid);
        return Err(io::Error::from_raw_os_error(error));
    }
    let started = || -> io::Result<Child> {
        Ok(Child {
            pid,
            exit: None,
            status: None,
            stdin: Some(pipe::Sender::from_owned_fd(stdin_w)?),
            stdout: Some(pipe::Receiver::from_owned_fd(stdout_r)?),
            stderr: Some(pipe::Receiver::from_owned_fd(stderr_r)?),
        })
    };
    let mut child = started().inspect_err(|_| {
        // SAFETY: kill(2) on our own child, not yet reaped: it is not left running.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        reap(pid);
    })?;
    // From here on, dropping `child` kills and reaps it.
    child.exit = Some(match pidfds.then(|| pidfd(pid).ok()).flatten() {
        Some(fd) => Exit::Pidfd(fd),
        None => {
            let (send, exited) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name("ordinaut-wait".into())
                .spawn(move || {
                    let _ = send.send(reap(pid));
                })
                .inspect_err(|_| {
                    // SAFETY: as above; nobody else will wait for it.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    reap(pid);
                })?;
            Exit::Thread(exited)
        }
    });
    Ok(child)
}

/// A pidfd of our child `pid`, registered with the runtime.
fn pidfd(pid: libc::pid_t) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor (with
    // O_CLOEXEC) or -1; the child is ours and not yet reaped, so the pid is its own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    // SAFETY: an OwnedFd stays open and keeps its number until the AsyncFd drops it.
    Ok(unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?)
}

/// Clones the calling thread into a child that runs [`child_main`] on `stack`, with all
/// signals blocked around the clone so that no handler of the worker runs in it.
fn clone_vfork(child: &mut ChildArgs, stack: &mut [u8]) -> io::Result<libc::pid_t> {
    // The stack grows down from its end, aligned to 16 bytes as the ABI wants.
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    // SAFETY: sigfillset and pthread_sigmask only fill and swap this thread's mask.
    // clone with CLONE_VM | CLONE_VFORK suspends this thread until the child has
    // exec'd or exited, so `child` and `stack` outlive its use of them; the child runs
    // only child_main, which touches nothing else of ours.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            child_main,
            top as *mut c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (child as *mut ChildArgs).cast(),
        );
        let e = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 { Err(e) } else { Ok(pid) }
    }
}

/// The child, up to its `exec`. Shares the worker's memory: only system calls and
/// reads of its [`ChildArgs`], no allocation, no lock, no panic.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the ChildArgs of `spawn`, whose thread is suspended until this
    // child execs or exits; every call below is async-signal-safe.
    unsafe {
        let child = &mut *arg.cast::<ChildArgs>();
        let error = prepare_and_exec(child);
        std::ptr::write_volatile(&mut child.error, error);
        libc::_exit(127)
    }
}

/// Sets the child up and execs; returns only on failure, with the errno.
///
/// SAFETY: only in the child of [`clone_vfork`].
unsafe fn prepare_and_exec(child: &mut ChildArgs) -> c_int {
    let errno = || {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL)
    };
    // SAFETY: signal dispositions are the child's own (no CLONE_SIGHAND); the rest
    // acts on the child's descriptors, group and attributes only.
    unsafe {
        // The worker's handlers must not run here (they would run on its memory): back
        // to the default, as posix_spawn does, and SIGPIPE too, which Rust ignores.
        for sig in 1..=libc::SIGRTMAX() {
            let mut action: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut action) == 0
                && (action.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
                && action.sa_sigaction != libc::SIG_DFL
            {
                action.sa_sigaction = libc::SIG_DFL;
                action.sa_flags = 0;
                libc::sigaction(sig, &action, std::ptr::null_mut());
            }
        }
        if libc::setpgid(0, 0) != 0 {
            return errno();
        }
        // Sources are never 0-2 (std keeps those open), so placing stdio first cannot
        // overwrite a source that is still to be placed, and the progress source is
        // placed last.
        for (target, &source) in [0, 1, 2, PROGRESS_FD].iter().zip(&child.fds) {
            let placed = if source == *target {
                libc::fcntl(source, libc::F_SETFD, 0)
            } else {
                libc::dup2(source, *target)
            };
            if placed < 0 {
                return errno();
            }
        }
        if let Some(dir) = &child.cwd
            && libc::chdir(dir.as_ptr()) != 0
        {
            return errno();
        }
        // Die with the worker: a worker killed with SIGKILL runs no destructor, and
        // its program would run on while the job is handed to another worker. Linux
        // sends the signal when the spawning thread exits; spawns happen on the
        // runtime's threads, which live as long as the process.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            return errno();
        }
        // The worker may have died before the prctl: then nobody would send it.
        if libc::getppid() != child.parent {
            libc::_exit(1);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        exec_first(child)
    }
}

/// Tries the candidates as `execvp` does: past the ones missing, remembering a denied
/// one, a script without `#!` run by `/bin/sh`. Returns the errno to report.
///
/// SAFETY: only in the child of [`clone_vfork`].
unsafe fn exec_first(child: &mut ChildArgs) -> c_int {
    let mut denied = false;
    let mut last = libc::ENOENT;
    for path in &child.candidates {
        // SAFETY: NUL-terminated strings and NULL-terminated arrays built by `spawn`.
        unsafe {
            libc::execve(path.as_ptr(), child.argv.as_ptr(), child.envp.as_ptr());
            let e = io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EINVAL);
            if e == libc::ENOEXEC {
                // The slot after `/bin/sh` exists: sh_argv has at least three entries.
                *child.sh_argv.as_mut_ptr().add(1) = path.as_ptr();
                libc::execve(
                    c"/bin/sh".as_ptr(),
                    child.sh_argv.as_ptr(),
                    child.envp.as_ptr(),
                );
                return io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EINVAL);
            }
            match e {
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                other => return other,
            }
            last = e;
        }
    }
    if denied { libc::EACCES } else { last }
}

/// Waits for our child `pid` (blocking); its raw status.
fn reap(pid: libc::pid_t) -> c_int {
    let mut raw = 0;
    // SAFETY: waitpid on our own child; retried if a signal interrupts it.
    while unsafe { libc::waitpid(pid, &mut raw, 0) } < 0
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
    raw
}

impl Child {
    /// The child's pid, which is also its process group's id.
    pub(super) fn id(&self) -> i32 {
        self.pid
    }

    /// Its exit status; cancel-safe, and once known returned again.
    pub(super) async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.status {
                return Ok(status);
            }
            let raw = match &mut self.exit {
                None => return Err(io::ErrorKind::Other.into()),
                Some(Exit::Thread(exited)) => exited
                    .await
                    .map_err(|_| io::Error::other("the thread waiting for the program ended"))?,
                Some(Exit::Pidfd(pidfd)) => {
                    let mut ready = pidfd.readable().await?;
                    let mut raw = 0;
                    // SAFETY: waitpid on our own child, not yet reaped (so the pid is
                    // its own).
                    match unsafe { libc::waitpid(self.pid, &mut raw, libc::WNOHANG) } {
                        pid if pid == self.pid => raw,
                        -1 => return Err(io::Error::last_os_error()),
                        _ => {
                            ready.clear_ready();
                            continue;
                        }
                    }
                }
            };
            self.status = Some(ExitStatus::from_raw(raw));
            self.exit = None;
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let Some(exit) = self.exit.take() else {
            return;
        };
        let pid = self.pid;
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let Exit::Pidfd(pidfd) = exit else {
            // Its thread reaps it.
            return;
        };
        let mut raw = 0;
        // SAFETY: waitpid on our own child, not yet reaped.
        if unsafe { libc::waitpid(pid, &mut raw, libc::WNOHANG) } == pid {
            return;
        }
        // Killed but not yet gone: reaped once it is, so no zombie stays behind.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let _ = pidfd.readable().await;
                    reap(pid);
                });
            }
            Err(_) => {
                std::thread::spawn(move || reap(pid));
            }
        }
    }
}

#[cfg(test)]
mod tests;
