//! The rule grammar shared by Traefik's v2 and v3 syntaxes: calls with string arguments joined
//! by `&&`, `||`, prefix `!` and parentheses (a Go boolean expression; `!` binds tightest, then
//! `&&`, then `||`). Strings are Go literals: backtick raw strings, or double-quoted with Go
//! escapes. What the calls mean is [`super::matcher`]'s job.
//!
//! Bounded on any input: the rule's length, the nesting depth (the only recursion, counted),
//! the number of calls and of arguments are limited, and every error is a value carrying the
//! byte offset where the rule went wrong.

use std::fmt;

/// Longest rule accepted, in bytes.
pub const MAX_RULE: usize = 8192;
/// Deepest nesting of parentheses and `!`.
pub const MAX_DEPTH: usize = 32;
/// Most calls in one rule.
pub const MAX_CALLS: usize = 128;
/// Most arguments of one call.
pub const MAX_ARGS: usize = 64;

/// A rule that does not parse, or a part of it that cannot be served: what and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    /// Byte offset in the rule.
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for RuleError {}

fn err<T>(offset: usize, message: impl Into<String>) -> Result<T, RuleError> {
    Err(RuleError {
        offset,
        message: message.into(),
    })
}

/// A boolean expression over leaves `L`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr<L> {
    Leaf(L),
    Not(Box<Expr<L>>),
    And(Vec<Expr<L>>),
    Or(Vec<Expr<L>>),
}

/// `Name(args…)` as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub name: String,
    pub args: Vec<String>,
    /// Byte range of the whole call in the rule.
    pub start: usize,
    pub end: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    LParen,
    RParen,
    Comma,
    And,
    Or,
    Not,
}

/// Splits `rule` into tokens with their byte offsets.
fn lex(rule: &str) -> Result<Vec<(usize, Tok)>, RuleError> {
    let bytes = rule.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        super::work::tick(1);
        let start = i;
        let tok = match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            b',' => Tok::Comma,
            b'!' => Tok::Not,
            b'&' | b'|' => {
                let c = bytes[i];
                if bytes.get(i + 1) != Some(&c) {
                    let op = if c == b'&' { "&&" } else { "||" };
                    return err(i, format!("'{}' is not an operator; use {op}", c as char));
                }
                i += 1;
                if c == b'&' { Tok::And } else { Tok::Or }
            }
            b'`' => {
                let Some(len) = bytes[i + 1..].iter().position(|b| *b == b'`') else {
                    return err(i, "unterminated backtick string");
                };
                // Go drops carriage returns from raw strings.
                super::work::tick(len);
                let s = rule[i + 1..i + 1 + len].replace('\r', "");
                i += len + 1;
                Tok::Str(s)
            }
            b'"' => {
                let (s, len) = go_string(&rule[i..], i)?;
                i += len - 1;
                Tok::Str(s)
            }
            b'\'' => {
                return err(
                    i,
                    "single quotes do not make a string (Go reads them as a character); use \
                     backticks",
                );
            }
            b if b.is_ascii_alphabetic() || b == b'_' => {
                let len = bytes[i..]
                    .iter()
                    .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                    .unwrap_or(bytes.len() - i);
                super::work::tick(len);
                let name = rule[i..i + len].to_owned();
                i += len - 1;
                Tok::Ident(name)
            }
            _ => {
                let c = rule[i..].chars().next().unwrap_or('?');
                return err(i, format!("unexpected character {c:?}"));
            }
        };
        i += 1;
        out.push((start, tok));
    }
    Ok(out)
}

/// Reads a double-quoted Go string at the start of `s` (which begins with `"`); returns the
/// value and the number of bytes read. `base` is `s`'s offset in the rule, for errors.
fn go_string(s: &str, base: usize) -> Result<(String, usize), RuleError> {
    let bytes = s.as_bytes();
    let mut out: Vec<u8> = Vec::new();
    let mut i = 1;
    loop {
        super::work::tick(1);
        let Some(&b) = bytes.get(i) else {
            return err(base, "unterminated double-quoted string");
        };
        match b {
            b'"' => break,
            b'\n' => return err(base + i, "newline in a double-quoted string"),
            b'\\' => {
                let Some(&e) = bytes.get(i + 1) else {
                    return err(base, "unterminated double-quoted string");
                };
                let simple = match e {
                    b'a' => Some(0x07),
                    b'b' => Some(0x08),
                    b'f' => Some(0x0c),
                    b'n' => Some(b'\n'),
                    b'r' => Some(b'\r'),
                    b't' => Some(b'\t'),
                    b'v' => Some(0x0b),
                    b'\\' => Some(b'\\'),
                    b'"' => Some(b'"'),
                    _ => None,
                };
                if let Some(v) = simple {
                    out.push(v);
                    i += 2;
                    continue;
                }
                let digits = |n: usize, radix: u32| -> Result<u32, RuleError> {
                    let from = i + 2;
                    let text = s.get(from..from + n).unwrap_or("");
                    if text.len() != n || !text.chars().all(|c| c.is_digit(radix)) {
                        return err(base + i, "invalid escape in a double-quoted string");
                    }
                    u32::from_str_radix(text, radix)
                        .or_else(|_| err(base + i, "invalid escape in a double-quoted string"))
                };
                match e {
                    b'x' => {
                        out.push(digits(2, 16)? as u8);
                        i += 4;
                    }
                    b'0'..=b'7' => {
                        let from = i + 1;
                        let text = s.get(from..from + 3).unwrap_or("");
                        let v = (text.len() == 3
                            && text.bytes().all(|c| (b'0'..=b'7').contains(&c)))
                        .then(|| u32::from_str_radix(text, 8).ok())
                        .flatten()
                        .filter(|v| *v <= 255);
                        let Some(v) = v else {
                            return err(base + i, "invalid octal escape in a double-quoted string");
                        };
                        out.push(v as u8);
                        i += 4;
                    }
                    b'u' | b'U' => {
                        let n = if e == b'u' { 4 } else { 8 };
                        let Some(c) = char::from_u32(digits(n, 16)?) else {
                            return err(base + i, "escape is not a Unicode code point");
                        };
                        let mut buf = [0; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        i += 2 + n;
                    }
                    _ => return err(base + i, "unknown escape in a double-quoted string"),
                }
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(v) => Ok((v, i + 1)),
        Err(_) => err(base, "string escapes make invalid UTF-8"),
    }
}

/// Parses `rule` into an expression over calls.
pub fn parse(rule: &str) -> Result<Expr<Call>, RuleError> {
    if rule.len() > MAX_RULE {
        return err(MAX_RULE, format!("rule is longer than {MAX_RULE} bytes"));
    }
    if rule.trim().is_empty() {
        return err(0, "empty rule");
    }
    let tokens = lex(rule)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        calls: 0,
        end: rule.len(),
    };
    let expr = p.or(0)?;
    if let Some((at, _)) = p.tokens.get(p.pos) {
        return err(*at, "unexpected text after the end of the expression");
    }
    Ok(expr)
}

struct Parser {
    tokens: Vec<(usize, Tok)>,
    pos: usize,
    calls: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn offset(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |(at, _)| *at)
    }

    fn or(&mut self, depth: usize) -> Result<Expr<Call>, RuleError> {
        let mut terms = vec![self.and(depth)?];
        while self.peek() == Some(&Tok::Or) {
            super::work::tick(1);
            self.pos += 1;
            terms.push(self.and(depth)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::Or(terms)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Expr<Call>, RuleError> {
        let mut terms = vec![self.unary(depth)?];
        while self.peek() == Some(&Tok::And) {
            super::work::tick(1);
            self.pos += 1;
            terms.push(self.unary(depth)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::And(terms)
        })
    }

    fn unary(&mut self, depth: usize) -> Result<Expr<Call>, RuleError> {
        super::work::tick(1);
        let at = self.offset();
        if depth >= MAX_DEPTH {
            return err(at, format!("nested deeper than {MAX_DEPTH} levels"));
        }
        match self.peek().cloned() {
            Some(Tok::Not) => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.unary(depth + 1)?)))
            }
            Some(Tok::LParen) => {
                self.pos += 1;
                let inner = self.or(depth + 1)?;
                if self.peek() != Some(&Tok::RParen) {
                    return err(self.offset(), "expected ')'");
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Tok::Ident(name)) => self.call(at, name),
            Some(_) => err(at, "expected a matcher such as Host(`example.com`)"),
            None => err(at, "rule ends where a matcher was expected"),
        }
    }

    fn call(&mut self, start: usize, name: String) -> Result<Expr<Call>, RuleError> {
        self.calls += 1;
        if self.calls > MAX_CALLS {
            return err(start, format!("more than {MAX_CALLS} matchers in one rule"));
        }
        self.pos += 1;
        if self.peek() != Some(&Tok::LParen) {
            return err(self.offset(), format!("expected '(' after {name}"));
        }
        self.pos += 1;
        let mut args = Vec::new();
        loop {
            super::work::tick(1);
            match self.peek().cloned() {
                Some(Tok::RParen) => break,
                Some(Tok::Str(s)) => {
                    if args.len() == MAX_ARGS {
                        return err(self.offset(), format!("more than {MAX_ARGS} arguments"));
                    }
                    args.push(s);
                    self.pos += 1;
                    match self.peek() {
                        Some(Tok::Comma) => self.pos += 1,
                        Some(Tok::RParen) => break,
                        _ => return err(self.offset(), "expected ',' or ')'"),
                    }
                }
                _ => {
                    return err(
                        self.offset(),
                        format!("expected a string argument of {name} (in backticks)"),
                    );
                }
            }
        }
        let end = self.offset() + 1;
        self.pos += 1;
        Ok(Expr::Leaf(Call {
            name,
            args,
            start,
            end,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn call(name: &str, args: &[&str]) -> Expr<Call> {
        Expr::Leaf(Call {
            name: name.into(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            start: 0,
            end: 0,
        })
    }

    /// The tree without offsets.
    fn shape(e: Expr<Call>) -> Expr<Call> {
        match e {
            Expr::Leaf(c) => Expr::Leaf(Call {
                start: 0,
                end: 0,
                ..c
            }),
            Expr::Not(e) => Expr::Not(Box::new(shape(*e))),
            Expr::And(v) => Expr::And(v.into_iter().map(shape).collect()),
            Expr::Or(v) => Expr::Or(v.into_iter().map(shape).collect()),
        }
    }

    #[test]
    fn precedence_not_and_or() {
        let e = shape(parse("Host(`a`) || !Path(`/x`) && Method(`GET`)").unwrap());
        assert_eq!(
            e,
            Expr::Or(vec![
                call("Host", &["a"]),
                Expr::And(vec![
                    Expr::Not(Box::new(call("Path", &["/x"]))),
                    call("Method", &["GET"])
                ])
            ])
        );
        let e = shape(parse("!(Host(`a`) || Host(\"b\"))").unwrap());
        assert_eq!(
            e,
            Expr::Not(Box::new(Expr::Or(vec![
                call("Host", &["a"]),
                call("Host", &["b"])
            ])))
        );
    }

    #[test]
    fn strings_are_go_literals() {
        let e = shape(parse(r#"P(`\.`, "\x41\u00e9\101\t\"", `a,b`,)"#).unwrap());
        assert_eq!(e, call("P", &["\\.", "Aé\u{41}\t\"", "a,b"]));
        let c = parse("Host(`a`)").unwrap();
        let Expr::Leaf(c) = c else { unreachable!() };
        assert_eq!((c.start, c.end), (0, 9));
    }

    #[test]
    fn errors_say_where() {
        for (rule, offset, what) in [
            ("", 0, "empty"),
            ("Host(`a`) & Path(`/`)", 10, "&&"),
            ("Host('a')", 5, "single quotes"),
            ("Host(`a)", 5, "unterminated"),
            ("Host(\"a)", 5, "unterminated"),
            ("Host(\"\\q\")", 6, "unknown escape"),
            ("Host(\"\\xff\")", 5, "UTF-8"),
            ("Host(`a`) Path(`/`)", 10, "after the end"),
            ("Host(`a`", 8, "expected ',' or ')'"),
            ("Host", 4, "expected '('"),
            ("(Host(`a`)", 10, "expected ')'"),
            ("Host(`a`) &&", 12, "rule ends"),
            ("Host(a)", 5, "string argument"),
            ("Host(`a`) # x", 10, "unexpected character"),
        ] {
            let e = parse(rule).unwrap_err();
            assert_eq!(e.offset, offset, "{rule}: {e}");
            assert!(e.message.contains(what), "{rule}: {e}");
        }
    }

    #[test]
    fn limits() {
        let deep = format!(
            "{}Host(`a`){}",
            "(".repeat(MAX_DEPTH),
            ")".repeat(MAX_DEPTH)
        );
        assert!(parse(&deep).unwrap_err().message.contains("nested"));
        let ok = format!(
            "{}Host(`a`){}",
            "(".repeat(MAX_DEPTH - 1),
            ")".repeat(MAX_DEPTH - 1)
        );
        assert!(parse(&ok).is_ok());
        assert!(parse(&"!".repeat(100_000)).is_err());
        let many = vec!["Host(`a`)"; MAX_CALLS + 1].join("||");
        assert!(parse(&many).unwrap_err().message.contains("matchers"));
    }
}
