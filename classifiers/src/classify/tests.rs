use http::{HeaderMap, HeaderValue};
use lockstep_config::{CompareRule, IdempotencyRule, RequestKind, RouteRule};
use proptest::prelude::*;

use super::{Classification, Classifier, RouteMatch};
use crate::lane::LaneKey;
use crate::test_support::{RouteRuleExt, route};

use IdempotencyRule::{Off, Optional, Required};
use RequestKind::{Logical, Read};

fn classify(rules: Vec<RouteRule>, method: &str, path: &str) -> Classification {
    Classifier::new(rules).classify(method, path, &HeaderMap::new())
}

fn matched_index(c: &Classification) -> Option<usize> {
    c.route.as_ref().map(|m| m.index)
}

fn compare(ignore_headers: &[&str]) -> CompareRule {
    CompareRule {
        status_only: false,
        ignore_headers: ignore_headers.iter().map(|h| (*h).to_owned()).collect(),
        ignore_json: vec!["/updated_at".to_owned()],
        ..CompareRule::default()
    }
}

/// The example route table of the configuration guide.
fn guide_routes() -> Vec<RouteRule> {
    vec![
        route("POST /search").kind(Read),
        route("GET /counter/increment").kind(Logical),
        route("POST|PUT|DELETE /accounts/{id}/**")
            .kind(Logical)
            .lane("{id}")
            .idempotency(Required)
            .compare(compare(&["date", "etag"])),
        route("PROPFIND *").kind(Read),
    ]
}

#[test]
fn without_rules_methods_decide() {
    for method in ["GET", "HEAD", "OPTIONS"] {
        assert_eq!(classify(vec![], method, "/anything").kind, Read, "{method}");
    }
    for method in [
        "POST", "PUT", "PATCH", "DELETE", "PROPFIND", "MKCOL", "PURGE", "LOCK", "BREW",
    ] {
        assert_eq!(
            classify(vec![], method, "/anything").kind,
            Logical,
            "{method}"
        );
    }
    assert_eq!(classify(vec![], "get", "/anything").kind, Logical);
}

#[test]
fn no_match_gives_the_defaults() {
    let classifier = Classifier::new(guide_routes());
    let c = classifier.classify("PATCH", "/elsewhere", &HeaderMap::new());
    assert_eq!(
        c,
        Classification {
            kind: Logical,
            lane: LaneKey::global(),
            idempotency: Optional,
            route: None,
        }
    );
    assert_eq!(classifier.compare_rule(&c), &CompareRule::default());
}

#[test]
fn route_turns_a_post_into_a_read() {
    let c = classify(guide_routes(), "POST", "/search?q=lockstep");
    assert_eq!(c.kind, Read);
    assert_eq!(matched_index(&c), Some(0));
}

#[test]
fn route_turns_a_get_into_a_logical_request() {
    let c = classify(guide_routes(), "GET", "/counter/increment");
    assert_eq!(c.kind, Logical);
    assert_eq!(matched_index(&c), Some(1));
    assert_eq!(classify(guide_routes(), "GET", "/counter").kind, Read);
}

#[test]
fn route_with_a_method_list_matches_each_listed_method_only() {
    for method in ["POST", "PUT", "DELETE"] {
        let c = classify(guide_routes(), method, "/accounts/7/deposits");
        assert_eq!(matched_index(&c), Some(2), "{method}");
        assert_eq!(c.lane, LaneKey::new("7"), "{method}");
    }
    let c = classify(guide_routes(), "PATCH", "/accounts/7/deposits");
    assert_eq!(c.route, None);
    let c = classify(guide_routes(), "GET", "/accounts/7");
    assert_eq!((c.kind, c.route), (Read, None));
}

#[test]
fn custom_method_route_matches_every_path() {
    for path in ["/", "/dav/a/b", "/dav/", "*"] {
        let c = classify(guide_routes(), "PROPFIND", path);
        assert_eq!((c.kind, matched_index(&c)), (Read, Some(3)), "{path}");
    }
    assert_eq!(classify(guide_routes(), "MKCOL", "/dav/a").kind, Logical);
    assert_eq!(classify(guide_routes(), "propfind", "/dav/a").kind, Logical);
}

#[test]
fn any_method_route_matches_every_method() {
    let rules = vec![route("* /admin/**").kind(Logical).lane("admin")];
    for method in ["GET", "HEAD", "POST", "PURGE", "BREW", "get"] {
        let c = classify(rules.clone(), method, "/admin/users");
        assert_eq!((c.kind, matched_index(&c)), (Logical, Some(0)), "{method}");
        assert_eq!(c.lane, LaneKey::new("admin"), "{method}");
    }
}

#[test]
fn route_without_kind_keeps_the_method_default() {
    let rules = vec![route("* /accounts/{id}").lane("{id}").idempotency(Off)];
    let get = classify(rules.clone(), "GET", "/accounts/7");
    assert_eq!((get.kind, matched_index(&get)), (Read, Some(0)));
    assert_eq!(get.idempotency, Off);
    let put = classify(rules, "PUT", "/accounts/7");
    assert_eq!((put.kind, matched_index(&put)), (Logical, Some(0)));
    assert_eq!(put.lane, LaneKey::new("7"));
}

#[test]
fn first_matching_rule_wins() {
    let specific_first = vec![
        route("POST /accounts/{id}/close")
            .kind(Logical)
            .lane("closing"),
        route("POST /accounts/**").kind(Read),
    ];
    let c = classify(specific_first.clone(), "POST", "/accounts/7/close");
    assert_eq!((c.kind, matched_index(&c)), (Logical, Some(0)));
    assert_eq!(c.lane, LaneKey::new("closing"));
    let c = classify(specific_first, "POST", "/accounts/7/open");
    assert_eq!((c.kind, matched_index(&c)), (Read, Some(1)));

    let general_first = vec![
        route("POST /accounts/**").kind(Read),
        route("POST /accounts/{id}/close")
            .kind(Logical)
            .lane("closing"),
    ];
    let c = classify(general_first, "POST", "/accounts/7/close");
    assert_eq!((c.kind, matched_index(&c)), (Read, Some(0)));
    assert!(c.lane.is_global());
}

#[test]
fn first_match_wins_across_method_sets() {
    let rules = vec![
        route("* /items/**").kind(Read),
        route("DELETE /items/{id}").kind(Logical),
    ];
    let c = classify(rules.clone(), "DELETE", "/items/3");
    assert_eq!((c.kind, matched_index(&c)), (Read, Some(0)));
    let rules = vec![
        route("DELETE /items/{id}").kind(Logical),
        route("* /items/**").kind(Read),
    ];
    let c = classify(rules, "DELETE", "/items/3");
    assert_eq!((c.kind, matched_index(&c)), (Logical, Some(0)));
}

#[test]
fn a_rule_for_another_method_does_not_shadow() {
    let rules = vec![
        route("GET /orders/{id}").kind(Logical),
        route("POST /orders/{id}").lane("order-{id}"),
    ];
    let c = classify(rules, "POST", "/orders/9");
    assert_eq!(matched_index(&c), Some(1));
    assert_eq!(c.lane, LaneKey::new("order-9"));
}

#[test]
fn params_are_reported_in_the_match() {
    let rules = vec![route("PUT /{org}/repos/{repo}/**").lane("{org}/{repo}")];
    let c = classify(rules, "PUT", "/acme/repos/web/settings?x=1");
    let expected = RouteMatch {
        index: 0,
        params: vec![
            ("org".to_owned(), "acme".to_owned()),
            ("repo".to_owned(), "web".to_owned()),
        ],
    };
    assert_eq!(c.route.as_ref(), Some(&expected));
    assert_eq!(expected.param("repo"), Some("web"));
    assert_eq!(expected.param("nope"), None);
    assert_eq!(c.lane, LaneKey::new("acme/web"));
}

#[test]
fn tail_routes_match_zero_one_and_many_segments() {
    let rules = guide_routes();
    for path in [
        "/accounts/7",
        "/accounts/7/",
        "/accounts/7/x",
        "/accounts/7/x/y/z",
    ] {
        let c = classify(rules.clone(), "POST", path);
        assert_eq!(matched_index(&c), Some(2), "{path}");
        assert_eq!(c.lane, LaneKey::new("7"), "{path}");
    }
    for path in ["/accounts", "/accounts/", "/accounts//x"] {
        assert_eq!(classify(rules.clone(), "POST", path).route, None, "{path}");
    }
}

#[test]
fn trailing_slash_and_empty_segments_only_match_tails() {
    let rules = vec![route("POST /search").kind(Read)];
    assert_eq!(classify(rules.clone(), "POST", "/search").kind, Read);
    assert_eq!(classify(rules.clone(), "POST", "/search/").kind, Logical);
    assert_eq!(classify(rules.clone(), "POST", "//search").kind, Logical);
    assert_eq!(classify(rules, "POST", "/search//").kind, Logical);
}

#[test]
fn query_string_never_changes_the_decision() {
    let rules = guide_routes();
    for (method, path) in [
        ("POST", "/search"),
        ("GET", "/counter/increment"),
        ("PUT", "/accounts/7/x"),
    ] {
        let plain = classify(rules.clone(), method, path);
        let queried = classify(rules.clone(), method, &format!("{path}?a=1&b=/accounts/8"));
        assert_eq!(plain, queried, "{method} {path}");
    }
}

#[test]
fn options_star_matches_only_star_rules() {
    let rules = vec![
        route("OPTIONS /**").kind(Logical).lane("tail"),
        route("OPTIONS *").kind(Read),
    ];
    let c = classify(rules, "OPTIONS", "*");
    // `/**` and `*` are the same pattern: every target.
    assert_eq!((c.kind, matched_index(&c)), (Logical, Some(0)));
    let rules = vec![
        route("OPTIONS /").kind(Logical),
        route("OPTIONS /{x}").kind(Logical),
    ];
    let c = classify(rules, "OPTIONS", "*");
    assert_eq!((c.kind, c.route), (Read, None));
}

#[test]
fn absolute_form_target_only_matches_star() {
    let rules = vec![route("POST /search").kind(Read), route("* *").lane("all")];
    let c = classify(rules, "POST", "http://example.com/search");
    assert_eq!(matched_index(&c), Some(1));
    assert_eq!(c.lane, LaneKey::new("all"));
}

#[test]
fn lane_from_a_header() {
    let classifier = Classifier::new(vec![route("POST /orders").lane("header:X-Tenant")]);
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", HeaderValue::from_static("t-1"));
    let c = classifier.classify("POST", "/orders", &headers);
    assert_eq!(c.lane, LaneKey::new("t-1"));
    let c = classifier.classify("POST", "/orders", &HeaderMap::new());
    assert!(c.lane.is_global());
    assert_eq!(matched_index(&c), Some(0));
}

#[test]
fn reads_still_get_their_lane() {
    let rules = vec![route("GET /accounts/{id}").lane("acct-{id}")];
    let c = classify(rules, "GET", "/accounts/7");
    assert_eq!((c.kind, c.lane), (Read, LaneKey::new("acct-7")));
}

#[test]
fn idempotency_comes_from_the_rule() {
    let rules = vec![
        route("POST /a").idempotency(Required),
        route("POST /b").idempotency(Off),
        route("POST /c"),
    ];
    assert_eq!(classify(rules.clone(), "POST", "/a").idempotency, Required);
    assert_eq!(classify(rules.clone(), "POST", "/b").idempotency, Off);
    assert_eq!(classify(rules.clone(), "POST", "/c").idempotency, Optional);
    assert_eq!(classify(rules, "POST", "/d").idempotency, Optional);
}

#[test]
fn compare_rule_comes_from_the_matched_rule() {
    let classifier = Classifier::new(guide_routes());
    let c = classifier.classify("PUT", "/accounts/7", &HeaderMap::new());
    assert_eq!(classifier.compare_rule(&c), &compare(&["date", "etag"]));
    let c = classifier.classify("POST", "/search", &HeaderMap::new());
    assert_eq!(classifier.compare_rule(&c), &CompareRule::default());
}

#[test]
fn compare_rule_for_a_foreign_index_is_the_default() {
    let classifier = Classifier::new(vec![]);
    let c = Classification {
        kind: Logical,
        lane: LaneKey::global(),
        idempotency: Optional,
        route: Some(RouteMatch {
            index: 3,
            params: vec![],
        }),
    };
    assert_eq!(classifier.compare_rule(&c), &CompareRule::default());
}

#[test]
fn rules_are_kept_in_config_order() {
    let rules = guide_routes();
    let classifier = Classifier::new(rules.clone());
    assert_eq!(classifier.rules(), rules.as_slice());
    let c = classifier.classify("DELETE", "/accounts/1", &HeaderMap::new());
    let index = matched_index(&c).unwrap();
    assert_eq!(
        classifier.rules()[index].source,
        "POST|PUT|DELETE /accounts/{id}/**"
    );
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET".to_owned()),
        Just("HEAD".to_owned()),
        Just("OPTIONS".to_owned()),
        Just("POST".to_owned()),
        Just("PUT".to_owned()),
        Just("DELETE".to_owned()),
        Just("PROPFIND".to_owned()),
        "[A-Za-z]{1,8}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        proptest::collection::vec(
            prop_oneof![
                Just("accounts".to_owned()),
                Just("search".to_owned()),
                Just("7".to_owned()),
                Just(String::new()),
                "[a-z0-9%]{1,4}",
            ],
            0..5,
        )
        .prop_map(|segments| format!("/{}", segments.join("/"))),
    ]
}

proptest! {
    #[test]
    fn without_rules_every_request_gets_the_defaults(method in method(), path in path()) {
        let c = classify(vec![], &method, &path);
        prop_assert_eq!(c, Classification {
            kind: crate::default_kind(&method),
            lane: LaneKey::global(),
            idempotency: Optional,
            route: None,
        });
    }

    #[test]
    fn query_string_is_ignored(method in method(), path in path(), query in "[a-z0-9=&/?%]{0,12}") {
        let classifier = Classifier::new(guide_routes());
        let headers = HeaderMap::new();
        prop_assert_eq!(
            classifier.classify(&method, &path, &headers),
            classifier.classify(&method, &format!("{path}?{query}"), &headers)
        );
    }

    #[test]
    fn the_match_is_the_first_rule_that_matches_alone(method in method(), path in path()) {
        let rules = vec![
            route("POST /search").kind(Read),
            route("* /accounts/{id}").lane("{id}"),
            route("GET|PUT /accounts/**").kind(Logical),
            route("PROPFIND *").kind(Read),
            route("* /{a}/{b}/**"),
        ];
        let alone = |i: usize| {
            classify(vec![rules[i].clone()], &method, &path).route.is_some()
        };
        let expected = (0..rules.len()).find(|&i| alone(i));
        let c = classify(rules.clone(), &method, &path);
        prop_assert_eq!(matched_index(&c), expected);
        let expected_kind = expected
            .and_then(|i| rules[i].kind)
            .unwrap_or_else(|| crate::default_kind(&method));
        prop_assert_eq!(c.kind, expected_kind);
    }
}
