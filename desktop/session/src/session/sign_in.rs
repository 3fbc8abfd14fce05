//! Sign-in attempts: the browser URL, the callback link (state, code,
//! replays), the code exchange and the signed-in state it ends in.

use super::*;

impl Session {
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

    pub(super) fn wait_for(&self, attempt: Attempt) {
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

    pub(super) async fn forget_attempt_in_vault(&self) {
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
    pub(super) fn take_matching(&self, state: Option<&str>) -> Option<Attempt> {
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

    pub(super) async fn complete(&self, attempt: &Attempt, code: &str) {
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

    pub(super) async fn signed_in(&self, grant: Grant) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(state: &str) -> Attempt {
        Attempt {
            state: state.into(),
            nonce: "n".into(),
            verifier: "v".into(),
            url: "http://127.0.0.1:9/oauth/authorize".into(),
            expires_at: Utc::now() + ATTEMPT_TTL,
        }
    }

    #[tokio::test]
    async fn a_callback_with_nothing_pending_changes_nothing_but_says_so() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let session = test_session(dir.path());
        let link = Url::parse("app.confab.desktop://oauth/callback?code=c&state=s")
            .unwrap_or_else(|e| panic!("{e}"));
        session.handle_link(&link).await;
        match session.state() {
            AuthState::SignedOut { notice: Some(n) } => {
                assert!(n.message.contains("no longer valid"), "{}", n.message);
            }
            other => panic!("{other:?}"),
        }
        // Not a callback at all: ignored without a word.
        let other = Url::parse("app.confab.desktop://open/x").unwrap_or_else(|e| panic!("{e}"));
        session.handle_link(&other).await;
        assert!(matches!(session.state(), AuthState::SignedOut { .. }));
    }

    #[tokio::test]
    async fn only_the_pending_state_matches_and_only_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let session = test_session(dir.path());
        if let Ok(mut slot) = session.inner.attempt.lock() {
            *slot = Some(attempt("s1"));
        }
        assert!(session.take_matching(Some("other")).is_none());
        assert!(session.take_matching(None).is_none());
        assert_eq!(
            session.take_matching(Some("s1")).map(|a| a.state),
            Some("s1".to_owned())
        );
        assert!(session.take_matching(Some("s1")).is_none(), "a replay");
        let remembered = session
            .inner
            .finished_states
            .lock()
            .map(|f| f.contains(&"s1".to_owned()))
            .unwrap_or_default();
        assert!(remembered);
    }

    #[tokio::test]
    async fn an_unconfigured_app_cannot_begin() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let session = Session::new(
            AuthConfig::load(dir.path(), &|_| None),
            Vault::new(crate::vault::MemoryStore::default()),
            dir.path(),
        );
        assert!(matches!(session.state(), AuthState::NotConfigured { .. }));
        assert!(matches!(
            session.begin_sign_in().await,
            Err(AuthError::NotConfigured(_))
        ));
    }
}
