//! The one system call the benches need that std does not offer: `wait4`, which reaps a
//! child and returns its own resource usage (peak resident memory), kept here because it
//! needs `unsafe`.
#![allow(unsafe_code)]

/// Waits for the child `pid` to end; returns its exit code (128 + signal when killed)
/// and its peak resident set size in KiB (`ru_maxrss`, which Linux reports in KiB).
pub fn wait4(pid: u32) -> Result<(i32, u64), String> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain data that `wait4` fills; both pointers are valid for the
    // call's duration.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: see above; `pid` is our own child, not yet reaped.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
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
    Ok((code, u64::try_from(usage.ru_maxrss).unwrap_or(0)))
}
