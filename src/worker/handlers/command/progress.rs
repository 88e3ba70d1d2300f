//! Progress from the program: lines on descriptor [`PROGRESS_FD`](super::PROGRESS_FD), each reported to the
//! job's context.

use std::os::fd::{FromRawFd, OwnedFd};

use tokio::io::AsyncReadExt;

use super::JobContext;

/// Longest progress line kept; the rest of a longer line is skipped.
const MAX_PROGRESS_LINE: usize = 4096;

/// A pipe whose write end the child gets as descriptor [`PROGRESS_FD`](super::PROGRESS_FD).
pub(super) fn progress_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into the array; both are owned below.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors from pipe2, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads progress lines until the pipe closes, reporting each.
pub(super) async fn read_progress(read_fd: OwnedFd, ctx: &JobContext) {
    let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(read_fd) else {
        return;
    };
    let mut line: Vec<u8> = Vec::new();
    let mut skipping = false;
    let mut buf = [0u8; 4096];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                if !skipping
                    && let Some((percent, message)) =
                        crate::worker::progress::parse_line(&String::from_utf8_lossy(&line))
                {
                    ctx.report_progress(percent, message.as_deref());
                }
                line.clear();
                skipping = false;
            } else if line.len() < MAX_PROGRESS_LINE {
                line.push(b);
            } else {
                skipping = true;
            }
        }
    }
}
