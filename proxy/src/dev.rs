//! `edge dev`: hands over to the `edge-dev` binary beside `edge`.
//!
//! The dev loop embeds the backend (aggregator, backup, tail), so it lives in
//! its own crate (`devmode/`, binary `edge-dev`) and the production `edge`
//! binary does not link the backend. `edge dev` replaces itself with that
//! binary when it is installed next to `edge`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// File name of the dev-mode binary, looked up next to the running `edge`.
pub(crate) const DEV_BINARY: &str = "edge-dev";

/// Where `edge-dev` is expected: the directory of the running executable.
pub(crate) fn dev_binary_path() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running edge binary")?;
    Ok(exe.with_file_name(DEV_BINARY))
}

/// Execs `edge-dev --data-dir DATA_DIR --log-format FORMAT`. Returns only on
/// failure: a missing `edge-dev` binary, or an exec error.
pub fn run(data_dir: &Path, log_format: &str) -> anyhow::Result<()> {
    let path = dev_binary_path()?;
    if !path.is_file() {
        bail!(
            "`edge dev` runs the separate {DEV_BINARY} binary, which is not installed at {} \
             (build it with `cargo build --release -p edge-dev`, or run `cargo run --release --bin edge-dev`)",
            path.display()
        );
    }
    let err = std::process::Command::new(&path)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--log-format")
        .arg(log_format)
        .exec();
    Err(err).with_context(|| format!("starting {}", path.display()))
}
