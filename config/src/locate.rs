//! Maps key paths (`sites[1].domains[0]`) to line numbers of the file they
//! were read from, and byte offsets back to key paths.
//!
//! The index is built once from the spanned parse tree and then kept (it owns
//! no reference to the text) so that errors discovered later — validation, or
//! the proxy failing to read a certificate — can still point at a line.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Line numbers and spans of every key in one parsed file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SpanIndex {
    /// Key path → 1-based line of the key (or of the array element).
    lines: BTreeMap<String, usize>,
    /// Key path and the byte span of key and value together.
    spans: Vec<(String, Range<usize>)>,
}

impl SpanIndex {
    /// Indexes every key and array element below `root`.
    pub(crate) fn build(root: &DeTable<'_>, text: &str) -> Self {
        let lines = LineStarts::new(text);
        let mut index = SpanIndex::default();
        index.walk_table(root, "", &lines);
        index
    }

    fn record(&mut self, path: String, span: Range<usize>, line: usize) {
        self.lines.entry(path.clone()).or_insert(line);
        self.spans.push((path, span));
    }

    fn walk_table(&mut self, table: &DeTable<'_>, prefix: &str, lines: &LineStarts) {
        for (key, value) in table.iter() {
            let path = join_key(prefix, key.get_ref());
            let key_span = key.span();
            let value_span = value.span();
            let span = key_span.start.min(value_span.start)..key_span.end.max(value_span.end);
            self.record(path.clone(), span, lines.line_of(key_span.start));
            self.walk_value(value, &path, lines);
        }
    }

    fn walk_value(&mut self, value: &Spanned<DeValue<'_>>, path: &str, lines: &LineStarts) {
        match value.get_ref() {
            DeValue::Table(table) => self.walk_table(table, path, lines),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    let span = item.span();
                    self.record(item_path.clone(), span.clone(), lines.line_of(span.start));
                    self.walk_value(item, &item_path, lines);
                }
            }
            _ => {}
        }
    }

    /// The line of `key_path`, or of its nearest ancestor present in the
    /// file (so that `tls.certificates` points at `[tls]` when the key itself
    /// was left at its default).
    pub(crate) fn line_of(&self, key_path: &str) -> Option<usize> {
        let mut path = key_path;
        loop {
            if let Some(line) = self.lines.get(path) {
                return Some(*line);
            }
            path = parent_path(path)?;
        }
    }

    /// The line of exactly `key_path`, if the key appears in the file.
    pub(crate) fn exact_line(&self, key_path: &str) -> Option<usize> {
        self.lines.get(key_path).copied()
    }

    /// Drops what is only needed while loading (offset lookups).
    pub(crate) fn shrink(&mut self) {
        self.spans = Vec::new();
    }

    /// The innermost key path whose span contains `offset`.
    pub(crate) fn path_at(&self, offset: usize) -> Option<&str> {
        self.spans
            .iter()
            .filter(|(_, span)| span.start <= offset && offset < span.end.max(span.start + 1))
            .min_by_key(|(path, span)| (span.end - span.start, usize::MAX - path.len()))
            .map(|(path, _)| path.as_str())
    }
}

/// Offsets of line starts, to turn byte offsets into 1-based lines.
pub(crate) struct LineStarts(Vec<usize>);

impl LineStarts {
    /// Indexes the line starts of `text`.
    pub(crate) fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self(starts)
    }

    /// The 1-based line holding byte `offset`.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        match self.0.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

/// Appends `key` to `prefix`, quoting it when it is not a bare TOML key
/// (e.g. `kafka.properties."enable.idempotence"`).
pub(crate) fn join_key(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

/// The parent of a key path: `a.b[2]` → `a.b`, `a.b` → `a`, `a` → none.
fn parent_path(path: &str) -> Option<&str> {
    if let Some(stripped) = path.strip_suffix(']') {
        let open = stripped.rfind('[')?;
        return Some(&path[..open]);
    }
    // Split at the last '.' outside quotes.
    let mut in_quotes = false;
    let mut escaped = false;
    let mut split = None;
    for (i, c) in path.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '.' if !in_quotes => split = Some(i),
            _ => {}
        }
    }
    split.map(|i| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(text: &str) -> SpanIndex {
        let root = DeTable::parse(text).unwrap_or_else(|e| panic!("{e}"));
        SpanIndex::build(root.get_ref(), text)
    }

    #[test]
    fn lines_of_nested_keys_and_arrays() {
        let text = "data_dir = \"x\"\n\
                    [limits]\n\
                    max_body_bytes = 5\n\
                    \n\
                    [[sites]]\n\
                    id = \"a\"\n\
                    domains = [\"a.com\",\n  \"b.com\"]\n\
                    [[sites]]\n\
                    id = \"b\"\n\
                    [kafka.properties]\n\
                    \"enable.idempotence\" = \"false\"\n";
        let idx = index(text);
        assert_eq!(idx.exact_line("data_dir"), Some(1));
        assert_eq!(idx.exact_line("limits"), Some(2));
        assert_eq!(idx.exact_line("limits.max_body_bytes"), Some(3));
        assert_eq!(idx.exact_line("sites[0]"), Some(5));
        assert_eq!(idx.exact_line("sites[0].id"), Some(6));
        assert_eq!(idx.exact_line("sites[0].domains[1]"), Some(8));
        assert_eq!(idx.exact_line("sites[1]"), Some(9));
        assert_eq!(idx.exact_line("sites[1].id"), Some(10));
        assert_eq!(
            idx.exact_line("kafka.properties.\"enable.idempotence\""),
            Some(12)
        );
        // Missing keys fall back to their nearest ancestor.
        assert_eq!(idx.line_of("sites[1].domains"), Some(9));
        assert_eq!(idx.line_of("limits.max_batch_events"), Some(2));
        assert_eq!(idx.line_of("kafka.properties.\"a.b\""), Some(11));
        assert_eq!(idx.line_of("tls.certificates"), None);
        // Offsets map back to the innermost key.
        let offset = text.find("5").unwrap_or_default();
        assert_eq!(idx.path_at(offset), Some("limits.max_body_bytes"));
        let offset = text.find("\"b.com\"").unwrap_or_default();
        assert_eq!(idx.path_at(offset), Some("sites[0].domains[1]"));
    }

    #[test]
    fn parent_paths() {
        assert_eq!(parent_path("a.b[2]"), Some("a.b"));
        assert_eq!(parent_path("a.b"), Some("a"));
        assert_eq!(parent_path("a"), None);
        assert_eq!(parent_path("k.p.\"x.y\""), Some("k.p"));
    }

    #[test]
    fn quoting() {
        assert_eq!(join_key("", "a"), "a");
        assert_eq!(join_key("a", "b_c-d"), "a.b_c-d");
        assert_eq!(join_key("p", "x.y"), "p.\"x.y\"");
    }
}
