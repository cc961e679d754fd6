#![no_main]
//! The pod-scrape exposition parser never panics on any text, and every sample it returns
//! has a valid metric name. The parser's file is included directly, so that this target
//! builds nothing else.
use libfuzzer_sys::fuzz_target;

#[path = "../../crates/ebb-proxy/src/exposition.rs"]
mod exposition;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(samples) = exposition::parse(text) {
            for (name, _, _) in samples {
                assert!(!name.is_empty());
                assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'));
            }
        }
    }
});
