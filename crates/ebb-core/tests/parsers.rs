//! Stable-toolchain fuzzing of the parsers (the nightly libFuzzer targets live in `fuzz/`):
//! arbitrary text never panics the quantity, policy or conformance-case parsers.

use ebb_core::quantity::{parse_milli, Quantity};
use ebb_core::Policy;
use proptest::prelude::*;

fn yamlish() -> impl Strategy<Value = String> {
    // Fragments of real policies, shuffled and mangled, reach deeper than random bytes.
    let words = prop::sample::select(vec![
        "minReplicas:",
        "maxReplicas:",
        "metrics:",
        "- type: Pods",
        "pods:",
        "metric:",
        "name: rps",
        "target:",
        "type: AverageValue",
        "averageValue:",
        "behavior:",
        "scaleUp:",
        "scaleDown:",
        "stabilizationWindowSeconds:",
        "policies:",
        "- type: Percent",
        "value:",
        "periodSeconds:",
        "selectPolicy:",
        "concurrency:",
        "targetPerReplica:",
        "scaleToZero:",
        "inferenceLag:",
        "externalCount:",
        "mode: backlog",
        "tolerance:",
        "-1",
        "0",
        "3",
        "1e400",
        ".nan",
        "NaN",
        "500m",
        "9E",
        "{",
        "}",
        "[",
        "]",
        "\n",
        "  ",
        ": ",
        "'",
        "\"",
        "~",
        "&a",
        "*a",
        "!tag",
    ]);
    prop::collection::vec(words, 0..40).prop_map(|w| w.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn quantity_parser_never_panics(s in "\\PC{0,40}") {
        let _ = parse_milli(&s);
    }

    #[test]
    fn quantities_print_back_to_the_same_value(milli in any::<i64>()) {
        let q = Quantity::from_milli(milli);
        prop_assert_eq!(parse_milli(&q.to_string()), Ok(milli));
    }

    #[test]
    fn policy_parser_never_panics(text in yamlish()) {
        if let Ok(policy) = Policy::from_yaml(&text) {
            let again = Policy::from_spec(&policy.to_spec());
            prop_assert_eq!(again.as_ref(), Ok(&policy));
        }
    }

    #[test]
    fn conformance_cases_never_panic(text in yamlish()) {
        let _ = ebb_core::conformance::run_case("prop", &format!("kind: replicas\n{text}"));
        let _ = ebb_core::conformance::run_case("prop", &format!("kind: behavior\n{text}"));
    }
}
