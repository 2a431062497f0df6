use super::*;
use bytes::Bytes;
use lockstep_config::NoiseKind;
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
fn only_meaningful_headers_are_compared_unless_the_rule_adds_some() {
    // Per-instance headers differ between copies that agree: not compared by default.
    let a = resp(
        200,
        &[
            ("etag", "\"1\""),
            ("x-request-id", "a1"),
            ("server", "one"),
            ("set-cookie", "s=1"),
        ],
        "x",
    );
    let b = resp(
        200,
        &[
            ("etag", "\"2\""),
            ("x-request-id", "b2"),
            ("server", "two"),
            ("set-cookie", "s=2"),
        ],
        "x",
    );
    assert_eq!(compare_responses(&rule(), &a, &b), None);
    // `compare.headers` adds one back.
    let r = CompareRule {
        headers: vec!["etag".into()],
        ..rule()
    };
    assert!(matches!(
        compare_responses(&r, &a, &b),
        Some(Difference::Header { name, .. }) if name == "etag"
    ));
    // A meaningful header is compared, unless ignored.
    let a = resp(200, &[("location", "/accounts/1")], "x");
    let b = resp(200, &[("Location", "/accounts/2")], "x");
    assert!(matches!(
        compare_responses(&rule(), &a, &b),
        Some(Difference::Header { name, .. }) if name == "location"
    ));
    let r = CompareRule {
        ignore_headers: vec!["location".into()],
        ..rule()
    };
    assert_eq!(compare_responses(&r, &a, &b), None);
}

#[test]
fn media_types_compare_without_case_or_spacing_differences() {
    let a = resp(
        200,
        &[("content-type", "application/json; charset=utf-8")],
        "{}",
    );
    let b = resp(
        200,
        &[("content-type", "Application/JSON;charset=UTF-8")],
        "{}",
    );
    assert_eq!(compare_responses(&rule(), &a, &b), None);
    let c = resp(200, &[("content-type", "text/plain")], "{}");
    assert!(compare_responses(&rule(), &a, &c).is_some());
}

#[test]
fn numbers_compare_by_value_not_spelling() {
    let a = resp(200, &[], r#"{"balance":100,"rate":0.5}"#);
    let b = resp(200, &[], r#"{"rate":5e-1,"balance":100.0}"#);
    assert_eq!(compare_responses(&rule(), &a, &b), None);
    let c = resp(200, &[], r#"{"balance":101,"rate":0.5}"#);
    assert!(compare_responses(&rule(), &a, &c).is_some());
    // Large integers are compared exactly, not through a float.
    let d = resp(200, &[], "9007199254740993");
    let e = resp(200, &[], "9007199254740992");
    assert!(compare_responses(&rule(), &d, &e).is_some());
}

fn ctx(urls: &[&str]) -> CompareContext {
    let urls: Vec<url::Url> = urls.iter().map(|u| u.parse().unwrap()).collect();
    CompareContext::for_backends(&urls)
}

#[test]
fn each_backends_own_address_counts_as_the_primarys() {
    let c = ctx(&["http://127.0.0.1:33183", "http://127.0.0.1:35667"]);
    let a = resp(
        201,
        &[("location", "http://127.0.0.1:33183/d1/f1.txt")],
        r#"{"_links":{"self":{"href":"http://127.0.0.1:33183/d1/f1.txt"}}}"#,
    );
    let b = resp(
        201,
        &[("location", "http://127.0.0.1:35667/d1/f1.txt")],
        r#"{"_links":{"self":{"href":"http://127.0.0.1:35667/d1/f1.txt"}}}"#,
    );
    assert_eq!(compare_in(&c, &rule(), &a, &b), None);
    // Another path after the address is still a difference.
    let other = resp(
        201,
        &[("location", "http://127.0.0.1:35667/d1/f2.txt")],
        r#"{"_links":{"self":{"href":"http://127.0.0.1:35667/d1/f1.txt"}}}"#,
    );
    assert!(matches!(
        compare_in(&c, &rule(), &a, &other),
        Some(Difference::Header { name, .. }) if name == "location"
    ));
    // In HTML too.
    let a = resp(200, &[], "<a href=\"http://127.0.0.1:33183/x\">x</a>");
    let b = resp(200, &[], "<a href=\"http://127.0.0.1:35667/x\">x</a>");
    assert_eq!(compare_in(&c, &rule(), &a, &b), None);
    // Without the context, the addresses differ.
    assert!(compare_responses(&rule(), &a, &b).is_some());
}

#[test]
fn noise_kinds_make_values_of_that_kind_equal_wherever_they_are() {
    let a = resp(
        200,
        &[],
        r#"{"id":"123e4567-e89b-12d3-a456-426614174000","at":"2026-11-28T10:00:00.120Z","n":1764324000,"note":"made 2026-11-28T10:00:00Z"}"#,
    );
    let b = resp(
        200,
        &[],
        r#"{"id":"9b2f2a52-3c55-4c8e-9f59-0d6b1b5e7a11","at":"2026-11-28T10:00:00.118Z","n":1764324001,"note":"made 2026-11-28T10:00:01Z"}"#,
    );
    let r = CompareRule {
        noise: vec![NoiseKind::Timestamp, NoiseKind::Uuid],
        ..rule()
    };
    assert_eq!(compare_responses(&r, &a, &b), None);
    // Without the rule the first difference is shown, and the rule that would silence it.
    let d = compare_responses(&rule(), &a, &b).unwrap();
    assert!(
        matches!(&d, Difference::JsonBody { pointer, .. } if pointer == "/at"),
        "{d}"
    );
    assert_eq!(
        d.silencing_rule(&CompareContext::default()).as_deref(),
        Some("compare = { noise = [\"timestamp\"] }")
    );
    // A real difference next to noise still shows.
    let c = resp(
        200,
        &[],
        r#"{"id":"9b2f2a52-3c55-4c8e-9f59-0d6b1b5e7a11","at":"2026-11-28T10:00:00.118Z","n":1764324001,"note":"lost 2026-11-28T10:00:01Z"}"#,
    );
    assert!(matches!(
        compare_responses(&r, &a, &c),
        Some(Difference::JsonBody { pointer, .. }) if pointer == "/note"
    ));
}

#[test]
fn the_silencing_rule_generalizes_array_indices() {
    let d = Difference::JsonBody {
        pointer: "/items/3/count".into(),
        primary: "4".into(),
        backup: "5".into(),
    };
    assert_eq!(
        d.silencing_rule(&CompareContext::default()).as_deref(),
        Some("compare = { ignore_json = [\"/items/*/count\"] }")
    );
    let status = Difference::Status {
        primary: 200,
        backup: 409,
    };
    assert_eq!(status.silencing_rule(&CompareContext::default()), None);
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
            backup_len: 11,
            excerpts: Some(("hello world".into(), "hello there".into())),
            noise: None,
        })
    );
}

/// WsgiDAV's status pages (HTML) end with the moment they were made: the difference shows
/// both values and suggests the noise kind that silences it, not `status_only`.
#[test]
fn a_text_body_difference_shows_both_values_and_the_noise_kind_that_silences_it() {
    let page = |at: &str| {
        format!(
            "<html><body><h1>201 Created</h1>\n<hr/><a href='https://github.com/mar10/wsgidav/'>WsgiDAV/4.4.0</a> - {at}\n</body></html>"
        )
    };
    let a = resp(201, &[], &page("2026-12-02 18:48:50.368417"));
    let b = resp(201, &[], &page("2026-12-02 18:48:50.369273"));
    let d = compare_responses(&rule(), &a, &b).expect("the moments differ");
    let Difference::Body {
        excerpts: Some((p, q)),
        noise,
        ..
    } = &d
    else {
        panic!("a text body difference: {d:?}");
    };
    assert!(
        p.contains("18:48:50.368417") && q.contains("18:48:50.369273"),
        "{d}"
    );
    assert!(
        p.starts_with('…') && !p.contains("<html>"),
        "cut before: {p}"
    );
    assert_eq!(*noise, Some(NoiseKind::Timestamp));
    assert!(d.to_string().contains("backup \"…"), "{d}");
    assert_eq!(
        d.silencing_rule(&CompareContext::default()).as_deref(),
        Some("compare = { noise = [\"timestamp\"] }")
    );
    // Under that rule the pages are equal; a different text still differs, with no kind to
    // suggest.
    let timestamps = CompareRule {
        noise: vec![NoiseKind::Timestamp],
        ..rule()
    };
    assert_eq!(compare_responses(&timestamps, &a, &b), None);
    let other = resp(
        201,
        &[],
        &page("2026-12-02 18:48:50.369273").replace("201 Created", "204 Moved"),
    );
    let d = compare_responses(&timestamps, &a, &other).expect("the text differs");
    assert!(matches!(d, Difference::Body { noise: None, .. }), "{d:?}");
    assert_eq!(
        d.silencing_rule(&CompareContext::default()).as_deref(),
        Some("compare = { status_only = true }")
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
