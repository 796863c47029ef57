//! User-agent lists: reading the list files and compiling them into one
//! matcher.
//!
//! # File formats
//!
//! The format is chosen by the file name:
//!
//! - `*.json`: a JSON array, in one of two shapes.
//!   - Objects with a `"pattern"` string (other keys ignored): the
//!     crawler-user-agents format. Patterns are matched case-sensitively, as
//!     that project's own tests do.
//!   - Strings: the isbot pattern list. Patterns are matched
//!     case-insensitively, as isbot does.
//!
//!   These lists are written for JavaScript. A pattern the `regex` crate
//!   rejects (look-around, JavaScript-only syntax) is replaced by its
//!   translation from the table in `lookaround.rs` or, if none is known,
//!   dropped; both are listed in [`UserAgentFileStats`] (`translated`,
//!   `dropped`), so a refresh that brings a new one shows up in the admin
//!   stats and in the unit tests.
//! - anything else: one regular expression per line (the COUNTER-Robots
//!   format, and the format for the operator's own additions). The line is
//!   taken verbatim (only a trailing `\r` is removed); blank lines and lines
//!   whose first non-blank character is `#` are skipped. Matching is
//!   case-sensitive; start a pattern with `(?i)` to ignore case. A line
//!   starting with `!` is an *exception*: a user agent that matches an
//!   exception is never flagged by the lists (the fix for a broad list
//!   pattern that hits a real browser; exceptions are only evaluated after a
//!   list pattern matched). Write `\!` for a pattern that starts with a
//!   literal `!`. An invalid
//!   pattern (look-around included) is a load error naming the file and
//!   line.
//!
//! All patterns use the syntax of the `regex` crate with Unicode mode off:
//! `\w`, `\d`, `\s` and `\b` are ASCII-only (as in JavaScript, where the
//! isbot and crawler-user-agents patterns come from), and `.` matches any
//! byte. Non-ASCII literals still match their UTF-8 encoding. A pattern that
//! matches the empty string without any anchor (it would flag every user
//! agent) is an error.

use std::path::{Path, PathBuf};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::bytes::{RegexSet, RegexSetBuilder};
use regex_syntax::hir::HirKind;
use serde::{Deserialize, Serialize};

use crate::error::LoadError;
use crate::translate;

/// Compiled size limit for the user-agent regex set (the default 10 MiB of
/// the `regex` crate is too small for ~2,000 patterns).
const SET_SIZE_LIMIT: usize = 256 << 20;
/// Lazy-DFA cache per thread for the regex set. Large enough that the cache is
/// not cleared over and over on realistic traffic.
const SET_DFA_SIZE_LIMIT: usize = 32 << 20;

/// How the user-agent patterns are matched. [`MatchStrategy::default`] is the
/// one chosen from the benchmark in BENCHMARKS.md ("Bot filter").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchStrategy {
    /// Every pattern in one `regex::bytes::RegexSet`.
    RegexSet,
    /// Patterns that are plain literals go to one Aho-Corasick DFA (ASCII
    /// case ignored, case-sensitive hits confirmed byte for byte); the rest
    /// to one `RegexSet`.
    #[default]
    LiteralsAhoCorasick,
}

impl MatchStrategy {
    /// Short label for stats and benchmarks.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchStrategy::RegexSet => "regex_set",
            MatchStrategy::LiteralsAhoCorasick => "literals_aho_corasick",
        }
    }
}

/// The format a user-agent file was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UserAgentFormat {
    /// JSON array of objects with a `pattern` key (crawler-user-agents).
    JsonObjects,
    /// JSON array of strings (isbot), case-insensitive.
    JsonStrings,
    /// One regular expression per line.
    Lines,
}

/// One user-agent pattern, validated, with where it came from.
#[derive(Debug, Clone)]
pub struct UaPattern {
    /// The pattern as compiled (the translation, for a translated
    /// look-around pattern).
    pub regex: String,
    /// The pattern as written in the file.
    pub original: String,
    /// Whether it is matched ignoring ASCII case.
    pub case_insensitive: bool,
    /// `Some(bytes)` if the pattern is a plain literal.
    pub literal: Option<Vec<u8>>,
    /// An exception (`!` line) rather than a bot pattern.
    pub exception: bool,
    /// Index of the file in [`crate::BotFilterSources::user_agent_files`].
    pub file: usize,
    /// 1-based line in that file.
    pub line: usize,
}

/// What was read from one user-agent file.
#[derive(Debug, Clone, Serialize)]
pub struct UserAgentFileStats {
    /// The file.
    pub path: PathBuf,
    /// How it was read.
    pub format: UserAgentFormat,
    /// Patterns in use from this file (translated ones included, exceptions
    /// not).
    pub patterns: usize,
    /// Exception patterns (`!` lines).
    pub exceptions: usize,
    /// Of those, plain literals.
    pub literals: usize,
    /// Patterns the `regex` crate rejects (look-around, JavaScript-only
    /// syntax), replaced by a translation (JSON files only).
    pub translated: Vec<String>,
    /// Such patterns with no known translation, not used (JSON files only).
    pub dropped: Vec<String>,
}

#[derive(Deserialize)]
struct CrawlerEntry {
    pattern: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonList {
    Strings(Vec<String>),
    Objects(Vec<CrawlerEntry>),
}

/// Reads one user-agent file (`file` is its index in the sources).
pub fn read_user_agent_file(
    file: usize,
    path: &Path,
) -> Result<(Vec<UaPattern>, UserAgentFileStats), LoadError> {
    let text = crate::error::read_list_file(path)?;
    parse_user_agent_text(file, path, &text)
}

/// Parses the contents of one user-agent list; `path` names it in errors
/// and decides the format (`.json` or one regex per line).
pub fn parse_user_agent_text(
    file: usize,
    path: &Path,
    text: &str,
) -> Result<(Vec<UaPattern>, UserAgentFileStats), LoadError> {
    let text = text.to_string();
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    // (pattern, line, exception)
    let mut raw: Vec<(String, usize, bool)> = Vec::new();
    let (format, case_insensitive) = if is_json {
        let list: JsonList = serde_json::from_str(&text).map_err(|e| json_error(path, &text, e))?;
        let (format, ci, patterns) = match list {
            JsonList::Strings(p) => (UserAgentFormat::JsonStrings, true, p),
            JsonList::Objects(o) => (
                UserAgentFormat::JsonObjects,
                false,
                o.into_iter().map(|e| e.pattern).collect(),
            ),
        };
        let mut locator = LineLocator::new(&text);
        for p in patterns {
            let line = locator.line_of(&p);
            raw.push((p, line, false));
        }
        (format, ci)
    } else {
        for (i, line) in text.lines().enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            match line.strip_prefix('!') {
                Some(rest) => raw.push((rest.to_string(), i + 1, true)),
                None => raw.push((line.to_string(), i + 1, false)),
            }
        }
        (UserAgentFormat::Lines, false)
    };

    let mut stats = UserAgentFileStats {
        path: path.to_path_buf(),
        format,
        patterns: 0,
        exceptions: 0,
        literals: 0,
        translated: Vec::new(),
        dropped: Vec::new(),
    };
    let mut out = Vec::with_capacity(raw.len());
    for (original, line, exception) in raw {
        let regex = match analyse(&original) {
            Err(_) if format != UserAgentFormat::Lines => match translate::translate(&original) {
                Some(t) => {
                    stats.translated.push(original.clone());
                    t.to_string()
                }
                None => {
                    stats.dropped.push(original);
                    continue;
                }
            },
            _ => original.clone(),
        };
        let literal = analyse(&regex).map_err(|e| LoadError::Regex {
            path: path.to_path_buf(),
            line,
            pattern: original.clone(),
            message: e.to_string(),
        })?;
        let literal = match literal {
            Analysis::MatchesEverything => {
                return Err(LoadError::Regex {
                    path: path.to_path_buf(),
                    line,
                    pattern: original,
                    message: "matches the empty string without an anchor, so it would flag every user agent".into(),
                });
            }
            Analysis::Literal(bytes) => Some(bytes),
            Analysis::Regex => None,
        };
        if exception {
            stats.exceptions += 1;
        } else {
            stats.patterns += 1;
            stats.literals += usize::from(literal.is_some());
        }
        out.push(UaPattern {
            regex,
            original,
            case_insensitive,
            literal,
            exception,
            file,
            line,
        });
    }
    Ok((out, stats))
}

enum AnalyseError {
    Syntax(Box<regex_syntax::Error>),
}

impl std::fmt::Display for AnalyseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnalyseError::Syntax(e) => write!(f, "{}", single_line(&e.to_string())),
        }
    }
}

enum Analysis {
    Literal(Vec<u8>),
    Regex,
    MatchesEverything,
}

/// Parses a pattern with the flags the matcher uses. Case-insensitivity is
/// left out: with Unicode off it only folds ASCII, which cannot make a valid
/// pattern invalid, and a literal stays a literal for the ASCII-case-
/// insensitive automaton.
fn analyse(pattern: &str) -> Result<Analysis, AnalyseError> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .map_err(|e| AnalyseError::Syntax(Box::new(e)))?;
    if let HirKind::Literal(lit) = hir.kind() {
        if lit.0.is_empty() {
            return Ok(Analysis::MatchesEverything);
        }
        return Ok(Analysis::Literal(lit.0.to_vec()));
    }
    let props = hir.properties();
    if props.minimum_len() == Some(0) && props.look_set().is_empty() {
        return Ok(Analysis::MatchesEverything);
    }
    Ok(Analysis::Regex)
}

/// regex-syntax errors are multi-line drawings; keep the last line (the
/// message) for a `file:line:` report.
fn single_line(message: &str) -> String {
    message
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(message)
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}

fn json_error(path: &Path, text: &str, e: serde_json::Error) -> LoadError {
    // A data error from the untagged enum has no useful position; tell
    // syntax errors (with position) from shape errors.
    let (line, column, message) = match serde_json::from_str::<serde_json::Value>(text) {
        Err(syntax) => (syntax.line(), syntax.column(), format!("invalid JSON: {syntax}")),
        Ok(_) => (
            e.line(),
            e.column(),
            "expected a JSON array of strings (isbot) or of objects with a \"pattern\" string (crawler-user-agents)".to_string(),
        ),
    };
    LoadError::Json {
        path: path.to_path_buf(),
        line,
        column,
        message,
    }
}

/// Finds the line of each pattern in a JSON file by searching, in order, for
/// the pattern as serde_json encodes it. Falls back to the previous line if
/// the file encodes it differently (e.g. `\u` escapes).
struct LineLocator<'a> {
    text: &'a str,
    offset: usize,
    line: usize,
}

impl<'a> LineLocator<'a> {
    fn new(text: &'a str) -> Self {
        LineLocator {
            text,
            offset: 0,
            line: 1,
        }
    }

    fn line_of(&mut self, pattern: &str) -> usize {
        let Ok(encoded) = serde_json::to_string(pattern) else {
            return self.line;
        };
        if let Some(pos) = self.text[self.offset..].find(&encoded) {
            let start = self.offset + pos;
            self.line += self.text[self.offset..start].matches('\n').count();
            self.offset = start + encoded.len();
        }
        self.line
    }
}

/// All user-agent patterns compiled into one matcher.
#[derive(Debug, Clone)]
pub struct UserAgentMatcher {
    strategy: MatchStrategy,
    set: Option<RegexSet>,
    /// Index into the pattern list for each set member.
    set_patterns: Vec<usize>,
    /// Every literal pattern in one ASCII-case-insensitive automaton; a hit
    /// on a case-sensitive literal is confirmed by comparing the bytes.
    literals: Option<AhoCorasick>,
    /// For each automaton pattern: index into the pattern list, and the
    /// exact bytes to confirm for a case-sensitive literal.
    literal_patterns: Vec<(usize, Option<Box<[u8]>>)>,
}

impl UserAgentMatcher {
    /// Compiles `patterns` with `strategy`.
    pub fn build(patterns: &[UaPattern], strategy: MatchStrategy) -> Result<Self, LoadError> {
        let mut regexes = Vec::new();
        let mut set_patterns = Vec::new();
        let mut lits: Vec<&[u8]> = Vec::new();
        let mut literal_patterns = Vec::new();
        for (i, p) in patterns.iter().enumerate() {
            match (&p.literal, strategy) {
                (Some(lit), MatchStrategy::LiteralsAhoCorasick) => {
                    lits.push(lit);
                    let confirm = (!p.case_insensitive).then(|| lit.clone().into_boxed_slice());
                    literal_patterns.push((i, confirm));
                }
                _ => {
                    regexes.push(if p.case_insensitive {
                        format!("(?i:{})", p.regex)
                    } else {
                        p.regex.clone()
                    });
                    set_patterns.push(i);
                }
            }
        }
        let set = if regexes.is_empty() {
            None
        } else {
            Some(
                RegexSetBuilder::new(&regexes)
                    .unicode(false)
                    .size_limit(SET_SIZE_LIMIT)
                    .dfa_size_limit(SET_DFA_SIZE_LIMIT)
                    .build()
                    .map_err(|e| LoadError::Compile {
                        message: single_line(&e.to_string()),
                    })?,
            )
        };
        let literals = if lits.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .ascii_case_insensitive(true)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(&lits)
                    .map_err(|e| LoadError::Compile {
                        message: e.to_string(),
                    })?,
            )
        };
        Ok(UserAgentMatcher {
            strategy,
            set,
            set_patterns,
            literals,
            literal_patterns,
        })
    }

    /// The strategy this matcher was built with.
    pub fn strategy(&self) -> MatchStrategy {
        self.strategy
    }

    /// Patterns in the regex set (the rest are in the literal automata).
    pub fn regex_count(&self) -> usize {
        self.set_patterns.len()
    }

    /// Patterns in the literal automaton.
    pub fn literal_count(&self) -> usize {
        self.literal_patterns.len()
    }

    /// Whether any pattern matches. Does not allocate.
    pub fn is_match(&self, user_agent: &[u8]) -> bool {
        self.literal_match(user_agent, |_| true)
            || self.set.as_ref().is_some_and(|s| s.is_match(user_agent))
    }

    /// Runs the literal automaton; `on_hit` gets each confirmed pattern index
    /// and returns whether to stop.
    fn literal_match(&self, user_agent: &[u8], mut on_hit: impl FnMut(usize) -> bool) -> bool {
        let Some(ac) = &self.literals else {
            return false;
        };
        for m in ac.find_overlapping_iter(user_agent) {
            let (index, confirm) = &self.literal_patterns[m.pattern().as_usize()];
            let confirmed = match confirm {
                None => true,
                Some(exact) => user_agent[m.range()] == **exact,
            };
            if confirmed && on_hit(*index) {
                return true;
            }
        }
        false
    }

    /// Indices (into the pattern list given to [`UserAgentMatcher::build`])
    /// of every pattern that matches, sorted. For diagnostics, not the hot
    /// path.
    pub fn matching_patterns(&self, user_agent: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        self.literal_match(user_agent, |i| {
            out.push(i);
            false
        });
        if let Some(set) = &self.set {
            out.extend(set.matches(user_agent).iter().map(|i| self.set_patterns[i]));
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}
