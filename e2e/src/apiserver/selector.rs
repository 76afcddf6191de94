//! Label selectors (`a=b,c!=d,e in (x,y),f notin (z),g,!h`) and field selectors
//! (`metadata.name=x,spec.type!=y`).

use serde_json::Value;

use super::validation;

#[derive(Clone, Debug, PartialEq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector`; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LabelSelector(Vec<Requirement>);

/// Splits on commas outside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

/// A selector's key must be a label key (kube-apiserver answers 400 otherwise).
fn check_key(key: &str, term: &str) -> Result<String, String> {
    match validation::qualified_name(key) {
        None => Ok(key.to_string()),
        Some(why) => Err(format!("invalid label key in {term:?}: {why}")),
    }
}

/// A selector's value must be a label value (kube-apiserver answers 400 otherwise).
fn check_value(value: &str, term: &str) -> Result<String, String> {
    match validation::label_value(value) {
        None => Ok(value.to_string()),
        Some(why) => Err(format!("invalid label value in {term:?}: {why}")),
    }
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for term in split_terms(s) {
            let req = if let Some(open) = term.find('(') {
                let close = term
                    .rfind(')')
                    .filter(|&c| c > open && term[c + 1..].trim().is_empty())
                    .ok_or_else(|| format!("unbalanced parentheses in {term:?}"))?;
                let values = term[open + 1..close]
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(|v| check_value(v, term))
                    .collect::<Result<Vec<String>, String>>()?;
                if values.is_empty() {
                    return Err(format!(
                        "for 'in', 'notin' operators, values set can't be empty in {term:?}"
                    ));
                }
                let head = term[..open].trim();
                let (key, op) = head
                    .rsplit_once(char::is_whitespace)
                    .ok_or_else(|| format!("missing operator in {term:?}"))?;
                let key = check_key(key.trim(), term)?;
                match op {
                    "in" => Requirement::In(key, values),
                    "notin" => Requirement::NotIn(key, values),
                    _ => return Err(format!("unknown operator {op:?} in {term:?}")),
                }
            } else if let Some(key) = term.strip_prefix('!') {
                Requirement::NotExists(check_key(key.trim(), term)?)
            } else if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEq(check_key(k.trim(), term)?, check_value(v.trim(), term)?)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Requirement::Eq(check_key(k.trim(), term)?, check_value(v.trim(), term)?)
            } else {
                Requirement::Exists(check_key(term, term)?)
            };
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

/// A parsed `fieldSelector`: `path=value` / `path==value` / `path!=value` terms on a dotted path.
/// Which paths a resource supports is checked by [`FieldSelector::check_fields`].
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FieldSelector(Vec<(Vec<String>, bool, String)>);

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for term in split_terms(s) {
            let (path, equal, value) = if let Some((p, v)) = term.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (p, true, v)
            } else {
                return Err(format!("invalid field selector term {term:?}"));
            };
            let path: Vec<String> = path.trim().split('.').map(str::to_string).collect();
            if path.iter().any(String::is_empty) {
                return Err(format!("invalid field path in {term:?}"));
            }
            terms.push((path, equal, value.trim().to_string()));
        }
        Ok(Self(terms))
    }

    /// Refuses fields the resource does not support, as kube-apiserver does (400): every
    /// resource supports `metadata.name` and `metadata.namespace`, some a few more.
    pub fn check_fields(&self, supported: &[String]) -> Result<(), String> {
        for (path, _, _) in &self.0 {
            let field = path.join(".");
            let known = matches!(field.as_str(), "metadata.name" | "metadata.namespace")
                || supported.contains(&field);
            if !known {
                return Err(format!("field label not supported: {field}"));
            }
        }
        Ok(())
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, equal, value)| {
            let found = path
                .iter()
                .try_fold(obj, |v, seg| v.get(seg.as_str()))
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            (found == *value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "n", "namespace": "ns", "labels": labels}, "spec": {"type": "ClusterIP"}})
    }

    #[test]
    fn label_selector_operators() -> Result<(), String> {
        let o = obj(json!({"a": "b", "e": "x", "f": ""}));
        for (sel, want) in [
            ("", true),
            ("a=b", true),
            ("a==b", true),
            ("a=c", false),
            ("a!=c", true),
            ("a!=b", false),
            ("z!=b", true),
            ("e in (x, y)", true),
            ("e in (y)", false),
            ("e notin (y,z)", true),
            ("e notin (x)", false),
            ("missing notin (x)", true),
            ("f", true),
            ("g", false),
            ("!g", true),
            ("!a", false),
            ("a=b,e in (x,y),f,!g", true),
            ("a=b,e in (y,z)", false),
        ] {
            assert_eq!(LabelSelector::parse(sel)?.matches(&o), want, "{sel}");
        }
        assert!(!LabelSelector::parse("a=b")?.matches(&json!({"metadata": {}})));
        assert!(LabelSelector::parse("e in (x").is_err());
        assert!(LabelSelector::parse("e of (x)").is_err());
        assert!(LabelSelector::parse("a=ns/name").is_err());
        assert!(LabelSelector::parse("a in (b, ns/name)").is_err());
        assert!(LabelSelector::parse("a in ()").is_err());
        assert!(LabelSelector::parse("a/b/c=d").is_err());
        assert!(LabelSelector::parse("-a").is_err());
        assert!(LabelSelector::parse("a=").is_ok());
        Ok(())
    }

    #[test]
    fn field_selector_paths() -> Result<(), String> {
        let o = obj(json!({}));
        for (sel, want) in [
            ("metadata.name=n", true),
            ("metadata.name==n", true),
            ("metadata.name=m", false),
            ("metadata.name!=m", true),
            ("metadata.namespace=ns,spec.type=ClusterIP", true),
            ("spec.missing=", true),
        ] {
            assert_eq!(FieldSelector::parse(sel)?.matches(&o), want, "{sel}");
        }
        assert!(FieldSelector::parse("metadata.name").is_err());
        Ok(())
    }
}
