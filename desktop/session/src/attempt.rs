//! One sign-in attempt: the secrets the browser round trip is checked against,
//! and the parsing of the callback deep link.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

/// How long the user has to finish in the browser.
pub const ATTEMPT_TTL: Duration = Duration::minutes(10);

/// A pending attempt. Kept in memory and in the keyring (so a cold start by the
/// callback link can finish it); consumed by the first callback that names
/// its `state`.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attempt {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    /// The authorization URL, to open the browser again.
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The state and nonce are not secret once sent, the verifier is.
        f.debug_struct("Attempt")
            .field("state", &self.state)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Attempt {
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }
}

/// What the provider sent back through `app.confab.desktop://oauth/callback`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callback {
    Code {
        state: String,
        code: String,
    },
    Error {
        state: Option<String>,
        error: String,
        description: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("not a sign-in callback")]
    NotACallback,
    #[error("the callback is malformed: {0}")]
    Malformed(&'static str),
}

/// Longest value accepted from a callback parameter: codes and states are far
/// shorter; anything longer is hostile.
const MAX_PARAM: usize = 2048;

impl Callback {
    pub fn state(&self) -> Option<&str> {
        match self {
            Callback::Code { state, .. } => Some(state),
            Callback::Error { state, .. } => state.as_deref(),
        }
    }

    /// Parses a deep link. Only a link to `redirect` (the app's
    /// `app.confab.desktop://oauth/callback`) is a callback; every parameter
    /// appears at most once.
    pub fn parse(url: &Url, redirect: &Url) -> Result<Self, CallbackError> {
        let is_callback = url.scheme() == redirect.scheme()
            && url.host_str() == redirect.host_str()
            && url.path().trim_end_matches('/') == redirect.path().trim_end_matches('/');
        if !is_callback {
            return Err(CallbackError::NotACallback);
        }
        let mut state = None;
        let mut code = None;
        let mut error = None;
        let mut description = None;
        for (key, value) in url.query_pairs() {
            if value.len() > MAX_PARAM {
                return Err(CallbackError::Malformed("a parameter is too long"));
            }
            let slot = match key.as_ref() {
                "state" => &mut state,
                "code" => &mut code,
                "error" => &mut error,
                "error_description" => &mut description,
                _ => continue,
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(CallbackError::Malformed("a parameter appears twice"));
            }
        }
        match (error, code, state) {
            (Some(error), _, state) => Ok(Callback::Error {
                state,
                error,
                description: description.map(|d| printable(&d, 300)),
            }),
            (None, Some(code), Some(state)) if !code.is_empty() && !state.is_empty() => {
                Ok(Callback::Code { state, code })
            }
            (None, _, None) => Err(CallbackError::Malformed("no state")),
            (None, _, Some(_)) => Err(CallbackError::Malformed("no code")),
        }
    }
}

/// Text from the provider shown to people: control characters dropped,
/// length bounded.
pub fn printable(text: &str, max_chars: usize) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Callback, CallbackError> {
        Callback::parse(
            &Url::parse(s).unwrap(),
            &crate::config::default_redirect_uri(),
        )
    }

    #[test]
    fn a_profile_s_callback_is_only_its_own() {
        let profile = Url::parse("app.confab.desktop://oauth/callback/device-2").unwrap();
        let link = |s: &str| Url::parse(s).unwrap();
        assert!(
            Callback::parse(
                &link("app.confab.desktop://oauth/callback/device-2?code=a&state=b"),
                &profile
            )
            .is_ok()
        );
        assert_eq!(
            Callback::parse(
                &link("app.confab.desktop://oauth/callback?code=a&state=b"),
                &profile
            ),
            Err(CallbackError::NotACallback)
        );
        assert_eq!(
            parse("app.confab.desktop://oauth/callback/device-2?code=a&state=b"),
            Err(CallbackError::NotACallback)
        );
    }

    #[test]
    fn a_code_and_a_state_make_a_callback() {
        assert_eq!(
            parse("app.confab.desktop://oauth/callback?code=abc&state=xyz&iss=x").unwrap(),
            Callback::Code {
                state: "xyz".into(),
                code: "abc".into()
            }
        );
    }

    #[test]
    fn provider_errors_are_kept_with_a_clean_description() {
        let cb = parse(
            "app.confab.desktop://oauth/callback?error=access_denied&error_description=no%0Athanks&state=s",
        )
        .unwrap();
        assert_eq!(
            cb,
            Callback::Error {
                state: Some("s".into()),
                error: "access_denied".into(),
                description: Some("nothanks".into())
            }
        );
    }

    #[test]
    fn other_links_and_malformed_callbacks_are_refused() {
        assert_eq!(
            parse("app.confab.desktop://conversations/1"),
            Err(CallbackError::NotACallback)
        );
        assert_eq!(
            parse("https://oauth/callback?code=a&state=b"),
            Err(CallbackError::NotACallback)
        );
        assert!(parse("app.confab.desktop://oauth/callback?code=a").is_err());
        assert!(parse("app.confab.desktop://oauth/callback?state=a").is_err());
        assert!(parse("app.confab.desktop://oauth/callback?code=&state=a").is_err());
        assert!(parse("app.confab.desktop://oauth/callback?code=a&state=b&state=c").is_err());
        let long = "x".repeat(MAX_PARAM + 1);
        assert!(
            parse(&format!(
                "app.confab.desktop://oauth/callback?code={long}&state=b"
            ))
            .is_err()
        );
    }

    #[test]
    fn debug_output_hides_the_verifier() {
        let attempt = Attempt {
            state: "s".into(),
            nonce: "n".into(),
            verifier: "SECRET-VERIFIER".into(),
            url: "https://id.example.com".into(),
            expires_at: Utc::now(),
        };
        assert!(!format!("{attempt:?}").contains("SECRET"));
    }
}
