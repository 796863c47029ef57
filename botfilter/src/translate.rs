//! Rust-regex translations of the vendored JavaScript patterns that the
//! `regex` crate rejects.
//!
//! The `regex` crate has no look-around. Each isbot pattern that uses it is
//! listed here with an equivalent pattern without look-around: a negative
//! look-behind `(?<!L)` for a literal `L` becomes "at the start of the input,
//! or a preceding text that does not end in `L`", spelled out character by
//! character, and a negative look-ahead `(?!L)` becomes "end of input, or a
//! following text that does not start with `L`". The translations consume the
//! characters they inspect, which does not change *whether* a user agent
//! matches, the only question the filter asks. The unit tests check every
//! translation against the original pattern run by `fancy-regex` on all the
//! user agents in the vendored lists plus edge cases.
//!
//! One pattern uses JavaScript-only syntax instead: `[\w\d-.]`, where
//! JavaScript (Annex B) reads the `-` after a class escape as a literal
//! hyphen; the translation escapes it.
//!
//! A rejected pattern that is not in this table (a newer list release added
//! one) is dropped at load time and listed in
//! [`crate::UserAgentFileStats::dropped`]; add its translation here.

/// `(original pattern, translation the `regex` crate accepts)`.
pub(crate) const TRANSLATIONS: &[(&str, &str)] = &[
    (
        r#"(?:^|[^g])news(?!sapphire)"#,
        r#"(?:^|[^g])news(?:$|[^s]|s(?:$|[^a]|a(?:$|[^p]|p(?:$|[^p]|p(?:$|[^h]|h(?:$|[^i]|i(?:$|[^r]|r(?:$|[^e]))))))))"#,
    ),
    (
        r#"(?<! channel/|google/)google(?!(?:wv|app|/google| pixel))"#,
        r#"(?:^|[^/]|(?:^|[^le]|(?:^|[^e]|(?:^|[^n]|(?:^|[^n]|(?:^|[^a]|(?:^|[^h]|(?:^|[^c]|(?:^|[^ ])c)h)a)n)n)e)l|(?:^|[^l]|(?:^|[^g]|(?:^|[^o]|(?:^|[^o]|(?:^|[^g])o)o)g)l)e)/)google(?:$|[^wa/ ]|w(?:$|[^v])|a(?:$|[^p]|p(?:$|[^p]))|/(?:$|[^g]|g(?:$|[^o]|o(?:$|[^o]|o(?:$|[^g]|g(?:$|[^l]|l(?:$|[^e]))))))| (?:$|[^p]|p(?:$|[^i]|i(?:$|[^x]|x(?:$|[^e]|e(?:$|[^l]))))))"#,
    ),
    (
        r#"(?<! cu)bots?(?:\b|_)"#,
        r#"(?:^|[^u]|(?:^|[^c]|(?:^|[^ ])c)u)bots?(?:\b|_)"#,
    ),
    (
        r#"(?<!cam)scan"#,
        r#"(?:^|[^m]|(?:^|[^a]|(?:^|[^c])a)m)scan"#,
    ),
    (
        r#"(?<!lib)http"#,
        r#"(?:^|[^b]|(?:^|[^i]|(?:^|[^l])i)b)http"#,
    ),
    (r#"java(?!;)"#, r#"java(?:$|[^;])"#),
    (
        r#"^mozilla/\d\.\d\s\((?:compatible;)?(?:\s?[\w\d-.]+[\s/]\d+\.\d+)?\)$"#,
        r#"^mozilla/\d\.\d\s\((?:compatible;)?(?:\s?[\w\d\-.]+[\s/]\d+\.\d+)?\)$"#,
    ),
];

/// The translation of `pattern`, if it is one of the known look-around
/// patterns.
pub(crate) fn translate(pattern: &str) -> Option<&'static str> {
    TRANSLATIONS
        .iter()
        .find(|(original, _)| *original == pattern)
        .map(|(_, translated)| *translated)
}
