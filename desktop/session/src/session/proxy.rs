//! The session as the proxy's HTTP client: requests carry the access token
//! and survive its expiry mid-flight; the profile comes from `POST /api/user`.

use super::*;

impl Session {
    pub(super) fn spawn_profile_refresh(&self) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nothing_reaches_the_proxy_without_a_session() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let session = test_session(dir.path());
        let sent = session
            .send(|http, token| http.get("http://127.0.0.1:9/api/user").bearer_auth(token))
            .await;
        assert!(matches!(sent, Err(AuthError::SignedOut)), "{sent:?}");
        assert_eq!(session.refresh_profile().await, Err(AuthError::SignedOut));
    }
}
