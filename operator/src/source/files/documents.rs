//! Splitting a YAML file into its documents, keeping their line numbers.

/// One YAML document of a file.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct YamlDocument {
    /// The document's text (a `---` marker replaced by spaces, to keep columns).
    pub(super) text: String,
    /// Lines of the file before the document's first line.
    pub(super) first_line: usize,
    /// Only blank lines, comments and directives.
    pub(super) is_blank: bool,
}

/// Splits a YAML stream at its document markers. Done by hand rather than with the parser's
/// document iterator so that a syntax error in one document does not hide the others. Sound
/// because YAML forbids `---` and `...` followed by a space or line end at the start of a line
/// anywhere except as document markers.
pub(super) fn split_yaml_documents(text: &str) -> Vec<YamlDocument> {
    enum Opened {
        Start,
        Marker,
        End,
    }
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut opened = Opened::Start;
    let mut first_line = 0usize;

    let mut finish = |current: &mut String, opened: &Opened, first_line: usize| {
        let is_blank = current.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#') || l.starts_with('%')
        });
        // Text before the first marker, or after an end marker, is a document only if it holds
        // something; text after a `---` always is one (possibly empty).
        if matches!(opened, Opened::Marker) || !is_blank {
            docs.push(YamlDocument {
                text: std::mem::take(current),
                first_line,
                is_blank,
            });
        }
        current.clear();
    };

    for (number, line) in text.lines().enumerate() {
        if let Some(rest) = marker_rest(line, "---") {
            finish(&mut current, &opened, first_line);
            opened = Opened::Marker;
            first_line = number;
            // Keep the columns of anything after the marker (`--- {a: 1}`).
            current.push_str("   ");
            current.push_str(rest);
            current.push('\n');
        } else if marker_rest(line, "...").is_some() {
            finish(&mut current, &opened, first_line);
            opened = Opened::End;
            first_line = number + 1;
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    finish(&mut current, &opened, first_line);
    docs
}

/// If `line` is the document marker `marker` (alone, or followed by whitespace), what follows.
fn marker_rest<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(marker)?;
    (rest.is_empty() || rest.starts_with([' ', '\t', '\r'])).then_some(rest)
}
