use super::*;

#[test]
fn uses_write_ahead_logging() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(dir.path()).unwrap();
    let mode: String = store
        .lock()
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_refused_transfer_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(dir.path()).unwrap();
    store.open_account("ada").unwrap();
    store.open_account("bob").unwrap();
    store.deposit(1, 5).unwrap();
    let refused = store.transfer(TransferOrder {
        from: 1,
        to: 2,
        amount: 6,
    });
    assert!(matches!(
        refused,
        Err(StoreError::InsufficientFunds {
            id: 1,
            balance: 5,
            amount: 6
        })
    ));
    assert_eq!(store.account(1).unwrap().balance, 5);
    assert_eq!(store.account(2).unwrap().balance, 0);
}
