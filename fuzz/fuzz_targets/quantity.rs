#![no_main]
//! Quantity parsing never panics, and what parses prints back to the same milli-value.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(q) = text.parse::<ebb_core::quantity::Quantity>() {
            let again = ebb_core::quantity::Quantity::from_milli(q.milli());
            assert_eq!(again.to_string().parse::<ebb_core::quantity::Quantity>().map(|q| q.milli()), Ok(q.milli()));
        }
    }
});
