//! Daily-rotating secret salts for visitor ids.
//!
//! One random 32-byte salt exists per UTC day (day number = Unix milliseconds
//! / 86 400 000). Only today's and yesterday's salts are ever kept, in memory
//! and on disk: once a salt is deleted, the visitor ids it produced can no
//! longer be recomputed or linked to the next day's ids. Salt bytes are never
//! logged or printed (the `Debug` output lists days only).
//!
//! Next to each salt the store keeps the HMAC-SHA-256 key derived from it
//! ([`SaltStore::key_for_day`]), so that visitor ids do not rebuild the key
//! (two SHA-256 blocks) per event. The key is exactly as sensitive as the
//! salt (it computes the same ids, though the salt cannot be read back from
//! it) and is kept no longer: it lives in the same map entry as its salt,
//! only in memory (never written to disk, its `Debug` names the algorithm
//! only), and is dropped with the salt when the day is pruned.

mod files;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Length of a salt in bytes.
pub const SALT_LEN: usize = 32;

/// Milliseconds in a UTC day.
const MS_PER_DAY: i64 = 86_400_000;

/// The UTC day number (days since the Unix epoch) of a Unix time in ms.
pub fn day_of(unix_ms: i64) -> i64 {
    unix_ms.div_euclid(MS_PER_DAY)
}

/// Today's UTC day number according to the system clock.
pub fn current_day() -> i64 {
    let ms = match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    };
    day_of(ms)
}

/// Why a salt could not be loaded, created or stored.
#[derive(Debug, thiserror::Error)]
pub enum SaltError {
    /// A filesystem operation failed.
    #[error("salt storage: cannot {op} {path}: {source}")]
    Io {
        /// What was being done (`create`, `read`, `rename into`, ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A salt file does not hold exactly [`SALT_LEN`] bytes.
    #[error("salt file {path} holds {len} bytes instead of 32; delete it to start a new salt")]
    Corrupt {
        /// The offending file.
        path: PathBuf,
        /// Bytes found (capped at 33).
        len: usize,
    },
    /// The salt for an older day has already been deleted.
    #[error("the salt for day {day} was deleted (only day {oldest} and later are kept)")]
    Expired {
        /// The day asked for.
        day: i64,
        /// The oldest day still kept.
        oldest: i64,
    },
    /// The operating system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

impl SaltError {
    /// Short fixed label for metrics: `io`, `corrupt`, `expired` or `random`.
    pub fn kind(&self) -> &'static str {
        match self {
            SaltError::Io { .. } => "io",
            SaltError::Corrupt { .. } => "corrupt",
            SaltError::Expired { .. } => "expired",
            SaltError::Random => "random",
        }
    }
}

/// One day's salt and the HMAC-SHA-256 key derived from it (see the module
/// documentation for why keeping the key is no more sensitive than the salt).
#[derive(Clone)]
struct DaySalt {
    salt: Arc<[u8; SALT_LEN]>,
    key: Arc<hmac::Key>,
}

impl DaySalt {
    fn new(salt: [u8; SALT_LEN]) -> Self {
        DaySalt {
            key: Arc::new(hmac::Key::new(hmac::HMAC_SHA256, &salt)),
            salt: Arc::new(salt),
        }
    }
}

/// Salts currently kept, and the newest day seen.
struct State {
    /// Salts (with their keys) by day; at most `today - 1` and `today` after
    /// pruning.
    salts: BTreeMap<i64, DaySalt>,
    /// The newest day seen by [`SaltStore::salt_for_day`] or [`SaltStore::prune`].
    today: i64,
}

impl State {
    /// Oldest day whose salt may still exist.
    fn oldest_kept(&self) -> i64 {
        self.today.saturating_sub(1)
    }
}

/// Daily salts, optionally persisted in a directory so that visitor ids stay
/// stable across restarts within a day.
///
/// Reads on the hot path take a shared lock and clone an `Arc`; creating the
/// salt of a new day (once a day) is serialised by a separate mutex so that
/// disk I/O never happens under the shared lock.
pub struct SaltStore {
    /// Where salts are persisted; `None` for [`SaltStore::in_memory`].
    dir: Option<PathBuf>,
    state: RwLock<State>,
    /// Held while creating a salt or pruning.
    writer: Mutex<()>,
    rng: SystemRandom,
}

impl fmt::Debug for SaltStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("SaltStore")
            .field("dir", &self.dir)
            .field("days", &state.salts.keys().collect::<Vec<_>>())
            .field("today", &state.today)
            .finish_non_exhaustive()
    }
}

impl SaltStore {
    /// Opens (creating if needed) a salt directory for today's UTC day.
    ///
    /// See [`SaltStore::open_at`].
    ///
    /// # Errors
    ///
    /// [`SaltError`] if the directory or a salt file cannot be used.
    pub fn open(dir: &Path) -> Result<SaltStore, SaltError> {
        Self::open_at(dir, current_day())
    }

    /// Opens a salt directory as if `today` were the current UTC day.
    ///
    /// Creates the directory with mode 0700, loads `salt-<today>` and
    /// `salt-<today - 1>` if present, deletes every other salt file (older
    /// than yesterday, or from the future after a clock jump) and leftover
    /// temporary files, then creates today's salt if it is missing.
    ///
    /// # Errors
    ///
    /// [`SaltError`] if the directory cannot be created or listed, a kept salt
    /// file cannot be read or has the wrong size, a file cannot be deleted,
    /// or today's salt cannot be written.
    pub fn open_at(dir: &Path, today: i64) -> Result<SaltStore, SaltError> {
        files::ensure_dir(dir)?;
        let mut salts = BTreeMap::new();
        for entry in files::list(dir)? {
            match entry {
                files::Entry::Salt(day, path) if day == today || day == today - 1 => {
                    salts.insert(day, DaySalt::new(files::read(&path)?));
                }
                files::Entry::Salt(day, path) => {
                    files::remove(&path)?;
                    tracing::info!(day, "deleted expired salt file");
                }
                files::Entry::Temp(path) => files::remove(&path)?,
            }
        }
        let store = SaltStore {
            dir: Some(dir.to_owned()),
            state: RwLock::new(State { salts, today }),
            writer: Mutex::new(()),
            rng: SystemRandom::new(),
        };
        store.salt_for_day(today)?;
        Ok(store)
    }

    /// A store that keeps salts in memory only (tests, development): visitor
    /// ids change on every restart.
    pub fn in_memory() -> SaltStore {
        SaltStore {
            dir: None,
            state: RwLock::new(State {
                salts: BTreeMap::new(),
                today: current_day(),
            }),
            writer: Mutex::new(()),
            rng: SystemRandom::new(),
        }
    }

    /// The salt for UTC `day`, creating (and persisting) it if `day` is new.
    ///
    /// When `day` is newer than any day seen so far, the salts older than
    /// `day - 1` are pruned from memory and disk.
    ///
    /// # Errors
    ///
    /// [`SaltError::Expired`] for a day older than yesterday (relative to the
    /// newest day seen); I/O or RNG errors when a new salt must be created.
    pub fn salt_for_day(&self, day: i64) -> Result<Arc<[u8; SALT_LEN]>, SaltError> {
        self.get_or_create(day, |d| Arc::clone(&d.salt))
    }

    /// The HMAC-SHA-256 key derived from the salt for UTC `day` (the key of
    /// the visitor-id HMAC), creating the salt like
    /// [`SaltStore::salt_for_day`]. Built once per salt, not per call.
    ///
    /// # Errors
    ///
    /// As [`SaltStore::salt_for_day`].
    pub fn key_for_day(&self, day: i64) -> Result<Arc<hmac::Key>, SaltError> {
        self.get_or_create(day, |d| Arc::clone(&d.key))
    }

    /// `pick` applied to the salt of `day`, created (and persisted) if `day`
    /// is new; see [`SaltStore::salt_for_day`].
    fn get_or_create<T>(&self, day: i64, pick: fn(&DaySalt) -> T) -> Result<T, SaltError> {
        if let Some(salt) = self.read_state().salts.get(&day) {
            return Ok(pick(salt));
        }
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        {
            let state = self.read_state();
            if let Some(salt) = state.salts.get(&day) {
                return Ok(pick(salt));
            }
            if day < state.oldest_kept() {
                return Err(SaltError::Expired {
                    day,
                    oldest: state.oldest_kept(),
                });
            }
        }
        let mut salt = [0u8; SALT_LEN];
        self.rng.fill(&mut salt).map_err(|_| SaltError::Random)?;
        if let Some(dir) = &self.dir {
            files::write(dir, day, &salt)?;
        }
        tracing::info!(day, "created new visitor salt");
        let salt = DaySalt::new(salt);
        let picked = pick(&salt);
        self.write_state().salts.insert(day, salt);
        self.prune_locked(day);
        Ok(picked)
    }

    /// Forgets and deletes every salt older than `today - 1`.
    ///
    /// Called automatically when a new day's salt is created; call it
    /// periodically too (e.g. hourly with [`current_day`]) so salts are
    /// deleted on time even when no events arrive. A `today` older than the
    /// newest day already seen has no effect. Deletion failures are logged
    /// and retried on the next call.
    pub fn prune(&self, today: i64) {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.prune_locked(today);
    }

    /// [`SaltStore::prune`] with the writer mutex already held.
    fn prune_locked(&self, today: i64) {
        let oldest = {
            let mut state = self.write_state();
            state.today = state.today.max(today);
            let oldest = state.oldest_kept();
            state.salts = state.salts.split_off(&oldest);
            oldest
        };
        let Some(dir) = &self.dir else { return };
        let entries = match files::list(dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list salt directory for pruning");
                return;
            }
        };
        for entry in entries {
            if let files::Entry::Salt(day, path) = entry
                && day < oldest
            {
                match files::remove(&path) {
                    Ok(()) => tracing::info!(day, "deleted expired salt file"),
                    Err(e) => tracing::warn!(error = %e, "cannot delete expired salt file"),
                }
            }
        }
    }

    /// Days whose salts are currently held in memory, oldest first.
    pub fn days(&self) -> Vec<i64> {
        self.read_state().salts.keys().copied().collect()
    }

    /// Shared access to the state, ignoring poisoning (the map stays valid).
    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Exclusive access to the state, ignoring poisoning.
    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const TODAY: i64 = 20_000;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn salt_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn day_numbers() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(86_399_999), 0);
        assert_eq!(day_of(86_400_000), 1);
        assert_eq!(day_of(-1), -1);
        // 2024-01-01T00:00:00Z
        assert_eq!(day_of(1_704_067_200_000), 19_723);
        assert!(current_day() > 19_723);
    }

    #[test]
    fn open_creates_private_dir_and_todays_salt() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("salts");
        let store = SaltStore::open_at(&dir, TODAY).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join(format!("salt-{TODAY}"));
        assert_eq!(mode(&file), 0o600);
        assert_eq!(
            fs::read(&file).unwrap(),
            store.salt_for_day(TODAY).unwrap().to_vec()
        );
        assert_eq!(salt_files(&dir), vec![format!("salt-{TODAY}")]);
    }

    #[test]
    fn open_tightens_existing_dir() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        SaltStore::open_at(dir.path(), TODAY).unwrap();
        assert_eq!(mode(dir.path()), 0o700);
    }

    #[test]
    fn salt_survives_reopen_within_the_day() {
        let dir = tempfile::tempdir().unwrap();
        let first = SaltStore::open_at(dir.path(), TODAY).unwrap();
        let salt = first.salt_for_day(TODAY).unwrap();
        drop(first);
        let second = SaltStore::open_at(dir.path(), TODAY).unwrap();
        assert_eq!(second.salt_for_day(TODAY).unwrap(), salt);
        // Next day: yesterday's salt is still there, today's is new.
        let third = SaltStore::open_at(dir.path(), TODAY + 1).unwrap();
        assert_eq!(third.salt_for_day(TODAY).unwrap(), salt);
        assert_ne!(third.salt_for_day(TODAY + 1).unwrap(), salt);
    }

    #[test]
    fn open_deletes_files_older_than_yesterday_and_stray_temps() {
        let dir = tempfile::tempdir().unwrap();
        for day in [TODAY - 5, TODAY - 2, TODAY - 1, TODAY + 3] {
            fs::write(
                dir.path().join(format!("salt-{day}")),
                [day as u8; SALT_LEN],
            )
            .unwrap();
        }
        fs::write(dir.path().join(".salt-1.tmp123"), b"partial").unwrap();
        fs::write(dir.path().join("README"), b"not ours").unwrap();
        let store = SaltStore::open_at(dir.path(), TODAY).unwrap();
        assert_eq!(
            salt_files(dir.path()),
            vec![
                "README".to_owned(),
                format!("salt-{}", TODAY - 1),
                format!("salt-{TODAY}")
            ]
        );
        assert_eq!(store.days(), vec![TODAY - 1, TODAY]);
        assert_eq!(
            *store.salt_for_day(TODAY - 1).unwrap(),
            [(TODAY - 1) as u8; SALT_LEN]
        );
    }

    #[test]
    fn rollover_creates_new_salt_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SaltStore::open_at(dir.path(), TODAY).unwrap();
        let day0 = store.salt_for_day(TODAY).unwrap();
        let day1 = store.salt_for_day(TODAY + 1).unwrap();
        assert_ne!(day0, day1);
        assert_eq!(mode(&dir.path().join(format!("salt-{}", TODAY + 1))), 0o600);
        // Yesterday is still available (late events around midnight).
        assert_eq!(store.salt_for_day(TODAY).unwrap(), day0);
        store.salt_for_day(TODAY + 2).unwrap();
        assert_eq!(store.days(), vec![TODAY + 1, TODAY + 2]);
        assert_eq!(
            salt_files(dir.path()),
            vec![format!("salt-{}", TODAY + 1), format!("salt-{}", TODAY + 2)]
        );
        let err = store.salt_for_day(TODAY).unwrap_err();
        assert_eq!(err.kind(), "expired");
        assert!(matches!(err, SaltError::Expired { day: TODAY, oldest } if oldest == TODAY + 1));
    }

    /// The kept key is the key of the day's salt (also for a salt read back
    /// from disk), follows the rollover, and goes with its salt.
    #[test]
    fn kept_key_is_the_salts_key_and_rotates_with_it() {
        let tag = |key: &hmac::Key| hmac::sign(key, b"message").as_ref().to_vec();
        let of_salt = |salt: &[u8; SALT_LEN]| tag(&hmac::Key::new(hmac::HMAC_SHA256, salt));
        let dir = tempfile::tempdir().unwrap();
        let store = SaltStore::open_at(dir.path(), TODAY).unwrap();
        let day0 = store.key_for_day(TODAY).unwrap();
        assert_eq!(tag(&day0), of_salt(&store.salt_for_day(TODAY).unwrap()));
        let reopened = SaltStore::open_at(dir.path(), TODAY).unwrap();
        assert_eq!(tag(&reopened.key_for_day(TODAY).unwrap()), tag(&day0));
        let day1 = store.key_for_day(TODAY + 1).unwrap();
        assert_eq!(tag(&day1), of_salt(&store.salt_for_day(TODAY + 1).unwrap()));
        assert_ne!(tag(&day1), tag(&day0));
        store.prune(TODAY + 2);
        assert_eq!(store.key_for_day(TODAY).unwrap_err().kind(), "expired");
    }

    #[test]
    fn explicit_prune_deletes_without_new_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = SaltStore::open_at(dir.path(), TODAY).unwrap();
        store.prune(TODAY + 1);
        assert_eq!(store.days(), vec![TODAY]);
        store.prune(TODAY + 2);
        assert!(store.days().is_empty());
        assert!(salt_files(dir.path()).is_empty());
        // An older `today` does not bring anything back or move time backwards.
        store.prune(TODAY);
        assert_eq!(store.salt_for_day(TODAY).unwrap_err().kind(), "expired");
    }

    #[test]
    fn corrupt_salt_file_fails_open() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(format!("salt-{TODAY}")), b"short").unwrap();
        let err = SaltStore::open_at(dir.path(), TODAY).unwrap_err();
        assert_eq!(err.kind(), "corrupt");
        assert!(err.to_string().contains("holds 5 bytes"), "{err}");
    }

    #[test]
    fn in_memory_salts_are_random_and_stable() {
        let a = SaltStore::in_memory();
        let b = SaltStore::in_memory();
        let day = current_day();
        assert_eq!(a.salt_for_day(day).unwrap(), a.salt_for_day(day).unwrap());
        assert_ne!(a.salt_for_day(day).unwrap(), b.salt_for_day(day).unwrap());
        assert_ne!(*a.salt_for_day(day).unwrap(), [0u8; SALT_LEN]);
    }

    #[test]
    fn debug_does_not_print_salt_bytes() {
        let store = SaltStore::in_memory();
        let day = current_day();
        let salt = store.salt_for_day(day).unwrap();
        let debug = format!("{store:?}");
        assert!(debug.contains(&day.to_string()), "{debug}");
        assert!(
            !debug.contains(&format!("{}, {}, {}", salt[0], salt[1], salt[2])),
            "{debug}"
        );
        assert!(!debug.contains(&hex::encode(&salt[..4])), "{debug}");
    }

    #[test]
    fn concurrent_first_use_creates_one_salt() {
        let store = Arc::new(SaltStore::in_memory());
        let tomorrow = current_day() + 1;
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || store.salt_for_day(tomorrow).unwrap())
            })
            .collect();
        let salts: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(salts.windows(2).all(|w| w[0] == w[1]));
    }
}
