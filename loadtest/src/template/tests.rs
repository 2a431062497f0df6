use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::*;

fn values(connection: usize, seed: u64, counter: u64) -> Values {
    Values::new(connection, seed, Arc::new(AtomicU64::new(counter)))
}

fn expand(text: &str, values: &mut Values) -> String {
    values.begin_request();
    Template::parse(text).unwrap().render_to_string(values)
}

#[test]
fn json_braces_are_literal() {
    let text = r#"{"owner": "ada", "tags": [{"a": {}}]}"#;
    let template = Template::parse(text).unwrap();
    assert_eq!(template.as_literal(), Some(text.as_bytes()));
}

#[test]
fn double_brace_is_a_literal_brace() {
    let mut v = values(0, 1, 5);
    assert_eq!(expand("{{counter} {counter}", &mut v), "{counter} 5");
}

#[test]
fn counter_is_shared_within_a_request_and_increases_across_requests() {
    let counter = Arc::new(AtomicU64::new(10));
    let mut a = Values::new(0, 1, Arc::clone(&counter));
    let mut b = Values::new(1, 1, Arc::clone(&counter));
    let template = Template::parse("/accounts/{counter}/deposit?again={counter}").unwrap();
    a.begin_request();
    assert_eq!(
        template.render_to_string(&mut a),
        "/accounts/10/deposit?again=10"
    );
    b.begin_request();
    assert_eq!(
        template.render_to_string(&mut b),
        "/accounts/11/deposit?again=11"
    );
    a.begin_request();
    assert_eq!(
        template.render_to_string(&mut a),
        "/accounts/12/deposit?again=12"
    );
}

#[test]
fn random_stays_within_its_inclusive_bounds_and_reaches_both() {
    let template = Template::parse("{random:1..3}").unwrap();
    let mut v = values(0, 42, 0);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..1000 {
        v.begin_request();
        seen.insert(template.render_to_string(&mut v));
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["1", "2", "3"]);
    let mut v = values(0, 42, 0);
    assert_eq!(expand("{random:-5..-5}", &mut v), "-5");
}

#[test]
fn random_draws_are_replayed_by_the_seed() {
    let template = Template::parse(r#"{"amount": {random:1..1000000}}"#).unwrap();
    let draw = |seed| {
        let mut v = values(3, seed, 0);
        (0..20)
            .map(|_| template.render_to_string(&mut v))
            .collect::<Vec<_>>()
    };
    assert_eq!(draw(7), draw(7));
    assert_ne!(draw(7), draw(8));
}

#[test]
fn connection_is_the_connection_index() {
    let mut v = values(17, 1, 0);
    assert_eq!(expand("c{connection}", &mut v), "c17");
}

#[test]
fn uuid_is_version_4_and_fixed_within_a_request() {
    let mut v = values(0, 1, 0);
    let first = expand("{uuid} {uuid}", &mut v);
    let (a, b) = first.split_once(' ').unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 36);
    assert_eq!(&a[14..15], "4");
    assert!("89ab".contains(&a[19..20]), "variant in {a}");
    assert!(
        a.chars()
            .enumerate()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit() && !c.is_ascii_uppercase()
            })
    );
    let second = expand("{uuid}", &mut v);
    assert_ne!(second, a);
}

#[test]
fn rejects_unknown_placeholder() {
    assert_eq!(
        Template::parse("/accounts/{id}"),
        Err(TemplateError::UnknownPlaceholder {
            name: "id".into(),
            position: 10
        })
    );
}

#[test]
fn rejects_unclosed_placeholder() {
    assert_eq!(
        Template::parse("/a/{counter"),
        Err(TemplateError::Unclosed { position: 3 })
    );
}

#[test]
fn rejects_bad_random_bounds() {
    for text in ["{random:5..1}", "{random:1-5}", "{random:a..b}", "{random}"] {
        assert!(
            matches!(Template::parse(text), Err(TemplateError::BadRandom { .. })),
            "{text}"
        );
    }
}

#[test]
fn rejects_argument_to_simple_placeholder() {
    assert!(matches!(
        Template::parse("{counter:5}"),
        Err(TemplateError::UnexpectedArgument { .. })
    ));
}

#[test]
fn error_messages_show_the_braces() {
    let message = Template::parse("{id}").unwrap_err().to_string();
    assert!(
        message.starts_with("unknown placeholder `{id}` at byte 0"),
        "{message}"
    );
    assert!(message.contains("{random:A..B}"), "{message}");
}
