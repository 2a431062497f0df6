//! Transactions on the data listener: the `Lockstep-Transaction` header on logical requests, and
//! `POST {prefix}/transactions/ID/commit|abort`.

use http::HeaderMap;
use lockstep_backends::TxnMode;
use lockstep_config::TransactionAck;

use crate::respond::GatewayError;
use crate::shared::Shared;

/// The request header naming a request's transaction.
pub(crate) const HEADER: &str = "lockstep-transaction";

/// A parsed `Lockstep-Transaction` value: `ID` or `ID; commit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnHeader {
    pub(crate) id: String,
    pub(crate) commit: bool,
}

pub(crate) fn parse_header(raw: &[u8]) -> Result<TxnHeader, GatewayError> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| GatewayError::BadTransactionHeader("the value is not ASCII".into()))?;
    let mut parts = text.split(';');
    let id = parts.next().unwrap_or("").trim();
    let commit = match parts.next().map(str::trim) {
        None => false,
        Some(p) if p.eq_ignore_ascii_case("commit") => true,
        Some(p) => {
            return Err(GatewayError::BadTransactionHeader(format!(
                "unknown parameter {p:?}"
            )));
        }
    };
    if parts.next().is_some() {
        return Err(GatewayError::BadTransactionHeader(
            "more than one parameter".into(),
        ));
    }
    check_id(id)?;
    Ok(TxnHeader {
        id: id.to_owned(),
        commit,
    })
}

pub(crate) fn check_id(id: &str) -> Result<(), GatewayError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
    if ok {
        Ok(())
    } else {
        Err(GatewayError::BadTransactionHeader(format!(
            "invalid transaction id {id:?}"
        )))
    }
}

/// Transactions are scoped by the caller's credentials, like idempotency keys: another client
/// cannot join, commit or abort them.
pub(crate) fn scope(shared: &Shared, headers: &HeaderMap) -> String {
    crate::idempotency::scoped_key(&shared.config.idempotency.scope_headers, headers, "")
}

pub(crate) fn mode(ack: TransactionAck) -> TxnMode {
    match ack {
        TransactionAck::PerRequest => TxnMode::PerRequest,
        TransactionAck::PerTransaction => TxnMode::PerTransaction,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_or_are_refused() {
        assert_eq!(
            parse_header(b"t-1").unwrap(),
            TxnHeader {
                id: "t-1".into(),
                commit: false
            }
        );
        assert_eq!(
            parse_header(b"t-1 ; Commit").unwrap(),
            TxnHeader {
                id: "t-1".into(),
                commit: true
            }
        );
        for bad in [
            &b""[..],
            b"; commit",
            b"a b",
            b"t-1; rollback",
            b"t-1; commit; commit",
            b"\xff",
        ] {
            assert!(parse_header(bad).is_err(), "{bad:?}");
        }
        assert!(parse_header("x".repeat(129).as_bytes()).is_err());
    }
}
