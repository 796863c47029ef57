//! `edge`: run the edge, validate a config, or start the embedded dev loop.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edge_proxy::ConfigSource;

/// mimalloc's per-thread free lists: the request path allocates and frees
/// many small buffers on one thread, where glibc malloc cost about 10 % of
/// the edge's CPU (BENCHMARKS.md, "Where the edge's CPU goes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "edge",
    version,
    about = "Privacy-first analytics edge: TLS, events, encryption, Kafka"
)]
struct Cli {
    /// Log format: text or json.
    #[arg(long, global = true, default_value = "text", env = "EDGE_LOG_FORMAT")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the edge with a configuration file.
    Run {
        /// Path to the TOML configuration.
        #[arg(long)]
        config: PathBuf,
    },
    /// Check a configuration file: parsing, validation, certificates, keys and secret files, as startup does; binds no socket and does not contact Kafka.
    Validate {
        /// Path to the TOML configuration.
        file: PathBuf,
    },
    /// Start everything locally: generated keys and certificate, embedded Kafka, decrypted events printed (runs the `edge-dev` binary installed beside `edge`).
    Dev {
        /// Directory for generated keys, certificate, salts and config.
        #[arg(long, default_value = ".edge-dev")]
        data_dir: PathBuf,
    },
    /// Live terminal view of a running edge, read from its admin listener (q quits).
    Top(edge_top::Options),
}

fn main() -> ExitCode {
    // Exactly one rustls crypto provider in the process: ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Validate { .. } => edge_proxy::COMMAND_FILTER,
        _ => edge_proxy::SERVE_FILTER,
    };
    edge_proxy::init_logging(&cli.log_format, default_filter);
    let result = match cli.command {
        Command::Run { config } => edge_proxy::run(
            ConfigSource {
                path: config,
                brokers_override: None,
            },
            None,
        ),
        Command::Validate { file } => {
            let source = ConfigSource {
                path: file.clone(),
                brokers_override: None,
            };
            match edge_proxy::prepare(&source) {
                Ok(edge_proxy::Prepared {
                    loaded, runtime, ..
                }) => {
                    println!(
                        "{}: ok (version {}, {} sites, {} certificates)",
                        file.display(),
                        loaded.version(),
                        loaded.config.sites.len(),
                        runtime.certs.len()
                    );
                    return ExitCode::SUCCESS;
                }
                Err(errors) => {
                    let errors = errors.to_string();
                    eprint!("{errors}");
                    if !errors.ends_with('\n') {
                        eprintln!();
                    }
                    return ExitCode::from(1);
                }
            }
        }
        Command::Dev { data_dir } => edge_proxy::run_dev(&data_dir, &cli.log_format),
        Command::Top(options) => edge_top::run_blocking(options),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge: {e:#}");
            ExitCode::from(2)
        }
    }
}
