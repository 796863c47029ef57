//! The operator's on-demand `ask` endpoint for the ACME scenarios.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{ChildGuard, free_port};

/// The operator's `ask` endpoint, played by a small Python HTTP server
/// (tests/fixtures/ask_server.py: approves names starting with `ok`).
pub struct AskServer {
    child: Option<ChildGuard>,
    pub port: u16,
    log: PathBuf,
}

impl AskServer {
    pub fn start(dir: &Path) -> AskServer {
        Self::start_on(dir, free_port(), "ask.log")
    }

    /// Starts the server on `port`, logging calls to `dir/log_name`.
    pub fn start_on(dir: &Path, port: u16, log_name: &str) -> AskServer {
        let log = dir.join(log_name);
        std::fs::write(&log, "").unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/ask_server.py");
        let child = std::process::Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&log)
            .spawn()
            .unwrap();
        let server = AskServer {
            child: Some(ChildGuard(child)),
            port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "ask server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Calls for `name` so far.
    pub fn calls(&self, name: &str) -> usize {
        self.names().iter().filter(|l| *l == name).count()
    }

    /// Every name asked for, in arrival order.
    pub fn names(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn stop(&mut self) {
        self.child.take();
    }
}
