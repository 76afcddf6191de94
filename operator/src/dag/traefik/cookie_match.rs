//! The `Cookie` header condition of a route pinned by a sticky weighted TraefikService: an RE2
//! pattern, matched by Envoy against the whole header, that holds exactly when the *first*
//! cookie named `name` has one of the values given (bare or double-quoted), as Go's
//! `Request.Cookie(name)` reads it: pairs split at `;`, each trimmed of spaces and tabs, the
//! name (trimmed) before the first `=`, the value after it as it stands.
//!
//! "First" needs a pattern for a pair whose name is *not* `name`; RE2 has no look-ahead, so it
//! spells the complement out, one nested group per byte of the name (linear in its length).
//! Names and values reaching here are RFC 6265 tokens (checked by the caller), so no byte of
//! them is a line break or `;`.

/// Spaces and tabs Go trims around a pair and its name.
const BLANK: &str = "[ \\t]*";

/// The pattern whose full match says the first cookie `name` in a `Cookie` header has one of
/// `values`.
pub(super) fn first_cookie_is(name: &str, values: &[String]) -> String {
    let other = other_pair(name.as_bytes());
    let name = literal(name);
    let values: Vec<String> = values
        .iter()
        .map(|v| {
            let v = literal(v);
            format!("{v}|\"{v}\"")
        })
        .collect();
    format!(
        "(?:{other};)*{BLANK}{name}{BLANK}=(?:{}){BLANK}(?:;.*)?",
        values.join("|")
    )
}

/// One `;`-separated part whose cookie name is not `name`: empty, or one whose first
/// non-blank bytes leave `name` (at byte i: ends there, or another byte follows), or `name`
/// followed by something other than blanks and `=`.
fn other_pair(name: &[u8]) -> String {
    // Built from the innermost group out: after the whole name, a pair of another name goes
    // on with a byte that is neither blank nor `=` (`name` alone is a cookie with an empty
    // value, Go reads it as `name`).
    let mut inner = format!("{BLANK}[^;= \\t][^;]*");
    for (i, b) in name.iter().enumerate().rev() {
        let c = char::from(*b);
        // At the first byte, blanks are trimmed, so they do not leave the name either.
        let excluded = if i == 0 { " \\t" } else { "" };
        inner = format!(
            "(?:[^;{}{excluded}][^;]*|{}{inner})?",
            class_escape(c),
            literal(&c.to_string()),
        );
    }
    format!("{BLANK}{inner}")
}

/// `s` as an RE2 literal: ASCII punctuation escaped (RE2 reads `\` and any of it as that
/// character), everything else as it is.
fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if c.is_ascii_punctuation() && c != '_' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `c` inside a character class.
fn class_escape(c: char) -> String {
    literal(&c.to_string())
}

#[cfg(test)]
#[path = "cookie_match_tests.rs"]
mod tests;
