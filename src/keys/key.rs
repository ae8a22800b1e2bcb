//! Haplo's key format: 33 random bytes as 44 URL-ish base64 characters.
//!
//! Haplo (`lib/common/krandom.rb`) base64-encodes 33 bytes from the OS,
//! maps `+` to `_` and `/` to `-`, and replaces a first or last character
//! that is not alphanumeric with `0`. The first 16 characters are the public
//! id, the other 28 the secret. keygate produces and accepts exactly that
//! shape, so keys move between the two systems unchanged.
//!
//! Only a BLAKE3 hash of the secret is ever kept. The secret carries about
//! 166 bits of entropy, so a fast unsalted hash is safe here (a slow password
//! hash would only cost every request time); the hash is computed in
//! BLAKE3's derive-key mode so it cannot be confused with any other use of
//! BLAKE3 over the same bytes.

use std::fmt;
use std::sync::LazyLock;

use base64::Engine as _;

/// Length of a full key in characters.
pub const KEY_LEN: usize = 44;
/// Length of the public id prefix in characters.
pub const ID_LEN: usize = 16;
/// Random bytes behind one key (Haplo's `API_KEY_LENGTH`).
const RANDOM_BYTES: usize = 33;
/// Domain separation for the secret hash. Changing it invalidates every key.
const HASH_CONTEXT: &str = "keygate 2026-11 api key secret v1";

/// Whether `b` may appear in a key.
fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// A full API key, shown to its owner once at creation and never again.
///
/// `Debug` and `Display` are redacted so the key cannot reach a log by
/// accident; [`ApiKey::expose`] is the one deliberate way out.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// Generates a new key from 33 bytes of OS randomness.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; RANDOM_BYTES];
        getrandom::fill(&mut bytes)?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut chars: Vec<u8> = encoded
            .into_bytes()
            .into_iter()
            .map(|b| match b {
                b'+' => b'_',
                b'/' => b'-',
                other => other,
            })
            .collect();
        // 33 bytes encode to exactly 44 characters with no padding.
        debug_assert_eq!(chars.len(), KEY_LEN);
        for i in [0, KEY_LEN - 1] {
            if !chars[i].is_ascii_alphanumeric() {
                chars[i] = b'0';
            }
        }
        // Every byte is ASCII by construction.
        Ok(ApiKey(String::from_utf8_lossy(&chars).into_owned()))
    }

    /// The public id (first 16 characters).
    pub fn id(&self) -> KeyId {
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&self.0.as_bytes()[..ID_LEN]);
        KeyId(id)
    }

    /// The hash of the secret part, as the store keeps it.
    pub fn secret_hash(&self) -> SecretHash {
        SecretHash::of(&self.0.as_bytes()[ID_LEN..])
    }

    /// The key itself. Call only to show it to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The public 16-character identifier of a key.
///
/// Kept inline as bytes: it is the hash-map key on the request path, so it
/// must be cheap to hash, compare and copy.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; ID_LEN]);

impl KeyId {
    /// Parses an id as given in an admin URL: exactly 16 key characters.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != ID_LEN || !bytes.iter().all(|&b| is_key_byte(b)) {
            return None;
        }
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(bytes);
        Some(KeyId(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ever built from validated ASCII.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// The id's bytes (ASCII from the key alphabet).
    #[inline]
    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.as_str())
    }
}

/// A key as a client presented it, split but not yet verified.
///
/// Borrowed from the request: nothing is copied on the hot path.
pub struct PresentedKey<'a> {
    id: KeyId,
    secret: &'a [u8],
}

impl<'a> PresentedKey<'a> {
    /// Splits a presented key, or `None` if it cannot be a key at all
    /// (wrong length or a character outside the alphabet).
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        if bytes.len() != KEY_LEN || !bytes.iter().all(|&b| is_key_byte(b)) {
            return None;
        }
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&bytes[..ID_LEN]);
        Some(PresentedKey {
            id: KeyId(id),
            secret: &bytes[ID_LEN..],
        })
    }

    /// The public id part.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// Hashes the secret part for comparison with a stored hash.
    pub fn secret_hash(&self) -> SecretHash {
        SecretHash::of(self.secret)
    }

    /// The secret part itself, for bcrypt (see `Keyring::prove_bcrypt`).
    pub(crate) fn secret(&self) -> &'a [u8] {
        self.secret
    }
}

impl fmt::Debug for PresentedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PresentedKey({}, <redacted>)", self.id.as_str())
    }
}

/// BLAKE3 (derive-key mode) of a key's secret part.
#[derive(Clone, Copy)]
pub struct SecretHash(blake3::Hash);

impl SecretHash {
    /// Hashes a secret: BLAKE3's derive-key mode, `blake3::derive_key`
    /// with [`HASH_CONTEXT`], whose first step (hashing the context
    /// string) is the same for every secret and is done once per process.
    /// That step was a third of a verification's cost.
    pub fn of(secret: &[u8]) -> Self {
        use blake3::hazmat::{ContextKey, HasherExt};
        static CONTEXT_KEY: LazyLock<ContextKey> =
            LazyLock::new(|| blake3::hazmat::hash_derive_key_context(HASH_CONTEXT));
        let mut hasher = blake3::Hasher::new_from_context_key(&CONTEXT_KEY);
        hasher.update(secret);
        SecretHash(hasher.finalize())
    }

    /// A hash that no secret produces in practice, compared against when
    /// the presented id is unknown so that a miss costs the same work as a
    /// wrong secret.
    pub fn decoy() -> Self {
        SecretHash(blake3::Hash::from_bytes([0u8; 32]))
    }

    /// Rebuilds a hash read back from the store.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretHash(blake3::Hash::from_bytes(bytes))
    }

    /// The raw bytes, for the store.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Constant-time equality (`blake3::Hash`'s `PartialEq` is constant time).
    pub fn matches(&self, other: &SecretHash) -> bool {
        self.0 == other.0
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_haplos_shape() {
        for _ in 0..500 {
            let key = ApiKey::generate().unwrap();
            let s = key.expose().as_bytes();
            assert_eq!(s.len(), KEY_LEN);
            assert!(s.iter().all(|&b| is_key_byte(b)));
            assert!(s[0].is_ascii_alphanumeric());
            assert!(s[KEY_LEN - 1].is_ascii_alphanumeric());
        }
    }

    #[test]
    fn presented_key_round_trips_id_and_hash() {
        let key = ApiKey::generate().unwrap();
        let presented = PresentedKey::parse(key.expose().as_bytes()).unwrap();
        assert_eq!(presented.id(), key.id());
        assert!(presented.secret_hash().matches(&key.secret_hash()));
    }

    #[test]
    fn secret_hashes_are_blake3_derive_key_with_keygates_context() {
        // What every store already holds: the precomputed context key must
        // not change a single hash. Lengths cover one block, one chunk and
        // several chunks.
        for len in [0, 1, 32, 64, 1024, 1025, 5000] {
            let secret: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            assert_eq!(
                SecretHash::of(&secret).as_bytes(),
                &blake3::derive_key(HASH_CONTEXT, &secret),
                "length {len}"
            );
        }
    }

    #[test]
    fn malformed_keys_are_not_parsed() {
        assert!(PresentedKey::parse(b"short").is_none());
        let mut long = ApiKey::generate().unwrap().expose().to_string();
        long.push('a');
        assert!(PresentedKey::parse(long.as_bytes()).is_none());
        let bad = format!("{}!", &long[..KEY_LEN - 1]);
        assert!(PresentedKey::parse(bad.as_bytes()).is_none());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = ApiKey::generate().unwrap();
        let shown = format!("{key:?} {:?}", PresentedKey::parse(key.expose().as_bytes()));
        assert!(!shown.contains(&key.expose()[ID_LEN..]));
    }
}
