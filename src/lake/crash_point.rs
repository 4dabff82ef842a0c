//! Crash points, for the crash matrix in the test suite: every step that
//! makes something durable or visible (a file written or renamed into place,
//! an fsync, a Delta commit, a table sent to PostgreSQL) passes one.
//!
//! `TUNELAKE_CRASH_AT=N` kills the process with SIGKILL as it passes its Nth
//! point, so a test can stop a command after any number of files instead of
//! after a guessed time; `TUNELAKE_CRASH_TRACE=1` prints each point to
//! stderr, which is how a test learns how many a command passes. Unset (the
//! normal case), a point costs one relaxed load.

use std::fmt::Display;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Setting {
    at: Option<u64>,
    trace: bool,
}

fn setting() -> &'static Setting {
    static SETTING: OnceLock<Setting> = OnceLock::new();
    SETTING.get_or_init(|| Setting {
        at: std::env::var("TUNELAKE_CRASH_AT").ok().and_then(|v| v.parse().ok()),
        trace: std::env::var_os("TUNELAKE_CRASH_TRACE").is_some(),
    })
}

static PASSED: AtomicU64 = AtomicU64::new(0);

/// One durable step, `what` (a path, a table), is done.
pub fn passed(what: impl Display) {
    let s = setting();
    if s.at.is_none() && !s.trace {
        return;
    }
    let n = PASSED.fetch_add(1, Ordering::SeqCst) + 1;
    if s.trace {
        eprintln!("crash point {n}: {what}");
    }
    if s.at == Some(n) {
        // SAFETY: kill(2) on our own pid has no memory effects; SIGKILL does not return.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}
