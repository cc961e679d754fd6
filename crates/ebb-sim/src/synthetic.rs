//! Synthetic load patterns, as rate series with one-second intervals (expanded to Poisson
//! arrivals like any rate trace).
//!
//! | spec | meaning |
//! | --- | --- |
//! | `constant:RATE:DURATION` | a steady rate |
//! | `step:LOW:HIGH:AT:DURATION` | LOW req/s, then HIGH from AT on |
//! | `ramp:FROM:TO:DURATION` | linear from FROM to TO |
//! | `sine:MEAN:AMPLITUDE:PERIOD:DURATION` | a diurnal-style sine wave |
//! | `spikes:BASE:PEAK:EVERY:WIDTH:DURATION` | BASE, with PEAK for WIDTH every EVERY |
//! | `onoff:RATE:ON:OFF:DURATION` | RATE for ON, silence for OFF, repeated |
//!
//! Rates are requests per second; times are durations (`30s`, `5m`, `1h`, or seconds).

use crate::service::parse_duration;
use crate::workload::Workload;

fn rate(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("'{s}' is not a rate in requests per second"))
}

/// Parses a synthetic pattern spec into a workload.
pub fn parse(spec: &str) -> Result<Workload, String> {
    let p: Vec<&str> = spec.split(':').collect();
    let usage = "expected constant:RATE:DURATION, step:LOW:HIGH:AT:DURATION, ramp:FROM:TO:DURATION, sine:MEAN:AMPLITUDE:PERIOD:DURATION, spikes:BASE:PEAK:EVERY:WIDTH:DURATION or onoff:RATE:ON:OFF:DURATION";
    let seconds = |d: &str| -> Result<usize, String> {
        let s = parse_duration(d)?;
        if s < 1.0 {
            return Err(format!("'{d}' is shorter than a second"));
        }
        Ok(s.round() as usize)
    };
    let rates: Vec<f64> = match p.as_slice() {
        ["constant", r, d] => vec![rate(r)?; seconds(d)?],
        ["step", lo, hi, at, d] => {
            let (lo, hi, at) = (rate(lo)?, rate(hi)?, parse_duration(at)?);
            (0..seconds(d)?)
                .map(|s| if (s as f64) < at { lo } else { hi })
                .collect()
        }
        ["ramp", from, to, d] => {
            let (a, b, n) = (rate(from)?, rate(to)?, seconds(d)?);
            (0..n)
                .map(|s| a + (b - a) * (s as f64 + 0.5) / n as f64)
                .collect()
        }
        ["sine", mean, amp, period, d] => {
            let (m, a, per) = (rate(mean)?, rate(amp)?, parse_duration(period)?);
            if a > m {
                return Err(format!(
                    "sine amplitude {a} exceeds its mean {m}: rates would go negative"
                ));
            }
            (0..seconds(d)?)
                .map(|s| m + a * (2.0 * std::f64::consts::PI * (s as f64 + 0.5) / per).sin())
                .collect()
        }
        ["spikes", base, peak, every, width, d] => {
            let (b, pk, ev, w) = (
                rate(base)?,
                rate(peak)?,
                parse_duration(every)?,
                parse_duration(width)?,
            );
            if ev <= 0.0 {
                return Err("spike interval must be positive".into());
            }
            (0..seconds(d)?)
                .map(|s| if (s as f64) % ev >= ev - w { pk } else { b })
                .collect()
        }
        ["onoff", r, on, off, d] => {
            let (r, on, off) = (rate(r)?, parse_duration(on)?, parse_duration(off)?);
            if on + off <= 0.0 {
                return Err("on + off must be positive".into());
            }
            (0..seconds(d)?)
                .map(|s| if (s as f64) % (on + off) < on { r } else { 0.0 })
                .collect()
        }
        _ => return Err(format!("'{spec}': {usage}")),
    };
    Ok(Workload::Rate {
        interval: 1.0,
        rates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let Workload::Rate { rates, .. } = parse("step:10:50:60s:2m").unwrap() else {
            panic!()
        };
        assert_eq!(rates.len(), 120);
        assert_eq!((rates[59], rates[60]), (10.0, 50.0));
        let Workload::Rate { rates, .. } = parse("onoff:5:10s:20s:60s").unwrap() else {
            panic!()
        };
        assert_eq!((rates[9], rates[10], rates[30]), (5.0, 0.0, 5.0));
        let Workload::Rate { rates, .. } = parse("spikes:1:100:60s:5s:120s").unwrap() else {
            panic!()
        };
        assert_eq!(
            (rates[54], rates[55], rates[59], rates[60]),
            (1.0, 100.0, 100.0, 1.0)
        );
        assert!(parse("sine:10:20:1h:2h").is_err());
        assert!(parse("square:1").unwrap_err().contains("expected"));
    }
}
