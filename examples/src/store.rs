//! Where the bank's state lives: the `Store` trait and its two implementations.
//!
//! A store owns state and the atomicity of each change; it must not know about HTTP. The
//! balance rules (`credit`, `debit`, `check_closable`), the id rule (`id_after`) and the
//! snapshot rules (`check_snapshot`) live here once and both stores call them, so that the
//! two implementations cannot disagree on which error wins.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::account::{Account, AccountId, Snapshot, Transfer};
use crate::ids::{IdKey, Ids};
use crate::request::{self, TransferOrder};

mod memory;
mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

/// Why a store refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("account {0} does not exist")]
    AccountNotFound(AccountId),
    #[error("account {id} has balance {balance}, which does not cover {amount}")]
    InsufficientFunds {
        id: AccountId,
        balance: i64,
        amount: i64,
    },
    #[error("account {id} would exceed the largest representable balance")]
    BalanceTooLarge { id: AccountId },
    #[error("account {id} still has balance {balance}; withdraw it before closing")]
    BalanceNotZero { id: AccountId, balance: i64 },
    #[error("invalid snapshot: {0}")]
    InvalidSnapshot(String),
    #[error("no account id is left to hand out")]
    IdsExhausted,
    #[error("storage failure: {0}")]
    Storage(#[from] rusqlite::Error),
}

/// The operations of the bank. Every method that changes state does so atomically: either
/// the whole change is applied and the new state returned, or nothing changes.
pub trait Store: Send + Sync + 'static {
    /// Opens an account with balance 0 and the next id (1, 2, 3... in creation order).
    fn open_account(&self, owner: &str) -> Result<Account, StoreError>;
    /// All accounts, ordered by id.
    fn accounts(&self) -> Result<Vec<Account>, StoreError>;
    fn account(&self, id: AccountId) -> Result<Account, StoreError>;
    fn deposit(&self, id: AccountId, amount: i64) -> Result<Account, StoreError>;
    fn withdraw(&self, id: AccountId, amount: i64) -> Result<Account, StoreError>;
    /// Moves money between two distinct accounts; checks `from`, then `to`, then funds.
    fn transfer(&self, order: TransferOrder) -> Result<Transfer, StoreError>;
    /// Closes an account whose balance is 0.
    fn close_account(&self, id: AccountId) -> Result<(), StoreError>;
    /// Empties the bank: no accounts, and the next account opened gets id 1 again. The id
    /// space stays: with random ids, that account shows the id account 1 showed before.
    fn reset(&self) -> Result<(), StoreError>;
    /// The whole state: every account, ordered by id, the next id and the id key.
    fn export(&self) -> Result<Snapshot, StoreError>;
    /// Replaces the whole state with `snapshot`'s, after `check_snapshot` accepted it (which
    /// includes that its ids are of this store's kind), adopting its id key. From then on the
    /// store answers exactly like the store the snapshot was exported from.
    fn import(&self, snapshot: Snapshot) -> Result<(), StoreError>;
    /// The key of the bank's random id space, or `None` when its ids are sequential. Set when
    /// the bank is created, replaced only by an import.
    fn id_key(&self) -> Option<IdKey>;
    /// Whether calls may wait on disk, so the HTTP layer must keep them off the async
    /// runtime's worker threads.
    fn blocks(&self) -> bool;
}

/// Which store the service runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Implementation {
    Memory,
    Sqlite,
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the sqlite implementation needs a data directory (--data DIR)")]
    MissingDataDir,
    #[error("cannot create data directory {path}: {source}")]
    CreateDataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open database {path}: {source}")]
    Database {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the bank in {path} has {found} ids, not {wanted} (a bank's id space is chosen when it is created): start it with --ids {found}, or use another data directory"
    )]
    IdsMismatch {
        path: PathBuf,
        found: &'static str,
        wanted: &'static str,
    },
    #[error("the id key stored in {path} is not 32 lowercase hex digits")]
    InvalidIdKey { path: PathBuf },
}

/// Opens the chosen store with sequential ids. `data_dir` is required for sqlite and ignored
/// for memory.
pub fn open_store(
    implementation: Implementation,
    data_dir: Option<&Path>,
) -> Result<Arc<dyn Store>, OpenError> {
    open_store_with(implementation, data_dir, Ids::Sequential)
}

/// Opens the chosen store with `ids` as its id space. A new bank with random ids draws its
/// key; a sqlite bank that exists keeps the one it has, and must have been created with the
/// same `ids`.
pub fn open_store_with(
    implementation: Implementation,
    data_dir: Option<&Path>,
    ids: Ids,
) -> Result<Arc<dyn Store>, OpenError> {
    match implementation {
        Implementation::Memory => Ok(Arc::new(match ids {
            Ids::Sequential => MemoryStore::new(),
            Ids::Random => MemoryStore::with_random_ids(IdKey::generate()),
        })),
        Implementation::Sqlite => {
            let dir = data_dir.ok_or(OpenError::MissingDataDir)?;
            Ok(Arc::new(SqliteStore::open_with(dir, ids)?))
        }
    }
}

/// The balance of `account` after receiving `amount`.
fn credit(account: &Account, amount: i64) -> Result<i64, StoreError> {
    account
        .balance
        .checked_add(amount)
        .ok_or(StoreError::BalanceTooLarge { id: account.id })
}

/// The balance of `account` after paying out `amount`.
fn debit(account: &Account, amount: i64) -> Result<i64, StoreError> {
    if account.balance < amount {
        return Err(StoreError::InsufficientFunds {
            id: account.id,
            balance: account.balance,
            amount,
        });
    }
    Ok(account.balance - amount)
}

fn check_closable(account: &Account) -> Result<(), StoreError> {
    if account.balance != 0 {
        return Err(StoreError::BalanceNotZero {
            id: account.id,
            balance: account.balance,
        });
    }
    Ok(())
}

/// The id that follows `id`, which a store must know before it hands `id` out. The largest
/// `i64` is therefore never an account's id: `next_id` always exists, so every state has a
/// snapshot, and both stores refuse the same opening when the ids run out.
fn id_after(id: AccountId) -> Result<AccountId, StoreError> {
    id.checked_add(1).ok_or(StoreError::IdsExhausted)
}

/// Refuses a snapshot that no bank could have reached, or not this one: ids of the other kind
/// than the store's (`random`: whether it has an id key), `next_id` below 1, an id outside
/// `1..next_id` or twice, a negative balance, or an owner `POST /accounts` would refuse.
/// Accounts may come in any order.
fn check_snapshot(snapshot: &Snapshot, random: bool) -> Result<(), StoreError> {
    let invalid = |detail: String| Err(StoreError::InvalidSnapshot(detail));
    match (random, snapshot.id_key.is_some()) {
        (true, false) => {
            return invalid(
                "this bank's ids are random and the snapshot has no id_key (it comes from a bank with sequential ids)".into(),
            );
        }
        (false, true) => {
            return invalid(
                "this bank's ids are sequential and the snapshot has an id_key (it comes from a bank with random ids)".into(),
            );
        }
        _ => {}
    }
    let next_id = snapshot.next_id;
    if next_id < 1 {
        return invalid(format!("next_id must be at least 1, got {next_id}"));
    }
    let mut seen = BTreeSet::new();
    for account in &snapshot.accounts {
        let id = account.id;
        if !(1..next_id).contains(&id) {
            return invalid(format!(
                "account id {id} must be at least 1 and below next_id {next_id}"
            ));
        }
        if !seen.insert(id) {
            return invalid(format!("account id {id} appears more than once"));
        }
        if account.balance < 0 {
            return invalid(format!(
                "account {id} has a negative balance {}",
                account.balance
            ));
        }
        if let Err(bad) = request::check_owner(&account.owner) {
            return invalid(format!("account {id}: {bad}"));
        }
    }
    Ok(())
}
