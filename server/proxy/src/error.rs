//! The proxy's one error type: every failure becomes `{"error": {code, message}}`
//! with the matching status (and `WWW-Authenticate` / `Retry-After` where they
//! apply), so handlers just use `?`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use confab_wire::{ErrorBody, ErrorCode};
use serde::Serialize;

use crate::auth::AuthError;
use crate::store::StoreError;

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_UNAVAILABLE_SECS: u64 = 2;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// The resource as it is now, sent along with a 409.
    pub current: Option<serde_json::Value>,
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a ErrorBody,
    #[serde(skip_serializing_if = "Option::is_none")]
    current: Option<&'a serde_json::Value>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            current: None,
            retry_after: None,
        }
    }

    /// 400 naming the field at fault.
    pub fn invalid(field: &str, problem: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::InvalidInput, format!("{field}: {problem}"))
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("no such {what}"))
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::TooLarge, message)
    }

    pub fn unauthenticated(reason: AuthError) -> Self {
        // The reason stays in the logs: telling a caller why a forged token
        // failed helps only the forger.
        tracing::debug!(%reason, "token refused");
        Self::new(
            ErrorCode::Unauthenticated,
            "sign in again: the access token is missing, expired or invalid",
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(RETRY_AFTER_UNAVAILABLE_SECS),
            ..Self::new(ErrorCode::Unavailable, message)
        }
    }

    pub fn rate_limited(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(
                ErrorCode::RateLimited,
                "too many requests: slow down and retry after the indicated time",
            )
        }
    }

    pub fn conflict(message: impl Into<String>, current: Option<serde_json::Value>) -> Self {
        Self {
            current,
            ..Self::new(ErrorCode::Conflict, message)
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    pub fn status(&self) -> StatusCode {
        match self.code {
            ErrorCode::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::CursorExpired => StatusCode::GONE,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable | ErrorCode::AssistantUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(code = %self.code, message = %self.message, "request failed");
        }
        let error = ErrorBody::new(self.code, self.message);
        let mut response = (
            status,
            Json(Body {
                error: &error,
                current: self.current.as_ref(),
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer error="invalid_token""#),
            );
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::not_found("conversation"),
            StoreError::Conflict(current) => ApiError::conflict(
                "the conversation changed since you read it: here is the current version",
                serde_json::to_value(&*current).ok(),
            ),
            StoreError::IdTaken(why) => ApiError::conflict(why, None),
            StoreError::CapReached(why) => ApiError::too_large(why),
            StoreError::CursorExpired { current } => ApiError {
                current: Some(serde_json::json!({ "cursor": current.to_string() })),
                ..ApiError::new(
                    ErrorCode::CursorExpired,
                    "this cursor is older than the kept change history: list the conversations again, then pull changes from current.cursor",
                )
            },
            StoreError::Erased => ApiError {
                message: "this account was deleted: sign in with an account that exists".into(),
                ..ApiError::new(ErrorCode::Unauthenticated, "")
            },
            StoreError::NotAUserMessage => ApiError::invalid(
                "after",
                "names no message of yours in this conversation: a reply answers a message you wrote",
            ),
            err @ (StoreError::ReplyBusy | StoreError::ReplyEnded) => {
                ApiError::conflict(err.to_string(), None)
            }
            StoreError::OverBudget { used } => ApiError {
                retry_after: Some(crate::assistant::secs_to_next_day()),
                ..ApiError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "your daily assistant budget is spent ({used} tokens today): it resets at midnight UTC, {}",
                        crate::assistant::reset_in_words()
                    ),
                )
            },
            StoreError::InvalidCursor => {
                ApiError::invalid("cursor", "not a cursor this API issued")
            }
            StoreError::Unavailable(reason) => {
                tracing::warn!(%reason, "store unavailable");
                ApiError::unavailable("storage is unavailable right now; retry shortly")
            }
            StoreError::Internal(reason) => {
                tracing::error!(%reason, "store failure");
                ApiError::internal("the request could not be completed; it is safe to retry")
            }
        }
    }
}
