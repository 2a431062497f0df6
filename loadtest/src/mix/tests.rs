use super::*;

const MIX: &str = r#"
[[request]]
method = "POST"
path = "/accounts/{counter}/deposit"
body = '{"amount": {random:1..100}}'
headers = { "X-Client" = "load-{connection}" }
weight = 3

[[request]]
path = "/accounts"
"#;

#[test]
fn parses_a_mix_file_with_defaults() {
    let mix = Mix::from_toml(MIX, &["Authorization: Bearer t".into()]).unwrap();
    let [deposit, list] = mix.requests() else {
        panic!("two entries expected")
    };
    assert_eq!(deposit.method, "POST");
    assert_eq!(deposit.weight, 3);
    assert_eq!(
        deposit.headers,
        vec![
            ("X-Client".to_owned(), "load-{connection}".to_owned()),
            ("Authorization".to_owned(), "Bearer t".to_owned()),
        ]
    );
    assert_eq!(list.method, "GET");
    assert_eq!(list.weight, 1);
    assert_eq!(list.body, None);
}

#[test]
fn choices_follow_the_weights() {
    let mix = Mix::from_toml(MIX, &[]).unwrap();
    let mut rng = fastrand::Rng::with_seed(2024);
    let mut counts = [0u32; 2];
    for _ in 0..40_000 {
        counts[mix.choose(&mut rng)] += 1;
    }
    // 3:1 → 30 000 and 10 000; a seeded run lands well inside ±3 %.
    assert!((29_100..=30_900).contains(&counts[0]), "{counts:?}");
    assert_eq!(counts[0] + counts[1], 40_000);
}

#[test]
fn choices_are_replayed_by_the_seed() {
    let mix = Mix::from_toml(MIX, &[]).unwrap();
    let picks = |seed| {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..100).map(|_| mix.choose(&mut rng)).collect::<Vec<_>>()
    };
    assert_eq!(picks(1), picks(1));
    assert_ne!(picks(1), picks(2));
}

#[test]
fn single_request_mix_draws_nothing() {
    let mix = Mix::single(RequestSpec::from_flags(None, None, None, &[]).unwrap());
    let mut rng = fastrand::Rng::with_seed(5);
    let before = rng.clone().u64(..);
    assert_eq!(mix.choose(&mut rng), 0);
    assert_eq!(rng.u64(..), before);
}

#[test]
fn rejects_unknown_key_with_its_position() {
    let err = Mix::from_toml("[[request]]\npath = \"/\"\nwieght = 2\n", &[]).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, MixError::Toml(_)));
    assert!(message.contains("wieght"), "{message}");
    assert!(message.contains("line 3"), "{message}");
}

#[test]
fn rejects_zero_weight() {
    let err = Mix::from_toml("[[request]]\npath = \"/\"\nweight = 0\n", &[]).unwrap_err();
    assert!(matches!(
        err,
        MixError::Entry {
            number: 1,
            problem: Problem::ZeroWeight
        }
    ));
}

#[test]
fn rejects_empty_mix() {
    assert!(matches!(Mix::from_toml("", &[]), Err(MixError::Empty)));
}

#[test]
fn rejects_bad_template_in_entry() {
    let err = Mix::from_toml(
        "[[request]]\npath = \"/\"\n[[request]]\npath = \"/a/{id}\"\n",
        &[],
    )
    .unwrap_err();
    assert!(matches!(
        err,
        MixError::Entry {
            number: 2,
            problem: Problem::Template { field: "path", .. }
        }
    ));
}

#[test]
fn rejects_framing_headers_and_bad_header_lines() {
    assert!(matches!(
        RequestSpec::from_flags(None, None, None, &["Content-Length: 5".into()]),
        Err(MixError::Flag {
            problem: Problem::FramingHeader(_)
        })
    ));
    assert!(matches!(
        parse_header_line("no colon here"),
        Err(MixError::HeaderSyntax(_))
    ));
}

#[test]
fn rejects_bad_method_and_path() {
    assert!(matches!(
        RequestSpec::from_flags(Some("PO ST".into()), None, None, &[]),
        Err(MixError::Flag {
            problem: Problem::Method(_)
        })
    ));
    assert!(matches!(
        RequestSpec::from_flags(None, Some("accounts".into()), None, &[]),
        Err(MixError::Flag {
            problem: Problem::Path(_)
        })
    ));
}

#[test]
fn body_makes_post_the_default_method() {
    let spec = RequestSpec::from_flags(None, None, Some("{}".into()), &[]).unwrap();
    assert_eq!(spec.method, "POST");
}
