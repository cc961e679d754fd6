//! Kubernetes quantities ("300m", "1.5k", "2Gi", "1e3"): the units HPA targets are written in.
//!
//! HPA computes in integer milli-units (`Quantity.MilliValue()`, rounded up), so the core keeps
//! the exact milli-value rather than a float: that is what makes its results match HPA's to the
//! replica.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Why a quantity string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    /// The string is empty.
    #[error("empty quantity")]
    Empty,
    /// The number part is not a decimal number.
    #[error("'{0}' is not a number with an optional suffix (like 500m, 1.5k, 2Gi, 1e3)")]
    Malformed(String),
    /// The suffix is not one Kubernetes knows.
    #[error("unknown suffix '{suffix}' in '{input}' (known: n u m k M G T P E Ki Mi Gi Ti Pi Ei, or an exponent e3)")]
    UnknownSuffix {
        /// The whole input.
        input: String,
        /// The suffix found.
        suffix: String,
    },
    /// The value does not fit in 64-bit milli-units.
    #[error("'{0}' is too large")]
    TooLarge(String),
}

/// A parsed quantity: its exact value in milli-units (rounded up, as Kubernetes does) and the
/// text it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity {
    milli: i64,
    text: String,
}

impl Quantity {
    /// A quantity of `milli` thousandths, printed canonically.
    pub fn from_milli(milli: i64) -> Quantity {
        Quantity {
            milli,
            text: milli_text(milli),
        }
    }

    /// The value in milli-units, as HPA's `MilliValue()`.
    pub fn milli(&self) -> i64 {
        self.milli
    }

    /// The value as a float, for display and for non-HPA arithmetic.
    pub fn as_f64(&self) -> f64 {
        self.milli as f64 / 1000.0
    }
}

/// `milli` thousandths in canonical form ("1.5", "-0.25", "3"), in one allocation and
/// without the formatting machinery: every decision reports each metric's current value this
/// way, and `write!` took most of a plain decision's text.
pub fn milli_text(milli: i64) -> String {
    let abs = milli.unsigned_abs();
    let (whole, frac) = (abs / 1000, abs % 1000);
    let mut text = String::with_capacity(26);
    if milli < 0 {
        text.push('-');
    }
    push_decimal(&mut text, whole);
    if frac != 0 {
        let digits = [frac / 100, frac / 10 % 10, frac % 10];
        let significant = digits
            .iter()
            .rposition(|d| *d != 0)
            .map_or(0, |last| last + 1);
        text.push('.');
        for digit in &digits[..significant] {
            push_digit(&mut text, *digit);
        }
    }
    text
}

/// `n` in decimal digits.
fn push_decimal(text: &mut String, n: u64) {
    let mut digits = [0u64; 20];
    let (mut rest, mut count) = (n, 0);
    loop {
        digits[count] = rest % 10;
        count += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for digit in digits[..count].iter().rev() {
        push_digit(text, *digit);
    }
}

/// One decimal digit (`digit` below 10).
fn push_digit(text: &mut String, digit: u64) {
    text.push(char::from(b'0' + digit as u8));
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let milli = parse_milli(s)?;
        Ok(Quantity {
            milli,
            text: s.trim().to_string(),
        })
    }
}

impl Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Float(f64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Int(i) => i.to_string(),
            Raw::Float(f) => {
                if !f.is_finite() {
                    return Err(serde::de::Error::custom(
                        "a quantity must be a finite number",
                    ));
                }
                format!("{f}")
            }
            Raw::Text(t) => t,
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses a Kubernetes quantity into milli-units, rounding up like `Quantity.MilliValue()`.
pub fn parse_milli(input: &str) -> Result<i64, QuantityError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(QuantityError::Empty);
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let negative = match bytes[0] {
        b'-' => {
            i = 1;
            true
        }
        b'+' => {
            i = 1;
            false
        }
        _ => false,
    };
    // Mantissa digits, with at most one decimal point; kept as an exact integer.
    let mut mantissa: i128 = 0;
    let mut frac_digits: i32 = 0;
    let mut seen_digit = false;
    let mut seen_point = false;
    let mut significant = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_digit() {
            seen_digit = true;
            if significant < 30 {
                mantissa = mantissa * 10 + i128::from(c - b'0');
                if mantissa != 0 {
                    significant += 1;
                }
                if seen_point {
                    frac_digits += 1;
                }
            } else if !seen_point {
                return Err(QuantityError::TooLarge(s.to_string()));
            }
            // Digits beyond 30 significant ones after the point are below a milli-unit's
            // resolution for any representable value; they only matter for rounding up.
            else if c != b'0' {
                mantissa += 1;
                significant = 31;
            }
        } else if c == b'.' && !seen_point {
            seen_point = true;
        } else {
            break;
        }
        i += 1;
    }
    if !seen_digit {
        return Err(QuantityError::Malformed(s.to_string()));
    }
    let suffix = &s[i..];
    let (exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        other => {
            let exp = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))
                .and_then(|e| e.parse::<i32>().ok())
                .filter(|e| (-40..=40).contains(e));
            match exp {
                Some(e) => (e, 0),
                None if other.starts_with(['e', 'E']) => {
                    return Err(QuantityError::Malformed(s.to_string()))
                }
                None => {
                    return Err(QuantityError::UnknownSuffix {
                        input: s.to_string(),
                        suffix: other.to_string(),
                    })
                }
            }
        }
    };
    // milli = mantissa * 10^(exp10 + 3 - frac_digits) * 2^exp2, rounded up.
    let too_large = || QuantityError::TooLarge(s.to_string());
    let mut value = mantissa.checked_mul(1i128 << exp2).ok_or_else(too_large)?;
    let scale = exp10 + 3 - frac_digits;
    if scale >= 0 {
        for _ in 0..scale {
            value = value.checked_mul(10).ok_or_else(too_large)?;
        }
    } else {
        let mut divisor: i128 = 1;
        for _ in 0..(-scale) {
            divisor = match divisor.checked_mul(10) {
                Some(d) => d,
                None => {
                    // Below any milli-unit: rounds up to 1 when non-zero.
                    value = i128::from(value != 0);
                    divisor = 1;
                    break;
                }
            };
        }
        value = (value + divisor - 1) / divisor;
    }
    let value = if negative { -value } else { value };
    i64::try_from(value).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milli_text_writes_what_the_formatter_writes() {
        let formatted = |milli: i64| {
            let sign = if milli < 0 { "-" } else { "" };
            let abs = milli.unsigned_abs();
            let (whole, mut frac) = (abs / 1000, abs % 1000);
            if frac == 0 {
                return format!("{sign}{whole}");
            }
            let mut digits = 3;
            while frac % 10 == 0 {
                frac /= 10;
                digits -= 1;
            }
            format!("{sign}{whole}.{frac:0digits$}")
        };
        let edges = [
            0, 1, -1, 5, 10, 100, 999, 1000, 1001, 1010, 1100, -1005, 12_345_678,
        ];
        let extremes = [i64::MAX, i64::MIN, i64::MIN + 1, i64::MAX - 999];
        for milli in edges.into_iter().chain(extremes).chain(-3000..3000) {
            assert_eq!(milli_text(milli), formatted(milli), "{milli}");
        }
    }

    #[test]
    fn parses_suffixes_exactly() {
        assert_eq!(parse_milli("300m"), Ok(300));
        assert_eq!(parse_milli("2"), Ok(2000));
        assert_eq!(parse_milli("1.5k"), Ok(1_500_000));
        assert_eq!(parse_milli("1Ki"), Ok(1_024_000));
        assert_eq!(parse_milli("1e3"), Ok(1_000_000));
        assert_eq!(parse_milli("20666m"), Ok(20666));
        assert_eq!(parse_milli("-2"), Ok(-2000));
        assert_eq!(parse_milli("0.5"), Ok(500));
        assert_eq!(parse_milli(".5"), Ok(500));
    }

    #[test]
    fn rounds_up_below_a_milli() {
        assert_eq!(parse_milli("1n"), Ok(1));
        assert_eq!(parse_milli("1500u"), Ok(2));
        assert_eq!(parse_milli("0.0001"), Ok(1));
        assert_eq!(parse_milli("0"), Ok(0));
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        assert_eq!(parse_milli(""), Err(QuantityError::Empty));
        assert!(matches!(
            parse_milli("abc"),
            Err(QuantityError::Malformed(_))
        ));
        assert!(matches!(
            parse_milli("5x"),
            Err(QuantityError::UnknownSuffix { .. })
        ));
        assert!(matches!(
            parse_milli("1e"),
            Err(QuantityError::Malformed(_))
        ));
        assert!(matches!(parse_milli("9E"), Err(QuantityError::TooLarge(_))));
        assert!(matches!(
            parse_milli("99999999999999999999999999999999999"),
            Err(QuantityError::TooLarge(_))
        ));
    }

    #[test]
    fn prints_decimals() {
        assert_eq!(Quantity::from_milli(100).to_string(), "0.1");
        assert_eq!(Quantity::from_milli(20666).to_string(), "20.666");
        assert_eq!(Quantity::from_milli(-1500).to_string(), "-1.5");
        assert_eq!(Quantity::from_milli(3000).to_string(), "3");
    }

    #[test]
    fn deserializes_numbers_and_strings() {
        let q: Quantity = serde_yaml::from_str("30").unwrap();
        assert_eq!(q.milli(), 30_000);
        let q: Quantity = serde_yaml::from_str("\"500m\"").unwrap();
        assert_eq!(q.milli(), 500);
        let q: Quantity = serde_yaml::from_str("2.5").unwrap();
        assert_eq!(q.milli(), 2500);
    }
}
