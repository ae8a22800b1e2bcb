//! A key imported from Haplo is checked with bcrypt once, then with BLAKE3
//! (SPEC 9): proven in memory by the first right secret, written to the
//! store by the next flush, and still upgraded after a restart. A wrong
//! secret proves nothing. Against a real redb file in a temp dir.

use keygate::keys::{
    ApiKey, BcryptHash, Change, KeyHash, KeyRecord, Keyring, Origin, UserId, Verified,
};
use keygate::scope::Scope;
use keygate::timestamp::Timestamp;

/// A key as Haplo would store it: only the bcrypt hash of the secret part.
fn imported(key: &ApiKey) -> KeyRecord {
    let hash = bcrypt::hash_with_result(&key.expose()[16..], 4)
        .expect("bcrypt")
        .format_for_version(bcrypt::Version::TwoA);
    let bcrypt = BcryptHash::parse(&hash).expect("a bcrypt hash");
    KeyRecord {
        id: key.id(),
        hash: KeyHash::Bcrypt(bcrypt.clone()),
        user: UserId::parse("1234").unwrap(),
        name: "from haplo".into(),
        scope: Scope::parse("/api/").unwrap(),
        created_at: Timestamp::now(),
        expires_at: None,
        last_used_at: None,
        origin: Origin::Haplo { app: 4000, bcrypt },
        policy: Default::default(),
    }
}

fn state(keyring: &Keyring, presented: &str) -> &'static str {
    match keyring
        .snapshot()
        .verify(presented.as_bytes(), Timestamp::now())
    {
        Verified::Valid(_) => "valid",
        Verified::Invalid => "invalid",
        Verified::NeedsBcrypt(_) => "needs-bcrypt",
    }
}

#[test]
fn an_imported_key_is_proven_once_then_checked_with_blake3_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keygate.redb");
    let key = ApiKey::generate().unwrap();
    let wrong = format!("{}{}", &key.expose()[..16], "A".repeat(28));
    {
        let keyring = Keyring::open(&path).unwrap();
        keyring
            .apply(&[Change::Upsert(imported(&key))], &[])
            .unwrap();
        assert_eq!(state(&keyring, key.expose()), "needs-bcrypt");
        assert_eq!(state(&keyring, &wrong), "needs-bcrypt");

        assert!(!keyring.prove_bcrypt(wrong.as_bytes()), "a wrong secret");
        assert_eq!(state(&keyring, key.expose()), "needs-bcrypt");

        assert!(keyring.prove_bcrypt(key.expose().as_bytes()));
        assert_eq!(state(&keyring, key.expose()), "valid");
        assert_eq!(state(&keyring, &wrong), "invalid", "BLAKE3 from now on");

        let writes = keyring.store_writes();
        keyring.flush_last_used().unwrap();
        assert!(keyring.store_writes() > writes, "the upgrade is written");
        let stored = keyring.key(key.id()).unwrap().unwrap();
        assert!(stored.hash.blake3().is_some());
        assert!(
            matches!(stored.origin, Origin::Haplo { app: 4000, .. }),
            "still Haplo's key"
        );
        assert_eq!(state(&keyring, key.expose()), "valid");
    }
    let reopened = Keyring::open(&path).unwrap();
    assert_eq!(
        state(&reopened, key.expose()),
        "valid",
        "no bcrypt after a restart"
    );
    assert_eq!(state(&reopened, &wrong), "invalid");
}

#[test]
fn a_key_replaced_while_bcrypt_ran_is_not_upgraded_with_the_old_proof() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = Keyring::open(&dir.path().join("keygate.redb")).unwrap();
    let key = ApiKey::generate().unwrap();
    keyring
        .apply(&[Change::Upsert(imported(&key))], &[])
        .unwrap();
    assert!(keyring.prove_bcrypt(key.expose().as_bytes()));
    // Haplo replaced the key (same id, a new secret's hash) before the
    // flush: the proof was for the old hash and must not carry over.
    let other = ApiKey::generate().unwrap();
    let mut replaced = imported(&other);
    replaced.id = key.id();
    keyring.apply(&[Change::Upsert(replaced)], &[]).unwrap();
    keyring.flush_last_used().unwrap();
    assert_eq!(state(&keyring, key.expose()), "needs-bcrypt");
    assert!(!keyring.prove_bcrypt(key.expose().as_bytes()));
    let stored = keyring.key(key.id()).unwrap().unwrap();
    assert!(matches!(stored.hash, KeyHash::Bcrypt(_)));
}
