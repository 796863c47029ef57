//! `edge-dev` (also started by `edge dev`): the edge, librdkafka's embedded
//! mock broker and the backend's consumers in one process, for development.
//!
//! It is its own crate so that the production `edge` binary does not link the
//! backend (sqlx, object_store, DataSketches).

mod dev;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "edge-dev",
    version,
    about = "Start everything locally: generated keys and certificate, embedded Kafka, decrypted events printed"
)]
struct Cli {
    /// Log format: text or json.
    #[arg(long, default_value = "text", env = "EDGE_LOG_FORMAT")]
    log_format: String,
    /// Directory for generated keys, certificate, salts and config.
    #[arg(long, default_value = ".edge-dev")]
    data_dir: PathBuf,
}

fn main() -> ExitCode {
    // Exactly one rustls crypto provider in the process: ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    edge_proxy::init_logging(&cli.log_format, edge_proxy::SERVE_FILTER);
    match dev::run(&cli.data_dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge dev: {e:#}");
            ExitCode::from(2)
        }
    }
}
