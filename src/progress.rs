//! Progress bars on stderr, drawn only when stderr is a terminal (indicatif
//! hides them otherwise, so pipes and CI logs stay clean) and never with
//! `--progress off`.

use std::sync::atomic::{AtomicU8, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// auto (0) or off (1).
static MODE: AtomicU8 = AtomicU8::new(0);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Draw when stderr is a terminal.
    Auto,
    /// Never draw.
    Off,
}

pub fn set_mode(mode: ProgressMode) {
    MODE.store(mode as u8, Ordering::Relaxed);
}

/// A bar of `len` steps labelled `what`.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let target = match MODE.load(Ordering::Relaxed) {
        0 => ProgressDrawTarget::stderr(),
        _ => ProgressDrawTarget::hidden(),
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    bar.set_style(
        ProgressStyle::with_template("{msg:>18} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}
