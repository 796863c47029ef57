//! `edge-config-check FILE...` — validates edge configuration files without
//! starting anything, printing every error as `{file}:{line}: {key}: {message}`.
//!
//! Exits 0 when every file is valid, 1 when any is not, 2 on bad usage.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() || files.iter().any(|f| f == "-h" || f == "--help") {
        eprintln!("usage: edge-config-check FILE...");
        return ExitCode::from(2);
    }
    let mut ok = true;
    for file in &files {
        match edge_config::load(Path::new(file)) {
            Ok(loaded) => println!("{file}: ok (version {})", loaded.version()),
            Err(errors) => {
                ok = false;
                eprintln!("{errors}");
            }
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
