//! The tokens: a valid access token on demand, one refresh at a time
//! (rotated refresh tokens are used once), and the refresher that renews
//! them ahead of expiry.

use super::*;

/// Refresh this long before the access token expires (or a fifth of its
/// lifetime, for short-lived tokens).
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

pub(super) struct Tokens {
    pub(super) user_id: String,
    /// `None` after a restore, until the first refresh.
    pub(super) access: Option<String>,
    pub(super) expires_at: Instant,
    pub(super) lifetime: Duration,
    pub(super) refresh: Option<String>,
}

impl Tokens {
    pub(super) fn refresh_due(&self) -> Instant {
        let margin = REFRESH_MARGIN.min(self.lifetime / 5);
        self.expires_at
            .checked_sub(margin)
            .unwrap_or(self.expires_at)
    }

    pub(super) fn fresh_access(&self) -> Option<&str> {
        self.access
            .as_deref()
            .filter(|_| Instant::now() < self.refresh_due())
    }
}

pub(super) fn expiry(expires_in: Option<Duration>) -> Instant {
    Instant::now() + expires_in.unwrap_or(Duration::from_secs(300))
}

impl Session {
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
    pub(super) async fn after_unauthorized(&self, rejected: &str) -> Result<String, AuthError> {
        let mut slot = self.inner.tokens.lock().await;
        let tokens = slot.as_ref().ok_or(AuthError::SignedOut)?;
        if let Some(access) = tokens.access.as_deref().filter(|a| *a != rejected) {
            return Ok(access.to_owned());
        }
        self.refresh_locked(&mut slot).await
    }

    pub(super) async fn refresh_locked(
        &self,
        slot: &mut Option<Tokens>,
    ) -> Result<String, AuthError> {
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

    /// Refreshes ahead of expiry so a request never waits for it; retries
    /// with backoff (5 s doubling to 5 min) after any failure. Holds the
    /// session only weakly: it ends when the session is dropped.
    pub(super) async fn refresh_loop(weak: Weak<Inner>, wake: Arc<Notify>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(expires_in: Duration, lifetime: Duration) -> Tokens {
        Tokens {
            user_id: "user_ada".into(),
            access: Some("at".into()),
            expires_at: Instant::now() + expires_in,
            lifetime,
            refresh: None,
        }
    }

    #[test]
    fn refresh_is_due_a_minute_early_or_a_fifth_of_a_short_lifetime() {
        let hour = Duration::from_secs(3600);
        let long = tokens(hour, hour);
        assert_eq!(long.expires_at - long.refresh_due(), REFRESH_MARGIN);
        let short = tokens(Duration::from_secs(100), Duration::from_secs(100));
        assert_eq!(
            short.expires_at - short.refresh_due(),
            Duration::from_secs(20)
        );
        assert_eq!(long.fresh_access(), Some("at"));
        // Ten seconds left of an hour-long token: inside the margin, so stale.
        assert_eq!(tokens(Duration::from_secs(10), hour).fresh_access(), None);
        let restored = Tokens {
            access: None,
            ..tokens(hour, hour)
        };
        assert_eq!(restored.fresh_access(), None, "restored: refresh first");
    }

    #[test]
    fn a_grant_without_a_lifetime_lasts_five_minutes() {
        let at = expiry(None) - Instant::now();
        assert!(at <= Duration::from_secs(300) && at > Duration::from_secs(298));
    }

    #[tokio::test]
    async fn a_signed_out_session_has_no_token() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let session = test_session(dir.path());
        assert_eq!(session.access_token().await, Err(AuthError::SignedOut));
    }
}
