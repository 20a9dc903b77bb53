//! Accounts: names that belong to whoever knows their password.
//!
//! The store keeps each account (its name and an Argon2id hash of its password); this
//! module keeps the one thing the hot path needs, the set of reserved names, in memory, and
//! does the slow things off it: hashing runs on blocking threads, a few at a time, so a storm
//! of logins queues here instead of stalling the server, and failed logins are limited per
//! account and per address.
//!
//! A connection is logged into an account exactly when it holds a name that is reserved:
//! only LOGIN (or ACCOUNT CREATE) can give a connection such a name, so sessions keep no
//! flag of their own.

use crate::shape::Shapes;
use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use natter_proto::ErrorCode;
use natter_proto::name::fold;
use natter_store::{Account, Store, StoreError};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tracing::{info, warn};

/// Names nobody may take: the server answers to them.
const SERVICES: &[&str] = &["NickServ"];

/// Failed logins for one account after which it is locked for [`LOCKOUT`].
const ACCOUNT_STRIKES: u32 = 5;
/// Failed logins from one address after which it is locked for [`LOCKOUT`].
const ADDRESS_STRIKES: u32 = 20;
/// How long a lock lasts, counted from the last failure; failures older than this are
/// forgotten.
const LOCKOUT: Duration = Duration::from_secs(60);
/// Most addresses with failures remembered at once; past it, expired ones are dropped, and
/// if none has expired the new address goes unrecorded (each failure costs its sender a
/// hash, so filling this takes longer than the failures it holds last).
const MAX_REMEMBERED: usize = 100_000;

/// The accounts: the store, the cache of reserved names, hashing and login limits.
pub struct Accounts {
    store: Store,
    /// Every account's folded name, and its name as spelled where that differs (most are
    /// spelled folded, and then cost no second copy).
    reserved: RwLock<HashMap<Box<str>, Option<Box<str>>>>,
    /// The skeletons of the accounts' names, for refusing lookalikes.
    shapes: Mutex<Shapes>,
    /// Hashes computed at once: each takes Argon2id's 19 MiB and tens of milliseconds.
    hashing: Semaphore,
    /// The folded names of the accounts that are server operators.
    operators: Vec<String>,
    /// Recent failed logins.
    strikes: Mutex<Strikes>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("store", &self.store)
            .field("reserved", &self.count())
            .finish_non_exhaustive()
    }
}

/// What a successful LOGIN gives: the account's name as its owner spelled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedIn {
    /// The account's name.
    pub name: String,
}

impl Accounts {
    /// The accounts kept in `store`, their names read into the cache.
    pub async fn load(store: Store) -> Result<Accounts, StoreError> {
        let names = store.account_names().await?;
        let accounts = Accounts::new(store);
        for name in names {
            accounts.set_reserved(&name, true);
        }
        Ok(accounts)
    }

    /// Accounts in `store`, with none of its names read yet (for a store known to be empty).
    pub fn new(store: Store) -> Accounts {
        Accounts {
            store,
            reserved: RwLock::default(),
            shapes: Mutex::default(),
            hashing: Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get())),
            operators: Vec::new(),
            strikes: Mutex::default(),
        }
    }

    /// These accounts, with the named ones (folded) as server operators.
    pub fn with_operators(mut self, operators: Vec<String>) -> Self {
        self.operators = operators;
        self
    }

    /// Whether whoever holds `name` is a server operator: an operator's account, logged in
    /// (a name that is not an account is anyone's, so it never is).
    pub fn is_operator(&self, name: &str) -> bool {
        let key = fold(name);
        self.operators.contains(&key) && self.is_reserved(&key)
    }

    /// The store behind them.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// How many accounts there are.
    pub fn count(&self) -> usize {
        self.reserved
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Whether `name` (any case) belongs to an account, or to the server itself (`NickServ`,
    /// which IRC users send their passwords to).
    pub fn is_reserved(&self, name: &str) -> bool {
        if SERVICES.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            return true;
        }
        let r = self.reserved.read().unwrap_or_else(|e| e.into_inner());
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            r.contains_key(fold(name).as_str())
        } else {
            r.contains_key(name)
        }
    }

    /// The account's name as its owner spelled it, if `name` (any case) is an account's.
    pub fn spelled(&self, name: &str) -> Option<String> {
        let key = fold(name);
        let r = self.reserved.read().unwrap_or_else(|e| e.into_inner());
        r.get(key.as_str())
            .map(|n| n.as_deref().unwrap_or(&key).to_owned())
    }

    /// Whether `name` looks like an account's name without being it (`aIice` for `alice`).
    pub fn resembles(&self, name: &str) -> bool {
        self.shapes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .resembles(name)
    }

    /// Notes that the account `name` now exists, or no longer does (here or, in a cluster,
    /// on another node).
    pub fn set_reserved(&self, name: &str, exists: bool) {
        let key = fold(name);
        let mut r = self.reserved.write().unwrap_or_else(|e| e.into_inner());
        let mut shapes = self.shapes.lock().unwrap_or_else(|e| e.into_inner());
        let spelled = (name != key).then(|| name.into());
        if exists {
            if let Some(old) = r.insert(key.as_str().into(), spelled) {
                shapes.remove(old.as_deref().unwrap_or(&key));
            }
            shapes.add(name);
        } else if let Some(old) = r.remove(key.as_str()) {
            shapes.remove(old.as_deref().unwrap_or(&key));
        }
    }

    /// Checks a LOGIN: the account's name if `password` is its password. The answer takes
    /// as long whether or not the account exists, and says nothing of which it was.
    pub async fn login(
        self: Arc<Self>,
        name: String,
        password: String,
        from: IpAddr,
    ) -> Result<LoggedIn, ErrorCode> {
        let l = self.check(name, password, from).await?;
        info!(user = %l.name, peer = %from, "logged in");
        Ok(l)
    }

    /// Checks a name and password, counting a failure against both the account and the
    /// address.
    async fn check(
        &self,
        name: String,
        password: String,
        from: IpAddr,
    ) -> Result<LoggedIn, ErrorCode> {
        let key = fold(&name);
        if self.locked(&key, from) {
            warn!(user = %name, peer = %from, "login refused: locked after failures");
            return Err(ErrorCode::LoginLocked);
        }
        if let Some(token) = as_token(&password) {
            return self.check_token(&name, token, from).await;
        }
        let account = self.store.account(&key).await.map_err(unavailable)?;
        let hash = account
            .as_ref()
            .map_or_else(|| dummy_hash().to_owned(), |a| a.hash.clone());
        let right = self.verify(hash, password).await? && account.is_some();
        match account {
            Some(a) if right => {
                self.clear(&key);
                Ok(LoggedIn { name: a.name })
            }
            _ => {
                self.strike(&key, from);
                warn!(user = %name, peer = %from, "failed login");
                Err(ErrorCode::BadLogin)
            }
        }
    }

    /// Checks a login by token: the account it was issued for must be `name`'s.
    async fn check_token(
        &self,
        name: &str,
        token: &str,
        from: IpAddr,
    ) -> Result<LoggedIn, ErrorCode> {
        let key = fold(name);
        let owner = self
            .store
            .token_account(token_hash(token), unix_now())
            .await
            .map_err(unavailable)?;
        let spelled = self
            .reserved
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key.as_str())
            .map(|n| n.as_deref().unwrap_or(&key).to_string());
        match (owner, spelled) {
            (Some(owner), Some(spelled)) if owner == key => {
                self.clear(&key);
                Ok(LoggedIn { name: spelled })
            }
            _ => {
                self.strike(&key, from);
                warn!(user = %name, peer = %from, "failed login (token)");
                Err(ErrorCode::BadLogin)
            }
        }
    }

    /// A new token for the account `name`, which logs into it in place of the password
    /// until the password changes or the account is deleted.
    pub async fn issue_token(self: Arc<Self>, name: String) -> Result<String, ErrorCode> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|_| ErrorCode::StoreUnavailable)?;
        let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
        self.store
            .add_token(&fold(&name), token_hash(&token), unix_now())
            .await
            .map_err(unavailable)?;
        info!(user = %name, "token issued");
        Ok(token)
    }

    /// Makes `name` an account with `password` (already checked against the rule).
    pub async fn create(self: Arc<Self>, name: String, password: String) -> Result<(), ErrorCode> {
        let key = fold(&name);
        if self.is_reserved(&key) {
            return Err(ErrorCode::AccountExists);
        }
        let hash = self.hash(password).await?;
        let account = Account {
            key: key.clone(),
            name: name.clone(),
            hash,
            created: unix_now(),
        };
        if !self
            .store
            .create_account(account)
            .await
            .map_err(unavailable)?
        {
            return Err(ErrorCode::AccountExists);
        }
        self.set_reserved(&name, true);
        info!(user = %name, "account created");
        Ok(())
    }

    /// Changes the password of the account `name`, given its password now.
    pub async fn change_password(
        self: Arc<Self>,
        name: String,
        old: String,
        new: String,
        from: IpAddr,
    ) -> Result<(), ErrorCode> {
        self.check(name.clone(), old, from).await?;
        let hash = self.hash(new).await?;
        match self.store.set_password(&fold(&name), hash).await {
            Ok(true) => {
                info!(user = %name, "password changed");
                Ok(())
            }
            Ok(false) => Err(ErrorCode::NotLoggedIn),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Deletes the account `name`, given its password; the name is free again.
    pub async fn delete(
        self: Arc<Self>,
        name: String,
        password: String,
        from: IpAddr,
    ) -> Result<(), ErrorCode> {
        self.check(name.clone(), password, from).await?;
        let key = fold(&name);
        match self.store.delete_account(&key).await {
            Ok(_) => {
                self.set_reserved(&key, false);
                info!(user = %name, "account deleted");
                Ok(())
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn hash(&self, password: String) -> Result<String, ErrorCode> {
        let _turn = self
            .hashing
            .acquire()
            .await
            .map_err(|_| ErrorCode::StoreUnavailable)?;
        tokio::task::spawn_blocking(move || {
            Argon2::default()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
        })
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or(ErrorCode::StoreUnavailable)
    }

    async fn verify(&self, hash: String, password: String) -> Result<bool, ErrorCode> {
        let _turn = self
            .hashing
            .acquire()
            .await
            .map_err(|_| ErrorCode::StoreUnavailable)?;
        tokio::task::spawn_blocking(move || verify(&hash, &password))
            .await
            .map_err(|_| ErrorCode::StoreUnavailable)
    }

    fn locked(&self, key: &str, from: IpAddr) -> bool {
        let s = self.strikes.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let over = |t: Option<&Tally>, limit| t.is_some_and(|t| t.count(now) >= limit);
        over(s.accounts.get(key), ACCOUNT_STRIKES) || over(s.addresses.get(&from), ADDRESS_STRIKES)
    }

    fn strike(&self, key: &str, from: IpAddr) {
        // Only accounts have tallies (a name that is none has nothing to lock), so their
        // number is bounded by the accounts'; addresses by MAX_REMEMBERED.
        let account = self.is_reserved(key);
        let mut s = self.strikes.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if account {
            s.accounts.entry(key.into()).or_default().add(now);
        }
        if s.addresses.len() >= MAX_REMEMBERED && !s.addresses.contains_key(&from) {
            s.addresses.retain(|_, t| t.count(now) > 0);
            if s.addresses.len() >= MAX_REMEMBERED {
                return;
            }
        }
        s.addresses.entry(from).or_default().add(now);
    }

    fn clear(&self, key: &str) {
        let mut s = self.strikes.lock().unwrap_or_else(|e| e.into_inner());
        s.accounts.remove(key);
    }
}

/// What an account request came to.
pub enum Done {
    /// ACCOUNT TOKEN: the new token.
    Token(String),
    /// LOGIN: the password is right; the session may take the name.
    LoggedIn(LoggedIn),
    /// ACCOUNT CREATE: the name is an account now.
    Created,
    /// ACCOUNT PASSWORD: changed.
    PasswordChanged,
    /// ACCOUNT DELETE: the account is gone, the name free.
    Deleted,
}

/// Leaves a token out: it logs in.
impl std::fmt::Debug for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Done::Token(_) => f.write_str("Token(<redacted>)"),
            Done::LoggedIn(l) => write!(f, "LoggedIn({:?})", l.name),
            Done::Created => f.write_str("Created"),
            Done::PasswordChanged => f.write_str("PasswordChanged"),
            Done::Deleted => f.write_str("Deleted"),
        }
    }
}

/// An account request running on its own task while its session waits, polled by the
/// connection. A session that goes away leaves it to finish: what it changes in the store is
/// then done, not half done.
#[derive(Debug)]
pub struct AccountWait {
    task: tokio::task::JoinHandle<Result<Done, ErrorCode>>,
}

impl AccountWait {
    /// Starts the request.
    pub fn spawn(request: impl Future<Output = Result<Done, ErrorCode>> + Send + 'static) -> Self {
        AccountWait {
            task: tokio::spawn(request),
        }
    }

    /// Its outcome, once there is one.
    pub fn poll(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Done, ErrorCode>> {
        std::pin::Pin::new(&mut self.task)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ErrorCode::StoreUnavailable)))
    }
}

/// Recent failed logins, by account and by address.
#[derive(Debug, Default)]
struct Strikes {
    accounts: HashMap<Box<str>, Tally>,
    addresses: HashMap<IpAddr, Tally>,
}

/// Failures in a row, each within [`LOCKOUT`] of the one before.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    failures: u32,
    last: Option<Instant>,
}

impl Tally {
    fn count(&self, now: Instant) -> u32 {
        match self.last {
            Some(t) if now.duration_since(t) < LOCKOUT => self.failures,
            _ => 0,
        }
    }

    fn add(&mut self, now: Instant) {
        self.failures = self.count(now) + 1;
        self.last = Some(now);
    }
}

/// How every token begins, so a login can tell a token from a password.
const TOKEN_PREFIX: &str = "nt_";

/// The token in a LOGIN's secret, if it is one: the prefix and 43 base64url characters
/// (32 random bytes).
fn as_token(secret: &str) -> Option<&str> {
    secret
        .strip_prefix(TOKEN_PREFIX)
        .filter(|t| {
            t.len() == 43
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(|_| secret)
}

/// What the store keeps of a token: its SHA-256 (a token is random, so a fast hash is
/// enough; the store never holds anything that logs in).
fn token_hash(token: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).to_vec()
}

/// Whether `password` matches the PHC-format `hash`.
fn verify(hash: &str, password: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// A hash of nothing anyone knows, checked against when a name has no account, so that a
/// wrong name costs as long as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        Argon2::default()
            .hash_password(b"natter: no such account")
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

fn unavailable(e: StoreError) -> ErrorCode {
    warn!(error = %e, "account request failed in the store");
    ErrorCode::StoreUnavailable
}

/// Seconds since the Unix epoch, as the store keeps times.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Accounts in a fresh in-memory store, for unit tests of what holds them.
    pub(crate) fn accounts() -> Arc<Accounts> {
        let store = Store::open(&natter_store::Location::Memory, Default::default()).unwrap();
        Arc::new(Accounts::new(store))
    }

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let h = Argon2::default()
            .hash_password(b"correct horse")
            .unwrap()
            .to_string();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify(&h, "correct horse"));
        assert!(!verify(&h, "correct horsE"));
        assert!(!verify("not a hash", "x"));
        assert!(!verify(dummy_hash(), ""));
    }

    #[test]
    fn failures_lock_for_a_while_then_are_forgotten() {
        let mut t = Tally::default();
        let t0 = Instant::now();
        for _ in 0..ACCOUNT_STRIKES {
            t.add(t0);
        }
        assert_eq!(t.count(t0 + Duration::from_secs(59)), ACCOUNT_STRIKES);
        assert_eq!(t.count(t0 + LOCKOUT), 0);
        t.add(t0 + LOCKOUT);
        assert_eq!(t.count(t0 + LOCKOUT), 1);
    }
}
