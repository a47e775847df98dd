//! Passwords: argon2id hashes in the PHC string format (algorithm, parameters and salt kept
//! with the hash, so parameters can be raised later without breaking old accounts).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// The shortest password an account may have.
pub const MIN_LENGTH: usize = 10;

/// The argon2id hash of `password` with a fresh random salt.
pub fn hash(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no OS randomness for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

/// Whether `password` matches the stored hash (a malformed hash matches nothing).
pub fn verify(stored: &str, password: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash to check against when the account does not exist, so that a wrong name costs
/// the same time as a wrong password (names cannot be found by timing).
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("decoy password, never matches").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_hash_is_argon2id_salted_and_checks_only_its_password() {
        let a = super::hash("correct horse battery").expect("hash");
        let b = super::hash("correct horse battery").expect("hash");
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(super::verify(&a, "correct horse battery"));
        assert!(!super::verify(&a, "correct horse batterz"));
        assert!(!super::verify("not a hash", "anything"));
    }
}
