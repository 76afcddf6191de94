//! A cheap, linear pre-scan of one YAML document for its nesting depth, run before the parser
//! sees the document.
//!
//! Why: libyaml's cost grows with the flow nesting depth for every token it reads (100,000 `[`
//! take tens of seconds), and the deserializer's own recursion limit only applies after the
//! whole document was parsed. Refusing a document here keeps loading linear in its size.
//!
//! The scan follows libyaml's tokenizer where it matters for depth: flow collections (`[`, `{`)
//! count where YAML opens one (at the start of a node, or anywhere inside a flow collection),
//! not inside quoted scalars, block scalars (`|`, `>`), comments or plain scalars
//! (`match: /a[b`). Block collections count as libyaml's indentation stack does (a new,
//! deeper column after `- `, `? ` or a `key:`), plus sequences at the column of their
//! mapping key (`key:\n- a`). The parsed value is checked once more afterwards
//! ([`value_depth`]), so a document this scan misjudges still cannot load deeper than the limit.

use serde_json::Value;

/// Deepest nesting of collections (mappings and sequences, flow or block) a manifest document
/// may have. Kubernetes objects need about ten; deeper documents are refused before parsing.
pub const MAX_NESTING_DEPTH: usize = 64;

/// Where a document first nests deeper than the limit: 0-based line and column (in characters)
/// within the document's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooDeep {
    pub line: usize,
    pub column: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Map,
    Seq,
    /// A block sequence at the same column as the key of its mapping (`key:\n- a`).
    IndentlessSeq,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Normal,
    SingleQuoted,
    DoubleQuoted,
    /// Lines of a block scalar: `parent` is the enclosing block column (-1 at top level),
    /// `indent` the content column once known.
    BlockScalar {
        parent: isize,
        indent: Option<isize>,
    },
}

struct Scan {
    limit: usize,
    mode: Mode,
    /// Open block collections: column and kind.
    block: Vec<(usize, Level)>,
    flow: usize,
    /// The next character may start a node (a quote, `[`, `|` open something here).
    node_start: bool,
    /// Inside a word of a plain scalar (so `#` is not a comment).
    in_word: bool,
    /// The line so far ended inside a plain scalar (the next line may continue it).
    in_plain: bool,
    /// Column of the token a following `:` makes a mapping key (block context).
    key_column: usize,
    /// A node property (`&anchor`, `!tag`) was read; the key starts at it.
    property: bool,
    /// The last token closed a quoted scalar or a flow collection (`"a":b` is a pair in flow).
    after_close: bool,
}

/// Scans `text` (one YAML document) and fails at the first point nesting exceeds `limit`.
pub fn check_yaml_depth(text: &str, limit: usize) -> Result<(), TooDeep> {
    let mut scan = Scan {
        limit,
        mode: Mode::Normal,
        block: Vec::new(),
        flow: 0,
        node_start: true,
        in_word: false,
        in_plain: false,
        key_column: 0,
        property: false,
        after_close: false,
    };
    let mut line: Vec<char> = Vec::new();
    let mut number = 0usize;
    let mut chars = text.chars().peekable();
    loop {
        line.clear();
        let mut ended = true;
        for c in chars.by_ref() {
            ended = false;
            match c {
                '\n' | '\u{85}' | '\u{2028}' | '\u{2029}' => break,
                '\r' => {
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    break;
                }
                c => line.push(c),
            }
        }
        if ended && line.is_empty() {
            return Ok(());
        }
        scan.line(&line).map_err(|column| TooDeep {
            line: number,
            column,
        })?;
        number += 1;
    }
}

fn is_blank(c: Option<&char>) -> bool {
    matches!(c, None | Some(' ' | '\t'))
}

fn is_flow_indicator(c: Option<&char>) -> bool {
    matches!(c, Some(',' | '[' | ']' | '{' | '}'))
}

impl Scan {
    fn depth(&self) -> usize {
        self.block.len() + self.flow
    }

    /// libyaml's current block indentation: the column of the innermost block collection.
    fn indent(&self) -> isize {
        self.block
            .last()
            .map_or(-1, |(c, _)| isize::try_from(*c).unwrap_or(isize::MAX))
    }

    fn push_block(&mut self, column: usize, level: Level) -> Result<(), usize> {
        self.block.push((column, level));
        self.check(column)
    }

    fn check(&self, column: usize) -> Result<(), usize> {
        if self.depth() > self.limit {
            Err(column)
        } else {
            Ok(())
        }
    }

    /// A block mapping whose keys are at `column`.
    fn roll_map(&mut self, column: usize) -> Result<(), usize> {
        match self.block.last() {
            Some((c, _)) if *c >= column => Ok(()),
            _ => self.push_block(column, Level::Map),
        }
    }

    /// A block sequence entry (`- `) at `column`.
    fn block_entry(&mut self, column: usize) -> Result<(), usize> {
        match self.block.last() {
            Some((c, Level::Map)) if *c == column => self.push_block(column, Level::IndentlessSeq),
            Some((c, _)) if *c >= column => Ok(()),
            _ => self.push_block(column, Level::Seq),
        }
    }

    /// A token starts at `column` where a node may start.
    fn start_token(&mut self, column: usize) {
        if self.node_start && !self.property {
            self.key_column = column;
        }
        self.property = false;
    }

    /// One line, without its line break. `Err(column)` where the limit is exceeded.
    fn line(&mut self, line: &[char]) -> Result<(), usize> {
        let indent = line.iter().take_while(|c| **c == ' ').count();
        let blank = line.iter().all(|c| *c == ' ' || *c == '\t');

        if let Mode::BlockScalar {
            parent,
            indent: content,
        } = self.mode
        {
            if blank {
                return Ok(());
            }
            let at = isize::try_from(indent).unwrap_or(isize::MAX);
            let content = content.unwrap_or_else(|| at.max(parent + 1).max(1));
            if at >= content {
                self.mode = Mode::BlockScalar {
                    parent,
                    indent: Some(content),
                };
                return Ok(());
            }
            self.mode = Mode::Normal;
        }

        let mut i = 0;
        if self.mode == Mode::Normal {
            if blank {
                return Ok(());
            }
            self.in_word = false;
            if self.flow == 0 {
                let first = line.get(indent);
                let at = isize::try_from(indent).unwrap_or(isize::MAX);
                if first == Some(&'#') {
                    // A comment line ends a plain scalar.
                    self.in_plain = false;
                    return Ok(());
                }
                if self.in_plain && at > self.indent() {
                    // The plain scalar of the previous line goes on.
                    self.node_start = false;
                } else {
                    self.in_plain = false;
                    self.after_close = false;
                    while self.block.last().is_some_and(|(c, _)| *c > indent) {
                        self.block.pop();
                    }
                    let entry = first == Some(&'-') && is_blank(line.get(indent + 1));
                    if !entry
                        && self
                            .block
                            .last()
                            .is_some_and(|(c, l)| *c == indent && *l == Level::IndentlessSeq)
                    {
                        self.block.pop();
                    }
                    self.node_start = true;
                    self.property = false;
                }
                i = indent;
            }
        }

        while i < line.len() {
            let c = line[i];
            let next = line.get(i + 1);
            match self.mode {
                Mode::SingleQuoted => {
                    if c == '\'' {
                        if next == Some(&'\'') {
                            i += 2;
                            continue;
                        }
                        self.close_token();
                    }
                    i += 1;
                    continue;
                }
                Mode::DoubleQuoted => {
                    if c == '\\' {
                        i += 2;
                        continue;
                    }
                    if c == '"' {
                        self.close_token();
                    }
                    i += 1;
                    continue;
                }
                Mode::BlockScalar { .. } | Mode::Normal => {}
            }
            if c == ' ' || c == '\t' {
                self.in_word = false;
                i += 1;
                continue;
            }
            if c == '#' && !self.in_word {
                // A comment runs to the end of the line; it also ends a plain scalar.
                self.in_plain = false;
                return Ok(());
            }
            if self.flow > 0 {
                match c {
                    '[' | '{' => {
                        self.flow += 1;
                        self.check(i)?;
                        self.indicator();
                    }
                    ']' | '}' => {
                        self.flow -= 1;
                        self.close_token();
                    }
                    ',' => self.indicator(),
                    '?' if is_blank(next) => self.indicator(),
                    ':' if is_blank(next) || is_flow_indicator(next) || self.after_close => {
                        self.indicator()
                    }
                    '\'' | '"' if self.node_start => self.open_quote(c),
                    '&' | '!' if self.node_start => {
                        i = skip_property(line, i, true);
                        self.property = true;
                        continue;
                    }
                    _ => self.plain_char(),
                }
                i += 1;
                continue;
            }
            match c {
                '[' | '{' if self.node_start => {
                    self.start_token(i);
                    self.flow += 1;
                    self.check(i)?;
                    self.indicator();
                }
                '-' if self.node_start && is_blank(next) => {
                    self.block_entry(i)?;
                    self.indicator();
                }
                '?' if self.node_start && is_blank(next) => {
                    self.roll_map(i)?;
                    self.indicator();
                }
                ':' if is_blank(next) => {
                    let key = if self.node_start && !self.property {
                        i
                    } else {
                        self.key_column
                    };
                    self.roll_map(key)?;
                    self.indicator();
                }
                '\'' | '"' if self.node_start => {
                    self.start_token(i);
                    self.open_quote(c);
                }
                '|' | '>' if self.node_start => {
                    let increment = line[i + 1..]
                        .iter()
                        .take_while(|c| !c.is_whitespace())
                        .find_map(|c| c.to_digit(10));
                    let parent = self.indent();
                    self.mode = Mode::BlockScalar {
                        parent,
                        indent: increment.map(|d| parent.max(0) + d as isize),
                    };
                    self.in_plain = false;
                    // The rest of the line is the header and a comment.
                    return Ok(());
                }
                '&' | '!' if self.node_start => {
                    self.start_token(i);
                    self.property = true;
                    i = skip_property(line, i, false);
                    continue;
                }
                '*' if self.node_start => {
                    self.start_token(i);
                    i = skip_property(line, i, false);
                    self.close_token();
                    continue;
                }
                _ => {
                    if self.node_start {
                        self.start_token(i);
                    }
                    self.plain_char();
                    self.in_plain = true;
                }
            }
            i += 1;
        }
        Ok(())
    }

    /// An indicator after which a node may start.
    fn indicator(&mut self) {
        self.node_start = true;
        self.in_word = false;
        self.in_plain = false;
        self.after_close = false;
    }

    fn open_quote(&mut self, quote: char) {
        self.mode = if quote == '\'' {
            Mode::SingleQuoted
        } else {
            Mode::DoubleQuoted
        };
        self.node_start = false;
        self.in_plain = false;
        self.property = false;
    }

    /// A quoted scalar, flow collection or alias ended.
    fn close_token(&mut self) {
        self.mode = Mode::Normal;
        self.node_start = false;
        self.in_word = false;
        self.in_plain = false;
        self.after_close = true;
    }

    fn plain_char(&mut self) {
        self.node_start = false;
        self.in_word = true;
        self.after_close = false;
    }
}

/// Skips an anchor, alias or tag starting at `start`; returns the index after it.
fn skip_property(line: &[char], start: usize, flow: bool) -> usize {
    let mut i = start + 1;
    while let Some(c) = line.get(i) {
        if c.is_whitespace() || (flow && is_flow_indicator(Some(c))) {
            break;
        }
        i += 1;
    }
    i
}

/// The nesting depth of a parsed value (a scalar is 0, `[]` and `{}` are 1), without recursion.
pub fn value_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        let depth = depth + 1;
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|c| (c, depth))),
            Value::Object(map) => stack.extend(map.values().map(|c| (c, depth))),
            _ => continue,
        }
        deepest = deepest.max(depth);
    }
    deepest
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn depth_ok(text: &str, limit: usize) -> bool {
        check_yaml_depth(text, limit).is_ok()
    }

    /// The smallest limit the scan accepts: the depth it measured.
    fn measured(text: &str) -> usize {
        (0..200).find(|l| depth_ok(text, *l)).unwrap()
    }

    #[test]
    fn measures_block_and_flow_nesting_like_the_parsed_value() {
        let cases = [
            "a: 1\n",
            "a:\n  b:\n    c: 1\n",
            "a:\n- b: 1\n  c:\n  - d\n",
            "- - - x\n",
            "a: [1, {b: [2]}]\n",
            "a: {\"b\": [\"[[[\", '{{{'], c: \"]\"}\n",
            "a: /x[y\nb: it's [not] {a} flow\n",
            "a: \"k: [[[\"\nb: 'k: {{{ # '\n",
            "a: |\n  [[[[[[\n  - - - -\nb: [1]\n",
            "a: >2\n   {{{{\n     [[[[\nb: 1\n",
            "a: 'multi\n  line [[[ '\nb: \"x\\\"[[\"\n",
            "a: 1 # [[[[[\n# {{{{{\nb: [1, # [[[[\n  2]\n",
            "- a: 1\n  b:\n    - c\n- d\n",
            "? a\n: [b]\n",
            "a: &x [1]\nb: *x\nc: !!seq [2]\n",
            "a: plain\n  continued 'not quoted [[ \nb: 1\n",
            "x:\n  y:\n  - [a, [b]]\nz: 1\n",
            "{\"a\": {\"b\": [1, {\"c\": null}]}}\n",
        ];
        for text in cases {
            let value: Value = serde_norway::from_str(text).unwrap();
            assert_eq!(measured(text), value_depth(&value), "{text:?}");
        }
    }

    /// Deterministic pseudo-random values with awkward strings, written by serde_norway (block
    /// style) and as JSON (flow style): the scan measures what the parser builds.
    #[test]
    fn agrees_with_the_parser_on_generated_documents() {
        const STRINGS: [&str; 18] = [
            "[",
            "{a",
            "]}",
            "it's",
            "\"q\"",
            "# c",
            "a: b",
            "- x",
            "|",
            ">",
            "multi\nline [",
            "---",
            "&a [",
            "*a",
            "!t {",
            "a,b]",
            "  lead",
            "x\\\"[",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        fn build(next: &mut impl FnMut(u64) -> u64, depth: usize) -> Value {
            match next(if depth > 7 { 3 } else { 6 }) {
                0 => Value::String(STRINGS[usize::try_from(next(18)).unwrap()].to_owned()),
                1 => Value::from(next(100)),
                2 => Value::Null,
                3 => Value::Array((0..next(4)).map(|_| build(next, depth + 1)).collect()),
                _ => Value::Object(
                    (0..next(4))
                        .map(|i| {
                            let key = STRINGS[usize::try_from(next(18)).unwrap()];
                            (format!("{key}{i}"), build(next, depth + 1))
                        })
                        .collect(),
                ),
            }
        }
        for _ in 0..500 {
            let value = Value::Object(
                [("k".to_owned(), build(&mut next, 1))]
                    .into_iter()
                    .collect(),
            );
            let depth = value_depth(&value);
            let block = serde_norway::to_string(&value).unwrap();
            let flow = serde_json::to_string(&value).unwrap();
            let mixed = format!(
                "a:\n  b: {}\n  c: 1\n",
                serde_json::to_string(&value).unwrap()
            );
            for (text, expected) in [(block, depth), (flow, depth), (mixed, depth + 2)] {
                let parsed: Value = serde_norway::from_str(&text).unwrap();
                assert_eq!(value_depth(&parsed), expected, "{text}");
                assert_eq!(measured(&text), expected, "{text}");
            }
        }
    }

    #[test]
    fn refuses_deep_flow_and_block_nesting_where_it_starts() {
        let flow = format!("a: {}{}\n", "[".repeat(100), "]".repeat(100));
        assert_eq!(
            check_yaml_depth(&flow, 64),
            Err(TooDeep {
                line: 0,
                column: 3 + 63
            })
        );
        let block = format!("a:\n{}x\n", "- ".repeat(100));
        assert_eq!(
            check_yaml_depth(&block, 64),
            Err(TooDeep {
                line: 1,
                column: 2 * 63
            })
        );
        let mut indented = String::new();
        for level in 0..100 {
            indented.push_str(&format!("{}k{level}:\n", " ".repeat(level)));
        }
        assert_eq!(check_yaml_depth(&indented, 64).unwrap_err().line, 64);
    }

    #[test]
    fn value_depth_counts_collections() {
        assert_eq!(value_depth(&serde_json::json!(1)), 0);
        assert_eq!(value_depth(&serde_json::json!([])), 1);
        assert_eq!(value_depth(&serde_json::json!({"a": [1, {"b": {}}]})), 4);
    }
}
