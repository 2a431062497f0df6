use super::*;

#[test]
fn accepts_an_owner() {
    assert_eq!(
        parse_new_account(br#"{"owner":"ada"}"#),
        Ok("ada".to_owned())
    );
}

#[test]
fn rejects_an_opening_balance() {
    assert_eq!(
        parse_new_account(br#"{"owner":"ada","balance":100}"#),
        Err(BadRequest::BalanceNotAccepted)
    );
}

#[test]
fn rejects_unknown_fields() {
    let err = parse_new_account(br#"{"owner":"ada","vip":true}"#).unwrap_err();
    assert!(matches!(err, BadRequest::InvalidJson(ref m) if m.contains("unknown field `vip`")));
}

#[test]
fn rejects_blank_and_long_owners() {
    assert_eq!(
        parse_new_account(br#"{"owner":"  "}"#),
        Err(BadRequest::EmptyOwner)
    );
    let long = format!(r#"{{"owner":"{}"}}"#, "x".repeat(MAX_OWNER_CHARS + 1));
    assert_eq!(
        parse_new_account(long.as_bytes()),
        Err(BadRequest::OwnerTooLong)
    );
}

#[test]
fn rejects_amounts_out_of_range() {
    assert_eq!(
        parse_amount(br#"{"amount":0}"#),
        Err(BadRequest::AmountOutOfRange(0))
    );
    assert_eq!(
        parse_amount(br#"{"amount":-3}"#),
        Err(BadRequest::AmountOutOfRange(-3))
    );
    assert_eq!(
        parse_amount(br#"{"amount":1000000000001}"#),
        Err(BadRequest::AmountOutOfRange(1_000_000_000_001))
    );
    assert_eq!(parse_amount(br#"{"amount":1000000000000}"#), Ok(MAX_AMOUNT));
}

#[test]
fn rejects_non_integer_amounts() {
    for body in [
        &br#"{"amount":1.5}"#[..],
        br#"{"amount":"5"}"#,
        br#"{"amount":99999999999999999999}"#,
        br#"{}"#,
        b"not json",
        b"",
    ] {
        assert!(
            matches!(parse_amount(body), Err(BadRequest::InvalidJson(_))),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn rejects_a_transfer_to_the_same_account() {
    assert_eq!(
        parse_transfer(br#"{"from":2,"to":2,"amount":5}"#),
        Err(BadRequest::SelfTransfer(PublicId::Number(2)))
    );
    assert_eq!(
        parse_transfer(br#"{"from":1,"to":2,"amount":5}"#),
        Ok(TransferOrder {
            from: 1,
            to: 2,
            amount: 5
        })
    );
}

#[test]
fn reads_only_plain_decimal_ids() {
    assert_eq!(parse_id("42"), Some(42));
    assert_eq!(parse_id("+42"), None);
    assert_eq!(parse_id("-1"), None);
    assert_eq!(parse_id("abc"), None);
    assert_eq!(parse_id(""), None);
    assert_eq!(parse_id("99999999999999999999"), None);
}

#[test]
fn a_named_transfer_takes_strings_for_accounts() {
    assert_eq!(
        parse_named_transfer(br#"{"from":"a1","to":"b2","amount":5}"#),
        Ok(NamedTransfer {
            from: "a1".to_owned(),
            to: "b2".to_owned(),
            amount: 5
        })
    );
    assert_eq!(
        parse_named_transfer(br#"{"from":"a1","to":"a1","amount":5}"#),
        Err(BadRequest::SelfTransfer(PublicId::Text("a1".to_owned())))
    );
    let numbers = parse_named_transfer(br#"{"from":1,"to":2,"amount":5}"#).unwrap_err();
    assert!(
        matches!(numbers, BadRequest::InvalidJson(ref m) if m.contains("expected a string")),
        "{numbers:?}"
    );
    assert_eq!(
        parse_named_transfer(br#"{"from":"a1","to":"b2","amount":0}"#),
        Err(BadRequest::AmountOutOfRange(0))
    );
}
