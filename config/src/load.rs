//! Reading, parsing and validating a configuration file.
//!
//! [`load`] and [`parse_str`] run the whole pipeline — TOML syntax, shape
//! (types, unknown keys), relative path resolution and [`validate`] — and
//! report every error they can find, each with its line and key path.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use crate::error::{ConfigError, ConfigErrors};
use crate::locate::{LineStarts, SpanIndex};
use crate::model::Config;
use crate::validate::{Problem, problems};

/// A valid configuration together with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The validated configuration, with relative paths resolved against the
    /// file's directory.
    pub config: Config,
    /// The file it was read from (as given).
    pub path: PathBuf,
    /// Lowercase hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// Where each key was written, for errors found after loading.
    index: SpanIndex,
}

impl LoadedConfig {
    /// Short version of the file: the first 12 hex characters of its SHA-256.
    pub fn version(&self) -> &str {
        self.sha256.get(..12).unwrap_or(&self.sha256)
    }

    /// The line `key_path` (e.g. `tls.certificates[0].cert_file`) was
    /// written on, or that of its nearest ancestor present in the file.
    pub fn line_of(&self, key_path: &str) -> Option<usize> {
        self.index.line_of(key_path)
    }

    /// An error about `key_path` carrying its line in this file, for problems
    /// found after loading (an unreadable certificate, a bad token file…).
    pub fn error_at(&self, key_path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(key_path, message).with_line(self.line_of(key_path))
    }

    /// [`LoadedConfig::error_at`] wrapped into a [`ConfigErrors`] naming this
    /// file, ready to display as `{file}:{line}: {key}: {message}`.
    pub fn errors_at(&self, key_path: &str, message: impl Into<String>) -> ConfigErrors {
        ConfigErrors::single(&self.path, self.error_at(key_path, message))
    }
}

/// Reads, parses, resolves and validates the configuration file at `path`.
///
/// Relative paths in the file resolve against the file's directory. On
/// failure every error found is returned at once.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigErrors> {
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigErrors::single(
            path,
            ConfigError::new("", format!("cannot read configuration file: {e}")),
        )
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        ConfigErrors::single(
            path,
            ConfigError::new("", format!("configuration file is not valid UTF-8: {e}")),
        )
    })?;
    parse_str(text, path)
}

/// Like [`load`], from text already in memory. `origin` names the file in
/// errors, and its parent directory is the base of relative paths.
pub fn parse_str(text: &str, origin: &Path) -> Result<LoadedConfig, ConfigErrors> {
    let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
    let mut errors = ConfigErrors::new(origin);
    let lines = LineStarts::new(text);

    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    let mut index = SpanIndex::build(root.get_ref(), text);
    if !syntax_errors.is_empty() {
        for e in &syntax_errors {
            // The recovered tree is unreliable around a syntax error, so the
            // line is reported but no key path is guessed.
            let mut error = toml_error(e, &index, &lines);
            error.key.clear();
            errors.push(error);
        }
        return Err(errors);
    }

    // Shape errors (unknown keys, wrong types) are collected first; the
    // entries they name are pruned and what remains is validated too, so one
    // run reports every mistake in the file.
    let Some(mut config) = deserialize_all(root, &index, &lines, &mut errors) else {
        errors.errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        return Err(errors);
    };
    let shape_keys: Vec<String> = errors.errors.iter().map(|e| e.key.clone()).collect();

    resolve_paths(&mut config, origin.parent().unwrap_or(Path::new("")));

    let problems = problems(&config)
        .into_iter()
        // Skip follow-ups: problems inside a pruned entry, or about a parent
        // that only looks wrong because its pruned child is gone.
        .filter(|p| {
            !shape_keys
                .iter()
                .any(|k| is_within(&p.error.key, k) || is_within(k, &p.error.key))
        })
        .map(|Problem { error, related }| {
            let line = index
                .exact_line(&error.key)
                .or_else(|| related.and_then(|r| index.exact_line(r)))
                .or_else(|| index.line_of(&error.key))
                .or_else(|| related.and_then(|r| index.line_of(r)));
            error.with_line(line)
        });
    errors.errors.extend(problems);
    errors.errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    if !errors.errors.is_empty() {
        return Err(errors);
    }
    index.shrink();
    Ok(LoadedConfig {
        config,
        path: origin.to_path_buf(),
        sha256,
        index,
    })
}

/// Upper bound on shape errors reported for one file.
const MAX_SHAPE_ERRORS: usize = 100;

/// Deserializes `root` into a [`Config`], collecting every type error,
/// unknown key and missing key rather than only the first: after each error
/// the offending entry is removed from the tree and deserialization is
/// retried. Returns the configuration deserialized from what remains, or
/// `None` when pruning could not get past an error.
fn deserialize_all(
    root: Spanned<DeTable<'_>>,
    index: &SpanIndex,
    lines: &LineStarts,
    errors: &mut ConfigErrors,
) -> Option<Config> {
    let root_span = root.span();
    let mut root = root.into_inner();
    let mut reported: Vec<String> = Vec::new();
    for _ in 0..MAX_SHAPE_ERRORS {
        let de = toml::de::Deserializer::from(Spanned::new(root_span.clone(), root.clone()));
        let e = match Config::deserialize(de) {
            Ok(config) => return Some(config),
            Err(e) => e,
        };
        let error = toml_error(&e, index, lines);
        // Removing a mistyped required key makes its table report it as
        // missing next; that follow-up error is noise.
        let follow_up = error.message.starts_with("missing field")
            && reported.iter().any(|r| is_within(r, &error.key));
        if !follow_up {
            reported.push(error.key.clone());
            errors.push(error);
        }
        let removed = e
            .span()
            .is_some_and(|span| remove_entry_at(&mut root, span.start));
        if !removed {
            return None;
        }
    }
    None
}

/// Whether key path `path` is `ancestor` or lies below it.
fn is_within(path: &str, ancestor: &str) -> bool {
    match path.strip_prefix(ancestor) {
        Some(rest) => ancestor.is_empty() || rest.is_empty() || rest.starts_with(['.', '[']),
        None => false,
    }
}

/// Removes the innermost key or array element whose span contains `offset`.
///
/// Every child is searched, not only those whose parent span contains the
/// offset: a `[table]` header's span does not cover the table's body.
fn remove_entry_at(table: &mut DeTable<'_>, offset: usize) -> bool {
    let mut hit = None;
    for (key, value) in table.iter_mut() {
        if remove_in_value(value, offset) {
            return true;
        }
        let (k, v) = (key.span(), value.span());
        if hit.is_none() && contains(k.start.min(v.start)..k.end.max(v.end), offset) {
            hit = Some(key.clone());
        }
    }
    match hit {
        Some(key) => table.remove(&key).is_some(),
        None => false,
    }
}

/// Removes the innermost entry containing `offset` below `value`; false
/// when there is none (`value` itself may still be the innermost one).
fn remove_in_value(value: &mut Spanned<DeValue<'_>>, offset: usize) -> bool {
    match value.get_mut() {
        DeValue::Table(table) => remove_entry_at(table, offset),
        DeValue::Array(items) => {
            for i in 0..items.len() {
                if items
                    .get_mut(i)
                    .is_some_and(|item| remove_in_value(item, offset))
                {
                    return true;
                }
            }
            let Some(i) = items.iter().position(|item| contains(item.span(), offset)) else {
                return false;
            };
            let mut kept = DeArray::new();
            for (j, item) in items.iter().enumerate() {
                if j != i {
                    kept.push(item.clone());
                }
            }
            *items = kept;
            true
        }
        _ => false,
    }
}

fn contains(span: std::ops::Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end
}

/// Converts a TOML syntax or deserialization error into a [`ConfigError`].
fn toml_error(e: &toml::de::Error, index: &SpanIndex, lines: &LineStarts) -> ConfigError {
    let (line, key) = match e.span() {
        Some(span) => (
            Some(lines.line_of(span.start)),
            index.path_at(span.start).unwrap_or_default().to_owned(),
        ),
        None => (None, String::new()),
    };
    ConfigError {
        line,
        key,
        message: e.message().trim().to_owned(),
    }
}

/// Makes every relative path in `config` relative to `base` instead of the
/// process's working directory.
fn resolve_paths(config: &mut Config, base: &Path) {
    let resolve = |path: &mut PathBuf| {
        if !path.as_os_str().is_empty() {
            *path = normalize(&base.join(&*path));
        }
    };
    resolve(&mut config.data_dir);
    let bots = &mut config.bots;
    for file in bots
        .user_agent_files
        .iter_mut()
        .chain(&mut bots.datacenter_cidr_files)
        .chain(&mut bots.referrer_spam_files)
    {
        resolve(file);
    }
    if let Some(token_file) = &mut config.admin.token_file {
        resolve(token_file);
    }
    for cert in &mut config.tls.certificates {
        resolve(&mut cert.cert_file);
        resolve(&mut cert.key_file);
    }
    if let Some(tls) = &mut config.kafka.tls {
        for file in [&mut tls.ca_file, &mut tls.cert_file, &mut tls.key_file]
            .into_iter()
            .flatten()
        {
            resolve(file);
        }
    }
    if let Some(sasl) = &mut config.kafka.sasl {
        resolve(&mut sasl.password_file);
    }
    if let Some(spool_dir) = &mut config.spool.dir {
        resolve(spool_dir);
    }
    if let Some(capture) = &mut config.capture {
        resolve(&mut capture.file);
    }
    if let Some(acme) = &mut config.acme {
        for file in [&mut acme.ca_file, &mut acme.storage_key_file]
            .into_iter()
            .flatten()
        {
            resolve(file);
        }
    }
}

/// Drops `.` components (`/etc/edge/./data` → `/etc/edge/data`); `..` is
/// kept, since resolving it lexically is wrong across symlinks.
fn normalize(path: &Path) -> PathBuf {
    let normalized: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    if normalized.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        normalized
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_drops_cur_dir() {
        assert_eq!(
            normalize(Path::new("/etc/edge/./data")),
            Path::new("/etc/edge/data")
        );
        assert_eq!(normalize(Path::new("./data")), Path::new("data"));
        assert_eq!(normalize(Path::new("./")), Path::new("."));
        assert_eq!(normalize(Path::new("/a/../b")), Path::new("/a/../b"));
    }
}
