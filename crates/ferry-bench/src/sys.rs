//! The system calls the benches need that std does not offer: `wait4`, which reaps a
//! child and returns its own resource usage (peak resident memory), and `kill` for a
//! child that ran out of time; kept here because they need `unsafe`.
#![allow(unsafe_code)]

use std::time::{Duration, Instant};

/// How a child ended: its exit code (128 + signal when killed), its peak resident set
/// size in KiB (`ru_maxrss`, which Linux reports in KiB), and whether it was killed for
/// running past its deadline.
pub struct Ended {
    pub code: i32,
    pub maxrss_kib: u64,
    pub timed_out: bool,
}

/// Waits for the child `pid` (ours, not yet reaped) to end, polling every 5 ms; past
/// `deadline` it is killed (SIGKILL) and reaped.
pub fn wait4(pid: u32, deadline: Option<Instant>) -> Result<Ended, String> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain data that `wait4` fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut timed_out = false;
    loop {
        let flags = if timed_out { 0 } else { libc::WNOHANG };
        // SAFETY: both pointers are valid for the call; `pid` is our own child, not yet
        // reaped (so the id cannot have been reused).
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        if r == pid {
            break;
        }
        if r == 0 {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                // SAFETY: as above, the child is not reaped yet.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                timed_out = true;
            } else {
                std::thread::sleep(Duration::from_millis(5));
            }
            continue;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4({pid}): {e}"));
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok(Ended {
        code,
        maxrss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        timed_out,
    })
}
