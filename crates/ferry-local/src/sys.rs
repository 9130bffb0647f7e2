//! The few raw system calls the local runtime needs (signalling process groups, reaping a
//! known child without blocking), kept in one place because they need `unsafe`.
#![allow(unsafe_code)]

use std::io;

/// How a non-blocking look at a process id turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reap {
    /// It is our child and still running.
    Running,
    /// It was our child and has just been reaped: the exit code, or `128 + signal`.
    Exited(i32),
    /// It is not (or no longer) a child of this process: nothing to reap.
    NotChild,
}

/// Sends `sig` to every process in the group `pgid`. Refuses group ids 0 and 1, which
/// `kill` would read as "my own group" and "every process I may signal".
pub(crate) fn signal_group(pgid: i32, sig: i32) -> io::Result<()> {
    if pgid <= 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal process group {pgid}"),
        ));
    }
    // SAFETY: `kill` takes two plain integers and touches no memory of ours; a negative
    // pid addresses the process group `pgid`, which is > 1 here, so neither our own group
    // (0) nor every process (-1) can be hit.
    let r = unsafe { libc::kill(-pgid, sig) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether any process (zombies included) is still in the group `pgid`.
pub(crate) fn group_exists(pgid: i32) -> bool {
    match signal_group(pgid, 0) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() == Some(libc::EPERM),
    }
}

/// The process group of `pid`, when that process exists.
pub(crate) fn process_group_of(pid: i32) -> Option<i32> {
    if pid <= 0 {
        return None;
    }
    // SAFETY: `getpgid` takes a plain integer and touches no memory of ours.
    let r = unsafe { libc::getpgid(pid) };
    (r > 0).then_some(r)
}

/// Reaps `pid` if it is our child and has exited, without blocking. Only ever waits for
/// that one pid, so children owned by `std::process::Child` elsewhere are not disturbed.
pub(crate) fn try_reap(pid: i32) -> Reap {
    if pid <= 0 {
        return Reap::NotChild;
    }
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a valid, writable `c_int` for the duration of the call, and
    // `pid` > 0 names exactly one process (never "any child").
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    if r == 0 {
        Reap::Running
    } else if r == pid {
        if libc::WIFEXITED(status) {
            Reap::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            Reap::Exited(128 + libc::WTERMSIG(status))
        } else {
            Reap::Running
        }
    } else {
        Reap::NotChild
    }
}

/// Makes the command's shell die with the thread that started it (Linux
/// `PR_SET_PDEATHSIG`): a step or deploy command whose ferry was killed (`kill -9`) does
/// not go on acting behind the back of the ferry that takes its run up again, which
/// decides from what the environment reports. Not for supervised services, which
/// outlive the ferry that started them.
pub(crate) fn die_with_parent(cmd: &mut std::process::Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: `prctl` is async-signal-safe and the closure touches no shared state.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}
