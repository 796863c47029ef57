//! `edge-loadtest` binary entry point.

use clap::Parser;
use edge_loadtest::app;
use edge_loadtest::cli::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Synth(args) => app::synth(args).await,
        Command::Replay(args) => app::replay(args).await,
    };
    match result {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-loadtest: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
