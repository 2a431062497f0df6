//! The in-memory store: a map behind one mutex, so each change is atomic by construction.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use super::{Store, StoreError, check_closable, check_snapshot, credit, debit, id_after};
use crate::account::{Account, AccountId, Snapshot, Transfer};
use crate::ids::IdKey;
use crate::request::TransferOrder;

/// Keeps the bank in process memory; everything is lost on exit.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    // A BTreeMap keeps `accounts()` in id order without sorting.
    accounts: BTreeMap<AccountId, Account>,
    // Ids are never reused after a close, matching SQLite's AUTOINCREMENT.
    next_id: AccountId,
    id_key: Option<IdKey>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            accounts: BTreeMap::new(),
            next_id: 1,
            id_key: None,
        }
    }
}

impl State {
    fn get(&self, id: AccountId) -> Result<&Account, StoreError> {
        self.accounts
            .get(&id)
            .ok_or(StoreError::AccountNotFound(id))
    }

    fn get_mut(&mut self, id: AccountId) -> Result<&mut Account, StoreError> {
        self.accounts
            .get_mut(&id)
            .ok_or(StoreError::AccountNotFound(id))
    }
}

impl MemoryStore {
    /// An empty bank with sequential ids.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty bank whose ids are random in the space of `key`.
    pub fn with_random_ids(key: IdKey) -> Self {
        let state = State {
            id_key: Some(key),
            ..State::default()
        };
        Self {
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock, but if one ever did the map is still
        // consistent (changes are computed before they are written), so keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store for MemoryStore {
    fn open_account(&self, owner: &str) -> Result<Account, StoreError> {
        let mut state = self.lock();
        let id = state.next_id;
        let next_id = id_after(id)?;
        let account = Account {
            id,
            owner: owner.to_owned(),
            balance: 0,
        };
        state.accounts.insert(id, account.clone());
        state.next_id = next_id;
        Ok(account)
    }

    fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        Ok(self.lock().accounts.values().cloned().collect())
    }

    fn account(&self, id: AccountId) -> Result<Account, StoreError> {
        self.lock().get(id).cloned()
    }

    fn deposit(&self, id: AccountId, amount: i64) -> Result<Account, StoreError> {
        let mut state = self.lock();
        let account = state.get_mut(id)?;
        account.balance = credit(account, amount)?;
        Ok(account.clone())
    }

    fn withdraw(&self, id: AccountId, amount: i64) -> Result<Account, StoreError> {
        let mut state = self.lock();
        let account = state.get_mut(id)?;
        account.balance = debit(account, amount)?;
        Ok(account.clone())
    }

    fn transfer(&self, order: TransferOrder) -> Result<Transfer, StoreError> {
        let mut state = self.lock();
        let mut from = state.get(order.from)?.clone();
        let mut to = state.get(order.to)?.clone();
        from.balance = debit(&from, order.amount)?;
        to.balance = credit(&to, order.amount)?;
        state.accounts.insert(from.id, from.clone());
        state.accounts.insert(to.id, to.clone());
        Ok(Transfer { from, to })
    }

    fn close_account(&self, id: AccountId) -> Result<(), StoreError> {
        let mut state = self.lock();
        check_closable(state.get(id)?)?;
        state.accounts.remove(&id);
        Ok(())
    }

    fn reset(&self) -> Result<(), StoreError> {
        let mut state = self.lock();
        *state = State {
            id_key: state.id_key,
            ..State::default()
        };
        Ok(())
    }

    fn export(&self) -> Result<Snapshot, StoreError> {
        let state = self.lock();
        Ok(Snapshot {
            next_id: state.next_id,
            accounts: state.accounts.values().cloned().collect(),
            id_key: state.id_key,
        })
    }

    fn import(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let mut current = self.lock();
        check_snapshot(&snapshot, current.id_key.is_some())?;
        *current = State {
            accounts: snapshot
                .accounts
                .into_iter()
                .map(|account| (account.id, account))
                .collect(),
            next_id: snapshot.next_id,
            id_key: snapshot.id_key,
        };
        Ok(())
    }

    fn id_key(&self) -> Option<IdKey> {
        self.lock().id_key
    }

    fn blocks(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests;
