//! Whether a request waits, and how the queue it finds is spread, when arrivals are burstier
//! than Poisson.
//!
//! Allen-Cunneen keeps Erlang C's chance of waiting and stretches every wait by
//! `(ca^2 + cs^2) / 2`. Against the simulator that is wrong both ways at moderate load: a clump
//! fills every slot, so more requests wait (65% against Erlang C's 43% at one replica of four
//! slots, 70% load, `ca^2` 4), and those that wait, wait less long (the stretch is
//! `(1 - rho) / (1 - sigma)`, 1.97 there, against 2.5); the two meet only in heavy traffic.
//!
//! Here the gaps between arrivals are a balanced two-phase hyperexponential with the measured
//! `ca^2` (Whitt 1982: the two-moment fit for `ca^2 >= 1`), and the queue in front of `c`
//! exponential servers is solved exactly as a quasi-birth-death process on (requests in the
//! system, the arrival's phase):
//!
//! - from `c` on, level `c + k` is `x_c R^k` with `R = l r'`, `l` the phases' rates,
//!   `r_j = alpha_j / (l_j + c mu (1 - sigma))`, and `sigma = r' l` the root of
//!   `sigma = A*(c mu (1 - sigma))` (GI/M/c; for the balanced hyperexponential,
//!   `1 - sigma = ((1 - 2 rho) + sqrt((1 - 2 rho)^2 + 8 rho (1 - rho) / (ca^2 + 1))) / 2`);
//! - below `c`, each level is the one beneath it times a 2x2 matrix, reduced from the top
//!   (linear level reduction), `O(c)` in all;
//! - an arrival comes from phase `j` at rate `l_j`, so it waits with probability
//!   `sum_{n >= c} x_n l / sum_n x_n l`, and finds `k` or more queued ahead with probability
//!   `sigma^k` given that it waits.
//!
//! With Poisson arrivals (`ca^2 = 1`) this is Erlang C and `sigma = rho`, exactly.
//!
//! The least-outstanding model (`dispatch.rs`) uses it, and is within 0.3 points of the
//! simulator wherever SLOs are planned with such arrivals. The planner keeps Allen-Cunneen:
//! sized with this, it beat KPA's defaults in fewer first-half runs (docs/slo.md).

/// What an arrival finds in front of `c` servers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Found {
    /// `P(W > 0)`.
    pub wait: f64,
    /// GI/M/c's `sigma`: given a wait, `k` or more are queued ahead with probability
    /// `sigma^k`; the queue drains at `c mu (1 - sigma)` (`rho` for Poisson arrivals).
    pub sigma: f64,
}

/// `sigma` for balanced hyperexponential gaps with squared coefficient of variation `ca2`
/// (at least 1) at utilization `rho`: the root of `sigma = A*(c mu (1 - sigma))` below 1.
pub fn sigma(rho: f64, ca2: f64) -> f64 {
    let rho = rho.clamp(0.0, 1.0);
    let b = 1.0 - 2.0 * rho;
    let drain = 0.5 * (b + (b * b + 8.0 * rho * (1.0 - rho) / (ca2.max(1.0) + 1.0)).sqrt());
    (1.0 - drain).clamp(0.0, 1.0)
}

/// What an arrival finds at `servers` exponential servers (rate 1 each) with `offered`
/// Erlangs arriving in gaps of squared coefficient of variation `ca2` (at least 1; 1 is
/// Poisson). Every arrival waits at or past the servers' capacity.
pub fn found(servers: u32, offered: f64, ca2: f64) -> Found {
    if offered <= 0.0 {
        return Found {
            wait: 0.0,
            sigma: 0.0,
        };
    }
    let c = f64::from(servers);
    if servers == 0 || offered >= c {
        return Found {
            wait: 1.0,
            sigma: 1.0,
        };
    }
    let rho = offered / c;
    let sigma = sigma(rho, ca2);
    // The two phases: chosen with probability alpha, each ending (an arrival) at rate l.
    let p = 0.5 * (1.0 + ((ca2.max(1.0) - 1.0) / (ca2.max(1.0) + 1.0)).sqrt());
    let alpha = [p, 1.0 - p];
    let l = [2.0 * p * offered, 2.0 * (1.0 - p) * offered];
    let r = [
        alpha[0] / (l[0] + c * (1.0 - sigma)),
        alpha[1] / (l[1] + c * (1.0 - sigma)),
    ];
    // Level c, closed by the levels above: its local block plus `R` times the drain, `c R`.
    let mut below = sub(
        mul(outer(l, r), c),
        diag([l[0] + c, l[1] + c]), // L_c = -diag(l) - c I
    );
    // From the top down: x_n = x_{n-1} M_n with M_n = U (-(L_n + M_{n+1} D_{n+1}))^-1, U the
    // arrivals' block `l alpha'`, D the departures' `n I`. `chain[n]` keeps M_n.
    let up = outer(l, alpha);
    let mut chain = vec![[[0.0; 2]; 2]; servers as usize + 1];
    for n in (1..=servers).rev() {
        let m = matmul(up, inverse(neg(below)));
        chain[n as usize] = m;
        let level = f64::from(n - 1);
        below = add(
            diag([-(l[0] + level), -(l[1] + level)]),
            mul(m, f64::from(n)),
        );
    }
    // Level 0: x_0 (L_0 + M_1 D_1) = 0, its left null vector.
    let x0 = left_null(below);
    // Up the levels, summing the arrivals each one sees (rescaled before they overflow).
    let mut x = x0;
    let mut seen = dot(x, l);
    for m in chain.iter().skip(1) {
        x = vecmul(x, *m);
        seen += dot(x, l);
        if seen > 1e200 {
            x = [x[0] * 1e-200, x[1] * 1e-200];
            seen *= 1e-200;
        }
    }
    // x is now level c: the levels from c up see `x_c l / (1 - sigma)` arrivals.
    let at_capacity = dot(x, l);
    let waiting = at_capacity / (1.0 - sigma).max(1e-12);
    let total = seen - at_capacity + waiting;
    Found {
        wait: (waiting / total).clamp(0.0, 1.0),
        sigma,
    }
}

type Matrix = [[f64; 2]; 2];

fn outer(a: [f64; 2], b: [f64; 2]) -> Matrix {
    [[a[0] * b[0], a[0] * b[1]], [a[1] * b[0], a[1] * b[1]]]
}

fn diag(d: [f64; 2]) -> Matrix {
    [[d[0], 0.0], [0.0, d[1]]]
}

fn mul(m: Matrix, k: f64) -> Matrix {
    m.map(|row| row.map(|v| v * k))
}

fn neg(m: Matrix) -> Matrix {
    mul(m, -1.0)
}

fn add(a: Matrix, b: Matrix) -> Matrix {
    [
        [a[0][0] + b[0][0], a[0][1] + b[0][1]],
        [a[1][0] + b[1][0], a[1][1] + b[1][1]],
    ]
}

fn sub(a: Matrix, b: Matrix) -> Matrix {
    add(a, neg(b))
}

fn matmul(a: Matrix, b: Matrix) -> Matrix {
    [
        [
            a[0][0] * b[0][0] + a[0][1] * b[1][0],
            a[0][0] * b[0][1] + a[0][1] * b[1][1],
        ],
        [
            a[1][0] * b[0][0] + a[1][1] * b[1][0],
            a[1][0] * b[0][1] + a[1][1] * b[1][1],
        ],
    ]
}

fn inverse(m: Matrix) -> Matrix {
    let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    [
        [m[1][1] / det, -m[0][1] / det],
        [-m[1][0] / det, m[0][0] / det],
    ]
}

fn vecmul(x: [f64; 2], m: Matrix) -> [f64; 2] {
    [
        x[0] * m[0][0] + x[1] * m[1][0],
        x[0] * m[0][1] + x[1] * m[1][1],
    ]
}

fn dot(a: [f64; 2], b: [f64; 2]) -> f64 {
    a[0] * b[0] + a[1] * b[1]
}

/// A nonnegative `x` with `x m = 0` for a singular generator block `m` (its rows sum to 0).
fn left_null(m: Matrix) -> [f64; 2] {
    // x0 m00 + x1 m10 = 0.
    let (a, b) = (m[0][0], m[1][0]);
    if a.abs() + b.abs() < 1e-300 {
        return [1.0, 0.0];
    }
    let x = [b.abs(), a.abs()];
    let s = x[0] + x[1];
    [x[0] / s, x[1] / s]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::queueing::erlang_c;

    #[test]
    fn poisson_arrivals_give_erlang_c() {
        for (c, a) in [(1u32, 0.7), (4, 2.8), (8, 4.3), (40, 34.0), (200, 20.0)] {
            let got = found(c, a, 1.0);
            assert!((got.wait - erlang_c(c, a)).abs() < 1e-9, "{c} {a}: {got:?}");
            assert!((got.sigma - a / f64::from(c)).abs() < 1e-12);
        }
    }

    #[test]
    fn one_server_waits_with_probability_sigma() {
        // GI/M/1: P(W > 0) = sigma.
        for ca2 in [2.0, 4.0, 9.0] {
            let got = found(1, 0.7, ca2);
            assert!((got.wait - got.sigma).abs() < 1e-9, "{ca2}: {got:?}");
        }
    }

    #[test]
    fn matches_a_simulated_hyperexponential_queue() {
        // One FIFO queue, four exponential servers, 1,000,000 requests with balanced
        // hyperexponential gaps (a separate simulation): the share that waited.
        for (rho, ca2, simulated) in [(0.7, 4.0, 0.6502), (0.5, 4.0, 0.3721), (0.7, 2.0, 0.5291)] {
            let got = found(4, rho * 4.0, ca2);
            assert!((got.wait - simulated).abs() < 0.005, "{rho} {ca2}: {got:?}");
        }
        // sigma against the root of sigma = A*(c mu (1 - sigma)) found numerically.
        assert!((sigma(0.5, 4.0) - 0.6838).abs() < 1e-4);
        assert!((sigma(0.3, 2.0) - 0.3757).abs() < 1e-4);
    }

    #[test]
    fn bursts_wait_more_often_and_sizes_stay_finite() {
        for c in [1u32, 3, 16, 64, 1000] {
            for rho in [0.05, 0.3, 0.6, 0.9, 0.99] {
                let a = rho * f64::from(c);
                let poisson = found(c, a, 1.0).wait;
                let bursty = found(c, a, 4.0).wait;
                assert!(
                    bursty.is_finite() && (0.0..=1.0).contains(&bursty),
                    "{c} {rho}"
                );
                assert!(bursty >= poisson - 1e-12, "{c} {rho}: {bursty} < {poisson}");
            }
        }
        assert_eq!(found(4, 0.0, 4.0).wait, 0.0);
        assert_eq!(found(4, 4.0, 4.0).wait, 1.0);
    }
}
