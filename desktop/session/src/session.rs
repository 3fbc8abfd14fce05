//! The signed-in session: one state machine for sign-in, silent restore,
//! refresh and sign-out, observable as [`AuthState`].
//!
//! Tokens live here and nowhere else in the app: the access token in memory,
//! the refresh token in memory and in the keyring. The UI only ever sees
//! [`AuthState`].

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex as SyncMutex, Weak};
use std::time::Duration;

use chrono::Utc;
use confab_wire::auth::{AuthState, Notice, SignOutOutcome, User};
use confab_wire::conversations::Profile;
use confab_wire::{ErrorBody, ErrorCode};
use tokio::sync::{Mutex, Notify, watch};
use tokio::time::Instant;
use url::Url;

use crate::attempt::{ATTEMPT_TTL, Attempt, Callback, CallbackError};
use crate::config::{AuthConfig, ConfigError};
use crate::oidc::{Grant, OidcError, Provider};
use crate::profile::{self, UserCache};
use crate::vault::Vault;

mod proxy;
mod sign_in;
mod tokens;

use tokens::{Tokens, expiry};

/// Keyring entry of the refresh token.
pub const REFRESH_KEY: &str = "refresh-token";
/// Keyring entry of the pending attempt, so a cold start by the callback link
/// can finish it.
pub const ATTEMPT_KEY: &str = "sign-in-attempt";

/// a stray one in the log.
const REMEMBERED_STATES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    NotConfigured(String),
    #[error("nobody is signed in")]
    SignedOut,
    #[error("already signed in")]
    AlreadySignedIn,
    #[error("your session has ended: sign in again")]
    SessionEnded,
    #[error("cannot reach {0}")]
    Unreachable(String),
    #[error("the sign-in service answered unexpectedly: {0}")]
    Provider(String),
}

impl From<&AuthError> for ErrorBody {
    fn from(err: &AuthError) -> Self {
        let code = match err {
            AuthError::NotConfigured(_) | AuthError::AlreadySignedIn => ErrorCode::InvalidInput,
            AuthError::SignedOut | AuthError::SessionEnded => ErrorCode::Unauthenticated,
            AuthError::Unreachable(_) => ErrorCode::Unavailable,
            AuthError::Provider(_) => ErrorCode::Internal,
        };
        ErrorBody::new(code, err.to_string())
    }
}

/// Owned, so that callers answering with an `ErrorBody` can use `?`.
impl From<AuthError> for ErrorBody {
    fn from(err: AuthError) -> Self {
        Self::from(&err)
    }
}

/// The app's session. Cheap to clone; every clone is the same session.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    config: Result<AuthConfig, ConfigError>,
    http: reqwest::Client,
    vault: Vault,
    users: UserCache,
    state: watch::Sender<AuthState>,
    provider: Mutex<Option<Provider>>,
    /// Held across a refresh, so concurrent callers share one refresh (a
    /// rotated refresh token must never be used twice).
    tokens: Mutex<Option<Tokens>>,
    attempt: SyncMutex<Option<Attempt>>,
    finished_states: SyncMutex<VecDeque<String>>,
    /// Wakes the refresher (new tokens, a retry, or the session going away).
    /// Shared rather than owned so the refresher can wait on it without
    /// keeping the session alive.
    refresher: Arc<Notify>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The refresher holds only a weak handle: let it see the session is gone.
        self.refresher.notify_waiters();
    }
}

impl Session {
    /// `data_dir` holds `user.json` (no secrets).
    pub fn new(config: Result<AuthConfig, ConfigError>, vault: Vault, data_dir: &Path) -> Self {
        let initial = match &config {
            Ok(_) => AuthState::SignedOut { notice: None },
            Err(err) => AuthState::NotConfigured {
                message: err.to_string(),
            },
        };
        Self {
            inner: Arc::new(Inner {
                config,
                http: crate::oidc::http_client(),
                vault,
                users: UserCache::new(data_dir),
                state: watch::channel(initial).0,
                provider: Mutex::new(None),
                tokens: Mutex::new(None),
                attempt: SyncMutex::new(None),
                finished_states: SyncMutex::new(VecDeque::new()),
                refresher: Arc::new(Notify::new()),
            }),
        }
    }

    pub fn state(&self) -> AuthState {
        self.inner.state.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<AuthState> {
        self.inner.state.subscribe()
    }

    pub fn config(&self) -> Option<&AuthConfig> {
        self.inner.config.as_ref().ok()
    }

    fn weak(&self) -> Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    fn upgrade(weak: &Weak<Inner>) -> Option<Session> {
        weak.upgrade().map(|inner| Session { inner })
    }

    fn set(&self, state: AuthState) {
        self.inner.state.send_replace(state);
    }

    fn signed_out(&self, notice: Option<Notice>) {
        self.set(AuthState::SignedOut { notice });
    }

    /// Restores the previous session from the keyring (silently, without the
    /// browser), picks up an attempt a cold start must finish, and starts the
    /// background refresher. Call once, inside the async runtime, before
    /// handing launch deep links to [`Session::handle_link`].
    pub async fn start(&self) {
        if self.inner.config.is_err() {
            return;
        }
        tokio::spawn(Self::refresh_loop(
            self.weak(),
            self.inner.refresher.clone(),
        ));

        match self.inner.vault.load(ATTEMPT_KEY).await {
            Ok(Some(text)) => match serde_json::from_str::<Attempt>(&text) {
                Ok(attempt) if !attempt.is_expired(Utc::now()) => {
                    log::info!("a sign-in attempt is pending from an earlier run");
                    self.wait_for(attempt);
                }
                _ => self.forget_attempt_in_vault().await,
            },
            Ok(None) => {}
            Err(err) => log::warn!("{err}"),
        }

        let refresh = match self.inner.vault.load(REFRESH_KEY).await {
            Ok(Some(token)) => token,
            Ok(None) => return,
            Err(err) => {
                log::warn!("{err}");
                if !matches!(self.state(), AuthState::Waiting { .. }) {
                    self.signed_out(Some(keyring_notice()));
                }
                return;
            }
        };
        let cached = self.inner.users.load();
        *self.inner.tokens.lock().await = Some(Tokens {
            user_id: cached.as_ref().map(|u| u.id.clone()).unwrap_or_default(),
            access: None,
            expires_at: Instant::now(),
            lifetime: Duration::ZERO,
            refresh: Some(refresh),
        });
        if self.inner.attempt_take().is_some() {
            self.forget_attempt_in_vault().await;
        }
        // Offline-first: show who is signed in at once, then check with the provider.
        let user = cached.unwrap_or_else(|| User {
            id: String::new(),
            name: "Signed in".into(),
            email: None,
            avatar: None,
        });
        self.set(AuthState::SignedIn { user, notice: None });
        match self.access_token().await {
            Ok(_) => {
                log::info!("session restored from the keyring");
                self.spawn_profile_refresh();
            }
            Err(AuthError::Unreachable(what)) => {
                log::warn!("restored offline: cannot reach {what}");
                self.set_notice(Some(Notice::info(
                    "You're offline: Confab will reconnect by itself.",
                )));
            }
            Err(err) => log::warn!("session not restored: {err}"),
        }
        // The refresher retries (with backoff) whatever this first try left.
        self.inner.refresher.notify_one();
    }

    fn set_notice(&self, notice: Option<Notice>) {
        self.inner.state.send_if_modified(|state| match state {
            AuthState::SignedIn { notice: slot, .. } if *slot != notice => {
                *slot = notice;
                true
            }
            _ => false,
        });
    }

    fn set_user(&self, user: User) {
        self.inner.state.send_if_modified(|state| match state {
            AuthState::SignedIn { user: slot, .. } if *slot != user => {
                *slot = user;
                true
            }
            _ => false,
        });
    }

    /// Signs out: revokes at the provider (when it can be reached), deletes
    /// the keyring entries and the cached profile, clears the tokens. With
    /// `pending` writes not yet synced and no `discard_pending`, does nothing
    /// and asks.
    pub async fn sign_out(&self, discard_pending: bool, pending: u64) -> SignOutOutcome {
        if pending > 0 && !discard_pending {
            return SignOutOutcome::NeedsConfirmation { pending };
        }
        if self.inner.config.is_err() {
            return SignOutOutcome::SignedOut;
        }
        // The user sees the result at once; the rest may wait for a refresh in
        // flight, which can no longer change what is shown.
        self.inner.attempt_take();
        self.signed_out(None);
        let tokens = self.inner.tokens.lock().await.take();
        // After taking the tokens: a refresh that was in flight may have
        // stored a rotated refresh token.
        self.forget().await;
        log::info!("signed out");
        // Revoked last, bounded: the user is already signed out here, and an
        // unreachable provider must not keep the command waiting long.
        if let Some(refresh) = tokens.and_then(|t| t.refresh) {
            let revoke = async {
                let provider = self.provider().await.map_err(|e| e.to_string())?;
                provider.revoke(&refresh).await.map_err(|e| e.to_string())
            };
            match tokio::time::timeout(Duration::from_secs(10), revoke).await {
                Ok(Ok(true)) => log::info!("refresh token revoked"),
                Ok(Ok(false)) => log::info!("the provider does not support revocation"),
                Ok(Err(err)) => log::warn!("revocation failed: {err}"),
                Err(_) => log::warn!("revocation timed out"),
            }
        }
        SignOutOutcome::SignedOut
    }

    async fn end_session(&self, notice: Notice) {
        self.forget().await;
        self.signed_out(Some(notice));
    }

    async fn forget(&self) {
        for key in [REFRESH_KEY, ATTEMPT_KEY] {
            if let Err(err) = self.inner.vault.delete(key).await {
                log::warn!("{err}");
            }
        }
        if let Err(err) = self.inner.users.clear() {
            log::warn!("could not remove the cached profile: {err}");
        }
    }

    fn config_ok(&self) -> Result<&AuthConfig, AuthError> {
        self.inner
            .config
            .as_ref()
            .map_err(|e| AuthError::NotConfigured(e.to_string()))
    }

    /// The discovered provider, fetched once; a failed discovery is retried
    /// on the next call.
    async fn provider(&self) -> Result<Provider, AuthError> {
        let config = self.config_ok()?;
        let mut slot = self.inner.provider.lock().await;
        if let Some(provider) = slot.as_ref() {
            return Ok(provider.clone());
        }
        let provider = Provider::discover(config, self.inner.http.clone())
            .await
            .map_err(|err| match err {
                OidcError::Unreachable(what) => AuthError::Unreachable(format!(
                    "the sign-in service at {} ({what})",
                    config.issuer
                )),
                other => AuthError::Provider(other.to_string()),
            })?;
        *slot = Some(provider.clone());
        Ok(provider)
    }
}

impl Inner {
    fn attempt_take(&self) -> Option<Attempt> {
        self.attempt.lock().ok().and_then(|mut a| a.take())
    }
}

fn keyring_notice() -> Notice {
    Notice::warning(
        "Your system keyring is unavailable, so this sign-in lasts only until Confab closes.",
    )
}

/// A session on a config that points nowhere reachable, in `dir`, with its
/// secrets in memory: what the unit tests of the parts need.
#[cfg(test)]
fn test_session(dir: &Path) -> Session {
    let env = |name: &str| match name {
        "CONFAB_ISSUER" => Some("http://127.0.0.1:9".to_owned()),
        "CONFAB_CLIENT_ID" => Some("confab-desktop".to_owned()),
        "CONFAB_PROXY_URL" => Some("http://127.0.0.1:9".to_owned()),
        _ => None,
    };
    Session::new(
        AuthConfig::load(dir, &env),
        Vault::new(crate::vault::MemoryStore::default()),
        dir,
    )
}
