//! Hot reload: file changes, SIGHUP and `POST /admin/reload` all end here.
//!
//! A reload re-runs the startup path (load → validate → [`Runtime::build`])
//! and swaps the result in atomically. Any error keeps the running config;
//! changes to keys that need a restart are rejected as a whole.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::metrics::METRICS;
use crate::runtime::Runtime;
use crate::state::{ConfigSource, EdgeState};

/// What started a reload (logged, not a metric label).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Trigger {
    /// The config file changed on disk.
    FileChange,
    /// SIGHUP.
    Signal,
    /// `POST /admin/reload`.
    Admin,
}

/// Result of one reload attempt.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub(crate) enum ReloadOutcome {
    /// The new config is active.
    Applied {
        /// Its version.
        version: String,
    },
    /// The file content did not change.
    Unchanged {
        /// The active version.
        version: String,
    },
    /// Validation or build failed; the old config keeps running.
    Invalid {
        /// The active (old) version.
        version: String,
        /// One line per problem: `file:line: key: message`.
        errors: Vec<String>,
    },
    /// The new config changes keys that need a restart; nothing was applied.
    Rejected {
        /// The active (old) version.
        version: String,
        /// One line per offending key.
        errors: Vec<String>,
    },
}

impl ReloadOutcome {
    /// Metric label.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Applied { .. } => "applied",
            Self::Unchanged { .. } => "unchanged",
            Self::Invalid { .. } => "invalid",
            Self::Rejected { .. } => "rejected",
        }
    }
}

/// Why a new config was not applied; the running one stays.
enum Refusal {
    /// Validation or build errors, one line each.
    Invalid(Vec<String>),
    /// Keys that need a restart changed.
    Rejected(Vec<String>),
}

/// Loads the file and builds the candidate runtime, the startup path.
/// `Ok(None)` when the file is byte-for-byte the running config.
fn candidate(source: &ConfigSource, current: &Runtime) -> Result<Option<Runtime>, Refusal> {
    let lines = |errors: edge_config::ConfigErrors| {
        Refusal::Invalid(errors.to_string().lines().map(str::to_string).collect())
    };
    let loaded = source.load().map_err(lines)?;
    if loaded.sha256 == current.loaded.sha256
        && crate::bots::ListStamps::read(&loaded.config.bots) == current.bot_stamps
    {
        return Ok(None);
    }
    let restart_needed =
        edge_config::non_reloadable_changes(&current.loaded.config, &loaded.config);
    if !restart_needed.is_empty() {
        return Err(Refusal::Rejected(restart_needed));
    }
    Runtime::build(&loaded, Some(current))
        .map(Some)
        .map_err(lines)
}

/// Serialises reloads so two triggers never interleave.
pub(crate) struct Reloader {
    state: Arc<EdgeState>,
    lock: Mutex<()>,
}

impl Reloader {
    /// A reloader for `state`.
    pub(crate) fn new(state: Arc<EdgeState>) -> Arc<Self> {
        Arc::new(Self {
            state,
            lock: Mutex::new(()),
        })
    }

    /// Loads, validates and (when everything is fine) applies the config file.
    pub(crate) async fn reload(&self, trigger: Trigger) -> ReloadOutcome {
        let _guard = self.lock.lock().await;
        let current = self.state.runtime();
        let version = current.version().to_string();
        let source = self.state.source.clone();
        let prepared = tokio::task::spawn_blocking(move || candidate(&source, &current))
            .await
            .unwrap_or_else(|e| Err(Refusal::Invalid(vec![format!("reload task failed: {e}")])));
        let outcome = match prepared {
            Ok(None) => ReloadOutcome::Unchanged { version },
            Ok(Some(runtime)) => {
                let new_version = runtime.version().to_string();
                match self.state.install(runtime) {
                    Ok(()) => ReloadOutcome::Applied {
                        version: new_version,
                    },
                    Err(e) => ReloadOutcome::Invalid {
                        version,
                        errors: vec![e.to_string()],
                    },
                }
            }
            Err(Refusal::Invalid(errors)) => ReloadOutcome::Invalid { version, errors },
            Err(Refusal::Rejected(errors)) => ReloadOutcome::Rejected { version, errors },
        };
        self.finish(trigger, outcome)
    }

    fn finish(&self, trigger: Trigger, outcome: ReloadOutcome) -> ReloadOutcome {
        METRICS
            .config_reloads
            .with_label_values(&[outcome.label()])
            .inc();
        match &outcome {
            ReloadOutcome::Applied { version } => {
                tracing::info!(?trigger, %version, "configuration reloaded")
            }
            ReloadOutcome::Unchanged { .. } => tracing::debug!(?trigger, "configuration unchanged"),
            ReloadOutcome::Invalid { version, errors }
            | ReloadOutcome::Rejected { version, errors } => {
                tracing::warn!(?trigger, %version, errors = %errors.join("; "), "configuration reload refused; keeping the running config")
            }
        }
        outcome
    }
}

/// Background service: watches the config file and the bot list files it
/// names, and listens for SIGHUP.
pub(crate) struct ReloadTriggers {
    /// The reloader to call.
    pub reloader: Arc<Reloader>,
}

impl ReloadTriggers {
    /// The files whose change triggers a reload: the config file and the
    /// bot lists named by the active config.
    fn watched_files(&self) -> Vec<std::path::PathBuf> {
        let mut files = vec![self.reloader.state.source.path.clone()];
        files.extend(
            self.reloader
                .state
                .runtime()
                .loaded
                .config
                .bots
                .files()
                .cloned(),
        );
        files
    }
}

#[async_trait]
impl BackgroundService for ReloadTriggers {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Trigger>(8);
        let mut watched = self.watched_files();
        let mut _watcher = match watch_files(&watched, tx.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP or POST /admin/reload");
                None
            }
        };
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP");
                None
            }
        };
        loop {
            let trigger = tokio::select! {
                _ = shutdown.changed() => break,
                Some(t) = rx.recv() => t,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => Trigger::Signal,
            };
            if matches!(trigger, Trigger::FileChange) {
                // Editors write in several steps; let them finish, then take one reload.
                tokio::time::sleep(Duration::from_millis(200)).await;
                while rx.try_recv().is_ok() {}
            }
            self.reloader.reload(trigger).await;
            let now_watched = self.watched_files();
            if now_watched != watched {
                watched = now_watched;
                _watcher = match watch_files(&watched, tx.clone()) {
                    Ok(w) => Some(w),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot watch the bot list files; reload with SIGHUP or POST /admin/reload");
                        None
                    }
                };
            }
        }
    }
}

/// Watches the directories of `paths` (editors replace files by rename) and
/// sends a trigger when one of the files is created or modified.
fn watch_files(
    paths: &[std::path::PathBuf],
    tx: tokio::sync::mpsc::Sender<Trigger>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let dir_of = |path: &std::path::Path| {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|| std::path::PathBuf::from("."))
    };
    let files: Vec<(std::path::PathBuf, Option<std::ffi::OsString>)> = paths
        .iter()
        .map(|p| (dir_of(p), p.file_name().map(|n| n.to_os_string())))
        .collect();
    let matchers = files.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if !matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_)) {
            return;
        }
        let hit = event.paths.iter().any(|p| {
            let name = p.file_name().map(|n| n.to_os_string());
            matchers.iter().any(|(dir, file)| {
                *file == name && (p.parent() == Some(dir.as_path()) || !dir.is_absolute())
            })
        });
        if hit {
            let _ = tx.try_send(Trigger::FileChange);
        }
    })?;
    let mut dirs: Vec<&std::path::PathBuf> = files.iter().map(|(d, _)| d).collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    use crate::test_config::MINIMAL as BASE;

    fn source(dir: &Path, text: &str) -> ConfigSource {
        let path = dir.join("edge.toml");
        std::fs::write(&path, format!("data_dir = {:?}\n{text}", dir.display())).unwrap();
        ConfigSource {
            path,
            brokers_override: None,
        }
    }

    fn running(source: &ConfigSource) -> Runtime {
        Runtime::build(&source.load().unwrap(), None).unwrap()
    }

    #[test]
    fn an_unchanged_file_is_no_candidate_and_a_changed_one_is_built() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path(), BASE);
        let current = running(&src);
        assert!(matches!(candidate(&src, &current), Ok(None)));
        // A reloadable change (a rate limit) builds a new runtime.
        let src = source(
            dir.path(),
            &format!("{BASE}[rate_limits.per_ip]\nevents_per_second = 5\nburst = 10\n"),
        );
        match candidate(&src, &current) {
            Ok(Some(next)) => assert_ne!(next.version(), current.version()),
            Ok(None) => panic!("a changed file was taken as unchanged"),
            Err(_) => panic!("a reloadable change was refused"),
        }
    }

    #[test]
    fn restart_only_changes_are_rejected_and_bad_files_are_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path(), BASE);
        let current = running(&src);
        let moved = source(
            dir.path(),
            &BASE.replace("[listeners]\n", "[listeners]\nhttp = \"127.0.0.1:8081\"\n"),
        );
        match candidate(&moved, &current) {
            Err(Refusal::Rejected(keys)) => {
                assert!(
                    keys.iter().any(|k| k.contains("listeners.http")),
                    "{keys:?}"
                );
            }
            _ => panic!("a listener change was not rejected"),
        }
        let broken = source(dir.path(), &format!("{BASE}[rate_limits\n"));
        match candidate(&broken, &current) {
            Err(Refusal::Invalid(lines)) => {
                assert!(lines.iter().any(|l| l.contains("edge.toml")), "{lines:?}");
            }
            _ => panic!("a broken file was not invalid"),
        }
    }
}
