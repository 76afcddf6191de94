//! The cookie pattern against a model of Go's `Request.Cookie`, on hand-picked and generated
//! headers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::first_cookie_is;

/// Go's reading of the first cookie `name` of a header: pairs split at `;`, trimmed of spaces
/// and tabs, the name (trimmed) before the first `=`, a double-quoted value unquoted.
fn go_first_cookie(header: &str, name: &str) -> Option<String> {
    for part in header.split(';') {
        let part = part.trim_matches([' ', '\t']);
        if part.is_empty() {
            continue;
        }
        let (n, v) = part.split_once('=').unwrap_or((part, ""));
        if n.trim_matches([' ', '\t']) != name {
            continue;
        }
        let v = if v.len() > 1 && v.starts_with('"') && v.ends_with('"') {
            &v[1..v.len() - 1]
        } else {
            v
        };
        return Some(v.to_owned());
    }
    None
}

fn matcher(name: &str, value: &str) -> regex::Regex {
    // Envoy matches the whole value.
    regex::RegexBuilder::new(&format!(
        "^(?:{})$",
        first_cookie_is(name, &[value.to_owned()])
    ))
    .nest_limit(2000)
    .build()
    .unwrap()
}

fn agrees(name: &str, value: &str, header: &str) {
    let want = go_first_cookie(header, name).as_deref() == Some(value);
    assert_eq!(
        matcher(name, value).is_match(header),
        want,
        "{name}={value} in {header:?}"
    );
}

#[test]
fn the_first_cookie_of_the_name_decides() {
    let (n, v) = ("_3ac2f", "0123456789abcdef");
    for (header, pinned) in [
        ("_3ac2f=0123456789abcdef", true),
        ("a=1; _3ac2f=0123456789abcdef", true),
        ("a=1;_3ac2f=0123456789abcdef;b=2", true),
        ("\t_3ac2f = 0123456789abcdef  ; b", false),
        (" _3ac2f =0123456789abcdef  ; b", true),
        ("_3ac2f=\"0123456789abcdef\"", true),
        ("_3ac2f=\"0123456789abcdef", false),
        ("_3ac2f=0123456789abcdef0", false),
        ("x_3ac2f=0123456789abcdef", false),
        ("_3ac2fx=1; _3ac2f=0123456789abcdef", true),
        ("_3ac2f=other; _3ac2f=0123456789abcdef", false),
        ("_3ac2f; _3ac2f=0123456789abcdef", false),
        ("_3ac2 f=1; _3ac2f=0123456789abcdef", true),
        (";; _3ac2f=0123456789abcdef", true),
        ("", false),
    ] {
        assert_eq!(matcher(n, v).is_match(header), pinned, "{header:?}");
        agrees(n, v, header);
    }
}

#[test]
fn punctuation_of_a_token_name_is_literal() {
    for name in ["a.b", "a*b", "^a$", "a|b", "a+b", "%x~`'!#&-", "a^"] {
        agrees(name, "v", &format!("{name}=v"));
        agrees(name, "v", "ab=v; a=v; b=v");
        agrees(name, "v", &format!("x=1; {name}=w; {name}=v"));
    }
}

#[test]
fn generated_headers_agree_with_go() {
    // A small generator (deterministic) over the bytes that matter.
    let alphabet = [b'a', b'b', b'=', b';', b' ', b'\t', b'"', b'v', b'x'];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for name in ["a", "ab", "aba"] {
        let matchers = [("v", matcher(name, "v")), ("xv", matcher(name, "xv"))];
        let segments = [
            format!("{name}=v"),
            format!("{name}=xv"),
            format!("{name}=\"v\""),
            format!(" {name} =v "),
            format!("\t{name}=xv"),
            format!("{name}= v"),
            name.to_owned(),
            format!("{name}b=v"),
            format!("b{name}=v"),
            "x=1".to_owned(),
            " ".to_owned(),
            String::new(),
        ];
        for round in 0..8000 {
            let header: String = if round % 2 == 0 {
                let len = (next() % 14) as usize;
                (0..len)
                    .map(|_| char::from(alphabet[(next() % alphabet.len() as u64) as usize]))
                    .collect()
            } else {
                let count = (next() % 5) as usize;
                (0..count)
                    .map(|_| segments[(next() % segments.len() as u64) as usize].as_str())
                    .collect::<Vec<_>>()
                    .join(";")
            };
            for (value, m) in &matchers {
                let want = go_first_cookie(&header, name).as_deref() == Some(*value);
                assert_eq!(m.is_match(&header), want, "{name}={value} in {header:?}");
            }
        }
    }
}

#[test]
fn a_long_name_makes_a_pattern_linear_in_its_length() {
    let name = "n".repeat(64);
    let pattern = first_cookie_is(&name, &["0123456789abcdef".to_owned()]);
    assert!(pattern.len() < 64 * 40, "{}", pattern.len());
    agrees(
        &name,
        "0123456789abcdef",
        &format!("{name}=0123456789abcdef"),
    );
    agrees(
        &name,
        "0123456789abcdef",
        &format!("{name}n=1; {name}=0123456789abcdef"),
    );
}

#[test]
fn any_of_the_values_pins() {
    let values = ["0123456789abcdef".to_owned(), "apps-a-80".to_owned()];
    let m = regex::Regex::new(&format!("^(?:{})$", first_cookie_is("p", &values))).unwrap();
    for (header, pinned) in [
        ("p=0123456789abcdef", true),
        ("p=apps-a-80", true),
        ("x=1; p=\"apps-a-80\"", true),
        ("p=apps-a-8", false),
        ("p=apps-a-800", false),
        ("p=other; p=apps-a-80", false),
    ] {
        assert_eq!(m.is_match(header), pinned, "{header:?}");
    }
}
