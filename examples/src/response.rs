//! Building JSON responses by hand, so that every body is compact JSON with the declared
//! field order and exactly one `content-type`; and the views of accounts that show their ids
//! in the bank's id space.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::account::{Account, Transfer};
use crate::ids::{IdSpace, PublicId};

/// A response with `status` and `value` serialized as compact JSON.
pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        // Only maps with non-string keys fail to serialize; none of the bodies have one.
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// An account as a client sees it: the store's account with its id in the bank's id space.
#[derive(Serialize)]
pub(crate) struct AccountView<'a> {
    id: PublicId,
    owner: &'a str,
    balance: i64,
}

impl<'a> AccountView<'a> {
    pub(crate) fn new(ids: &IdSpace, account: &'a Account) -> Self {
        AccountView {
            id: ids.public(account.id),
            owner: &account.owner,
            balance: account.balance,
        }
    }

    pub(crate) fn all(ids: &IdSpace, accounts: &'a [Account]) -> Vec<Self> {
        accounts.iter().map(|a| AccountView::new(ids, a)).collect()
    }
}

/// A transfer's answer as a client sees it.
#[derive(Serialize)]
pub(crate) struct TransferView<'a> {
    from: AccountView<'a>,
    to: AccountView<'a>,
}

impl<'a> TransferView<'a> {
    pub(crate) fn new(ids: &IdSpace, transfer: &'a Transfer) -> Self {
        TransferView {
            from: AccountView::new(ids, &transfer.from),
            to: AccountView::new(ids, &transfer.to),
        }
    }
}
