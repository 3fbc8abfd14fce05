//! `POST /api/webhooks/clerk`: user.created / user.updated upsert the profile,
//! user.deleted erases every item of the user. Other event types are
//! acknowledged and ignored.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use confab_wire::ErrorCode;
use confab_wire::HttpError;
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiError;
use crate::identity::fields_from_clerk_user;
use crate::ids::UserId;
use crate::webhooks::{MAX_SIGNATURE_BYTES, MAX_SIGNATURES, MAX_WEBHOOK_BODY_BYTES, WebhookError};

#[derive(Deserialize)]
struct Delivery {
    #[serde(rename = "type")]
    kind: String,
    data: serde_json::Value,
}

#[utoipa::path(post, path = "/api/webhooks/clerk", tag = "webhooks", params(("svix-id" = String, Header), ("svix-timestamp" = String, Header), ("svix-signature" = String, Header)), responses((status = 204, description = "Processed"), (status = 400, body = HttpError), (status = 413, description = "Body over 64 KiB", body = HttpError), (status = 401, description = "Bad signature or stale", body = HttpError), (status = 409, description = "Replayed delivery", body = HttpError), (status = 503, description = "Webhooks not configured", body = HttpError)))]
pub async fn clerk(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!(
                "a webhook body is at most {MAX_WEBHOOK_BODY_BYTES} bytes"
            ))
        } else {
            ApiError::invalid("body", e.body_text())
        }
    })?;
    let Some(verifier) = &state.webhooks else {
        return Err(ApiError::unavailable(
            "webhooks are not configured on this proxy (CLERK_WEBHOOK_SIGNING_SECRET)",
        ));
    };
    // Refused by its length before anything reads it: Svix's values are ~50
    // bytes each.
    let too_many = || {
        ApiError::invalid(
            "svix-signature",
            format!("more than {MAX_SIGNATURES} signatures"),
        )
    };
    if headers
        .get("svix-signature")
        .is_some_and(|v| v.len() > MAX_SIGNATURES * MAX_SIGNATURE_BYTES)
    {
        return Err(too_many());
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = chrono::Utc::now().timestamp();
    let verified = verifier.verify(
        header("svix-id"),
        header("svix-timestamp"),
        header("svix-signature"),
        &body,
        now,
    );
    let delivery_id = header("svix-id").unwrap_or_default().to_owned();
    verified.map_err(|err| match err {
        WebhookError::Header(name) => ApiError::invalid(name, "missing or malformed"),
        WebhookError::TooManySignatures => too_many(),
        other => {
            tracing::warn!(reason = %other, "webhook refused");
            ApiError::new(ErrorCode::Unauthenticated, "webhook signature is not valid")
        }
    })?;
    // Only once the signature holds, so forged ids never reach the store.
    if state.store.delivery_seen(&delivery_id).await? {
        // Already handled, by this instance or another: acknowledge so Svix
        // stops, do nothing again.
        return Ok(StatusCode::NO_CONTENT);
    }
    let delivery: Delivery = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid("body", format!("not a Clerk event: {e}")))?;
    match delivery.kind.as_str() {
        "user.created" | "user.updated" => {
            let (id, fields) =
                fields_from_clerk_user(delivery.data).map_err(|e| ApiError::invalid("data", e))?;
            let user = UserId::parse(&id).map_err(|e| ApiError::invalid("data.id", e))?;
            state.store.put_profile(&user, fields).await?;
            tracing::info!(event = %delivery.kind, "profile synced from Clerk");
        }
        "user.deleted" => {
            let id = delivery
                .data
                .get("id")
                .and_then(|v| v.as_str())
                .ok_or_else(|| ApiError::invalid("data.id", "is required"))?;
            let user = UserId::parse(id).map_err(|e| ApiError::invalid("data.id", e))?;
            state.store.erase_user(&user).await?;
            // Its open streams end now, not when their tokens expire.
            // Here and, through the relay, on every other instance.
            state.events.publish(&user, crate::events::Live::Disconnect);
            tracing::info!("user erased on Clerk's user.deleted");
        }
        other => tracing::debug!(event = %other, "webhook event ignored"),
    }
    // Recorded only after it was handled: a delivery that failed (a 503) is
    // retried by Svix and must not look like a replay.
    state.store.record_delivery(&delivery_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
