//! Ctrl-C and SIGTERM during `ferry run`: the first one asks the engine to cancel the
//! run (the running step's process group is killed, the run ends `cancelled` and the
//! store says so); a second one exits at once.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};

static CANCEL: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    if CANCEL.swap(true, Ordering::SeqCst) {
        // SAFETY: `_exit` is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// Installs the handlers and returns the flag they set.
pub fn cancel_on_interrupt() -> &'static AtomicBool {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only touches an atomic and calls `_exit`, both
    // async-signal-safe; `signal` with a valid function pointer is sound.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
    &CANCEL
}

/// The cancel flag, for commands that do not install the handlers.
pub fn flag() -> &'static AtomicBool {
    &CANCEL
}

static PARK: AtomicBool = AtomicBool::new(false);

/// The flag `ferry serve` sets on Ctrl-C or SIGTERM: its runs park (see
/// `ferry_engine::Settings::park`) for the next start to take up.
pub fn park_flag() -> &'static AtomicBool {
    &PARK
}
