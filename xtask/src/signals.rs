//! SIGTERM and SIGINT while training (Slurm sends SIGTERM before it kills
//! a job; Ctrl-C sends SIGINT): the first one lets the current step finish,
//! then the trainer writes a checkpoint and stops with a message saying
//! how to resume; a second one exits at once.

use std::sync::atomic::{AtomicI32, Ordering};

/// The first signal received, or 0.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Installs the handler for SIGTERM and SIGINT.
#[cfg(unix)]
pub fn install() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only touches an atomic and calls `_exit`, both
    // async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
    }
}

/// Signals are not handled on this platform.
#[cfg(not(unix))]
pub fn install() {}

#[cfg(unix)]
extern "C" fn on_signal(signal: libc::c_int) {
    if RECEIVED.swap(signal, Ordering::SeqCst) != 0 {
        // SAFETY: `_exit` is async-signal-safe.
        unsafe { libc::_exit(128 + signal) }
    }
}

/// The name of the first signal received, if any.
pub fn received() -> Option<&'static str> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        15 => Some("SIGTERM"),
        2 => Some("SIGINT"),
        _ => Some("a signal"),
    }
}
