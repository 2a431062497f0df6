use lockstep_config::{MethodSet, RequestKind};
use proptest::prelude::*;

use super::{MethodIndex, default_kind};

#[test]
fn get_head_options_are_reads() {
    for method in ["GET", "HEAD", "OPTIONS"] {
        assert_eq!(default_kind(method), RequestKind::Read, "{method}");
    }
}

#[test]
fn standard_writes_are_logical() {
    for method in ["POST", "PUT", "PATCH", "DELETE", "TRACE", "CONNECT"] {
        assert_eq!(default_kind(method), RequestKind::Logical, "{method}");
    }
}

#[test]
fn custom_methods_are_logical() {
    for method in [
        "PROPFIND", "MKCOL", "PURGE", "LOCK", "UNLOCK", "BREW", "M-SEARCH",
    ] {
        assert_eq!(default_kind(method), RequestKind::Logical, "{method}");
    }
}

#[test]
fn methods_are_case_sensitive() {
    for method in ["get", "Get", "head", "options", "GET ", ""] {
        assert_eq!(default_kind(method), RequestKind::Logical, "{method:?}");
    }
}

fn only(methods: &[&str]) -> MethodSet {
    MethodSet::Only(methods.iter().map(|m| (*m).to_owned()).collect())
}

#[test]
fn index_keeps_config_order_and_any_rules() {
    let sets = [
        only(&["POST"]),
        MethodSet::Any,
        only(&["GET", "POST"]),
        only(&["PURGE"]),
        MethodSet::Any,
    ];
    let index = MethodIndex::new(&sets);
    assert_eq!(index.candidates("POST"), [0, 1, 2, 4]);
    assert_eq!(index.candidates("GET"), [1, 2, 4]);
    assert_eq!(index.candidates("PURGE"), [1, 3, 4]);
    assert_eq!(index.candidates("BREW"), [1, 4]);
    assert_eq!(index.candidates("post"), [1, 4]);
}

#[test]
fn index_without_any_rule_has_no_candidates_for_other_methods() {
    let index = MethodIndex::new(&[only(&["PUT"])]);
    assert_eq!(index.candidates("PUT"), [0]);
    assert!(index.candidates("DELETE").is_empty());
}

proptest! {
    #[test]
    fn default_kind_is_read_iff_get_head_or_options(
        method in prop_oneof![
            Just("GET".to_owned()),
            Just("HEAD".to_owned()),
            Just("OPTIONS".to_owned()),
            "[A-Za-z-]{1,10}",
        ],
    ) {
        let read = ["GET", "HEAD", "OPTIONS"].contains(&method.as_str());
        prop_assert_eq!(default_kind(&method) == RequestKind::Read, read);
    }

    #[test]
    fn index_candidates_are_exactly_the_accepting_rules_in_order(
        sets in proptest::collection::vec(
            prop_oneof![
                Just(MethodSet::Any),
                proptest::sample::subsequence(vec!["GET", "POST", "PUT", "PURGE"], 0..=4)
                    .prop_map(|ms| only(&ms)),
            ],
            0..8,
        ),
        method in prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("PURGE"), Just("BREW")],
    ) {
        let expected: Vec<usize> = sets
            .iter()
            .enumerate()
            .filter(|(_, set)| match set {
                MethodSet::Any => true,
                MethodSet::Only(ms) => ms.iter().any(|m| m == method),
            })
            .map(|(i, _)| i)
            .collect();
        let index = MethodIndex::new(&sets);
        prop_assert_eq!(index.candidates(method), expected.as_slice());
    }
}
