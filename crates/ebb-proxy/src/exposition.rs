//! The Prometheus text exposition format (and OpenMetrics text), as pods serve it on
//! `/metrics`: `name{label="value",...} value [timestamp]`. Metric names may contain colons
//! (vLLM's `vllm:num_requests_running`); label values are quoted with `\\`, `\"` and `\n`
//! escapes; values may be `NaN`, `+Inf`, `-Inf`. Comment, `# HELP`, `# TYPE` and `# EOF` lines
//! are skipped. A malformed line is an error naming its number.

use std::collections::BTreeMap;

/// One sample: metric name, labels, value.
pub type Sample = (String, BTreeMap<String, String>, f64);

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Parses one sample line (not a comment).
fn parse_line(line: &str) -> Result<Sample, String> {
    let mut chars = line.char_indices().peekable();
    let name_end = match chars.peek() {
        Some((_, c)) if is_name_start(*c) => {
            let mut end = line.len();
            for (i, c) in line.char_indices() {
                if !is_name_char(c) {
                    end = i;
                    break;
                }
            }
            end
        }
        _ => return Err("a sample must start with a metric name".into()),
    };
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut s = after;
        loop {
            s = s.trim_start();
            if let Some(r) = s.strip_prefix('}') {
                rest = r;
                break;
            }
            let key_end = s
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .ok_or("unterminated label set")?;
            if key_end == 0 {
                return Err(format!(
                    "bad label name at '{}'",
                    s.chars().take(10).collect::<String>()
                ));
            }
            let key = s[..key_end].to_string();
            s = s[key_end..].trim_start();
            s = s
                .strip_prefix('=')
                .ok_or_else(|| format!("label {key} has no '='"))?;
            s = s
                .trim_start()
                .strip_prefix('"')
                .ok_or_else(|| format!("label {key}'s value is not quoted"))?;
            let mut value = String::new();
            let mut escaped = false;
            let mut close = None;
            for (i, c) in s.char_indices() {
                if escaped {
                    value.push(match c {
                        'n' => '\n',
                        other => other,
                    });
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    close = Some(i);
                    break;
                } else {
                    value.push(c);
                }
            }
            let close = close.ok_or_else(|| format!("label {key}'s value is not closed"))?;
            labels.insert(key, value);
            s = s[close + 1..].trim_start();
            if let Some(r) = s.strip_prefix(',') {
                s = r;
            } else if !s.starts_with('}') {
                return Err("labels must be separated by ','".into());
            }
        }
    }
    let mut fields = rest.split_whitespace();
    let value_text = fields.next().ok_or("a sample has no value")?;
    let value =
        parse_value(value_text).ok_or_else(|| format!("value '{value_text}' is not a number"))?;
    if let Some(ts) = fields.next() {
        if ts.parse::<f64>().is_err() {
            return Err(format!("timestamp '{ts}' is not a number"));
        }
    }
    if fields.next().is_some() {
        return Err("trailing text after the timestamp".into());
    }
    Ok((name, labels, value))
}

/// Parses a whole exposition.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    parse_where(text, |_| true)
}

/// Parses the samples whose metric name `keep` accepts. The other lines are passed over once
/// their name is read (an error in one of them is not reported): a controller that reads three
/// counters from a vLLM pod's page of a thousand histogram lines builds three samples, not a
/// thousand label maps.
pub fn parse_where(text: &str, keep: impl Fn(&str) -> bool) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(|c: char| !is_name_char(c)).unwrap_or(line.len());
        if line.starts_with(is_name_start) && !keep(&line[..name_end]) {
            continue;
        }
        out.push(parse_line(line).map_err(|e| format!("line {}: {e}", i + 1))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_format() {
        let text = "# HELP x help\n# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"m\",engine=\"0\"} 3\nup 1 1700000000000\nh_bucket{le=\"+Inf\"} 4\nq{path=\"a \\\"b\\\" \\\\ c\\n\"} NaN\nneg -Inf\n# EOF\n";
        let s = parse(text).unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(s[0].0, "vllm:num_requests_running");
        assert_eq!(s[0].1["model_name"], "m");
        assert_eq!(s[0].2, 3.0);
        assert_eq!(s[2].1["le"], "+Inf");
        assert_eq!(s[3].1["path"], "a \"b\" \\ c\n");
        assert!(s[3].2.is_nan());
        assert_eq!(s[4].2, f64::NEG_INFINITY);
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            parse("ok 1\n{x=\"1\"} 2\n").unwrap_err(),
            "line 2: a sample must start with a metric name"
        );
        assert!(parse("m{a=1} 2").unwrap_err().contains("not quoted"));
        assert!(parse("m{a=\"1} 2").unwrap_err().contains("not closed"));
        assert!(parse("m lots")
            .unwrap_err()
            .contains("'lots' is not a number"));
        assert!(parse("m").unwrap_err().contains("no value"));
    }

    #[test]
    fn only_the_names_asked_for_are_read() {
        let text = "a{x=\"1\"} 1\nb_bucket{le=\"0.1\"} 2\nb_bucket{bad 3\nc 4\na{x=\"2\"} 5\n";
        let s = parse_where(text, |n| n == "a" || n == "c").unwrap();
        let read: Vec<(&str, f64)> = s.iter().map(|(n, _, v)| (n.as_str(), *v)).collect();
        assert_eq!(read, [("a", 1.0), ("c", 4.0), ("a", 5.0)]);
        // A malformed line among those asked for is still an error naming its line.
        assert_eq!(
            parse_where(text, |n| n == "b_bucket").unwrap_err(),
            "line 3: label bad has no '='"
        );
    }

    proptest! {
        #[test]
        fn parse_where_keeps_what_parse_reads_of_those_names(text in "([a-c]( [0-9])?\n){0,12}") {
            if let Ok(all) = parse(&text) {
                let some = parse_where(&text, |n| n != "b").unwrap();
                let expected: Vec<Sample> = all.into_iter().filter(|s| s.0 != "b").collect();
                prop_assert_eq!(some, expected);
            }
        }

        #[test]
        fn never_panics(text in ".{0,300}") {
            let _ = parse(&text);
        }

        #[test]
        fn what_is_written_is_read(
            name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,20}",
            labels in prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", "[ -~]{0,12}", 0..4),
            value in -1e12f64..1e12,
        ) {
            let body: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))).collect();
            let line = if body.is_empty() { format!("{name} {value}") } else { format!("{name}{{{}}} {value}", body.join(",")) };
            let s = parse(&line).map_err(|e| TestCaseError::fail(format!("{line}: {e}")))?;
            prop_assert_eq!(s.len(), 1);
            prop_assert_eq!(&s[0].0, &name);
            prop_assert_eq!(&s[0].1, &labels);
            prop_assert_eq!(s[0].2, value);
        }
    }
}
