//! The `tunelake` binary: runs the CLI, prints the error chain once, and
//! exits with the code of the error's class. A closed stdout (`| head`) is
//! success, and a closed stderr loses the message, never the exit code.

use std::error::Error as _;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    match tunelake::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(tunelake::Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            // `eprintln!` panics when stderr is closed (`2>&1 | head -1`): write and ignore failure.
            let mut stderr = std::io::stderr().lock();
            let mut printed = e.to_string();
            let _ = writeln!(stderr, "error: {printed}");
            let mut cause = e.source();
            while let Some(c) = cause {
                // Some libraries repeat their source in their own message: say each thing once.
                let text = c.to_string();
                if !printed.contains(&text) {
                    let _ = writeln!(stderr, "  caused by: {text}");
                    printed.push_str(&text);
                }
                cause = c.source();
            }
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
