//! `edge-loadtest` binary entry point.

use clap::Parser;
use edge_loadtest::app;
use edge_loadtest::cli::{Cli, Command};
use edge_loadtest::verdict::FAILED_EXIT_CODE;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Synth(args) => app::synth(args).await,
        Command::Replay(args) => app::replay(args).await,
    };
    match result {
        Ok(summary) if summary.verdict.passed => std::process::ExitCode::SUCCESS,
        Ok(summary) => {
            for failure in &summary.verdict.failures {
                eprintln!("edge-loadtest: FAILED: {failure}");
            }
            std::process::ExitCode::from(FAILED_EXIT_CODE)
        }
        Err(e) => {
            eprintln!("edge-loadtest: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
