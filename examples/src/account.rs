//! The bank's values as the stores keep them.
//!
//! Ids here are the stores' numbers; the routes show them in the bank's id space (see `ids`).
//! Field order here is the field order in every response body, so both stores answer
//! byte-identically as long as they fill these structs with the same numbers.

use serde::{Deserialize, Serialize};

use crate::ids::IdKey;

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

/// The whole state of a bank: every account, ordered by id, the id the next account opened
/// will get and, for a bank with random ids, the key of its id space. `GET /admin/export`
/// answers one, `POST /admin/import` loads one; its JSON is `{"next_id":N,"accounts":[...]}`,
/// plus `"id_key":"..."` from a bank with random ids. Ids in a snapshot are the stores'
/// numbers: with the key, they are the whole story.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub next_id: AccountId,
    pub accounts: Vec<Account>,
    /// The secret of the bank's random id space; `None` for sequential ids. A copy that imports
    /// the snapshot shows the same ids as the bank it was exported from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_key: Option<IdKey>,
}
