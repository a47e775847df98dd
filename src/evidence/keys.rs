//! The centre's Ed25519 key: `centre.key` (the 32-byte secret as hex, mode 0600) and
//! `centre.pub` (the public key as hex) in the key directory. It signs evidence manifests and
//! the audit head.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::calllog::chain::hex;

pub const SECRET_FILE: &str = "centre.key";
pub const PUBLIC_FILE: &str = "centre.pub";

pub fn secret_path(dir: &Path) -> PathBuf {
    dir.join(SECRET_FILE)
}

/// Creates the key; refuses if one is there (a new key would orphan every signature made).
pub fn init(dir: &Path) -> anyhow::Result<VerifyingKey> {
    if !dir.exists() {
        // Only its owner lists the directory of the centre's secret.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the key directory {}", dir.display()))?;
    }
    let secret = secret_path(dir);
    if secret.exists() {
        anyhow::bail!(
            "{} exists: refusing to overwrite the centre's key (every package and head it \
             signed would no longer verify against a new one); move it away first if you \
             really mean to replace it",
            secret.display()
        );
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret)
        .with_context(|| format!("creating {}", secret.display()))?;
    writeln!(file, "{}", hex(&seed))?;
    file.sync_all()?;
    let public = key.verifying_key();
    std::fs::write(
        dir.join(PUBLIC_FILE),
        format!("{}\n", hex(&public.to_bytes())),
    )
    .with_context(|| format!("writing {}", dir.join(PUBLIC_FILE).display()))?;
    Ok(public)
}

/// The signing key; refuses a secret file others can read.
pub fn load_signing(dir: &Path) -> anyhow::Result<SigningKey> {
    let path = secret_path(dir);
    let meta = std::fs::metadata(&path).with_context(|| {
        format!(
            "the centre's key {}: create it with `siaga keys init --key-dir {}`",
            path.display(),
            dir.display()
        )
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "{} is readable by others (mode {mode:03o}): chmod 600 {}",
            path.display(),
            path.display()
        );
    }
    let text = std::fs::read_to_string(&path)?;
    let seed: [u8; 32] = unhex(text.trim())
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("{}: not a 64-digit hex Ed25519 secret", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A public key given as 64 hex digits, or the path of a file holding them.
pub fn parse_public(text: &str) -> anyhow::Result<VerifyingKey> {
    let text = text.trim();
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return parse_public_hex(text);
    }
    let read = std::fs::read_to_string(text)
        .with_context(|| format!("{text}: neither 64 hex digits nor a readable key file"))?;
    parse_public_hex(read.trim()).with_context(|| format!("key file {text}"))
}

/// A public key as 64 hex digits only (what a manifest or a head file names: never a path).
pub fn parse_public_hex(text: &str) -> anyhow::Result<VerifyingKey> {
    let bytes: [u8; 32] = unhex(text.trim())
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("{text:?}: not a 64-digit hex Ed25519 public key"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("{text}: {e}"))
}

pub fn public_hex(key: &VerifyingKey) -> String {
    hex(&key.to_bytes())
}

pub fn sign_hex(key: &SigningKey, message: &[u8]) -> String {
    hex(&key.sign(message).to_bytes())
}

/// Whether `sig_hex` is `key`'s signature of `message`.
pub fn check(key: &VerifyingKey, message: &[u8], sig_hex: &str) -> bool {
    let Some(bytes) = unhex(sig_hex.trim()).and_then(|b| <[u8; 64]>::try_from(b).ok()) else {
        return false;
    };
    key.verify_strict(message, &Signature::from_bytes(&bytes))
        .is_ok()
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_private_and_signs_what_its_public_half_verifies() {
        let dir = tempfile::tempdir().expect("dir");
        let public = init(dir.path()).expect("init");
        let mode = std::fs::metadata(secret_path(dir.path()))
            .expect("secret")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = init(dir.path()).expect_err("second init refused");
        assert!(
            again.to_string().contains("refusing to overwrite"),
            "{again}"
        );
        let key = load_signing(dir.path()).expect("load");
        let sig = sign_hex(&key, b"manifest");
        let printed = std::fs::read_to_string(dir.path().join(PUBLIC_FILE)).expect("pub");
        let read = parse_public(&printed).expect("parse");
        assert_eq!(read, public);
        assert!(check(&read, b"manifest", &sig));
        assert!(!check(&read, b"manifesT", &sig));
        std::fs::set_permissions(
            secret_path(dir.path()),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        assert!(load_signing(dir.path()).is_err());
    }
}
