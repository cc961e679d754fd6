#![no_main]
//! The pod-scrape exposition parser never panics on any text, and every sample it returns
//! has a valid metric name; reading only some names returns what a whole read returns of
//! them. The parser's file is included directly, so that this target
//! builds nothing else.
use libfuzzer_sys::fuzz_target;

#[path = "../../crates/ebb-proxy/src/exposition.rs"]
mod exposition;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let some = |name: &str| name.len() % 2 == 0;
        let kept = exposition::parse_where(text, some);
        if let Ok(samples) = exposition::parse(text) {
            let expected: Vec<_> = samples.iter().filter(|s| some(&s.0)).cloned().collect();
            for (name, _, _) in samples {
                assert!(!name.is_empty());
                assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'));
            }
            let kept = kept.expect("a page read whole reads in part");
            assert_eq!(kept.len(), expected.len());
            for (a, b) in kept.iter().zip(&expected) {
                assert!(a.0 == b.0 && a.1 == b.1 && (a.2 == b.2 || (a.2.is_nan() && b.2.is_nan())));
            }
        }
    }
});
