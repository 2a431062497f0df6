use super::*;
use proptest::prelude::*;

fn map(pairs: &[(&str, &str)]) -> IdMap {
    let m = IdMap::default();
    let pairs: Vec<(Minted, Minted)> = pairs
        .iter()
        .map(|(c, l)| (Minted::from(*c), Minted::from(*l)))
        .collect();
    m.learn(1, &pairs).unwrap();
    m
}

fn strings(pairs: &[(String, String)]) -> Vec<(Minted, Minted)> {
    pairs
        .iter()
        .map(|(c, l)| (Minted::from(c.as_str()), Minted::from(l.as_str())))
        .collect()
}

fn json_response(status: u16, body: &str) -> ResponseRecord {
    ResponseRecord {
        status,
        headers: vec![Header::new("Content-Type", "application/json")],
        body: Bytes::from(body.to_owned()),
    }
}

fn request(method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> RequestRecord {
    RequestRecord {
        method: method.into(),
        uri: uri.into(),
        headers: headers
            .iter()
            .map(|(n, v)| Header::new(*n, v.to_string()))
            .collect(),
        body: Bytes::from(body.to_owned()),
    }
}

#[test]
fn learns_pairs_at_the_minted_places_and_nowhere_else() {
    let places = vec![
        MintPlace::Json(vec!["id".into()]),
        MintPlace::Json(vec!["items".into(), "*".into(), "id".into()]),
        MintPlace::Header("etag".into()),
        MintPlace::Header("location".into()),
    ];
    let mut canonical = json_response(
        201,
        r#"{"id":"abc","title":"t-abc","items":[{"id":"i1"},{"id":"i2"}]}"#,
    );
    canonical
        .headers
        .push(Header::new("ETag", "W/\"e-canonical\""));
    canonical
        .headers
        .push(Header::new("Location", "http://gw.test/posts/abc"));
    let mut local = json_response(
        201,
        r#"{"title":"t-abc","id":"xyz","items":[{"id":"j1"},{"id":"j2"}]}"#,
    );
    local.headers.push(Header::new("ETag", "W/\"e-local\""));
    local
        .headers
        .push(Header::new("Location", "http://gw.test/posts/xyz"));
    let pairs = minted_pairs(&places, &canonical, &local);
    let expected: Vec<(Minted, Minted)> = [
        ("abc", "xyz"),
        ("i1", "j1"),
        ("i2", "j2"),
        ("e-canonical", "e-local"),
        ("abc", "xyz"),
    ]
    .iter()
    .map(|(c, l)| (Minted::from(*c), Minted::from(*l)))
    .collect();
    assert_eq!(pairs, expected);
    // The same pair twice in one answer is one pair.
    let m = IdMap::default();
    assert_eq!(m.learn(3, &pairs).unwrap().len(), 4);
    assert_eq!(m.local("abc").as_deref(), Some("xyz"));
    assert_eq!(m.canonical("j2").as_deref(), Some("i2"));
}

#[test]
fn a_place_only_one_answer_has_teaches_nothing() {
    let places = vec![MintPlace::Json(vec!["id".into()])];
    let pairs = minted_pairs(
        &places,
        &json_response(201, r#"{"id":"abc"}"#),
        &json_response(500, r#"{"error":"boom"}"#),
    );
    assert!(pairs.is_empty());
    let pairs = minted_pairs(
        &places,
        &json_response(201, r#"{"id":"abc"}"#),
        &json_response(201, "not json"),
    );
    assert!(pairs.is_empty());
}

#[test]
fn a_second_meaning_is_a_conflict_and_changes_nothing() {
    let m = map(&[("abc", "xyz")]);
    let err = m
        .learn(
            2,
            &[("abc".into(), "other".into()), ("new".into(), "n".into())],
        )
        .unwrap_err();
    assert_eq!(
        err,
        IdConflict::CanonicalTaken {
            canonical: "abc".into(),
            known: "xyz".into(),
            local: "other".into()
        }
    );
    assert!(m.local("new").is_none(), "all or nothing");
    let err = m.learn(2, &[("def".into(), "xyz".into())]).unwrap_err();
    assert!(matches!(err, IdConflict::LocalTaken { .. }), "{err}");
    assert!(err.to_string().contains("\"abc\""), "{err}");
}

#[test]
fn forgetting_after_a_seq_keeps_what_came_before() {
    let m = IdMap::default();
    m.learn(1, &[("a".into(), Minted::number("1"))]).unwrap();
    m.learn(5, &[("b".into(), Minted::number("2"))]).unwrap();
    m.learn(9, &[("c".into(), "c".into())]).unwrap();
    assert_eq!(m.differing(), 2);
    m.forget_after(5);
    assert_eq!(m.len(), 2);
    assert!(m.local("c").is_none());
    m.forget_after(0);
    assert!(m.is_empty() && m.is_identity());
}

#[test]
fn requests_are_translated_by_whole_tokens() {
    let m = map(&[("abc", "xyz"), ("e1", "f1"), ("a b", "x/y")]);
    let rule = TranslateRule::default();
    let req = request(
        "PATCH",
        "/posts/abc/comments?postId=abc&q=abcdef&in=abc,zzz&s=a+b",
        &[
            ("Content-Type", "application/json"),
            ("If-Match", "W/\"e1\", \"e2\""),
            ("X-Other", "abc"),
        ],
        r#"{"postId": "abc", "title": "abc is here", "abc": ["abc", 12]}"#,
    );
    let t = m.request_to_local(&rule, &req).unwrap();
    assert_eq!(
        t.uri,
        "/posts/xyz/comments?postId=xyz&q=abcdef&in=xyz%2Czzz&s=x%2Fy"
    );
    assert_eq!(t.headers[1].value, "W/\"f1\", \"e2\"");
    assert_eq!(t.headers[2].value, "abc", "a header no rule names stays");
    assert_eq!(
        std::str::from_utf8(&t.body).unwrap(),
        r#"{"postId": "xyz", "title": "abc is here", "xyz": ["xyz", 12]}"#
    );
    // Nothing known: nothing rewritten, no copy made.
    let plain = request("GET", "/posts/abcd?x=ab", &[], "");
    assert!(m.request_to_local(&rule, &plain).is_none());
}

#[test]
fn numbers_only_where_the_rule_says_so() {
    let m = IdMap::default();
    m.learn(1, &[(Minted::number("17"), Minted::number("42"))])
        .unwrap();
    let body = r#"{"account":17,"amount":17.5,"ref":"17"}"#;
    let req = request(
        "POST",
        "/accounts/17/deposit",
        &[("Content-Type", "application/json")],
        body,
    );
    let t = m.request_to_local(&TranslateRule::default(), &req).unwrap();
    assert_eq!(t.uri, "/accounts/42/deposit");
    assert_eq!(
        std::str::from_utf8(&t.body).unwrap(),
        r#"{"account":17,"amount":17.5,"ref":"42"}"#
    );
    let numbers = TranslateRule {
        numbers: true,
        ..TranslateRule::default()
    };
    let t = m.request_to_local(&numbers, &req).unwrap();
    assert_eq!(
        std::str::from_utf8(&t.body).unwrap(),
        r#"{"account":42,"amount":17.5,"ref":"42"}"#
    );
}

#[test]
fn answers_are_translated_back_with_urls_and_validators() {
    let m = IdMap::default();
    m.learn(
        1,
        &[
            ("abc".into(), "xyz".into()),
            (Minted::number("1700"), Minted::number("1800")),
        ],
    )
    .unwrap();
    let mut resp = json_response(200, r#"{"data":{"id":"xyz","last_modified":1800}}"#);
    resp.headers
        .push(Header::new("Location", "http://gw.test/posts/xyz?x=1"));
    resp.headers.push(Header::new("ETag", "\"1800\""));
    resp.headers.push(Header::new(
        "Link",
        "<http://gw.test/posts/xyz>; rel=\"self\", <http://gw.test/posts>; rel=\"up\"",
    ));
    let numbers = TranslateRule {
        numbers: true,
        ..TranslateRule::default()
    };
    let t = m.response_to_canonical(&numbers, &[], &resp).unwrap();
    assert_eq!(
        std::str::from_utf8(&t.body).unwrap(),
        r#"{"data":{"id":"abc","last_modified":1700}}"#
    );
    assert_eq!(
        t.header("location").unwrap(),
        "http://gw.test/posts/abc?x=1"
    );
    assert_eq!(t.header("etag").unwrap(), "\"1700\"");
    assert_eq!(
        t.header("link").unwrap(),
        "<http://gw.test/posts/abc>; rel=\"self\", <http://gw.test/posts>; rel=\"up\""
    );
}

#[test]
fn text_that_is_not_json_is_left_alone() {
    let m = map(&[("abc", "xyz")]);
    let mut resp = json_response(200, "{\"id\": \"abc\"");
    resp.headers[0] = Header::new("Content-Type", "text/plain");
    assert!(
        m.response_to_canonical(&TranslateRule::default(), &[], &resp)
            .is_none()
    );
    let broken = json_response(200, "{\"id\": \"xyz\"");
    assert!(
        m.response_to_canonical(&TranslateRule::default(), &[], &broken)
            .is_none()
    );
}

/// A JSON document of strings drawn from a small alphabet, so that values and map keys meet.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        "[a-d]{1,3}".prop_map(serde_json::Value::String),
        "[a-d \"\\\\/é]{0,6}".prop_map(serde_json::Value::String),
        (0u32..40).prop_map(|n| serde_json::json!(n)),
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-d]{1,3}", inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A bijection between some canonical values and local ones that share no value with them.
fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::btree_map("[a-d]{1,3}", "[a-d]{1,3}", 0..12).prop_map(|m| {
        let mut seen = std::collections::HashSet::new();
        m.into_iter()
            .filter(|(_, l)| seen.insert(l.clone()))
            .map(|(c, l)| (c, format!("L{l}")))
            .collect()
    })
}

proptest! {
    #[test]
    fn translating_there_and_back_is_the_identity(doc in json_value(), pairs in pairs(), numbers in any::<bool>()) {
        let m = IdMap::default();
        m.learn(1, &strings(&pairs)).unwrap();
        let text = serde_json::to_vec(&doc).unwrap();
        let there = translate_json(&text, numbers, &|v| m.to_local_of(v)).unwrap_or_else(|| text.clone());
        // Still JSON, and the same document wherever no known value was.
        let there_doc: serde_json::Value = serde_json::from_slice(&there).unwrap();
        let back = translate_json(&there, numbers, &|v| m.to_canonical_of(v)).unwrap_or(there.clone());
        prop_assert_eq!(serde_json::from_slice::<serde_json::Value>(&back).unwrap(), doc.clone());
        // Every known canonical string became its local form, whole; nothing else moved.
        fn check(a: &serde_json::Value, b: &serde_json::Value, m: &IdMap) -> bool {
            match (a, b) {
                (serde_json::Value::String(x), serde_json::Value::String(y)) => {
                    m.local(x).map_or(x == y, |l| *l == **y)
                }
                (serde_json::Value::Array(x), serde_json::Value::Array(y)) => {
                    x.len() == y.len() && x.iter().zip(y).all(|(x, y)| check(x, y, m))
                }
                (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                    x.len() == y.len()
                        && x.iter().all(|(k, v)| {
                            let k2 = m.local(k).map_or(k.clone(), |l| l.to_string());
                            y.get(&k2).is_some_and(|w| check(v, w, m))
                        })
                }
                (x, y) => x == y,
            }
        }
        prop_assert!(check(&doc, &there_doc, &m), "{} -> {}", doc, there_doc);
    }

    #[test]
    fn no_substring_of_other_text_is_rewritten(words in prop::collection::vec("[a-c]{1,4}", 1..8), pairs in pairs()) {
        let m = IdMap::default();
        m.learn(1, &strings(&pairs)).unwrap();
        // One string made of several words: never a whole known value unless it is one word.
        let sentence = words.join(" ");
        let uri = format!("/x/{}?q={}", words.join("-"), words.join("+"));
        let req = request("POST", &uri, &[("Content-Type", "application/json")], &serde_json::json!({ "t": sentence }).to_string());
        let t = m.request_to_local(&TranslateRule::default(), &req);
        if words.len() > 1 {
            // The path segment and query value are `a-b-c` and `a b c`: whole tokens that are
            // only translated when the map knows them whole.
            if let Some(t) = t {
                let joined = words.join("-");
                let spaced = words.join(" ");
                prop_assert!(m.local(&joined).is_some() || m.local(&spaced).is_some(), "{:?}", t);
            }
        }
    }

    #[test]
    fn uris_translate_there_and_back(segments in prop::collection::vec("[a-d%/ ]{1,3}", 1..5), pairs in pairs()) {
        let m = IdMap::default();
        m.learn(1, &strings(&pairs)).unwrap();
        let path: String = segments.iter().map(|s| format!("/{}", encode_segment(s))).collect();
        let there = translate_uri(&path, &|v| m.to_local_of(v)).unwrap_or(path.clone());
        let back = translate_uri(&there, &|v| m.to_canonical_of(v)).unwrap_or(there.clone());
        let decoded = |p: &str| p.split('/').map(decode_segment).collect::<Vec<_>>();
        prop_assert_eq!(decoded(&back), decoded(&path));
    }
}

#[test]
fn a_number_and_a_string_id_keep_their_json_types() {
    // A sequential copy (numbers) and a random one (strings), as in a rollout.
    let m = IdMap::default();
    m.learn(1, &[(Minted::number("7"), Minted::string("k3f9a"))])
        .unwrap();
    let numbers = TranslateRule {
        numbers: true,
        ..TranslateRule::default()
    };
    let req = request(
        "POST",
        "/accounts/7/deposit",
        &[("Content-Type", "application/json")],
        r#"{"from":7,"to":"7"}"#,
    );
    let t = m.request_to_local(&numbers, &req).unwrap();
    assert_eq!(t.uri, "/accounts/k3f9a/deposit");
    assert_eq!(
        std::str::from_utf8(&t.body).unwrap(),
        r#"{"from":"k3f9a","to":"k3f9a"}"#
    );
    let answer = json_response(200, r#"{"id":"k3f9a","balance":2}"#);
    let back = m.response_to_canonical(&numbers, &[], &answer).unwrap();
    assert_eq!(
        std::str::from_utf8(&back.body).unwrap(),
        r#"{"id":7,"balance":2}"#,
        "the client's id was a number"
    );
    // Journaled and restored, the types come back.
    let journaled = m.pairs_through(1);
    assert_eq!(
        journaled,
        vec![(1, vec![("7".to_owned(), "\"k3f9a\"".to_owned())])]
    );
    let restored = IdMap::default();
    restored.replace(&journaled);
    assert_eq!(
        restored
            .response_to_canonical(&numbers, &[], &answer)
            .unwrap()
            .body,
        back.body
    );
}
