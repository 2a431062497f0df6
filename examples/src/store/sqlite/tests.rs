use super::*;
use crate::ids::Ids;

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
        id_key: None,
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
        id_key: None,
    });
    assert!(matches!(refused, Err(StoreError::InvalidSnapshot(_))));
    assert_eq!(store.export().unwrap(), before);
}

#[test]
fn a_new_bank_with_random_ids_stores_its_key_and_a_restart_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = {
        let store = SqliteStore::open_with(dir.path(), Ids::Random).unwrap();
        store.open_account("ada").unwrap();
        store.id_key().expect("random ids have a key")
    };
    let again = SqliteStore::open_with(dir.path(), Ids::Random).unwrap();
    assert_eq!(again.id_key(), Some(key));
    assert_eq!(again.export().unwrap().id_key, Some(key));
    // A reset empties the bank and keeps its id space.
    again.reset().unwrap();
    assert_eq!(again.id_key(), Some(key));
    drop(again);
    let other = tempfile::tempdir().unwrap();
    let other = SqliteStore::open_with(other.path(), Ids::Random).unwrap();
    assert_ne!(other.id_key(), Some(key), "every bank draws its own key");
}

#[test]
fn a_bank_keeps_the_kind_of_ids_it_was_created_with() {
    let random = tempfile::tempdir().unwrap();
    SqliteStore::open_with(random.path(), Ids::Random).unwrap();
    let refused = SqliteStore::open_in(random.path()).unwrap_err();
    assert!(
        matches!(
            refused,
            OpenError::IdsMismatch {
                found: "random",
                wanted: "sequential",
                ..
            }
        ),
        "{refused}"
    );
    assert!(refused.to_string().contains("--ids random"), "{refused}");

    let sequential = tempfile::tempdir().unwrap();
    SqliteStore::open_in(sequential.path())
        .unwrap()
        .open_account("ada")
        .unwrap();
    let refused = SqliteStore::open_with(sequential.path(), Ids::Random).unwrap_err();
    assert!(
        matches!(
            refused,
            OpenError::IdsMismatch {
                found: "sequential",
                ..
            }
        ),
        "{refused}"
    );
    // A bank that never showed an id may still become one with random ids.
    let untouched = tempfile::tempdir().unwrap();
    SqliteStore::open_in(untouched.path()).unwrap();
    assert!(
        SqliteStore::open_with(untouched.path(), Ids::Random)
            .unwrap()
            .id_key()
            .is_some()
    );
}

#[test]
fn an_import_adopts_the_snapshots_key_durably() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = SqliteStore::open_with(a.path(), Ids::Random).unwrap();
    source.open_account("ada").unwrap();
    let snapshot = source.export().unwrap();
    let copy = SqliteStore::open_with(b.path(), Ids::Random).unwrap();
    assert_ne!(copy.id_key(), snapshot.id_key);
    copy.import(snapshot.clone()).unwrap();
    assert_eq!(copy.id_key(), snapshot.id_key);
    drop(copy);
    let reopened = SqliteStore::open_with(b.path(), Ids::Random).unwrap();
    assert_eq!(reopened.export().unwrap(), snapshot);
}

#[test]
fn a_stored_key_that_is_not_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with(dir.path(), Ids::Random).unwrap();
    store
        .lock()
        .execute(
            "UPDATE settings SET value = 'nope' WHERE name = 'id_key'",
            [],
        )
        .unwrap();
    drop(store);
    assert!(matches!(
        SqliteStore::open_with(dir.path(), Ids::Random),
        Err(OpenError::InvalidIdKey { .. })
    ));
}
