use super::*;

fn random() -> MemoryStore {
    MemoryStore::with_random_ids(IdKey::from_seed(1))
}

#[test]
fn export_and_import_carry_the_id_space() {
    let source = random();
    source.open_account("ada").unwrap();
    let snapshot = source.export().unwrap();
    assert_eq!(snapshot.id_key, Some(IdKey::from_seed(1)));
    let copy = MemoryStore::with_random_ids(IdKey::from_seed(2));
    copy.import(snapshot.clone()).unwrap();
    assert_eq!(copy.id_key(), Some(IdKey::from_seed(1)));
    assert_eq!(copy.export().unwrap(), snapshot);
}

#[test]
fn a_reset_keeps_the_id_space() {
    let store = random();
    store.open_account("ada").unwrap();
    store.reset().unwrap();
    assert_eq!(store.id_key(), Some(IdKey::from_seed(1)));
    assert_eq!(store.open_account("bob").unwrap().id, 1);
}

#[test]
fn a_snapshot_with_the_other_kind_of_ids_is_refused_and_changes_nothing() {
    let sequential = MemoryStore::new();
    sequential.open_account("ada").unwrap();
    let random_bank = random();
    random_bank.open_account("bob").unwrap();
    let (from_sequential, from_random) =
        (sequential.export().unwrap(), random_bank.export().unwrap());
    for (store, snapshot) in [(&sequential, from_random), (&random_bank, from_sequential)] {
        let before = store.export().unwrap();
        let refused = store.import(snapshot).unwrap_err();
        assert!(
            matches!(refused, StoreError::InvalidSnapshot(ref m) if m.contains("id_key")),
            "{refused}"
        );
        assert_eq!(store.export().unwrap(), before);
    }
}
