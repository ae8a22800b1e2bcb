//! How a key's secret is checked.
//!
//! keygate's own keys, and every key once it has been presented, are
//! checked against a BLAKE3 hash ([`SecretHash`]): a microsecond, in
//! constant time. A key imported from Haplo arrives with only Haplo's
//! bcrypt hash ([`BcryptHash`]), since the secret itself was never stored
//! anywhere. bcrypt is slow by design (cost 5 is about 2 ms), so it runs
//! once per key: the first time the right secret is presented, keygate
//! checks it with bcrypt, off the event loop, and from then on keeps the
//! BLAKE3 hash of that secret instead (see `Keyring::flush_upgrades`).

use std::fmt;

use super::SecretHash;

/// What a stored key's secret is checked against.
#[derive(Clone, Debug)]
pub enum KeyHash {
    /// BLAKE3 of the secret: keygate's own keys, and imported keys once
    /// they have been presented.
    Blake3(SecretHash),
    /// Only the bcrypt hash Haplo stored: an imported key not yet used.
    Bcrypt(BcryptHash),
}

impl KeyHash {
    /// The BLAKE3 hash, when the key has one.
    pub fn blake3(&self) -> Option<&SecretHash> {
        match self {
            KeyHash::Blake3(hash) => Some(hash),
            KeyHash::Bcrypt(_) => None,
        }
    }
}

/// A bcrypt hash as Haplo (jBCrypt) and most libraries write it: `$2a$`,
/// `$2b$` or `$2y$`, a two-digit cost from 04 to 31, `$`, then 53
/// characters of bcrypt's base64 (a 22-character salt and a 31-character
/// hash): 60 characters in all.
#[derive(Clone, PartialEq, Eq)]
pub struct BcryptHash(Box<str>);

/// Why a bcrypt hash was refused.
#[derive(Debug, thiserror::Error)]
#[error("not a bcrypt hash ($2a$, $2b$ or $2y$, cost 04-31, 60 characters)")]
pub struct BcryptHashError(());

impl BcryptHash {
    /// Validates the shape of a bcrypt hash (the check that it verifies
    /// anything comes when a secret is presented).
    pub fn parse(text: &str) -> Result<Self, BcryptHashError> {
        let bytes = text.as_bytes();
        let prefix_ok = bytes.len() == 60
            && matches!(&bytes[..4], b"$2a$" | b"$2b$" | b"$2y$")
            && bytes[6] == b'$';
        let cost = std::str::from_utf8(&bytes[4.min(bytes.len())..6.min(bytes.len())])
            .ok()
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse::<u32>().ok());
        let body_ok = bytes.get(7..).is_some_and(|body| {
            body.iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
        });
        if prefix_ok && cost.is_some_and(|c| (4..=31).contains(&c)) && body_ok {
            Ok(BcryptHash(Box::from(text)))
        } else {
            Err(BcryptHashError(()))
        }
    }

    /// The hash as text, for the store.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `secret` is the secret this hash was made from. Slow (the
    /// hash's cost): never call it on an event loop.
    pub fn verify(&self, secret: &[u8]) -> bool {
        bcrypt::verify(secret, &self.0).unwrap_or(false)
    }
}

impl fmt::Debug for BcryptHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BcryptHash(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haplo_shaped_hashes_parse_and_verify() {
        let made = bcrypt::hash_with_result("secret-part", 4).unwrap();
        let text = made.format_for_version(bcrypt::Version::TwoA);
        let hash = BcryptHash::parse(&text).unwrap();
        assert!(hash.verify(b"secret-part"));
        assert!(!hash.verify(b"secret-parT"));
        assert_eq!(format!("{hash:?}"), "BcryptHash(<redacted>)");
    }

    #[test]
    fn malformed_hashes_are_refused() {
        let good = "$2a$05$abcdefghijklmnopqrstuu5a7tXDgqzOMWeLYoTBQ0mOg4bcAyv8C";
        assert_eq!(good.len(), 60);
        assert!(BcryptHash::parse(good).is_ok());
        for bad in [
            "",
            "plain",
            &good[..59],
            &good.replace("$2a$", "$2x$"),
            &good.replace("$05$", "$99$"),
            &good.replace("$05$", "$ab$"),
            &good.replace("$05$", "$03$"),
            &good.replace('u', "!"),
        ] {
            assert!(BcryptHash::parse(bad).is_err(), "{bad}");
        }
    }
}
