//! Command output on stdout that ends quietly when the reader goes away.
//!
//! `println!` panics on a closed pipe (`edge-backend stats … | head`), because
//! Rust ignores SIGPIPE. Commands print through [`print_stdout`] instead: a
//! closed pipe ends the output, any other write error is returned.

use std::io::{ErrorKind, Write};

/// Writes `text` to stdout and flushes it. A reader that closed the pipe
/// (`EPIPE`) is not an error: the rest of the output is simply not wanted.
pub fn print_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_to_stdout() {
        print_stdout("").expect("an empty write to stdout succeeds");
    }
}
