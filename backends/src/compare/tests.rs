use super::*;
use bytes::Bytes;
use lockstep_journal::Header;

fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> ResponseRecord {
    ResponseRecord {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| Header::new(*n, Bytes::copy_from_slice(v.as_bytes())))
            .collect(),
        body: Bytes::copy_from_slice(body.as_bytes()),
    }
}

fn rule() -> CompareRule {
    CompareRule::default()
}

#[test]
fn equal_responses_have_no_difference() {
    let a = resp(
        200,
        &[("content-type", "application/json"), ("date", "x")],
        r#"{"a":1}"#,
    );
    let b = resp(
        200,
        &[("Content-Type", "application/json"), ("date", "y")],
        r#"{"a":1}"#,
    );
    assert_eq!(compare_responses(&rule(), &a, &b), None);
}

#[test]
fn status_difference_is_reported_first() {
    let a = resp(200, &[], "same");
    let b = resp(409, &[], "other");
    assert_eq!(
        compare_responses(&rule(), &a, &b),
        Some(Difference::Status {
            primary: 200,
            backup: 409
        })
    );
}

#[test]
fn status_only_ignores_bodies_and_headers() {
    let r = CompareRule {
        status_only: true,
        ..rule()
    };
    let a = resp(201, &[("etag", "1")], "a");
    let b = resp(201, &[("etag", "2")], "b");
    assert_eq!(compare_responses(&r, &a, &b), None);
}

#[test]
fn header_difference_names_the_header_unless_ignored() {
    let a = resp(200, &[("etag", "\"1\"")], "x");
    let b = resp(200, &[("etag", "\"2\"")], "x");
    assert!(matches!(
        compare_responses(&rule(), &a, &b),
        Some(Difference::Header { name, .. }) if name == "etag"
    ));
    let r = CompareRule {
        ignore_headers: vec!["etag".into()],
        ..rule()
    };
    assert_eq!(compare_responses(&r, &a, &b), None);
}

#[test]
fn json_bodies_compare_semantically_and_report_the_pointer() {
    let a = resp(200, &[], r#"{"id":1,"balance":10}"#);
    let b = resp(200, &[], r#"{ "balance": 10, "id": 1 }"#);
    assert_eq!(compare_responses(&rule(), &a, &b), None);

    let c = resp(200, &[], r#"{"id":1,"balance":11}"#);
    assert_eq!(
        compare_responses(&rule(), &a, &c),
        Some(Difference::JsonBody {
            pointer: "/balance".into(),
            primary: "10".into(),
            backup: "11".into()
        })
    );
}

#[test]
fn ignored_json_pointers_are_removed_including_wildcards() {
    let a = resp(
        200,
        &[],
        r#"{"items":[{"id":1,"at":"t1"},{"id":2,"at":"t2"}],"generated_at":"x"}"#,
    );
    let b = resp(
        200,
        &[],
        r#"{"items":[{"id":1,"at":"u1"},{"id":2,"at":"u2"}],"generated_at":"y"}"#,
    );
    let r = CompareRule {
        ignore_json: vec!["/items/*/at".into(), "/generated_at".into()],
        ..rule()
    };
    assert_eq!(compare_responses(&r, &a, &b), None);
    let only_top = CompareRule {
        ignore_json: vec!["/generated_at".into()],
        ..rule()
    };
    assert!(matches!(
        compare_responses(&only_top, &a, &b),
        Some(Difference::JsonBody { pointer, .. }) if pointer == "/items/0/at"
    ));
}

#[test]
fn non_json_bodies_report_the_first_differing_offset() {
    let a = resp(200, &[], "hello world");
    let b = resp(200, &[], "hello there");
    assert_eq!(
        compare_responses(&rule(), &a, &b),
        Some(Difference::Body {
            offset: 6,
            primary_len: 11,
            backup_len: 11
        })
    );
}

#[test]
fn arrays_of_different_length_differ() {
    let a = resp(200, &[], "[1,2]");
    let b = resp(200, &[], "[1,2,3]");
    assert_eq!(
        compare_responses(&rule(), &a, &b),
        Some(Difference::JsonBody {
            pointer: "/2".into(),
            primary: "(absent)".into(),
            backup: "3".into()
        })
    );
}
