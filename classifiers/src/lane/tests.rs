use http::{HeaderMap, HeaderValue};

use super::{LaneKey, LaneSource};
use crate::test_support::lane;

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

fn key_of(template: &str, names: &[&str], bound: &[(&str, &str)], headers: &HeaderMap) -> LaneKey {
    LaneSource::new(Some(&lane(template)), names.iter().copied()).key(&params(bound), headers)
}

#[test]
fn global_lane_is_the_empty_key() {
    assert!(LaneKey::global().is_global());
    assert_eq!(LaneKey::global().as_str(), "");
    assert_eq!(LaneKey::new(""), LaneKey::global());
    assert_eq!(LaneKey::default(), LaneKey::global());
    assert!(!LaneKey::new("acct-7").is_global());
}

#[test]
fn display_names_the_global_lane() {
    assert_eq!(LaneKey::global().to_string(), "global");
    assert_eq!(LaneKey::new("acct-7").to_string(), "acct-7");
}

#[test]
fn no_template_is_the_global_lane() {
    let key = LaneSource::new(None, std::iter::empty()).key(&[], &HeaderMap::new());
    assert!(key.is_global());
}

#[test]
fn template_of_one_param_is_its_value() {
    let key = key_of("{id}", &["id"], &[("id", "7")], &HeaderMap::new());
    assert_eq!(key, LaneKey::new("7"));
}

#[test]
fn template_concatenates_literals_and_params() {
    let key = key_of(
        "org-{org}/repo-{repo}",
        &["org", "repo"],
        &[("org", "acme"), ("repo", "web")],
        &HeaderMap::new(),
    );
    assert_eq!(key, LaneKey::new("org-acme/repo-web"));
    let key = key_of("acct-{id}", &["id"], &[("id", "7")], &HeaderMap::new());
    assert_eq!(key, LaneKey::new("acct-7"));
}

#[test]
fn template_uses_params_by_name_not_position() {
    let key = key_of(
        "{b}-{a}",
        &["a", "b"],
        &[("a", "1"), ("b", "2")],
        &HeaderMap::new(),
    );
    assert_eq!(key, LaneKey::new("2-1"));
}

#[test]
fn literal_template_is_a_fixed_lane() {
    let source = LaneSource::new(Some(&lane("ledger")), std::iter::empty());
    assert!(matches!(source, LaneSource::Fixed(_)));
    assert_eq!(source.key(&[], &HeaderMap::new()), LaneKey::new("ledger"));
}

#[test]
fn header_lane_is_the_header_value() {
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", HeaderValue::from_static("t-42"));
    assert_eq!(
        key_of("header:X-Tenant", &[], &[], &headers),
        LaneKey::new("t-42")
    );
}

#[test]
fn header_lane_takes_the_first_value() {
    let mut headers = HeaderMap::new();
    headers.append("x-tenant", HeaderValue::from_static("first"));
    headers.append("x-tenant", HeaderValue::from_static("second"));
    assert_eq!(
        key_of("header:x-tenant", &[], &[], &headers),
        LaneKey::new("first")
    );
}

#[test]
fn missing_header_is_the_global_lane() {
    let mut headers = HeaderMap::new();
    headers.insert("x-other", HeaderValue::from_static("t-42"));
    assert!(key_of("header:x-tenant", &[], &[], &headers).is_global());
}

#[test]
fn utf8_header_value_is_kept_and_other_bytes_are_global() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-tenant",
        HeaderValue::from_bytes("zürich".as_bytes()).unwrap(),
    );
    assert_eq!(
        key_of("header:x-tenant", &[], &[], &headers),
        LaneKey::new("zürich")
    );
    headers.insert("x-tenant", HeaderValue::from_bytes(b"z\xfcrich").unwrap());
    assert!(key_of("header:x-tenant", &[], &[], &headers).is_global());
}

#[test]
fn unparsable_header_name_is_the_global_lane() {
    let headers = HeaderMap::new();
    assert!(key_of("header:bad name", &[], &[], &headers).is_global());
}
