use super::*;

#[test]
fn a_random_id_is_16_lowercase_hex_digits_and_reads_back() {
    let key = IdKey::from_seed(7);
    for id in (1..5_000).chain([i64::MAX - 1, i64::MAX, 1 << 32, (1 << 32) - 1]) {
        let text = key.encode(id);
        assert_eq!(text.len(), 16, "{text}");
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{text}"
        );
        assert_eq!(key.decode(&text), Some(id), "{id} -> {text}");
    }
}

#[test]
fn the_permutation_is_a_bijection_of_the_64_bit_integers() {
    let key = IdKey::from_seed(11);
    let mut x = 0x1234_5678_9abc_def0_u64;
    for _ in 0..10_000 {
        x = mix(x);
        assert_eq!(key.unpermute(key.permute(x)), x);
        assert_eq!(key.permute(key.unpermute(x)), x);
    }
}

#[test]
fn consecutive_ids_do_not_look_consecutive() {
    let key = IdKey::from_seed(3);
    let ids: Vec<String> = (1..=4).map(|id| key.encode(id)).collect();
    // No shared prefix longer than chance allows, and no order to read off.
    for pair in ids.windows(2) {
        let common = pair[0]
            .bytes()
            .zip(pair[1].bytes())
            .take_while(|(a, b)| a == b)
            .count();
        assert!(common < 6, "{ids:?}");
    }
}

#[test]
fn two_keys_give_two_id_spaces() {
    let (a, b) = (IdKey::generate(), IdKey::generate());
    assert_ne!(a, b);
    let differ = (1..=100)
        .filter(|id| a.encode(*id) != b.encode(*id))
        .count();
    assert_eq!(differ, 100);
    // An id of one space names nothing, or another account, in the other.
    assert_ne!(b.decode(&a.encode(1)), Some(1));
    assert_ne!(IdKey::from_seed(1).encode(1), IdKey::from_seed(2).encode(1));
}

#[test]
fn the_same_seed_gives_the_same_ids() {
    assert_eq!(IdKey::from_seed(42), IdKey::from_seed(42));
    assert_eq!(
        IdKey::from_seed(42).encode(5),
        IdKey::from_seed(42).encode(5)
    );
}

#[test]
fn text_that_is_not_a_random_id_names_no_account() {
    let key = IdKey::from_seed(5);
    let id = key.encode(9);
    for text in [
        String::new(),
        "9".to_owned(),
        id.to_uppercase(),
        format!("{id}0"),
        id[1..].to_owned(),
        format!("+{}", &id[1..]),
        "zzzzzzzzzzzzzzzz".to_owned(),
    ] {
        assert_eq!(key.decode(&text), None, "{text:?}");
    }
    // Well-formed text that stands for 0 or for more than the largest i64.
    assert_eq!(key.decode(&format!("{:016x}", key.permute(0))), None);
    assert_eq!(key.decode(&format!("{:016x}", key.permute(u64::MAX))), None);
}

#[test]
fn a_key_is_written_as_32_hex_digits_and_read_back() {
    let key = IdKey::from_seed(8);
    let json = serde_json::to_string(&key).unwrap();
    assert_eq!(json.len(), 34, "{json}");
    assert_eq!(serde_json::from_str::<IdKey>(&json).unwrap(), key);
    assert_eq!(key.to_string().parse::<IdKey>(), Ok(key));
    for bad in [r#""""#, r#""abc""#, &json.to_uppercase(), "12"] {
        assert!(serde_json::from_str::<IdKey>(bad).is_err(), "{bad}");
    }
    assert_eq!(format!("{key:?}"), "IdKey(..)");
}

#[test]
fn the_id_space_reads_what_it_writes() {
    let random = IdSpace::of(Some(IdKey::from_seed(1)));
    let PublicId::Text(text) = random.public(12) else {
        panic!("random ids are strings");
    };
    assert_eq!(random.parse(&text), Some(12));
    assert_eq!(random.parse("12"), None);
    let sequential = IdSpace::of(None);
    assert_eq!(sequential.public(12), PublicId::Number(12));
    assert_eq!(sequential.parse("12"), Some(12));
    assert_eq!(sequential.parse(&text), None);
    assert_eq!(serde_json::to_string(&sequential.public(12)).unwrap(), "12");
    assert_eq!(
        serde_json::to_string(&random.public(12)).unwrap(),
        format!("\"{text}\"")
    );
}
