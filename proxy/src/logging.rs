//! Log setup shared by the `edge` and `edge-dev` binaries.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::connections::logs::PingoraGate;

/// Default filter of a long-running process (`edge run`, `edge-dev`).
pub const SERVE_FILTER: &str = "info,pingora_core=warn,pingora_proxy=warn,rdkafka=warn";

/// Default filter of a one-shot command (`edge validate`): its result is its
/// output, so only warnings and errors are logged.
pub const COMMAND_FILTER: &str = "warn";

/// Logs go to stderr, filtered by `RUST_LOG` (else `default_filter`), as text
/// or JSON (`format` is `"json"`). Colour codes only when stderr is a
/// terminal. Pingora's own lines pass [`PingoraGate`]: per-connection client
/// faults are counted instead of logged, the rest is rate-limited.
pub fn init(format: &str, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let base = tracing_subscriber::registry()
        .with(filter)
        .with(PingoraGate::default());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if format == "json" {
        base.with(fmt.json()).init();
    } else {
        base.with(fmt).init();
    }
}
