use lockstep_config::{PathPattern, Segment};
use proptest::prelude::*;

use super::{CompiledPattern, RequestPath};
use crate::test_support::pattern;

/// The parameters bound when `pattern` matches `path`, `None` when it does not match.
fn matching(pattern_source: &str, path: &str) -> Option<Vec<(String, String)>> {
    match_compiled(&CompiledPattern::new(&pattern(pattern_source)), path)
}

fn match_compiled(compiled: &CompiledPattern, path: &str) -> Option<Vec<(String, String)>> {
    let path = RequestPath::parse(path);
    compiled.matches(path).then(|| compiled.bind(path))
}

fn matches(pattern_source: &str, path: &str) -> bool {
    matching(pattern_source, path).is_some()
}

fn bound(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
    Some(
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

#[test]
fn literal_pattern_matches_only_its_path() {
    assert!(matches("/search", "/search"));
    assert!(matches("/a/b/c", "/a/b/c"));
    assert!(!matches("/search", "/search/more"));
    assert!(!matches("/search", "/searc"));
    assert!(!matches("/search", "/Search"));
    assert!(!matches("/a/b/c", "/a/b"));
    assert!(!matches("/search", "/"));
}

#[test]
fn segments_are_compared_raw() {
    assert!(matches("/a%20b", "/a%20b"));
    assert!(!matches("/a b", "/a%20b"));
    assert!(!matches("/a", "/%61"));
    assert!(!matches("/a/b", "/a/./b"));
    assert!(!matches("/b", "/a/../b"));
}

#[test]
fn query_string_is_ignored() {
    assert!(matches("/search", "/search?q=1"));
    assert!(matches("/search", "/search?"));
    assert!(matches("/search", "/search?next=/other/path?x"));
    assert!(!matches("/search/q", "/search?q"));
    assert_eq!(
        matching("/accounts/{id}", "/accounts/7?id=8"),
        bound(&[("id", "7")])
    );
}

#[test]
fn root_pattern_matches_only_the_root() {
    assert!(matches("/", "/"));
    assert!(matches("/", "/?q=1"));
    assert!(!matches("/", "//"));
    assert!(!matches("/", "/a"));
    assert!(!matches("/", "*"));
}

#[test]
fn root_written_as_one_empty_literal_is_the_root() {
    let root = PathPattern {
        source: "/".to_owned(),
        segments: vec![Segment::Literal(String::new())],
    };
    let compiled = CompiledPattern::new(&root);
    assert!(match_compiled(&compiled, "/").is_some());
    assert!(match_compiled(&compiled, "/a").is_none());
    assert!(match_compiled(&compiled, "//").is_none());
}

#[test]
fn param_binds_one_non_empty_segment() {
    assert_eq!(
        matching("/accounts/{id}", "/accounts/7"),
        bound(&[("id", "7")])
    );
    assert_eq!(
        matching("/accounts/{id}", "/accounts/a%2Fb"),
        bound(&[("id", "a%2Fb")])
    );
    assert!(!matches("/accounts/{id}", "/accounts/"));
    assert!(!matches("/accounts/{id}", "/accounts"));
    assert!(!matches("/accounts/{id}", "/accounts/7/"));
    assert!(!matches("/accounts/{id}", "/accounts/7/x"));
    assert!(!matches("/accounts/{id}", "/accounts//x"));
}

#[test]
fn several_params_bind_in_pattern_order() {
    assert_eq!(
        matching(
            "/{org}/repos/{repo}/issues/{n}",
            "/acme/repos/web/issues/12"
        ),
        bound(&[("org", "acme"), ("repo", "web"), ("n", "12")])
    );
    assert!(!matches("/{org}/repos/{repo}", "/acme/repo/web"));
}

#[test]
fn pattern_without_params_binds_nothing() {
    assert_eq!(matching("/a/**", "/a/b/c"), bound(&[]));
}

#[test]
fn tail_matches_zero_one_or_many_segments() {
    assert!(matches("/files/**", "/files"));
    assert!(matches("/files/**", "/files/a"));
    assert!(matches("/files/**", "/files/a/b/c"));
    assert!(!matches("/files/**", "/file"));
    assert!(!matches("/files/**", "/filesx/a"));
    assert!(!matches("/files/**", "/"));
}

#[test]
fn tail_matches_empty_segments() {
    assert!(matches("/files/**", "/files/"));
    assert!(matches("/files/**", "/files//"));
    assert!(matches("/files/**", "/files/a//b/"));
}

#[test]
fn params_before_a_tail_are_bound() {
    assert_eq!(
        matching("/accounts/{id}/**", "/accounts/7"),
        bound(&[("id", "7")])
    );
    assert_eq!(
        matching("/accounts/{id}/**", "/accounts/7/deposits/3"),
        bound(&[("id", "7")])
    );
    assert!(!matches("/accounts/{id}/**", "/accounts"));
    assert!(!matches("/accounts/{id}/**", "/accounts/"));
}

#[test]
fn trailing_slash_is_an_empty_segment_only_a_tail_matches() {
    assert!(!matches("/a", "/a/"));
    assert!(!matches("/a/{x}", "/a/"));
    assert!(matches("/a/**", "/a/"));
}

#[test]
fn empty_segments_never_bind_a_param() {
    assert!(!matches("/{a}/{b}", "//b"));
    assert!(!matches("/{a}/{b}", "/a//"));
    assert!(!matches("/{a}", "/"));
}

#[test]
fn star_matches_every_request_target() {
    for target in [
        "/",
        "/a",
        "/a/b/",
        "//",
        "*",
        "http://example.com/a",
        "",
        "?q",
    ] {
        assert!(matches("*", target), "{target:?}");
        assert!(matches("/**", target), "{target:?}");
    }
}

#[test]
fn non_path_targets_match_nothing_else() {
    for target in ["*", "http://example.com/a", "example.com:443", "", "?q"] {
        assert!(!matches("/", target), "{target:?}");
        assert!(!matches("/a/**", target), "{target:?}");
        assert!(!matches("/{x}", target), "{target:?}");
    }
}

/// One raw path segment: no `/`, no `?`.
fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._~%-]{1,8}"
}

fn path_of(segments: &[String]) -> String {
    format!("/{}", segments.join("/"))
}

proptest! {
    #[test]
    fn literal_pattern_matches_exactly_the_path_built_from_it(
        literals in proptest::collection::vec(segment(), 0..6),
        other in proptest::collection::vec(segment(), 0..6),
        query in "[a-z=&/?]{0,8}",
    ) {
        let compiled = CompiledPattern::new(&pattern(&path_of(&literals)));
        let own = path_of(&literals);
        prop_assert_eq!(match_compiled(&compiled, &own), Some(Vec::new()));
        let queried = format!("{own}?{query}");
        let slashed = format!("{own}/");
        let longer = format!("{own}/x");
        prop_assert!(match_compiled(&compiled, &queried).is_some());
        prop_assert!(match_compiled(&compiled, &slashed).is_none());
        prop_assert!(match_compiled(&compiled, &longer).is_none());
        prop_assert_eq!(
            match_compiled(&compiled, &path_of(&other)).is_some(),
            other == literals
        );
    }

    #[test]
    fn tail_pattern_matches_every_extension_of_its_prefix(
        prefix in proptest::collection::vec(
            prop_oneof![segment().prop_map(Ok), segment().prop_map(Err)],
            0..5,
        ),
        extension in proptest::collection::vec("[a-z0-9%]{0,4}", 0..5),
    ) {
        // `Ok(s)`: a literal `s`; `Err(v)`: a parameter that the path fills with `v`.
        let mut source = String::new();
        let mut values = Vec::new();
        let mut expected = Vec::new();
        for (i, part) in prefix.iter().enumerate() {
            match part {
                Ok(literal) => {
                    source.push_str(&format!("/{literal}"));
                    values.push(literal.clone());
                }
                Err(value) => {
                    source.push_str(&format!("/{{p{i}}}"));
                    values.push(value.clone());
                    expected.push((format!("p{i}"), value.clone()));
                }
            }
        }
        source.push_str("/**");
        let mut path = path_of(&values);
        for (i, segment) in extension.iter().enumerate() {
            if !(values.is_empty() && i == 0) {
                path.push('/');
            }
            path.push_str(segment);
        }
        prop_assert_eq!(matching(&source, &path), Some(expected));
    }

    #[test]
    fn param_matches_any_one_segment_and_binds_it(value in segment(), query in "[a-z=&]{0,6}") {
        prop_assert_eq!(
            matching("/x/{v}/y", &format!("/x/{value}/y?{query}")),
            Some(vec![("v".to_owned(), value)])
        );
    }
}
