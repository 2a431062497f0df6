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

fn sequence(store: &SqliteStore) -> Option<AccountId> {
    store
        .lock()
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'accounts'",
            [],
            |row| row.get(0),
        )
        .optional()
        .unwrap()
}

#[test]
fn reset_restarts_the_autoincrement_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(dir.path()).unwrap();
    store.open_account("ada").unwrap();
    store.open_account("bob").unwrap();
    assert_eq!(sequence(&store), Some(2));
    store.reset().unwrap();
    assert_eq!(sequence(&store), None);
    assert_eq!(store.open_account("eve").unwrap().id, 1);
}

#[test]
fn import_sets_the_sequence_to_the_snapshots_next_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(dir.path()).unwrap();
    let snapshot = Snapshot {
        next_id: 9,
        accounts: vec![
            Account {
                id: 4,
                owner: "bob".to_owned(),
                balance: 3,
            },
            Account {
                id: 2,
                owner: "ada".to_owned(),
                balance: 0,
            },
        ],
    };
    store.import(snapshot.clone()).unwrap();
    assert_eq!(sequence(&store), Some(8));
    let exported = store.export().unwrap();
    assert_eq!(exported.next_id, 9);
    // Exported in id order, whatever the order imported.
    let ids: Vec<AccountId> = exported.accounts.iter().map(|a| a.id).collect();
    assert_eq!(ids, [2, 4]);
    assert_eq!(store.open_account("eve").unwrap().id, 9);
}

#[test]
fn a_refused_import_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(dir.path()).unwrap();
    store.open_account("ada").unwrap();
    let before = store.export().unwrap();
    let refused = store.import(Snapshot {
        next_id: 2,
        accounts: vec![Account {
            id: 2,
            owner: "bob".to_owned(),
            balance: 0,
        }],
    });
    assert!(matches!(refused, Err(StoreError::InvalidSnapshot(_))));
    assert_eq!(store.export().unwrap(), before);
}
