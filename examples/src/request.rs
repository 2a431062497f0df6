//! Parsing and validating request bodies and path ids.
//!
//! Pure functions from bytes to checked values, shared by both stores so that a bad request
//! is rejected with the same message whatever keeps the state. Bodies are parsed here rather
//! than with axum's `Json` extractor because its rejections are plain text and depend on the
//! `content-type` header; the demo answers every error in JSON.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::account::{AccountId, Snapshot};
use crate::ids::PublicId;

/// The largest amount a single deposit, withdrawal or transfer may move. Small enough that
/// no one request can overflow an `i64` balance on its own.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// The longest owner name accepted, in characters.
pub const MAX_OWNER_CHARS: usize = 200;

/// Why a request body or path was rejected; the message becomes the `detail` of a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadRequest {
    #[error("invalid JSON body: {0}")]
    InvalidJson(String),
    #[error("accounts open with balance 0; the `balance` field is not accepted")]
    BalanceNotAccepted,
    #[error("owner must not be empty")]
    EmptyOwner,
    #[error("owner must be at most {MAX_OWNER_CHARS} characters")]
    OwnerTooLong,
    #[error("amount must be a positive integer no larger than {MAX_AMOUNT}, got {0}")]
    AmountOutOfRange(i64),
    #[error("from and to must be different accounts, got {0} for both")]
    SelfTransfer(PublicId),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccountBody {
    owner: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AmountBody {
    amount: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    from: AccountId,
    to: AccountId,
    amount: i64,
}

/// A transfer body with random ids: the accounts as strings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedTransferBody {
    from: String,
    to: String,
    amount: i64,
}

/// A transfer whose accounts are named by their public ids (random ids), checked but for
/// whether those ids name accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamedTransfer {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) amount: i64,
}

/// A checked transfer order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferOrder {
    pub from: AccountId,
    pub to: AccountId,
    pub amount: i64,
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, BadRequest> {
    serde_json::from_slice(body).map_err(|e| BadRequest::InvalidJson(e.to_string()))
}

fn check_amount(amount: i64) -> Result<i64, BadRequest> {
    if (1..=MAX_AMOUNT).contains(&amount) {
        Ok(amount)
    } else {
        Err(BadRequest::AmountOutOfRange(amount))
    }
}

/// Parses `{"owner": STRING}` and returns the owner.
pub(crate) fn parse_new_account(body: &[u8]) -> Result<String, BadRequest> {
    // A client that tries to open an account with money gets a precise answer rather than
    // serde's generic "unknown field" message.
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body) {
        if fields.contains_key("balance") {
            return Err(BadRequest::BalanceNotAccepted);
        }
    }
    let NewAccountBody { owner } = parse(body)?;
    check_owner(&owner)?;
    Ok(owner)
}

/// The rules for an owner's name, shared with the check of an imported snapshot.
pub(crate) fn check_owner(owner: &str) -> Result<(), BadRequest> {
    if owner.trim().is_empty() {
        return Err(BadRequest::EmptyOwner);
    }
    if owner.chars().count() > MAX_OWNER_CHARS {
        return Err(BadRequest::OwnerTooLong);
    }
    Ok(())
}

/// Parses `{"amount": N}` for a deposit or withdrawal and returns the amount.
pub(crate) fn parse_amount(body: &[u8]) -> Result<i64, BadRequest> {
    let AmountBody { amount } = parse(body)?;
    check_amount(amount)
}

/// Parses `{"from": ID, "to": ID, "amount": N}`.
pub(crate) fn parse_transfer(body: &[u8]) -> Result<TransferOrder, BadRequest> {
    let TransferBody { from, to, amount } = parse(body)?;
    let amount = check_amount(amount)?;
    if from == to {
        return Err(BadRequest::SelfTransfer(PublicId::Number(from)));
    }
    Ok(TransferOrder { from, to, amount })
}

/// Parses `{"from": STRING, "to": STRING, "amount": N}`, the transfer of a bank with random
/// ids. The same text twice is a self-transfer (public ids are one spelling per account).
pub(crate) fn parse_named_transfer(body: &[u8]) -> Result<NamedTransfer, BadRequest> {
    let NamedTransferBody { from, to, amount } = parse(body)?;
    let amount = check_amount(amount)?;
    if from == to {
        return Err(BadRequest::SelfTransfer(PublicId::Text(from)));
    }
    Ok(NamedTransfer { from, to, amount })
}

/// Parses a snapshot for `POST /admin/import`. Only its shape is checked here; whether it is
/// a state a bank could be in is the store's `check_snapshot`, which every import runs.
pub(crate) fn parse_snapshot(body: &[u8]) -> Result<Snapshot, BadRequest> {
    parse(body)
}

/// Reads an account id from a path segment. `None` means the segment names no account at
/// all, which the caller answers like an id that does not exist.
pub(crate) fn parse_id(segment: &str) -> Option<AccountId> {
    // Only plain decimal digits: `+5` or ` 5` would otherwise alias account 5.
    if segment.is_empty() || !segment.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    segment.parse().ok()
}

#[cfg(test)]
mod tests;
