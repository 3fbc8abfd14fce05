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

/// Keyring entry of the refresh token.
pub const REFRESH_KEY: &str = "refresh-token";
/// Keyring entry of the pending attempt, so a cold start by the callback link
/// can finish it.
pub const ATTEMPT_KEY: &str = "sign-in-attempt";

/// Refresh this long before the access token expires (or a fifth of its
/// lifetime, for short-lived tokens).
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// How many finished attempts are remembered to tell a replayed callback from
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

struct Tokens {
    user_id: String,
    /// `None` after a restore, until the first refresh.
    access: Option<String>,
    expires_at: Instant,
    lifetime: Duration,
    refresh: Option<String>,
}

impl Tokens {
    fn refresh_due(&self) -> Instant {
        let margin = REFRESH_MARGIN.min(self.lifetime / 5);
        self.expires_at
            .checked_sub(margin)
            .unwrap_or(self.expires_at)
    }

    fn fresh_access(&self) -> Option<&str> {
        self.access
            .as_deref()
            .filter(|_| Instant::now() < self.refresh_due())
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

    /// Starts an attempt: the URL to open in the system browser.
    pub async fn begin_sign_in(&self) -> Result<Url, AuthError> {
        self.config_ok()?;
        if matches!(
            self.state(),
            AuthState::SignedIn { .. } | AuthState::Completing
        ) {
            return Err(AuthError::AlreadySignedIn);
        }
        let provider = match self.provider().await {
            Ok(provider) => provider,
            Err(err) => {
                self.signed_out(Some(Notice::error(format!(
                    "Can't reach the sign-in service: {err}. Check your connection and try again."
                ))));
                return Err(err);
            }
        };
        let authorization = provider.authorize();
        let attempt = Attempt {
            state: authorization.state,
            nonce: authorization.nonce,
            verifier: authorization.verifier,
            url: authorization.url.to_string(),
            expires_at: Utc::now() + ATTEMPT_TTL,
        };
        // Kept in the keyring too, so the app started by the callback link
        // (after this one was closed) can finish it. Without a keyring it
        // still works while this run lasts.
        match serde_json::to_string(&attempt) {
            Ok(json) => {
                if let Err(err) = self.inner.vault.save(ATTEMPT_KEY, json).await {
                    log::warn!("{err}");
                }
            }
            Err(err) => log::warn!("attempt not saved: {err}"),
        }
        self.wait_for(attempt);
        Ok(authorization.url)
    }

    /// The pending attempt's URL, to open the browser again.
    pub fn pending_url(&self) -> Option<String> {
        self.inner
            .attempt
            .lock()
            .ok()
            .and_then(|a| a.as_ref().map(|a| a.url.clone()))
    }

    fn wait_for(&self, attempt: Attempt) {
        let expires_at = attempt.expires_at;
        let state = attempt.state.clone();
        if let Ok(mut slot) = self.inner.attempt.lock() {
            *slot = Some(attempt);
        }
        self.set(AuthState::Waiting {
            expires_at,
            notice: None,
        });
        let weak = self.weak();
        tokio::spawn(async move {
            let left = (expires_at - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(left).await;
            let Some(this) = Self::upgrade(&weak) else {
                return;
            };
            if !matches!(this.state(), AuthState::Waiting { .. }) {
                return;
            }
            let expired = this
                .inner
                .attempt
                .lock()
                .map(|mut slot| {
                    let same = slot.as_ref().is_some_and(|a| a.state == state);
                    if same {
                        slot.take();
                    }
                    same
                })
                .unwrap_or(false);
            if expired {
                log::info!("the sign-in attempt expired");
                this.forget_attempt_in_vault().await;
                this.signed_out(Some(Notice::warning(
                    "The sign-in attempt expired. Choose Continue in browser to try again.",
                )));
            }
        });
    }

    /// Forgets the pending attempt; its callback will be ignored.
    pub async fn cancel_sign_in(&self) {
        if self.inner.attempt_take().is_some() {
            log::info!("sign-in cancelled");
            self.forget_attempt_in_vault().await;
        }
        if matches!(
            self.state(),
            AuthState::Waiting { .. } | AuthState::SignedOut { .. }
        ) {
            self.signed_out(None);
        }
    }

    async fn forget_attempt_in_vault(&self) {
        if let Err(err) = self.inner.vault.delete(ATTEMPT_KEY).await {
            log::warn!("{err}");
        }
    }

    /// Handles a deep link. Sign-in callbacks finish the pending attempt;
    /// anything else (an unknown or replayed `state`, a link with no attempt
    /// pending, a malformed callback) is logged and ignored, never trusted.
    pub async fn handle_link(&self, url: &Url) {
        let redirect = self
            .config()
            .map(|c| c.redirect_uri.clone())
            .unwrap_or_else(crate::config::default_redirect_uri);
        let callback = match Callback::parse(url, &redirect) {
            Ok(callback) => callback,
            Err(CallbackError::NotACallback) => {
                log::info!(
                    "deep link ignored: {}://{}{}",
                    url.scheme(),
                    url.host_str().unwrap_or(""),
                    url.path()
                );
                return;
            }
            Err(err) => {
                log::warn!("sign-in callback ignored: {err}");
                return;
            }
        };
        let Some(attempt) = self.take_matching(callback.state()) else {
            return;
        };
        // Before any await: nothing may start another attempt meanwhile.
        self.set(AuthState::Completing);
        self.forget_attempt_in_vault().await;
        if attempt.is_expired(Utc::now()) {
            self.signed_out(Some(Notice::warning(
                "The sign-in attempt expired. Choose Continue in browser to try again.",
            )));
            return;
        }
        match callback {
            Callback::Error {
                error, description, ..
            } => {
                log::info!(
                    "the provider ended the sign-in with {}",
                    crate::attempt::printable(&error, 64)
                );
                let message = if error == "access_denied" {
                    "Sign-in was cancelled in the browser. Choose Continue in browser to try again."
                        .to_owned()
                } else {
                    format!(
                        "The sign-in service refused the sign-in ({}{}). Try again.",
                        crate::attempt::printable(&error, 64),
                        description.map(|d| format!(": {d}")).unwrap_or_default()
                    )
                };
                // Cancelling is the user's choice, not a failure.
                let notice = if error == "access_denied" {
                    Notice::info(message)
                } else {
                    Notice::error(message)
                };
                self.signed_out(Some(notice));
            }
            Callback::Code { code, .. } => self.complete(&attempt, &code).await,
        }
    }

    /// Takes the pending attempt if `state` names it; logs why not otherwise.
    fn take_matching(&self, state: Option<&str>) -> Option<Attempt> {
        let mut slot = self.inner.attempt.lock().ok()?;
        let matches = matches!((slot.as_ref(), state), (Some(a), Some(s)) if a.state == s);
        if matches {
            let attempt = slot.take()?;
            if let Ok(mut finished) = self.inner.finished_states.lock() {
                finished.push_back(attempt.state.clone());
                while finished.len() > REMEMBERED_STATES {
                    finished.pop_front();
                }
            }
            return Some(attempt);
        }
        let replayed = state.is_some_and(|s| {
            self.inner
                .finished_states
                .lock()
                .is_ok_and(|f| f.iter().any(|x| x == s))
        });
        if replayed {
            log::warn!("a sign-in callback was replayed; ignored");
        } else if slot.is_some() {
            log::warn!("a sign-in callback with an unknown state was ignored");
        } else {
            log::warn!("a sign-in callback arrived with no sign-in pending; ignored");
            drop(slot);
            if matches!(self.state(), AuthState::SignedOut { .. }) {
                self.signed_out(Some(Notice::info(
                    "That sign-in link is no longer valid. Choose Continue in browser to sign in.",
                )));
            }
        }
        None
    }

    async fn complete(&self, attempt: &Attempt, code: &str) {
        let provider = match self.provider().await {
            Ok(provider) => provider,
            Err(err) => {
                self.signed_out(Some(Notice::error(format!(
                    "Can't reach the sign-in service: {err}. Try again."
                ))));
                return;
            }
        };
        let grant = match provider
            .exchange(code, &attempt.verifier, &attempt.nonce)
            .await
        {
            Ok(grant) => grant,
            Err(err) => {
                log::warn!("sign-in not completed: {err}");
                if matches!(err, OidcError::InvalidIdToken(_)) {
                    // Perhaps the provider rotated its keys: discover again next time.
                    *self.inner.provider.lock().await = None;
                }
                let message = match err {
                    OidcError::InvalidGrant(_) => "The sign-in service refused the code (it expired or was already used). Choose Continue in browser to try again.".to_owned(),
                    OidcError::InvalidIdToken(_) => "The sign-in answer failed verification and was refused. Try again; if it keeps happening, check this computer's clock.".to_owned(),
                    OidcError::Unreachable(_) => "Can't reach the sign-in service. Check your connection and try again.".to_owned(),
                    OidcError::Protocol(detail) => format!("The sign-in service answered unexpectedly ({}). Try again.", crate::attempt::printable(&detail, 200)),
                };
                self.signed_out(Some(Notice::error(message)));
                return;
            }
        };
        self.signed_in(grant).await;
    }

    async fn signed_in(&self, grant: Grant) {
        let Some(identity) = grant.identity.as_ref() else {
            self.signed_out(Some(Notice::error("The sign-in answer had no identity.")));
            return;
        };
        let mut user = profile::from_identity(identity);
        if let Some(picture) = identity.picture.as_deref() {
            user.avatar = profile::avatar(&self.inner.http, picture).await;
        }
        let mut notice = None;
        match grant.refresh_token.clone() {
            Some(token) => {
                if let Err(err) = self.inner.vault.save(REFRESH_KEY, token).await {
                    log::warn!("{err}");
                    notice = Some(keyring_notice());
                }
            }
            None => {
                notice = Some(Notice::info(
                    "The sign-in service gave no long-lived session: you will sign in again when this one ends.",
                ));
            }
        }
        *self.inner.tokens.lock().await = Some(Tokens {
            user_id: identity.subject.clone(),
            access: Some(grant.access_token),
            expires_at: expiry(grant.expires_in),
            lifetime: grant.expires_in.unwrap_or(Duration::from_secs(300)),
            refresh: grant.refresh_token,
        });
        if let Err(err) = self.inner.users.save(&user) {
            log::warn!("could not cache the profile: {err}");
        }
        if self.inner.attempt_take().is_some() {
            self.forget_attempt_in_vault().await;
        }
        log::info!("signed in");
        self.set(AuthState::SignedIn { user, notice });
        self.inner.refresher.notify_one();
        self.spawn_profile_refresh();
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

    fn spawn_profile_refresh(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(err) = this.refresh_profile().await {
                log::warn!("profile not refreshed: {err}");
            }
        });
    }

    /// Creates or refreshes the profile through `POST /api/user` and shows it.
    pub async fn refresh_profile(&self) -> Result<User, AuthError> {
        let config = self.config_ok()?.clone();
        let response = self
            .send(|http, token| {
                http.post(config.proxy_endpoint("api/user"))
                    .bearer_auth(token)
            })
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(AuthError::Unreachable(format!(
                "the Confab server (it answered {status} to POST /api/user)"
            )));
        }
        let profile: Profile = response
            .json()
            .await
            .map_err(|e| AuthError::Unreachable(format!("the Confab server ({e})")))?;
        let mut user = profile::from_profile(&profile);
        let previous = self.inner.users.load().filter(|u| u.id == user.id);
        user.avatar = match profile.image_url.as_deref() {
            Some(url) => profile::avatar(&self.inner.http, url).await,
            None => None,
        }
        .or_else(|| previous.and_then(|p| p.avatar));
        // Only for the user still signed in: a sign-out may have happened meanwhile.
        let belongs = {
            let mut slot = self.inner.tokens.lock().await;
            match slot.as_mut() {
                // Restored without a cached user: the profile says who it is.
                Some(tokens) if tokens.user_id.is_empty() => {
                    tokens.user_id = user.id.clone();
                    true
                }
                Some(tokens) => tokens.user_id == user.id,
                None => false,
            }
        };
        if belongs {
            if let Err(err) = self.inner.users.save(&user) {
                log::warn!("could not cache the profile: {err}");
            }
            self.set_user(user.clone());
        }
        Ok(user)
    }

    /// A valid access token: the current one, or a refreshed one when it is
    /// about to expire. Concurrent callers share one refresh.
    pub async fn access_token(&self) -> Result<String, AuthError> {
        let mut slot = self.inner.tokens.lock().await;
        let tokens = slot.as_ref().ok_or(AuthError::SignedOut)?;
        if let Some(access) = tokens.fresh_access() {
            return Ok(access.to_owned());
        }
        self.refresh_locked(&mut slot).await
    }

    /// After the proxy refused `rejected` with 401: refresh once, unless
    /// another caller already did.
    async fn after_unauthorized(&self, rejected: &str) -> Result<String, AuthError> {
        let mut slot = self.inner.tokens.lock().await;
        let tokens = slot.as_ref().ok_or(AuthError::SignedOut)?;
        if let Some(access) = tokens.access.as_deref().filter(|a| *a != rejected) {
            return Ok(access.to_owned());
        }
        self.refresh_locked(&mut slot).await
    }

    async fn refresh_locked(&self, slot: &mut Option<Tokens>) -> Result<String, AuthError> {
        let Some(refresh) = slot.as_ref().and_then(|t| t.refresh.clone()) else {
            // No long-lived session was granted and the access token is spent.
            *slot = None;
            self.end_session(Notice::warning(
                "Your session has ended. Sign in again to continue.",
            ))
            .await;
            return Err(AuthError::SessionEnded);
        };
        let provider = self.provider().await?;
        match provider.refresh(&refresh).await {
            Ok(grant) => {
                let tokens = slot.as_mut().ok_or(AuthError::SignedOut)?;
                if let Some(identity) = grant.identity.as_ref() {
                    if !tokens.user_id.is_empty() && tokens.user_id != identity.subject {
                        log::error!("the refreshed ID token names another user; signing out");
                        *slot = None;
                        self.end_session(Notice::error(
                            "Your session changed unexpectedly. Sign in again.",
                        ))
                        .await;
                        return Err(AuthError::SessionEnded);
                    }
                    if tokens.user_id.is_empty() {
                        tokens.user_id = identity.subject.clone();
                        let user = profile::from_identity(identity);
                        if let Err(err) = self.inner.users.save(&user) {
                            log::warn!("could not cache the profile: {err}");
                        }
                        self.set_user(user);
                    }
                }
                tokens.access = Some(grant.access_token.clone());
                tokens.expires_at = expiry(grant.expires_in);
                tokens.lifetime = grant.expires_in.unwrap_or(Duration::from_secs(300));
                if let Some(rotated) = grant.refresh_token.filter(|t| *t != refresh) {
                    tokens.refresh = Some(rotated.clone());
                    if let Err(err) = self.inner.vault.save(REFRESH_KEY, rotated).await {
                        log::warn!("{err}");
                        self.set_notice(Some(keyring_notice()));
                    }
                }
                if matches!(self.state(), AuthState::SignedIn { notice: Some(ref n), .. } if n.message.starts_with("You're offline"))
                {
                    self.set_notice(None);
                }
                self.inner.refresher.notify_one();
                log::info!("access token refreshed");
                Ok(grant.access_token)
            }
            Err(OidcError::InvalidGrant(reason)) => {
                log::warn!("the provider refused the refresh token ({reason}); signing out");
                *slot = None;
                self.end_session(Notice::warning(
                    "Your session has ended (it expired or was revoked). Sign in again to continue.",
                ))
                .await;
                Err(AuthError::SessionEnded)
            }
            Err(OidcError::Unreachable(what)) => Err(AuthError::Unreachable(format!(
                "the sign-in service ({what})"
            ))),
            Err(err) => Err(AuthError::Provider(err.to_string())),
        }
    }

    /// Sends a request to the proxy with the access token; on 401 refreshes
    /// once and sends it again, so a token expiring mid-flight loses nothing.
    pub async fn send<F>(&self, build: F) -> Result<reqwest::Response, AuthError>
    where
        F: Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    {
        let unreachable = |e: reqwest::Error| {
            AuthError::Unreachable(format!("the Confab server ({})", crate::oidc::chain(&e)))
        };
        let token = self.access_token().await?;
        let response = build(&self.inner.http, &token)
            .send()
            .await
            .map_err(unreachable)?;
        if response.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        log::info!("the proxy refused the access token; refreshing once");
        let token = self.after_unauthorized(&token).await?;
        build(&self.inner.http, &token)
            .send()
            .await
            .map_err(unreachable)
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

    /// Refreshes ahead of expiry so a request never waits for it; retries
    /// with backoff (5 s doubling to 5 min) after any failure. Holds the
    /// session only weakly: it ends when the session is dropped.
    async fn refresh_loop(weak: Weak<Inner>, wake: Arc<Notify>) {
        const FIRST_BACKOFF: Duration = Duration::from_secs(5);
        let mut backoff = FIRST_BACKOFF;
        loop {
            let due = match Self::upgrade(&weak) {
                Some(this) => this
                    .inner
                    .tokens
                    .lock()
                    .await
                    .as_ref()
                    .map(Tokens::refresh_due),
                None => return,
            };
            match due {
                None => {
                    wake.notified().await;
                    continue;
                }
                Some(due) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(due) => {}
                        _ = wake.notified() => continue,
                    }
                }
            }
            let Some(this) = Self::upgrade(&weak) else {
                return;
            };
            let result = this.access_token().await;
            drop(this);
            match result {
                Ok(_) => backoff = FIRST_BACKOFF,
                Err(AuthError::SignedOut | AuthError::SessionEnded) => {}
                Err(err) => {
                    log::info!("refresh postponed {}s: {err}", backoff.as_secs());
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = wake.notified() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(300));
                }
            }
        }
    }
}

impl Inner {
    fn attempt_take(&self) -> Option<Attempt> {
        self.attempt.lock().ok().and_then(|mut a| a.take())
    }
}

fn expiry(expires_in: Option<Duration>) -> Instant {
    Instant::now() + expires_in.unwrap_or(Duration::from_secs(300))
}

fn keyring_notice() -> Notice {
    Notice::warning(
        "Your system keyring is unavailable, so this sign-in lasts only until Confab closes.",
    )
}
