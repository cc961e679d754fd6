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
//! | `flashes:BASE:PEAK:GAP:WIDTH:DURATION` | BASE, with PEAK for WIDTH at random times, GAP apart on average |
//!
//! `flashes` are the bursts no clock predicts (a link on a front page, a batch job someone
//! starts): their starts are a Poisson process drawn from a fixed seed, so every policy and
//! every `--seed` meets the same flashes (the seed draws the arrivals within them).
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
    let usage = "expected constant:RATE:DURATION, step:LOW:HIGH:AT:DURATION, ramp:FROM:TO:DURATION, sine:MEAN:AMPLITUDE:PERIOD:DURATION, spikes:BASE:PEAK:EVERY:WIDTH:DURATION, onoff:RATE:ON:OFF:DURATION or flashes:BASE:PEAK:GAP:WIDTH:DURATION";
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
        ["flashes", base, peak, gap, width, d] => {
            let (b, pk, gap, w) = (
                rate(base)?,
                rate(peak)?,
                parse_duration(gap)?,
                parse_duration(width)?,
            );
            if gap <= 0.0 {
                return Err("the mean gap between flashes must be positive".into());
            }
            flashes(b, pk, gap, w, seconds(d)?)
        }
        _ => return Err(format!("'{spec}': {usage}")),
    };
    Ok(Workload::Rate {
        interval: 1.0,
        rates,
    })
}

/// BASE req/s with PEAK for `width` seconds from each flash's start; the starts a Poisson
/// process of mean gap `gap` seconds, drawn from a fixed seed (SplitMix64, so that the same
/// spec gives the same flashes on every platform and version).
fn flashes(base: f64, peak: f64, gap: f64, width: f64, seconds: usize) -> Vec<f64> {
    let mut state: u64 = 0x0EBB_F1A5;
    let mut uniform = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        // In (0, 1]: the top 53 bits, shifted off zero.
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 + f64::EPSILON
    };
    let mut rates = vec![base; seconds];
    let mut at = -gap * uniform().ln();
    while (at as usize) < seconds {
        let end = ((at + width).ceil() as usize).min(seconds);
        for r in &mut rates[at as usize..end] {
            *r = peak;
        }
        at += -gap * uniform().ln();
    }
    rates
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
        // Flashes: as many as the mean gap says (a day at one an hour: 24, within chance),
        // each WIDTH long, the same every time.
        let Workload::Rate { rates, .. } = parse("flashes:10:100:1h:20s:1d").unwrap() else {
            panic!()
        };
        let starts = rates
            .windows(2)
            .filter(|w| w[0] == 10.0 && w[1] == 100.0)
            .count();
        assert!((12..=36).contains(&starts), "{starts} flashes");
        let at_peak = rates.iter().filter(|&&r| r == 100.0).count();
        assert!(
            at_peak >= starts * 20 && at_peak <= starts * 21 + 20,
            "{at_peak}"
        );
        assert_eq!(
            parse("flashes:10:100:1h:20s:1d"),
            parse("flashes:10:100:1h:20s:1d")
        );
        assert!(parse("flashes:10:100:0s:20s:1d").is_err());
        assert!(parse("sine:10:20:1h:2h").is_err());
        assert!(parse("square:1").unwrap_err().contains("expected"));
    }
}
