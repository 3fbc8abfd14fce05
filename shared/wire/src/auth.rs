//! The signed-in session as the UI sees it. Tokens never appear here: the UI
//! learns who is signed in and what to show, nothing it could replay.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where sign-in stands. The shell emits it as [`crate::ipc::AuthChanged`]
/// whenever it changes, and answers it from [`crate::ipc::GetAuthState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum AuthState {
    /// The app does not know its identity provider or proxy: `message` says
    /// which setting is missing and where to put it.
    #[serde(rename_all = "camelCase")]
    NotConfigured { message: String },
    /// Nobody is signed in. `notice` explains why, when it was not the user's
    /// choice (a cancelled or failed attempt, an ended session).
    #[serde(rename_all = "camelCase")]
    SignedOut { notice: Option<Notice> },
    /// The browser is open at the provider; the attempt ends at `expires_at`.
    #[serde(rename_all = "camelCase")]
    Waiting {
        expires_at: DateTime<Utc>,
        notice: Option<Notice>,
    },
    /// The browser came back; the app is exchanging the code.
    Completing,
    /// Signed in. `notice` carries a warning that does not end the session
    /// (the keyring is unavailable, the profile could not be refreshed).
    #[serde(rename_all = "camelCase")]
    SignedIn { user: User, notice: Option<Notice> },
}

/// Who is signed in, for the header: from the proxy's profile when known,
/// else from the ID token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    /// The avatar as a `data:image/...` URL (cached, so it shows offline), or
    /// `None` to show initials.
    pub avatar: Option<String>,
}

impl User {
    /// Up to two letters for an avatar placeholder: "Ada Lovelace" -> "AL".
    pub fn initials(&self) -> String {
        let from_name: String = self
            .name
            .split_whitespace()
            .filter_map(|w| w.chars().next())
            .take(2)
            .flat_map(char::to_uppercase)
            .collect();
        if !from_name.is_empty() {
            return from_name;
        }
        self.email
            .as_deref()
            .and_then(|e| e.chars().next())
            .map(|c| c.to_uppercase().collect())
            .unwrap_or_else(|| "?".to_owned())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NoticeLevel {
    Info,
    Warning,
    Error,
}

/// A sentence for the user about what just happened and what to do next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    pub level: NoticeLevel,
    pub message: String,
}

impl Notice {
    pub fn info(message: impl Into<String>) -> Self {
        Self {
            level: NoticeLevel::Info,
            message: message.into(),
        }
    }
    pub fn warning(message: impl Into<String>) -> Self {
        Self {
            level: NoticeLevel::Warning,
            message: message.into(),
        }
    }
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            level: NoticeLevel::Error,
            message: message.into(),
        }
    }
}

/// Arguments of `sign_out`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignOutArgs {
    /// Sign out even though writes are waiting to sync (they are discarded).
    #[serde(default)]
    pub discard_pending: bool,
}

/// What `sign_out` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum SignOutOutcome {
    /// Signed out; the keyring entry and in-memory tokens are gone.
    SignedOut,
    /// Nothing was done: `pending` writes would be lost. Ask, then call again
    /// with `discard_pending: true`.
    #[serde(rename_all = "camelCase")]
    NeedsConfirmation { pending: u64 },
}

/// `pk_test_<base64("clerk.example.com$")>` -> `https://clerk.example.com`: a
/// Clerk publishable key encodes its Frontend API domain, which is the issuer.
pub fn issuer_from_publishable_key(key: &str) -> Option<String> {
    use base64::Engine;
    let encoded = key
        .trim()
        .strip_prefix("pk_test_")
        .or_else(|| key.trim().strip_prefix("pk_live_"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let domain = text.strip_suffix('$')?;
    let valid = !domain.is_empty()
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    valid.then(|| format!("https://{domain}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_tagged_camel_case() {
        let state = AuthState::Waiting {
            expires_at: DateTime::from_timestamp(0, 0).unwrap(),
            notice: None,
        };
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["status"], "waiting");
        assert!(json.get("expiresAt").is_some(), "{json}");
        let back: AuthState = serde_json::from_value(json).unwrap();
        assert_eq!(back, state);
    }

    #[test]
    fn initials_fall_back_to_email_then_question_mark() {
        let mut user = User {
            id: "u".into(),
            name: "ada  lovelace byron".into(),
            email: Some("x@example.com".into()),
            avatar: None,
        };
        assert_eq!(user.initials(), "AL");
        user.name = " ".into();
        assert_eq!(user.initials(), "X");
        user.email = None;
        assert_eq!(user.initials(), "?");
    }

    #[test]
    fn sign_out_args_refuse_unknown_fields() {
        assert!(serde_json::from_str::<SignOutArgs>(r#"{"discard":true}"#).is_err());
        let args: SignOutArgs = serde_json::from_str("{}").unwrap();
        assert!(!args.discard_pending);
    }

    #[test]
    fn publishable_keys_decode_to_https_issuers() {
        // base64("clerk.example.com$")
        assert_eq!(
            issuer_from_publishable_key("pk_test_Y2xlcmsuZXhhbXBsZS5jb20k").as_deref(),
            Some("https://clerk.example.com")
        );
        for bad in [
            "",
            "pk_test_",
            "sk_test_Y2xlcmsuZXhhbXBsZS5jb20k",
            "pk_test_not base64",
            // base64("clerk.example.com") without the `$` terminator
            "pk_test_Y2xlcmsuZXhhbXBsZS5jb20=",
            // base64("evil.com/path$")
            "pk_live_ZXZpbC5jb20vcGF0aCQ=",
        ] {
            assert_eq!(issuer_from_publishable_key(bad), None, "{bad}");
        }
    }
}
