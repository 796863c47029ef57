//! `edge`: run the edge, validate a config, or start the embedded dev loop.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edge_proxy::connections::logs::PingoraGate;
use edge_proxy::state::ConfigSource;

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
    /// Start everything locally: generated keys and certificate, embedded Kafka, decrypted events printed.
    Dev {
        /// Directory for generated keys, certificate, salts and config.
        #[arg(long, default_value = ".edge-dev")]
        data_dir: PathBuf,
    },
    /// Live terminal view of a running edge, read from its admin listener (q quits).
    Top(edge_top::Options),
}

/// Logs go to stderr, filtered by `RUST_LOG` (default below). Pingora's own
/// lines pass [`PingoraGate`]: per-connection client faults are counted
/// instead of logged, the rest is rate-limited.
fn init_logging(format: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,pingora_core=warn,pingora_proxy=warn,rdkafka=warn")
    });
    let base = tracing_subscriber::registry()
        .with(filter)
        .with(PingoraGate::default());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if format == "json" {
        base.with(fmt.json()).init();
    } else {
        base.with(fmt).init();
    }
}

fn main() -> ExitCode {
    // Exactly one rustls crypto provider in the process: ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let result = match cli.command {
        Command::Run { config } => edge_proxy::server::run(
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
            match edge_proxy::server::prepare(&source) {
                Ok(edge_proxy::server::Prepared {
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
                    eprint!("{errors}");
                    if !errors.ends_with('\n') {
                        eprintln!();
                    }
                    return ExitCode::from(1);
                }
            }
        }
        Command::Dev { data_dir } => edge_proxy::dev::run(&data_dir),
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
