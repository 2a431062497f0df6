//! The SQLite store: one database file, one connection behind a mutex, one transaction per
//! change.
//!
//! A single connection is enough for a demo and makes every operation serializable without
//! relying on SQLite's busy handling. Calls block on disk; the HTTP layer runs them on the
//! blocking thread pool (see `Store::blocks`). The key of a random id space is stored in the
//! same database, so a restarted bank shows the ids it showed before.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::{
    OpenError, Store, StoreError, check_closable, check_snapshot, credit, debit, id_after,
};
use crate::account::{Account, AccountId, Snapshot, Transfer};
use crate::ids::{IdKey, Ids};
use crate::request::TransferOrder;

/// The database file's name inside the data directory.
pub(crate) const DATABASE_FILE: &str = "bank.sqlite3";

// AUTOINCREMENT so that ids of closed accounts are never handed out again; the memory store
// does the same, and the two must agree on every id. The last id handed out is the `seq` of
// the table's row in `sqlite_sequence`, which reset and import therefore rewrite too.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    balance INTEGER NOT NULL
)";

// The bank's settings, one row each: only `id_key` so far, present when its ids are random.
const SETTINGS_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
)";

/// Keeps the bank in `DATA_DIR/bank.sqlite3`; the state survives restarts.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// The `id_key` setting as stored; taken after `conn` when both are held.
    id_key: Mutex<Option<IdKey>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the data directory and the bank with sequential ids inside it.
    pub fn open_in(dir: &Path) -> Result<Self, OpenError> {
        Self::open_with(dir, Ids::Sequential)
    }

    /// Opens (creating if needed) the data directory and the bank inside it. A new bank gets
    /// the id space `ids` asks for (random: a new key, stored); a bank that exists keeps its
    /// own, and must have the kind `ids` asks for.
    pub fn open_with(dir: &Path, ids: Ids) -> Result<Self, OpenError> {
        std::fs::create_dir_all(dir).map_err(|source| OpenError::CreateDataDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(DATABASE_FILE);
        let conn = match Self::connect(&path) {
            Ok(conn) => conn,
            Err(source) => return Err(OpenError::Database { path, source }),
        };
        let id_key = match Self::id_space(&conn, ids) {
            Ok(key) => key,
            Err(IdSpaceError::Database(source)) => {
                return Err(OpenError::Database { path, source });
            }
            Err(IdSpaceError::Mismatch(found)) => {
                return Err(OpenError::IdsMismatch {
                    path,
                    found,
                    wanted: ids_name(ids),
                });
            }
            Err(IdSpaceError::InvalidKey) => return Err(OpenError::InvalidIdKey { path }),
        };
        Ok(Self {
            conn: Mutex::new(conn),
            id_key: Mutex::new(id_key),
        })
    }

    /// The key of the bank's id space, drawn and stored for a new bank with random ids.
    fn id_space(conn: &Connection, ids: Ids) -> Result<Option<IdKey>, IdSpaceError> {
        let stored: Option<String> = conn
            .query_row(
                "SELECT value FROM settings WHERE name = 'id_key'",
                [],
                |row| row.get(0),
            )
            .optional()?;
        let stored = match stored {
            Some(text) => Some(
                text.parse::<IdKey>()
                    .map_err(|_| IdSpaceError::InvalidKey)?,
            ),
            None => None,
        };
        match (stored, ids) {
            (Some(key), Ids::Random) => Ok(Some(key)),
            (Some(_), Ids::Sequential) => Err(IdSpaceError::Mismatch("random")),
            (None, Ids::Sequential) => Ok(None),
            (None, Ids::Random) => {
                // A bank that never opened an account (or was reset) has shown no id yet, so it
                // may take either kind; one that has must keep its numbers.
                let untouched: bool = conn.query_row(
                    "SELECT NOT EXISTS (SELECT 1 FROM accounts)
                        AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'accounts')",
                    [],
                    |row| row.get(0),
                )?;
                if untouched {
                    let key = IdKey::generate();
                    set_id_key(conn, Some(key))?;
                    Ok(Some(key))
                } else {
                    Err(IdSpaceError::Mismatch("sequential"))
                }
            }
        }
    }

    fn connect(path: &Path) -> rusqlite::Result<Connection> {
        let conn = Connection::open(path)?;
        // WAL lets readers of the file (a test, an operator with the sqlite3 shell) look while
        // the service writes. synchronous=FULL keeps a committed change on disk even across
        // a power cut: a 2xx answer means the change is durable.
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute(SCHEMA, [])?;
        conn.execute(SETTINGS_SCHEMA, [])?;
        Ok(conn)
    }

    fn key(&self) -> MutexGuard<'_, Option<IdKey>> {
        self.id_key
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic under the lock cannot leave a half-applied change: the open transaction
        // rolls back when dropped. So the connection is safe to keep using.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `change` in one IMMEDIATE transaction, committing only if it succeeds.
    fn write<T>(
        &self,
        change: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = change(&tx)?;
        tx.commit()?;
        Ok(value)
    }
}

fn row_to_account(row: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        owner: row.get(1)?,
        balance: row.get(2)?,
    })
}

fn find(conn: &Connection, id: AccountId) -> Result<Account, StoreError> {
    conn.query_row(
        "SELECT id, owner, balance FROM accounts WHERE id = ?1",
        [id],
        row_to_account,
    )
    .optional()?
    .ok_or(StoreError::AccountNotFound(id))
}

fn all_accounts(conn: &Connection) -> Result<Vec<Account>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT id, owner, balance FROM accounts ORDER BY id")?;
    let accounts = stmt
        .query_map([], row_to_account)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(accounts)
}

/// Sets the last id handed out, so that the next account opened gets `last + 1`.
fn set_last_id(conn: &Connection, last: AccountId) -> Result<(), StoreError> {
    conn.execute("DELETE FROM sqlite_sequence WHERE name = 'accounts'", [])?;
    conn.execute(
        "INSERT INTO sqlite_sequence (name, seq) VALUES ('accounts', ?1)",
        [last],
    )?;
    Ok(())
}

/// Why the id space of an existing database cannot be used.
enum IdSpaceError {
    Database(rusqlite::Error),
    /// The bank has ids of this other kind.
    Mismatch(&'static str),
    InvalidKey,
}

impl From<rusqlite::Error> for IdSpaceError {
    fn from(e: rusqlite::Error) -> Self {
        IdSpaceError::Database(e)
    }
}

/// Stores the key of the bank's id space (`None`: sequential ids).
fn set_id_key(conn: &Connection, key: Option<IdKey>) -> rusqlite::Result<()> {
    match key {
        Some(key) => conn.execute(
            "INSERT OR REPLACE INTO settings (name, value) VALUES ('id_key', ?1)",
            [key.to_string()],
        )?,
        None => conn.execute("DELETE FROM settings WHERE name = 'id_key'", [])?,
    };
    Ok(())
}

fn ids_name(ids: Ids) -> &'static str {
    match ids {
        Ids::Sequential => "sequential",
        Ids::Random => "random",
    }
}

fn set_balance(conn: &Connection, id: AccountId, balance: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE accounts SET balance = ?1 WHERE id = ?2",
        params![balance, id],
    )?;
    Ok(())
}

impl Store for SqliteStore {
    fn open_account(&self, owner: &str) -> Result<Account, StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO accounts (owner, balance) VALUES (?1, 0)",
                [owner],
            )?;
            let id = tx.last_insert_rowid();
            // Refused like the memory store refuses it; returning rolls the insert back.
            id_after(id)?;
            Ok(Account {
                id,
                owner: owner.to_owned(),
                balance: 0,
            })
        })
    }

    fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        all_accounts(&self.lock())
    }

    fn account(&self, id: AccountId) -> Result<Account, StoreError> {
        find(&self.lock(), id)
    }

    fn deposit(&self, id: AccountId, amount: i64) -> Result<Account, StoreError> {
        self.write(|tx| {
            let mut account = find(tx, id)?;
            account.balance = credit(&account, amount)?;
            set_balance(tx, id, account.balance)?;
            Ok(account)
        })
    }

    fn withdraw(&self, id: AccountId, amount: i64) -> Result<Account, StoreError> {
        self.write(|tx| {
            let mut account = find(tx, id)?;
            account.balance = debit(&account, amount)?;
            set_balance(tx, id, account.balance)?;
            Ok(account)
        })
    }

    fn transfer(&self, order: TransferOrder) -> Result<Transfer, StoreError> {
        self.write(|tx| {
            let mut from = find(tx, order.from)?;
            let mut to = find(tx, order.to)?;
            from.balance = debit(&from, order.amount)?;
            to.balance = credit(&to, order.amount)?;
            set_balance(tx, from.id, from.balance)?;
            set_balance(tx, to.id, to.balance)?;
            Ok(Transfer { from, to })
        })
    }

    fn close_account(&self, id: AccountId) -> Result<(), StoreError> {
        self.write(|tx| {
            check_closable(&find(tx, id)?)?;
            tx.execute("DELETE FROM accounts WHERE id = ?1", [id])?;
            Ok(())
        })
    }

    fn reset(&self) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute("DELETE FROM accounts", [])?;
            tx.execute("DELETE FROM sqlite_sequence WHERE name = 'accounts'", [])?;
            Ok(())
        })
    }

    fn export(&self) -> Result<Snapshot, StoreError> {
        let mut conn = self.lock();
        // One read transaction, so the accounts and the sequence belong to the same state.
        let tx = conn.transaction()?;
        let accounts = all_accounts(&tx)?;
        let seq: AccountId = tx.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'accounts'",
            [],
            |row| row.get(0),
        )?;
        // AUTOINCREMENT hands out one more than the larger of the two.
        let largest = accounts.last().map_or(0, |account| account.id);
        let next_id = id_after(seq.max(largest))?;
        tx.commit()?;
        let id_key = *self.key();
        Ok(Snapshot {
            next_id,
            accounts,
            id_key,
        })
    }

    fn import(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        // Only an import changes the key, and never its kind: no lock needed to read it here.
        check_snapshot(&snapshot, self.id_key().is_some())?;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM accounts", [])?;
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO accounts (id, owner, balance) VALUES (?1, ?2, ?3)")?;
            for account in &snapshot.accounts {
                insert.execute(params![account.id, account.owner, account.balance])?;
            }
        }
        // Inserting explicit ids moved the sequence to the largest one; the snapshot's
        // next_id may be further on, when the last accounts opened have been closed.
        set_last_id(&tx, snapshot.next_id - 1)?;
        set_id_key(&tx, snapshot.id_key)?;
        tx.commit()?;
        // Still under the connection's lock: an export sees the old state and key, or both new.
        *self.key() = snapshot.id_key;
        Ok(())
    }

    fn id_key(&self) -> Option<IdKey> {
        *self.key()
    }

    fn blocks(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
