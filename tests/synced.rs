//! Changes from a fleet's shared log reach a replica's copy exactly once
//! (SPEC 10): `Keyring::apply_synced` applies them through the same path
//! as local writes, records the last sequence number in the same redb
//! transaction, skips what it already has, and keeps that number across a
//! restart, so a replica catches up from exactly where its file stands.

use keygate::keys::{
    ApiKey, Blocker, Change, KeyHash, KeyRecord, Keyring, Origin, UserId, Verified,
};
use keygate::scope::Scope;
use keygate::timestamp::Timestamp;

fn record(key: &ApiKey, user: &str) -> KeyRecord {
    KeyRecord {
        id: key.id(),
        hash: KeyHash::Blake3(key.secret_hash()),
        user: UserId::parse(user).unwrap(),
        name: "from the fleet".into(),
        scope: Scope::parse("/api/").unwrap(),
        created_at: Timestamp::from_unix(1),
        expires_at: None,
        last_used_at: None,
        origin: Origin::Keygate,
        policy: Default::default(),
    }
}

fn valid(keyring: &Keyring, key: &ApiKey) -> bool {
    matches!(
        keyring
            .snapshot()
            .verify(key.expose().as_bytes(), Timestamp::now()),
        Verified::Valid(_)
    )
}

#[test]
fn synced_changes_apply_once_and_the_sequence_number_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keygate.redb");
    let (a, b) = (ApiKey::generate().unwrap(), ApiKey::generate().unwrap());
    let carol = UserId::parse("carol").unwrap();
    {
        let keyring = Keyring::open(&path).unwrap();
        assert_eq!(keyring.synced_seq(), 0);
        let first = [
            (1, Change::Upsert(record(&a, "alice"))),
            (2, Change::Upsert(record(&b, "carol"))),
        ];
        assert_eq!(keyring.apply_synced(&first).unwrap(), 2);
        assert!(valid(&keyring, &a) && valid(&keyring, &b));

        // An overlapping batch (seq 2 again, after a reconnect) applies only
        // what is new; a gap in the numbers (a rolled-back writer) is fine.
        let writes = keyring.store_writes();
        let overlapping = [
            (2, Change::Remove(b.id())),
            (5, Change::Remove(a.id())),
            (
                7,
                Change::Block {
                    user: carol.clone(),
                    blocked: true,
                    by: Blocker::Admin,
                },
            ),
        ];
        assert_eq!(keyring.apply_synced(&overlapping).unwrap(), 7);
        assert_eq!(keyring.store_writes(), writes + 1, "one transaction");
        assert!(!valid(&keyring, &a), "seq 5 applied");
        assert!(valid(&keyring, &b), "seq 2 was not applied twice");
        assert!(keyring.snapshot().is_blocked("carol"));

        // Nothing new: nothing written.
        assert_eq!(keyring.apply_synced(&overlapping).unwrap(), 7);
        assert_eq!(keyring.store_writes(), writes + 1);
    }
    let reopened = Keyring::open(&path).unwrap();
    assert_eq!(reopened.synced_seq(), 7);
    assert!(valid(&reopened, &b) && !valid(&reopened, &a));
    assert!(reopened.snapshot().is_blocked("carol"));
}
