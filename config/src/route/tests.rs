use super::{parse_lane, parse_match};
use crate::error::ConfigError;
use crate::types::{LanePart, LaneTemplate, MethodSet, PathPattern, Segment};

const KEY: &str = "routes[0].match";

fn pattern(text: &str) -> PathPattern {
    parse_match(KEY, &format!("GET {text}")).unwrap().1
}

fn route_error(value: &str) -> String {
    match parse_match(KEY, value) {
        Err(ConfigError::InvalidRoute {
            key,
            value: v,
            reason,
        }) => {
            assert_eq!(key, KEY);
            assert_eq!(v, value);
            reason
        }
        other => panic!("{value:?}: expected InvalidRoute, got {other:?}"),
    }
}

fn lit(s: &str) -> Segment {
    Segment::Literal(s.to_owned())
}

fn param(s: &str) -> Segment {
    Segment::Param(s.to_owned())
}

#[test]
fn parses_methods_and_pattern() {
    let (methods, pattern) = parse_match(KEY, "post|PUT|Delete /accounts/{id}/**").unwrap();
    assert_eq!(
        methods,
        MethodSet::Only(vec!["POST".into(), "PUT".into(), "DELETE".into()])
    );
    assert_eq!(pattern.source, "/accounts/{id}/**");
    assert_eq!(
        pattern.segments,
        vec![lit("accounts"), param("id"), Segment::Tail]
    );
}

#[test]
fn accepts_custom_methods() {
    let (methods, _) = parse_match(KEY, "PROPFIND|MKCOL|X-Custom_1 /dav").unwrap();
    assert_eq!(
        methods,
        MethodSet::Only(vec!["PROPFIND".into(), "MKCOL".into(), "X-CUSTOM_1".into()])
    );
}

#[test]
fn star_method_is_any() {
    let (methods, _) = parse_match(KEY, "* /x").unwrap();
    assert_eq!(methods, MethodSet::Any);
}

#[test]
fn star_pattern_is_every_path() {
    let (_, pattern) = parse_match(KEY, "PROPFIND *").unwrap();
    assert_eq!(
        pattern,
        PathPattern {
            source: "*".into(),
            segments: vec![Segment::Tail]
        }
    );
}

#[test]
fn root_has_no_segment_and_trailing_slash_is_empty_literal() {
    assert_eq!(pattern("/").segments, vec![]);
    assert_eq!(pattern("/a/").segments, vec![lit("a"), lit("")]);
    assert_eq!(pattern("/**").segments, vec![Segment::Tail]);
}

#[test]
fn accepts_extra_spaces_between_methods_and_pattern() {
    let (_, pattern) = parse_match(KEY, "  GET    /a  ").unwrap();
    assert_eq!(pattern.segments, vec![lit("a")]);
}

#[test]
fn rejects_route_without_pattern() {
    route_error("GET");
    route_error("");
    route_error("GET /a /b");
}

#[test]
fn rejects_invalid_method() {
    assert!(route_error("GE(T /a").contains("'('"));
    assert!(route_error("GET||POST /a").contains("empty"));
    assert!(route_error("GET|* /a").contains("every method"));
}

#[test]
fn rejects_pattern_without_slash() {
    assert!(route_error("GET accounts").contains("must start with '/'"));
}

#[test]
fn rejects_tail_not_last() {
    assert!(route_error("GET /a/**/b").contains("last segment"));
}

#[test]
fn rejects_single_star_segment() {
    assert!(route_error("GET /a/*").contains("'*'"));
    assert!(route_error("GET /a/b**").contains("'*'"));
}

#[test]
fn rejects_brace_in_literal() {
    assert!(route_error("GET /a/v{id}").contains("braces"));
    assert!(route_error("GET /a/{id").contains("braces"));
    assert!(route_error("GET /a/id}").contains("braces"));
}

#[test]
fn rejects_empty_param_name() {
    assert!(route_error("GET /a/{}").contains("no name"));
}

#[test]
fn rejects_param_name_not_identifier() {
    assert!(route_error("GET /a/{1d}").contains("identifier"));
    assert!(route_error("GET /a/{a-b}").contains("identifier"));
}

#[test]
fn rejects_duplicate_param() {
    assert!(route_error("GET /a/{id}/b/{id}").contains("twice"));
}

#[test]
fn rejects_doubled_slash() {
    assert!(route_error("GET /a//b").contains("empty segment"));
}

#[test]
fn rejects_query_in_pattern() {
    assert!(route_error("GET /a?b=1").contains("query"));
}

#[test]
fn parses_lane_template() {
    let p = pattern("/accounts/{id}/items/{item}");
    assert_eq!(
        parse_lane("routes[0].lane", "acct-{id}/{item}", &p).unwrap(),
        LaneTemplate::Template(vec![
            LanePart::Literal("acct-".into()),
            LanePart::Param("id".into()),
            LanePart::Literal("/".into()),
            LanePart::Param("item".into()),
        ])
    );
    assert_eq!(
        parse_lane("routes[0].lane", "global-ish", &p).unwrap(),
        LaneTemplate::Template(vec![LanePart::Literal("global-ish".into())])
    );
}

#[test]
fn parses_header_lane_lowercased() {
    let p = pattern("/a");
    assert_eq!(
        parse_lane("routes[0].lane", "header:X-Tenant", &p).unwrap(),
        LaneTemplate::Header("x-tenant".into())
    );
}

#[test]
fn rejects_lane_param_not_in_pattern() {
    let p = pattern("/accounts/{id}/{sub}/**");
    let err = parse_lane("routes[2].lane", "{acct}", &p).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::UnknownLaneParam { ref key, ref param, ref available }
            if key == "routes[2].lane" && param == "acct" && available == &["id", "sub"]
    ));
    assert_eq!(
        err.to_string(),
        "routes[2].lane uses {acct}, which the route's pattern does not bind; available: {id}, {sub}"
    );
}

#[test]
fn rejects_lane_param_when_pattern_binds_none() {
    let err = parse_lane("routes[0].lane", "{id}", &pattern("/accounts")).unwrap_err();
    assert!(
        matches!(err, ConfigError::UnknownLaneParam { ref available, .. } if available.is_empty())
    );
}

#[test]
fn rejects_unbalanced_lane_braces() {
    let p = pattern("/a/{id}");
    for bad in ["{id", "id}", "{{id}}", "{}", "", "{i d}"] {
        let err = parse_lane("routes[0].lane", bad, &p).unwrap_err();
        assert!(
            matches!(err, ConfigError::InvalidLane { ref key, ref value, .. }
                if key == "routes[0].lane" && value == bad),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn rejects_invalid_lane_header() {
    let err = parse_lane("routes[0].lane", "header:X Tenant", &pattern("/a")).unwrap_err();
    assert!(matches!(err, ConfigError::InvalidLane { .. }));
}
