//! Label selectors in their string form (`app=model,tier in (a,b),!canary`), as a `/scale`
//! subresource's `status.selector` gives them, parsed into kube's typed [`Selector`] so that
//! pods can be matched in the watch cache instead of asking the API server to filter a LIST.

use kube::core::{Expression, Selector};
use std::collections::BTreeSet;

/// Why a selector string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("label selector {selector:?}: {why}")]
pub struct SelectorError {
    /// The whole selector.
    pub selector: String,
    /// What is wrong with it.
    pub why: String,
}

/// Parses Kubernetes' selector syntax: terms separated by commas, each `k=v`, `k==v`, `k!=v`,
/// `k in (v1,v2)`, `k notin (v1,v2)`, `k` or `!k`. The empty string selects everything.
pub fn parse(selector: &str) -> Result<Selector, SelectorError> {
    let fail = |why: String| SelectorError {
        selector: selector.to_string(),
        why,
    };
    let mut expressions = Vec::new();
    for term in split_terms(selector).map_err(fail)? {
        expressions.push(expression(term).map_err(fail)?);
    }
    Ok(expressions.into_iter().collect())
}

/// Splits at the commas that are outside parentheses.
fn split_terms(s: &str) -> Result<Vec<&str>, String> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0u32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' if depth == 0 => depth = 1,
            '(' => return Err("nested parentheses".into()),
            ')' if depth == 1 => depth = 0,
            ')' => return Err("a ')' without its '('".into()),
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("a '(' without its ')'".into());
    }
    terms.push(&s[start..]);
    if terms.len() == 1 && terms[0].trim().is_empty() {
        return Ok(Vec::new());
    }
    Ok(terms)
}

fn expression(term: &str) -> Result<Expression, String> {
    let t = term.trim();
    if let Some(key) = t.strip_prefix('!') {
        return Ok(Expression::DoesNotExist(name(key)?));
    }
    if let Some((k, v)) = t.split_once("!=") {
        return Ok(Expression::NotEqual(name(k)?, value(v)?));
    }
    if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
        return Ok(Expression::Equal(name(k)?, value(v)?));
    }
    if let Some((k, set)) = t.split_once(" notin ") {
        return Ok(Expression::NotIn(name(k)?, values(set)?));
    }
    if let Some((k, set)) = t.split_once(" in ") {
        return Ok(Expression::In(name(k)?, values(set)?));
    }
    Ok(Expression::Exists(name(t)?))
}

/// A label key: optional DNS prefix and `/`, then a name of letters, digits, `-`, `_`, `.`.
fn name(k: &str) -> Result<String, String> {
    let k = k.trim();
    let ok = !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(k.to_string())
    } else {
        Err(format!("{k:?} is not a label key"))
    }
}

/// A label value: at most 63 letters, digits, `-`, `_`, `.` (may be empty).
fn value(v: &str) -> Result<String, String> {
    let v = v.trim();
    let ok = v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!("{v:?} is not a label value"))
    }
}

fn values(set: &str) -> Result<BTreeSet<String>, String> {
    let inner = set
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("{set:?} is not a parenthesized set of values"))?;
    inner.split(',').map(value).collect()
}

#[cfg(test)]
mod tests {
    use super::parse;
    use kube::core::{Expression, Selector, SelectorExt};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_every_operator() {
        let s = parse("app=model, tier in (a,b),env notin (dev),!canary,track,x!=y,z==w")
            .expect("valid");
        let good = labels(&[
            ("app", "model"),
            ("tier", "b"),
            ("env", "prod"),
            ("track", "1"),
            ("z", "w"),
        ]);
        assert!(s.matches(&good));
        let mut canary = good.clone();
        canary.insert("canary".into(), "yes".into());
        assert!(!s.matches(&canary));
        let mut other_tier = good.clone();
        other_tier.insert("tier".into(), "c".into());
        assert!(!s.matches(&other_tier));
        let mut x_is_y = good;
        x_is_y.insert("x".into(), "y".into());
        assert!(!s.matches(&x_is_y));
    }

    #[test]
    fn the_empty_selector_selects_all_and_bad_ones_say_why() {
        assert!(parse("").expect("empty").selects_all());
        for bad in ["app in (a", "app in a,b)", "app=mo del", "=x", "a in ((b))"] {
            let e = parse(bad).expect_err(bad);
            assert_eq!(e.selector, bad);
            assert!(!e.why.is_empty());
        }
    }

    fn key() -> impl Strategy<Value = String> {
        "[a-z]([a-z0-9.-]{0,8}/)?[a-z0-9_-]{1,8}"
    }

    fn expr() -> impl Strategy<Value = Expression> {
        let set = proptest::collection::btree_set("[a-z0-9]{1,5}", 1..4);
        prop_oneof![
            (key(), "[a-z0-9]{0,6}").prop_map(|(k, v)| Expression::Equal(k, v)),
            (key(), "[a-z0-9]{0,6}").prop_map(|(k, v)| Expression::NotEqual(k, v)),
            (key(), set.clone()).prop_map(|(k, s)| Expression::In(k, s)),
            (key(), set).prop_map(|(k, s)| Expression::NotIn(k, s)),
            key().prop_map(Expression::Exists),
            key().prop_map(Expression::DoesNotExist),
        ]
    }

    proptest! {
        /// What kube prints, this parser reads back to the same selector.
        #[test]
        fn round_trips_kubes_own_format(exprs in proptest::collection::vec(expr(), 0..6)) {
            let s: Selector = exprs.into_iter().collect();
            prop_assert_eq!(parse(&s.to_string()).expect("kube's own format"), s);
        }

        /// Arbitrary text never panics.
        #[test]
        fn never_panics(text in ".{0,80}") {
            let _ = parse(&text);
        }
    }
}
