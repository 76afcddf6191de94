//! Regular expressions written for Traefik (Go's `regexp`, RE2 syntax, unanchored search) and
//! sent to Envoy (RE2, full match).
//!
//! A pattern is accepted only if it is in the syntax both engines share: it parses with
//! `regex-syntax` (whose syntax is a superset of most of RE2's) and uses none of the constructs
//! RE2 lacks (class set operations, nested classes, `\u` escapes, the `x`/`u`/`R` flags,
//! `\b{start}`-style assertions, repetition counts above 1000, Unicode properties other than
//! general categories and common scripts), and hex escapes above `\x{FF}`, which Envoy's RE2
//! refuses ("invalid escape sequence", Envoy 1.40). Go constructs `regex-syntax` lacks (`\Q…\E`, `\C`)
//! are refused too, so the checker never accepts what it cannot read. Size is bounded by
//! [`MAX_PATTERN`] and an estimate of the compiled program ([`MAX_COST`]).
//!
//! Envoy refuses a regex whose RE2 program is larger than its runtime key
//! `re2.max_program_size.error_level`, 100 by default (Envoy 1.40 included: a pattern such as
//! `^[0-9]{1,1000}$` has 2001 instructions). Every bootstrap Sluice writes raises it to
//! [`ENVOY_MAX_PROGRAM_SIZE`], far above what [`MAX_COST`] lets through; Sluice's own bound is
//! what keeps regexes small (`e2e/tests/traefik_hostile.rs` sends such patterns to a real
//! Envoy with that bootstrap).

use std::sync::{Arc, OnceLock};

use regex_syntax::ast::{self, Ast};
use regex_syntax::hir::{self, Hir, HirKind, Look};

/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN: usize = 1024;
/// Deepest nesting of groups and classes.
const NEST_LIMIT: u32 = 32;
/// RE2's limit on a repetition count.
const RE2_MAX_REPEAT: u32 = 1000;
/// Bound on [`cost`], a rough size of the compiled program.
pub const MAX_COST: u64 = 5000;
/// `re2.max_program_size.error_level` in every bootstrap Sluice writes: Envoy's default (100)
/// would refuse patterns the checker accepts. Unicode classes compile to many more RE2
/// instructions than their ranges count in [`MAX_COST`], hence the wide margin; RE2's own
/// memory budget still bounds each program.
pub const ENVOY_MAX_PROGRAM_SIZE: u64 = 1_000_000;

/// The one-letter general categories RE2 knows, as written (upper case).
const RE2_CATEGORIES: &str = "CLMNPSZ";

/// Unicode property names RE2 knows, besides one-letter categories.
const RE2_UNICODE: &[&str] = &[
    "Any",
    "Cc",
    "Cf",
    "Co",
    "Cs",
    "Ll",
    "Lm",
    "Lo",
    "Lt",
    "Lu",
    "Mc",
    "Me",
    "Mn",
    "Nd",
    "Nl",
    "No",
    "Pc",
    "Pd",
    "Pe",
    "Pf",
    "Pi",
    "Po",
    "Ps",
    "Sc",
    "Sk",
    "Sm",
    "So",
    "Zl",
    "Zp",
    "Zs",
    "Arabic",
    "Armenian",
    "Cyrillic",
    "Devanagari",
    "Georgian",
    "Greek",
    "Han",
    "Hangul",
    "Hebrew",
    "Hiragana",
    "Katakana",
    "Latin",
    "Thai",
];

/// A pattern checked to be valid in RE2 and in Go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    /// As written.
    pub source: String,
    /// Every match starts at the start of the text and ends at its end (`^…$`), so Envoy's
    /// full match and Traefik's search agree without wrapping.
    pub anchored: bool,
    /// Go's search finds it in the empty value (so does Envoy's full match of
    /// [`Pattern::envoy_full_match`]).
    pub matches_empty: bool,
}

impl Pattern {
    /// The RE2 regex that, matched against a whole value (Envoy's `safe_regex`), accepts
    /// exactly the values in which Traefik's search finds a match.
    pub fn envoy_full_match(&self) -> String {
        if self.anchored {
            self.source.clone()
        } else {
            format!("(?s:.*)(?:{})(?s:.*)", self.source)
        }
    }
}

/// A pattern for Sluice's own searches (Go's unanchored search), compiled on first use and
/// then shared by every clone (compiling costs milliseconds, and most patterns never meet an
/// exact name); compared by its source.
#[derive(Clone, Debug)]
pub struct Searcher(Arc<SearcherInner>);

#[derive(Debug)]
struct SearcherInner {
    source: String,
    compiled: OnceLock<Result<::regex::bytes::Regex, String>>,
}

impl Searcher {
    pub fn new(source: &str) -> Self {
        Self(Arc::new(SearcherInner {
            source: source.to_owned(),
            compiled: OnceLock::new(),
        }))
    }

    /// Whether Go's search finds the pattern in `text`, a lower-case DNS name (ASCII, where
    /// Rust's Unicode-aware classes agree with Go's ASCII ones).
    pub fn is_match(&self, text: &str) -> Result<bool, String> {
        let compiled = self
            .0
            .compiled
            .get_or_init(|| ascii_matcher(&self.0.source));
        match compiled {
            Ok(re) => Ok(re.is_match(text.as_bytes())),
            Err(e) => Err(e.clone()),
        }
    }
}

/// `pattern` compiled for Sluice's own matching of ASCII text (DNS names, header names), within
/// a small size limit. Where text and patterns are ASCII, Go's classes (`\w`, `\d`, `[^.]`,
/// `.`) match what byte classes match: compiled without Unicode, `[^.]{1000}` is a thousand
/// byte classes, not a thousand UTF-8 automata (tens of milliseconds and megabytes each).
/// Unicode classes (`\pL`) need the Unicode build, within the same limit.
/// A pattern that is not ASCII is always compiled with Unicode: without it, `(?i)` leaves a
/// non-ASCII literal unfolded, where RE2 folds `ſ` to `s` and the Kelvin sign to `k` (review 6
/// R6.3: `tranſfer-encoding` would pass a check that Envoy's match does not).
pub fn ascii_matcher(pattern: &str) -> Result<::regex::bytes::Regex, String> {
    let ascii = if pattern.is_ascii() {
        ::regex::bytes::RegexBuilder::new(pattern)
            .unicode(false)
            .size_limit(SEARCH_SIZE_LIMIT)
            .build()
            .ok()
    } else {
        None
    };
    ascii
        .map(Ok)
        .unwrap_or_else(|| {
            ::regex::bytes::RegexBuilder::new(pattern)
                .size_limit(SEARCH_SIZE_LIMIT)
                .build()
        })
        .map_err(|e| format!("regex cannot be evaluated: {}", first_line(&e.to_string())))
}

impl PartialEq for Searcher {
    fn eq(&self, other: &Self) -> bool {
        self.0.source == other.0.source
    }
}

impl Eq for Searcher {}

/// Compiled size allowed when Sluice evaluates a pattern itself ([`Pattern::search`]).
const SEARCH_SIZE_LIMIT: usize = 1 << 18;

/// The parent `p` when the pattern provably matches only names exactly one label under the
/// literal name `p` (`^label\.p$`, where `label` is non-empty and can never contain a dot),
/// as in `^[a-z0-9-]+\.db\.example\.com$` or a v2 template `{sub:[a-z]+}.db.example.com`.
/// `None` says nothing: the pattern may match any name. The proof reads the HIR: the whole
/// pattern is the concatenation of a start anchor, items none of which can match a dot, a
/// literal whose part after its first dot is the parent, and an end anchor.
pub fn one_label_parent(hir: &Hir) -> Option<String> {
    let mut top = hir;
    while let HirKind::Capture(c) = top.kind() {
        top = &c.sub;
    }
    let HirKind::Concat(items) = top.kind() else {
        return None;
    };
    let (first, rest) = items.split_first()?;
    let (last, middle) = rest.split_last()?;
    if *first.kind() != HirKind::Look(Look::Start) || *last.kind() != HirKind::Look(Look::End) {
        return None;
    }
    let (suffix, label) = middle.split_last()?;
    let HirKind::Literal(hir::Literal(bytes)) = suffix.kind() else {
        return None;
    };
    let text = std::str::from_utf8(bytes).ok()?;
    let (head, parent) = text.split_once('.')?;
    let shortest = label
        .iter()
        .map(|h| h.properties().minimum_len().unwrap_or(0))
        .fold(head.len(), usize::saturating_add);
    if shortest == 0 || parent.is_empty() {
        return None;
    }
    if label.iter().any(|h| hir::visit(h, NoDot).is_err()) {
        return None;
    }
    Some(parent.to_owned())
}

/// Fails on any literal or class that can match a dot.
struct NoDot;

impl hir::Visitor for NoDot {
    type Output = ();
    type Err = ();

    fn finish(self) -> Result<(), ()> {
        Ok(())
    }

    fn visit_pre(&mut self, node: &Hir) -> Result<(), ()> {
        let dot = match node.kind() {
            HirKind::Literal(l) => l.0.contains(&b'.'),
            HirKind::Class(hir::Class::Unicode(c)) => c
                .ranges()
                .iter()
                .any(|r| r.start() <= '.' && '.' <= r.end()),
            HirKind::Class(hir::Class::Bytes(c)) => c
                .ranges()
                .iter()
                .any(|r| r.start() <= b'.' && b'.' <= r.end()),
            _ => false,
        };
        if dot { Err(()) } else { Ok(()) }
    }
}

/// Checks `source`; the error names the construct and its byte offset in the pattern.
pub fn check(source: &str) -> Result<Pattern, String> {
    let hir = parse(source)?;
    let anchored = hir.properties().look_set_prefix().contains(Look::Start)
        && hir.properties().look_set_suffix().contains(Look::End);
    Ok(Pattern {
        source: source.to_owned(),
        anchored,
        matches_empty: matches_empty(&hir),
    })
}

/// Whether `hir` matches at position 0 of the empty text: every start and end assertion holds
/// there, and so does "not at a word boundary", while a word boundary does not. Recursion
/// follows the HIR, whose depth the parser's nest limit bounds.
fn matches_empty(hir: &Hir) -> bool {
    match hir.kind() {
        HirKind::Empty => true,
        HirKind::Literal(l) => l.0.is_empty(),
        HirKind::Class(_) => false,
        HirKind::Look(look) => !matches!(
            look,
            Look::WordAscii
                | Look::WordUnicode
                | Look::WordStartAscii
                | Look::WordEndAscii
                | Look::WordStartUnicode
                | Look::WordEndUnicode
        ),
        HirKind::Repetition(r) => r.min == 0 || matches_empty(&r.sub),
        HirKind::Capture(c) => matches_empty(&c.sub),
        HirKind::Concat(v) => v.iter().all(matches_empty),
        HirKind::Alternation(v) => v.iter().any(matches_empty),
    }
}

/// Parses `source` under the shared syntax and returns its HIR.
pub fn parse(source: &str) -> Result<Hir, String> {
    parse_with(source, false)
}

/// [`parse`], translated case-insensitively when `fold` (as Envoy runs `(?i)` and the pattern).
fn parse_with(source: &str, fold: bool) -> Result<Hir, String> {
    if source.len() > MAX_PATTERN {
        return Err(format!("regex is longer than {MAX_PATTERN} bytes"));
    }
    let ast = ast::parse::ParserBuilder::new()
        .nest_limit(NEST_LIMIT)
        .build()
        .parse(source)
        .map_err(|e| format!("invalid regex: {}", first_line(&e.to_string())))?;
    ast::visit(
        &ast,
        Re2Only {
            source,
            quotients: vec![RE2_MAX_REPEAT],
        },
    )?;
    let hir = hir::translate::TranslatorBuilder::new()
        .case_insensitive(fold)
        .build()
        .translate(source, &ast)
        .map_err(|e| format!("invalid regex: {}", first_line(&e.to_string())))?;
    let cost = hir::visit(&hir, Cost::default())?;
    // Parsing and each walk of the HIR (checks, properties) are linear in the pattern: the HIR
    // keeps repetitions unexpanded, so `cost` is an estimate of Envoy's program, not work here.
    super::work::tick(source.len() + 1);
    if cost > MAX_COST {
        return Err(format!(
            "regex is too complex (estimated size {cost}, limit {MAX_COST}); simplify it"
        ));
    }
    Ok(hir)
}

/// True when Envoy, running `(?i)` followed by the pattern on a host name as sent, accepts
/// exactly the names that the plain pattern accepts lowered — what Traefik does with the
/// request host and the server name. Two translations are compared: the plain one, and the
/// case-insensitive one Envoy runs (RE2 and `regex-syntax` both fold a class before negating it,
/// so `(?i)[^A-Z.]` leaves out `a` where the plain `[^A-Z.]` on a lowered name takes it, review 6
/// R6.1; `\P{Lu}` likewise). The folded one must be closed under case (no `(?-i)` region
/// matching a letter in one case only), and both, with every class narrowed to the characters a
/// lowered ASCII name holds, must be the same expression. A pattern that fails is refused, never
/// approximated; hosts are ASCII (IDNA), so other characters are left out of the comparison.
/// `plain` is [`parse`]'s HIR of `source`.
pub fn lower_case_closed(source: &str, plain: &Hir) -> bool {
    let Ok(folded) = parse_with(source, true) else {
        return false;
    };
    hir::visit(&folded, CaseClosed).is_ok() && lowered(plain) == lowered(&folded)
}

/// The characters of a lowered ASCII name: ASCII without `A`-`Z`.
fn lowered_ascii() -> (hir::ClassUnicode, hir::ClassBytes) {
    let u = hir::ClassUnicode::new([
        hir::ClassUnicodeRange::new('\0', '@'),
        hir::ClassUnicodeRange::new('[', '\x7f'),
    ]);
    let b = hir::ClassBytes::new([
        hir::ClassBytesRange::new(0, b'@'),
        hir::ClassBytesRange::new(b'[', 0x7f),
    ]);
    (u, b)
}

/// `hir` with every class narrowed to [`lowered_ascii`], rebuilt with `regex-syntax`'s own
/// constructors so that a one-character class becomes a literal and literals join, as they do
/// on the other side of the comparison. Depth is bounded by the parser's nest limit.
fn lowered(h: &Hir) -> Hir {
    match h.kind() {
        HirKind::Empty => Hir::empty(),
        HirKind::Literal(l) => Hir::literal(l.0.clone()),
        HirKind::Class(hir::Class::Unicode(c)) => {
            let mut c = c.clone();
            c.intersect(&lowered_ascii().0);
            Hir::class(hir::Class::Unicode(c))
        }
        HirKind::Class(hir::Class::Bytes(c)) => {
            let mut c = c.clone();
            c.intersect(&lowered_ascii().1);
            Hir::class(hir::Class::Bytes(c))
        }
        HirKind::Look(l) => Hir::look(*l),
        HirKind::Repetition(r) => Hir::repetition(hir::Repetition {
            min: r.min,
            max: r.max,
            greedy: r.greedy,
            sub: Box::new(lowered(&r.sub)),
        }),
        HirKind::Capture(c) => Hir::capture(hir::Capture {
            index: c.index,
            name: c.name.clone(),
            sub: Box::new(lowered(&c.sub)),
        }),
        HirKind::Concat(v) => Hir::concat(v.iter().map(lowered).collect()),
        HirKind::Alternation(v) => Hir::alternation(v.iter().map(lowered).collect()),
    }
}

fn first_line(s: &str) -> &str {
    // regex-syntax's messages draw the pattern over several lines; the last line says what.
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
}

/// Refuses AST constructs RE2 does not have, or reads otherwise (review 7 R7.1, R7.4).
struct Re2Only<'s> {
    source: &'s str,
    /// RE2's bound on nested counted repetitions (its `RepetitionWalker`): 1000 divided by the
    /// count (its maximum, or its minimum when unbounded) of each `{…}` repetition enclosing the
    /// node, rounding down; RE2 refuses the pattern ("invalid repetition size") where it reaches
    /// 0. The last entry is the current node's.
    quotients: Vec<u32>,
}

fn at(span: &ast::Span, what: &str) -> String {
    format!(
        "{what} at byte {} of the regex is not RE2 syntax (Envoy and Traefik use RE2)",
        span.start.offset
    )
}

impl ast::Visitor for Re2Only<'_> {
    type Output = ();
    type Err = String;

    fn finish(self) -> Result<(), String> {
        Ok(())
    }

    fn visit_pre(&mut self, node: &Ast) -> Result<(), String> {
        match node {
            Ast::Flags(f) => check_flags(&f.flags),
            Ast::Group(g) => match &g.kind {
                ast::GroupKind::NonCapturing(flags) => check_flags(flags),
                ast::GroupKind::CaptureName { name, .. } => {
                    // RE2 takes word characters only (regex-syntax also `.`, `[`, `]` and
                    // Unicode letters).
                    if name.name.is_empty()
                        || !name
                            .name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    {
                        Err(at(
                            &name.span,
                            "a group name other than letters, digits and _",
                        ))
                    } else {
                        Ok(())
                    }
                }
                ast::GroupKind::CaptureIndex(_) => Ok(()),
            },
            Ast::Repetition(r) => {
                // `x**`, `x*+`, `x{2}{3}`: RE2 refuses an operator right after another
                // ("bad repetition operator"); `(?:x*)*` is fine.
                if let Ast::Repetition(_) = &*r.ast {
                    return Err(at(&r.op.span, "a repetition of a repetition"));
                }
                let ast::RepetitionKind::Range(range) = &r.op.kind else {
                    return Ok(());
                };
                let text = self
                    .source
                    .get(r.op.span.start.offset..r.op.span.end.offset)
                    .unwrap_or("");
                if text.bytes().any(|b| b.is_ascii_whitespace()) {
                    // RE2 and Go read `a{1, 2}` as the literal text, regex-syntax as a count.
                    return Err(at(&r.op.span, "a space inside a counted repetition"));
                }
                if text
                    .split(|c: char| !c.is_ascii_digit())
                    .any(|n| n.len() > 1 && n.starts_with('0'))
                {
                    // Likewise `a{01}` (review 8 R8.2).
                    return Err(at(&r.op.span, "a count with a leading zero"));
                }
                let (n, count) = match *range {
                    ast::RepetitionRange::Exactly(n) | ast::RepetitionRange::AtLeast(n) => (n, n),
                    ast::RepetitionRange::Bounded(m, n) => (m.max(n), n),
                };
                if n > RE2_MAX_REPEAT {
                    return Err(format!(
                        "repetition count {n} at byte {} of the regex is above RE2's limit of \
                         {RE2_MAX_REPEAT}",
                        r.op.span.start.offset
                    ));
                }
                let outer = self.quotients.last().copied().unwrap_or(RE2_MAX_REPEAT);
                let inner = outer.checked_div(count).unwrap_or(outer);
                if inner == 0 {
                    return Err(format!(
                        "the counted repetitions nested around byte {} of the regex repeat more \
                         than RE2's limit of {RE2_MAX_REPEAT} times together",
                        r.op.span.start.offset
                    ));
                }
                self.quotients.push(inner);
                Ok(())
            }
            Ast::Assertion(a) => match a.kind {
                ast::AssertionKind::StartLine
                | ast::AssertionKind::EndLine
                | ast::AssertionKind::StartText
                | ast::AssertionKind::EndText
                | ast::AssertionKind::WordBoundary
                | ast::AssertionKind::NotWordBoundary => Ok(()),
                _ => Err(at(&a.span, "this word-boundary assertion")),
            },
            Ast::Literal(l) => check_literal(l),
            Ast::ClassUnicode(c) => check_unicode(c),
            _ => Ok(()),
        }
    }

    fn visit_post(&mut self, node: &Ast) -> Result<(), String> {
        if let Ast::Repetition(r) = node
            && let ast::RepetitionKind::Range(_) = r.op.kind
        {
            self.quotients.pop();
        }
        Ok(())
    }

    fn visit_class_set_item_pre(&mut self, item: &ast::ClassSetItem) -> Result<(), String> {
        match item {
            ast::ClassSetItem::Bracketed(b) => Err(at(&b.span, "a class nested in a class")),
            ast::ClassSetItem::Literal(l) => check_literal(l),
            ast::ClassSetItem::Range(r) => check_literal(&r.start).and(check_literal(&r.end)),
            ast::ClassSetItem::Unicode(c) => check_unicode(c),
            _ => Ok(()),
        }
    }

    fn visit_class_set_binary_op_pre(&mut self, op: &ast::ClassSetBinaryOp) -> Result<(), String> {
        Err(at(&op.span, "a class set operation (&&, --, ~~)"))
    }
}

fn check_flags(flags: &ast::Flags) -> Result<(), String> {
    for item in &flags.items {
        if let ast::FlagsItemKind::Flag(
            ast::Flag::Unicode | ast::Flag::CRLF | ast::Flag::IgnoreWhitespace,
        ) = item.kind
        {
            return Err(at(&item.span, "this flag (RE2 knows i, m, s and U)"));
        }
    }
    Ok(())
}

fn check_literal(l: &ast::Literal) -> Result<(), String> {
    match l.kind {
        ast::LiteralKind::HexFixed(ast::HexLiteralKind::UnicodeShort)
        | ast::LiteralKind::HexFixed(ast::HexLiteralKind::UnicodeLong)
        | ast::LiteralKind::HexBrace(ast::HexLiteralKind::UnicodeShort)
        | ast::LiteralKind::HexBrace(ast::HexLiteralKind::UnicodeLong) => {
            Err(at(&l.span, "a \\u or \\U escape (write \\x{…})"))
        }
        ast::LiteralKind::Special(ast::SpecialLiteralKind::Space) => {
            Err(at(&l.span, "an escaped space"))
        }
        // Envoy 1.40's RE2 refuses these ("invalid escape sequence"), which would make it
        // reject the whole listener or route configuration.
        ast::LiteralKind::HexFixed(_) | ast::LiteralKind::HexBrace(_) if u32::from(l.c) > 0xFF => {
            Err(format!(
                "the escape at byte {} of the regex names a code point above \\x{{FF}}, which \
                 Envoy's RE2 refuses",
                l.span.start.offset
            ))
        }
        _ => Ok(()),
    }
}

fn check_unicode(c: &ast::ClassUnicode) -> Result<(), String> {
    match &c.kind {
        // RE2 looks names up as written: `\pl` is no class there (regex-syntax reads `\pL`).
        ast::ClassUnicodeKind::OneLetter(c) if RE2_CATEGORIES.contains(*c) => Ok(()),
        ast::ClassUnicodeKind::Named(name) if RE2_UNICODE.contains(&name.as_str()) => Ok(()),
        ast::ClassUnicodeKind::Named(name)
            if name.len() == 1 && RE2_CATEGORIES.contains(name.as_str()) =>
        {
            Ok(())
        }
        _ => Err(at(
            &c.span,
            "this Unicode class (only general categories and common scripts are shared)",
        )),
    }
}

/// Estimates the compiled size: repetitions multiply their body.
#[derive(Default)]
struct Cost {
    /// Cost of the children of each open node.
    stack: Vec<u64>,
    total: u64,
}

impl hir::Visitor for Cost {
    type Output = u64;
    type Err = String;

    fn finish(self) -> Result<u64, String> {
        Ok(self.total)
    }

    fn visit_pre(&mut self, _hir: &Hir) -> Result<(), String> {
        self.stack.push(0);
        Ok(())
    }

    fn visit_post(&mut self, node: &Hir) -> Result<(), String> {
        let children = self.stack.pop().unwrap_or(0);
        let own = match node.kind() {
            HirKind::Empty => 0,
            HirKind::Literal(l) => l.0.len() as u64,
            HirKind::Class(hir::Class::Unicode(c)) => 1 + c.ranges().len() as u64,
            HirKind::Class(hir::Class::Bytes(c)) => 1 + c.ranges().len() as u64,
            HirKind::Look(_) => 1,
            HirKind::Repetition(r) => {
                let copies = u64::from(r.max.unwrap_or(r.min).max(r.min).max(1));
                children.saturating_mul(copies).saturating_add(1)
            }
            HirKind::Capture(_) => children.saturating_add(2),
            HirKind::Concat(_) => children,
            HirKind::Alternation(a) => children.saturating_add(a.len() as u64),
        };
        match self.stack.last_mut() {
            Some(parent) => *parent = parent.saturating_add(own),
            None => self.total = own,
        }
        if own > MAX_COST.saturating_mul(4) {
            return Err(format!(
                "regex is too complex (estimated size above {MAX_COST}); simplify it"
            ));
        }
        Ok(())
    }
}

/// Every class holds an ASCII letter in both cases or in neither, and no literal holds an ASCII
/// letter (in a case-insensitive translation, a letter outside `(?-i)` is always a class).
struct CaseClosed;

impl hir::Visitor for CaseClosed {
    type Output = ();
    type Err = ();

    fn finish(self) -> Result<(), ()> {
        Ok(())
    }

    fn visit_pre(&mut self, node: &Hir) -> Result<(), ()> {
        let closed = |has: &dyn Fn(u8) -> bool| (b'A'..=b'Z').all(|u| has(u) == has(u + 32));
        match node.kind() {
            HirKind::Literal(l) if l.0.iter().any(u8::is_ascii_alphabetic) => Err(()),
            HirKind::Class(hir::Class::Unicode(c)) => {
                let has = |b: u8| {
                    let ch = char::from(b);
                    c.ranges().iter().any(|r| r.start() <= ch && ch <= r.end())
                };
                if closed(&has) { Ok(()) } else { Err(()) }
            }
            HirKind::Class(hir::Class::Bytes(c)) => {
                let has = |b: u8| c.ranges().iter().any(|r| r.start() <= b && b <= r.end());
                if closed(&has) { Ok(()) } else { Err(()) }
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn shared_syntax_is_accepted() {
        for ok in [
            "^/api/v[0-9]+$",
            "[a-z]+\\.example\\.com",
            "(?i)abc",
            "(?P<id>\\d+)",
            "\\pL\\p{Greek}\\PN",
            "[[:alpha:]]{2,5}",
            "a{1000}",
            "\\x{41}",
            "\\pL\\p{N}\\PZ[^\\pC]",
            "(?:x*)*",
            "(x+)+",
            "(?:x{2}){500}",
            "(?:(?:a{10}){10}){10}",
            "(?P<sub_1>x)",
            "a{0}b{10}c{0,1}d{100,}",
        ] {
            assert!(check(ok).is_ok(), "{ok}: {:?}", check(ok));
        }
    }

    #[test]
    fn constructs_re2_lacks_are_refused_with_an_offset() {
        for (bad, want) in [
            ("[a-z&&[^aeiou]]", "class"),
            ("[a[b]]", "nested"),
            ("(?x)a b", "flag"),
            ("(?u:a)", "flag"),
            ("\\u0041", "\\u"),
            ("[\\x{80}-\\x{10FFFF}]", "above \\x{FF}"),
            ("\\x{100}", "above \\x{FF}"),
            ("a{1001}", "limit of 1000"),
            ("\\b{start}x", "word-boundary"),
            ("\\p{Alphabetic}", "Unicode class"),
            ("(unclosed", "invalid regex"),
            ("\\Qa.b\\E", "invalid regex"),
            // Review 7 R7.1: what regex-syntax reads and Envoy's RE2 refuses.
            ("\\pl", "Unicode class"),
            ("\\p{n}", "Unicode class"),
            ("\\Pc", "Unicode class"),
            ("[^\\pz]", "Unicode class"),
            ("x**", "repetition of a repetition"),
            ("x*+", "repetition of a repetition"),
            ("x+*", "repetition of a repetition"),
            ("x{2}{3}", "repetition of a repetition"),
            ("x{1000}{1}", "repetition of a repetition"),
            ("(?:a{2}){501}", "together"),
            ("(?:(?:a{10}){10}){11}", "together"),
            ("(?:x{2}|y{600}){2}", "together"),
            ("(?P<a.b>x)", "group name"),
            ("(?P<a[0]>x)", "group name"),
            ("(?P<a\u{e9}>x)", "group name"),
            // R7.4: RE2 reads these braces as literal text.
            ("a{1, 2}", "space inside"),
            ("a{ 2 }", "space inside"),
            ("a{01}", "leading zero"),
            ("a{1,02}", "leading zero"),
            ("a{00}", "leading zero"),
            ("a{007,}", "leading zero"),
        ] {
            let err = check(bad).unwrap_err();
            assert!(err.contains(want), "{bad}: {err}");
        }
        assert!(
            check("xx[a-z&&b]")
                .unwrap_err()
                .contains("byte 3 of the regex")
        );
        assert!(check(&"a".repeat(MAX_PATTERN + 1)).is_err());
        assert!(check("(a{100}){100}").unwrap_err().contains("together"));
        assert!(
            check("(?:(?:ab|cd|ef|gh){30}){30}")
                .unwrap_err()
                .contains("too complex")
        );
        assert!(check(&"(".repeat(40)).is_err());
    }

    #[test]
    fn envoy_full_match_wraps_unless_anchored_at_both_ends() {
        assert_eq!(check("^/a$").unwrap().envoy_full_match(), "^/a$");
        assert_eq!(
            check("/a").unwrap().envoy_full_match(),
            "(?s:.*)(?:/a)(?s:.*)"
        );
        // Looks anchored, is not: (^a)|(b$).
        assert!(!check("^a|b$").unwrap().anchored);
        assert!(!check("^a").unwrap().anchored);
        assert!(check("^(a|b)$").unwrap().anchored);
    }

    #[test]
    fn one_label_parents_are_proved_from_the_hir() {
        let parent = |p: &str| one_label_parent(&parse(p).unwrap());
        for (p, want) in [
            ("^[a-z0-9-]+\\.db\\.example\\.com$", "db.example.com"),
            ("^(?:[a-z]+)\\.db\\.example\\.com$", "db.example.com"),
            ("^(pg|my)-[0-9]+\\.db\\.example\\.com$", "db.example.com"),
            ("^www\\.example\\.com$", "example.com"),
            ("\\A[^.]+\\.example\\.com\\z", "example.com"),
            ("^\\w+\\.example\\.com$", "example.com"),
        ] {
            assert_eq!(parent(p).as_deref(), Some(want), "{p}");
        }
        for p in [
            // Unanchored, or anchored at one end only: a search matches longer names.
            "[a-z]+\\.db\\.example\\.com",
            "^[a-z]+\\.db\\.example\\.com",
            "[a-z]+\\.db\\.example\\.com$",
            // The label may hold a dot, or be empty.
            "^.+\\.example\\.com$",
            "^[a-z.]+\\.example\\.com$",
            "^[^a]+\\.example\\.com$",
            "^[a-z]*\\.example\\.com$",
            "^(a|b\\.c)\\.example\\.com$",
            // Not a literal parent, or none at all.
            "^[a-z]+\\.example\\.(com|org)$",
            "^[a-z]+$",
            "^[a-z]+\\.example\\.com\\.?$",
            "(?m)^[a-z]+\\.example\\.com$",
            "^a\\.b$|^c\\.d$",
            ".*",
        ] {
            assert_eq!(parent(p), None, "{p}");
        }
    }

    #[test]
    fn search_is_gos_unanchored_search() {
        let p = Searcher::new("db\\.example");
        assert!(p.is_match("a.db.example.com").unwrap());
        assert!(!p.is_match("a.dbxexample.com").unwrap());
        assert!(!Searcher::new("^db").is_match("a.db").unwrap());
        assert_eq!(p, Searcher::new("db\\.example"));
    }

    /// review 5 R5.8: a class repeated a thousand times compiles as byte classes, within the
    /// small size limit; Unicode classes still work; a pattern too large to evaluate is refused
    /// with a message, not compiled at any cost.
    #[test]
    fn searches_compile_as_byte_classes_within_a_small_limit() {
        for p in ["[^.]{1000}", ".{1000}", "[^a]{1000}"] {
            let long = "b".repeat(1000);
            assert!(Searcher::new(p).is_match(&long).unwrap(), "{p}");
            assert!(!Searcher::new(p).is_match("b.b").unwrap(), "{p}");
        }
        assert!(Searcher::new("^\\pL+\\.x$").is_match("ab.x").unwrap());
        assert!(!Searcher::new("^\\pL+\\.x$").is_match("a1.x").unwrap());
        // review 6 R6.3: a non-ASCII literal folds to ASCII under (?i) as in RE2.
        let m = ascii_matcher("^(?:(?i:tran\u{17f}fer-encoding))$").unwrap();
        assert!(m.is_match(b"transfer-encoding"));
        assert!(ascii_matcher("(?i)\u{212a}eep").unwrap().is_match(b"keep"));
        let e = Searcher::new("(?:[a-z]{1000}){1000}")
            .is_match("a")
            .unwrap_err();
        assert!(e.starts_with("regex cannot be evaluated"), "{e}");
    }

    #[test]
    fn lower_case_closed_patterns() {
        let closed = |p: &str| lower_case_closed(p, &parse(p).unwrap());
        for ok in [
            "[a-z0-9-]+\\.example\\.com",
            "\\S+\\.\\w+",
            "[a-zA-Z]+",
            "^(?:[a-z]+)\\.example\\.com$",
            "^(pg|my)-[0-9]+\\.db\\.example\\.com$",
            "^(?P<sub>[a-z0-9]+)\\.example\\.com$",
            "^[^.]+\\.example\\.com$",
            "^[^a-z.]+\\.example\\.com$",
            "^[^a-zA-Z.]+\\.example\\.com$",
            "^\\w{1,3}-(a|b|cd)+\\.x$",
            "\\A[^.]+\\.example\\.com\\z",
            "(?i)[a-z]+\\.Example\\.com",
            "\\pL+\\.x",
            "[[:lower:]]+\\.x",
            "[[:alpha:]]+",
        ] {
            assert!(closed(ok), "{ok}");
        }
        for refused in [
            "Example\\.com",
            "[A-Z]+",
            // review 6 R6.1: folded before negation, Envoy's class leaves out `a`..`z` too.
            "^[^A-Z.]+\\.example\\.com$",
            "^[^A-Y.]+\\.example\\.com$",
            "^\\P{Lu}+\\.example\\.com$",
            "[^[:upper:]]+",
            // (?-i) makes Envoy's match case-sensitive where Traefik's lowered name is not.
            "(?-i)[a-z]+\\.example\\.com",
            "(?-i:www)\\.example\\.com",
            // Not closed on a letter: `a` without `A` is fine, `B` without `b` is not.
            "[aB]",
        ] {
            assert!(!closed(refused), "{refused}");
        }
    }

    /// `matches_empty`, read from the HIR, agrees with a regex engine run on the empty value
    /// (the full-match form Envoy is sent), for patterns with and without assertions.
    #[test]
    fn matches_empty_agrees_with_an_engine() {
        let mut seen = [false, false];
        for source in [
            "", "a*", "^$", "x|", "\\B", "(?:)", "^", "$", "(a?)", "(?m)^$", "a{0,3}", "(a|b*)",
            "a", "\\b", "^a$", "a+", "\\bx", "[0-9]", "^.*$", "^.+$", "(?i)beta", "\\b|c",
            "(?:\\B)+", "x*\\b",
        ] {
            let p = check(source).unwrap();
            let engine = ascii_matcher(&p.envoy_full_match()).unwrap().is_match(b"");
            assert_eq!(p.matches_empty, engine, "{source:?}");
            seen[usize::from(engine)] = true;
        }
        assert_eq!(seen, [true, true]);
    }
}
