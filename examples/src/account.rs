//! The bank's values as they appear on the wire.
//!
//! Field order here is the field order in every response body, so both stores answer
//! byte-identically as long as they fill these structs with the same numbers.

use serde::{Deserialize, Serialize};

/// Account ids are SQLite `INTEGER PRIMARY KEY`s, hence `i64` in both stores.
pub type AccountId = i64;

/// One account, as returned by every endpoint that returns an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// The whole state of a bank: every account, ordered by id, and the id the next account
/// opened will get. `GET /admin/export` answers one, `POST /admin/import` loads one; its JSON
/// is `{"next_id":N,"accounts":[...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub next_id: AccountId,
    pub accounts: Vec<Account>,
}
