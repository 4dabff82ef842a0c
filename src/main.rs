//! The `tunelake` binary: runs the CLI, prints the error chain once, and
//! exits with the code of the error's class. A closed stdout (`| head`) is
//! success, and a closed stderr loses the message, never the exit code.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    match tunelake::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(tunelake::Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            // `eprintln!` panics when stderr is closed (`2>&1 | head -1`): write and ignore failure.
            let mut stderr = std::io::stderr().lock();
            for (i, text) in e.messages().iter().enumerate() {
                let _ = writeln!(stderr, "{}{text}", if i == 0 { "error: " } else { "  caused by: " });
            }
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
