//! Times `slo::hedge::extra_starts`, the pricing of extra starts in a short decision, with
//! starts in progress: `missing` replicas short and twice as many starting, their ages 0.137 s
//! apart (each its own cohort, the costliest case; a decision's starts begin together and
//! share one). Run: `cargo run --release -p ebb-core --example hedge_pass`

use ebb_core::slo::hedge::extra_starts;
use std::hint::black_box;
use std::time::Instant;

const CALLS: u32 = 100;

fn main() {
    for missing in [1u32, 4, 8, 20, 50] {
        let starting: Vec<f64> = (0..2 * missing)
            .map(|i| 5.0 + f64::from(i) * 0.137)
            .collect();
        let began = Instant::now();
        let mut extra = 0;
        for _ in 0..CALLS {
            extra = extra_starts(missing, black_box(&starting), 100.0, 21.7, 9.0, 1000);
        }
        println!(
            "missing {missing:>2}, starting {:>3}: {:>9.1?} a call ({extra} extra)",
            starting.len(),
            began.elapsed() / CALLS
        );
    }
}
