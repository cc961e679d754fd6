#![no_main]
//! A conformance case of any content yields an outcome, never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ebb_core::conformance::run_case("fuzz", text);
    }
});
