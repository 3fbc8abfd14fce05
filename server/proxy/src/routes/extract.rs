//! Extractors whose rejections are our error shape, never axum's plain text.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use confab_wire::conversations::{DEVICE_HEADER, DeviceId};

use crate::error::ApiError;
use crate::ids::Id;
use crate::limits::MAX_BODY_BYTES;
use crate::validate;

/// A JSON object body. Malformed JSON, a body that is not an object, wrong types
/// and unknown fields are 400 naming the field; an oversized body is 413.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::invalid(
                "content-type",
                "send the body as JSON (Content-Type: application/json)",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(format!(
                    "the request body is larger than {MAX_BODY_BYTES} bytes"
                ))
            } else {
                ApiError::invalid("body", e.body_text())
            }
        })?;
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::invalid("body", "must be a JSON object"));
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "body".to_owned() } else { path };
            ApiError::invalid(&field, e.into_inner())
        })?;
        de.end().map_err(|e| ApiError::invalid("body", e))?;
        Ok(JsonBody(value))
    }
}

/// The conversation id in the path. Anything that is not an id cannot name a
/// conversation of the caller's: 404, like any other stranger's id.
pub struct ConversationId(pub Id);

impl<S: Send + Sync> FromRequestParts<S> for ConversationId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found("conversation"))?;
        validate::path_id(&raw).map(ConversationId)
    }
}

/// The `X-Confab-Device` header: which install makes the request, recorded on
/// the changes it makes. Optional (the template's clients send none); a
/// malformed one is 400 rather than passed on to other devices.
pub struct Device(pub Option<DeviceId>);

impl<S: Send + Sync> FromRequestParts<S> for Device {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(raw) = parts.headers.get(DEVICE_HEADER) else {
            return Ok(Device(None));
        };
        let raw = raw
            .to_str()
            .map_err(|_| ApiError::invalid(DEVICE_HEADER, "must be plain text"))?;
        DeviceId::parse(raw)
            .map(|d| Device(Some(d)))
            .map_err(|e| ApiError::invalid(DEVICE_HEADER, e))
    }
}

/// Query parameters; a malformed query string is 400.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| QueryParams(v))
            .map_err(|e| ApiError::invalid("query", e.body_text()))
    }
}
