//! The one error shape Confab shows across IPC and HTTP: `{code, message}`.
//!
//! `code` is stable and machine-readable (snake_case), `message` is for people: it
//! says what happened and what to do. Over HTTP the body is wrapped as
//! `{"error": {code, message}}` (see [`HttpError`]); over IPC it travels bare.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Machine-readable error codes. New codes are added as features need them;
/// a peer that does not know a code yet reads it as [`ErrorCode::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request itself is wrong (a field is missing, malformed or out of range).
    InvalidInput,
    /// No valid credentials: sign in again.
    Unauthenticated,
    /// The thing does not exist, or is not the caller's.
    NotFound,
    /// The thing changed since the caller read it.
    Conflict,
    /// A change-feed cursor older than the retained history: list again.
    CursorExpired,
    /// The request or one of its parts is larger than allowed.
    TooLarge,
    /// Too many requests: retry later.
    RateLimited,
    /// A dependency (store, provider, network) cannot be reached right now.
    Unavailable,
    /// The server has no assistant (no model provider configured): asking
    /// again will not help until the operator sets one.
    AssistantUnavailable,
    /// No browser could be opened on this computer: the user copies the
    /// sign-in link into one (`sign_in_link`).
    BrowserUnavailable,
    /// A bug or an unexpected state on our side.
    Internal,
    /// A code this build does not know (sent by a newer peer).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::CursorExpired => "cursor_expired",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::AssistantUnavailable => "assistant_unavailable",
            ErrorCode::BrowserUnavailable => "browser_unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{code, message}`: what every failing command and HTTP route answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ErrorBody {}

/// The HTTP envelope: `{"error": {code, message}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HttpError {
    pub error: ErrorBody,
}

/// An HTTP error that carries the state a client resumes from: a 409
/// `conflict` the conversation as it is now, a 410 `cursor_expired` a
/// [`ResumeAt`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HttpErrorWith<T> {
    pub error: ErrorBody,
    pub current: T,
}

/// `current` of a 410 `cursor_expired`: list the conversations again, then
/// pull changes from this cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResumeAt {
    pub cursor: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipc_shape_is_code_and_message() {
        let body = ErrorBody::new(ErrorCode::InvalidInput, "title: must not be empty");
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": "invalid_input", "message": "title: must not be empty"})
        );
    }

    #[test]
    fn http_shape_wraps_in_error() {
        let env = HttpError {
            error: ErrorBody::new(ErrorCode::NotFound, "no such conversation"),
        };
        let json = serde_json::to_string(&env).unwrap();
        assert_eq!(
            json,
            r#"{"error":{"code":"not_found","message":"no such conversation"}}"#
        );
    }

    #[test]
    fn errors_with_state_read_back() {
        let json = r#"{"error":{"code":"cursor_expired","message":"list again"},"current":{"cursor":"41"}}"#;
        let gone: HttpErrorWith<ResumeAt> = serde_json::from_str(json).unwrap();
        assert_eq!(gone.error.code, ErrorCode::CursorExpired);
        assert_eq!(gone.current.cursor, "41");
        // The proxy writes the same shape it documents.
        let back = serde_json::to_string(&gone).unwrap();
        assert_eq!(back, json);
    }

    #[test]
    fn unknown_codes_from_newer_peers_still_parse() {
        let body: ErrorBody =
            serde_json::from_str(r#"{"code":"quota_exceeded","message":"later"}"#).unwrap();
        assert_eq!(body.code, ErrorCode::Unknown);
        assert_eq!(body.message, "later");
    }

    #[test]
    fn as_str_matches_serde() {
        for code in [
            ErrorCode::InvalidInput,
            ErrorCode::Unauthenticated,
            ErrorCode::NotFound,
            ErrorCode::Conflict,
            ErrorCode::CursorExpired,
            ErrorCode::TooLarge,
            ErrorCode::RateLimited,
            ErrorCode::Unavailable,
            ErrorCode::AssistantUnavailable,
            ErrorCode::BrowserUnavailable,
            ErrorCode::Internal,
        ] {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::Value::String(code.as_str().into()));
        }
    }
}
