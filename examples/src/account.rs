//! The bank's values as they appear on the wire.
//!
//! Field order here is the field order in every response body, so both stores answer
//! byte-identically as long as they fill these structs with the same numbers.

use serde::Serialize;

/// Account ids are SQLite `INTEGER PRIMARY KEY`s, hence `i64` in both stores.
pub type AccountId = i64;

/// One account, as returned by every endpoint that returns an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: AccountId,
    pub owner: String,
    pub balance: i64,
}

/// The result of a transfer: both accounts after the money moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transfer {
    pub from: Account,
    pub to: Account,
}
