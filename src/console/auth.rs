//! Sessions, CSRF tokens and the sign-in throttle, all in memory and bounded.
//!
//! A session is a random 256-bit token in an HttpOnly, SameSite=Strict cookie; the server
//! keeps only its SHA-256, so a memory dump or a log line cannot be replayed as a cookie.
//! Each session has its own CSRF token, required in every form that changes something.

use std::collections::HashMap;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// A session ends after this long without a request…
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// …and after this long in any case.
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);
/// Most sessions held; beyond it the least recently used ends.
pub const MAX_SESSIONS: usize = 2_000;

pub fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    Ok(hex(&bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equal strings, compared in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub csrf: String,
    created_ms: i64,
    last_ms: i64,
}

#[derive(Default)]
pub struct Sessions {
    by_key: HashMap<[u8; 32], Session>,
}

impl Sessions {
    /// Starts a session for `user`; returns the cookie's token.
    pub fn create(&mut self, user: &str, now_ms: i64) -> anyhow::Result<(String, Session)> {
        self.expire(now_ms);
        if self.by_key.len() >= MAX_SESSIONS
            && let Some(oldest) = self
                .by_key
                .iter()
                .min_by_key(|(_, s)| s.last_ms)
                .map(|(k, _)| *k)
        {
            self.by_key.remove(&oldest);
        }
        let token = random_token()?;
        let session = Session {
            user: user.to_owned(),
            csrf: random_token()?,
            created_ms: now_ms,
            last_ms: now_ms,
        };
        self.by_key.insert(token_key(&token), session.clone());
        Ok((token, session))
    }

    /// The live session of `token`, its idle time restarted.
    pub fn touch(&mut self, token: &str, now_ms: i64) -> Option<Session> {
        let key = token_key(token);
        let s = self.by_key.get_mut(&key)?;
        if alive(s, now_ms) {
            s.last_ms = now_ms;
            Some(s.clone())
        } else {
            self.by_key.remove(&key);
            None
        }
    }

    pub fn end(&mut self, token: &str) {
        self.by_key.remove(&token_key(token));
    }

    fn expire(&mut self, now_ms: i64) {
        self.by_key.retain(|_, s| alive(s, now_ms));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_key.len()
    }
}

fn alive(s: &Session, now_ms: i64) -> bool {
    now_ms - s.last_ms < IDLE.as_millis() as i64
        && now_ms - s.created_ms < ABSOLUTE.as_millis() as i64
}

/// Failed sign-ins free before the throttle starts.
pub const FREE_FAILURES: u32 = 3;
/// The longest wait the throttle imposes.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// Most accounts and addresses remembered; beyond it the stalest are forgotten.
pub const MAX_TRACKED: usize = 10_000;
/// Failures are forgotten after this long without another.
const FORGET_AFTER_MS: i64 = 3600 * 1000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last_ms: i64,
}

/// Failed sign-ins per account and per address: after [`FREE_FAILURES`], each needs a wait
/// that doubles (1 s, 2 s, 4 s … [`MAX_WAIT`]) before the next try is even checked.
#[derive(Default)]
pub struct Throttle {
    failures: HashMap<String, Failures>,
}

impl Throttle {
    fn wait_for(f: &Failures) -> i64 {
        if f.count <= FREE_FAILURES {
            return 0;
        }
        let doublings = (f.count - FREE_FAILURES - 1).min(16);
        (1000i64 << doublings).min(MAX_WAIT.as_millis() as i64)
    }

    /// How long until `keys` (the account, the address) may try again; zero if now.
    pub fn retry_in(&self, keys: &[String], now_ms: i64) -> Duration {
        let ms = keys
            .iter()
            .filter_map(|k| self.failures.get(k))
            .map(|f| f.last_ms + Self::wait_for(f) - now_ms)
            .max()
            .unwrap_or(0);
        Duration::from_millis(ms.max(0) as u64)
    }

    pub fn failed(&mut self, keys: &[String], now_ms: i64) {
        self.failures
            .retain(|_, f| now_ms - f.last_ms < FORGET_AFTER_MS.max(Self::wait_for(f)));
        for key in keys {
            if !self.failures.contains_key(key)
                && self.failures.len() >= MAX_TRACKED
                && let Some(stalest) = self
                    .failures
                    .iter()
                    .min_by_key(|(_, f)| f.last_ms)
                    .map(|(k, _)| k.clone())
            {
                self.failures.remove(&stalest);
            }
            let f = self.failures.entry(key.clone()).or_insert(Failures {
                count: 0,
                last_ms: now_ms,
            });
            f.count = f.count.saturating_add(1);
            f.last_ms = now_ms;
        }
    }

    /// A successful sign-in clears the account's failures (not the address's: one good
    /// account must not reset a guesser's count).
    pub fn succeeded(&mut self, account_key: &str) {
        self.failures.remove(account_key);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.failures.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_and_are_bounded() {
        let mut s = Sessions::default();
        let (token, session) = s.create("sri", 0).expect("session");
        assert_eq!(token.len(), 64);
        assert_ne!(token, session.csrf);
        assert!(s.touch(&token, 1000).is_some());
        assert!(s.touch("forged", 1000).is_none());
        let idle = IDLE.as_millis() as i64;
        assert!(s.touch(&token, 1000 + idle).is_none(), "idle too long");
        for i in 0..MAX_SESSIONS + 5 {
            s.create("u", i as i64).expect("session");
        }
        assert_eq!(s.len(), MAX_SESSIONS);
    }

    #[test]
    fn the_throttle_doubles_the_wait_per_key_and_stays_bounded() {
        let mut t = Throttle::default();
        let keys = ["user:sri".to_owned(), "addr:192.0.2.1".to_owned()];
        for _ in 0..FREE_FAILURES {
            t.failed(&keys, 0);
        }
        assert_eq!(t.retry_in(&keys, 0), Duration::ZERO);
        t.failed(&keys, 0);
        assert_eq!(t.retry_in(&keys, 0), Duration::from_secs(1));
        t.failed(&keys, 0);
        assert_eq!(t.retry_in(&keys, 0), Duration::from_secs(2));
        // Another address for the same account is held back by the account's count.
        assert_eq!(
            t.retry_in(
                &["user:sri".to_owned(), "addr:198.51.100.9".to_owned()],
                500
            ),
            Duration::from_millis(1500)
        );
        t.succeeded("user:sri");
        assert_eq!(t.retry_in(&["user:sri".to_owned()], 0), Duration::ZERO);
        for i in 0..MAX_TRACKED + 10 {
            t.failed(&[format!("addr:{i}")], 10);
        }
        assert!(t.len() <= MAX_TRACKED);
    }
}
