#![no_main]
//! Policy parsing and validation never panic; a valid policy's normalized form is valid too.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(policy) = ebb_core::Policy::from_yaml(text) {
            let spec = policy.to_spec();
            let again = ebb_core::Policy::from_spec(&spec).expect("normalized form validates");
            assert_eq!(again, policy);
        }
    }
});
