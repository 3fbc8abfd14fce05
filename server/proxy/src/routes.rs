//! The HTTP surface. Each route's contract is in docs/api.md.

pub(crate) mod changes;
pub(crate) mod conversations;
pub(crate) mod events;
mod extract;
pub(crate) mod health;
pub(crate) mod replies;
pub(crate) mod user;
pub(crate) mod webhooks;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderName;
use axum::routing::{get, post};
use confab_wire::ErrorCode;
use tower::timeout::TimeoutLayer;
use tower::{BoxError, ServiceBuilder};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::AppState;
use crate::error::ApiError;
use crate::limits::{MAX_BODY_BYTES, REQUEST_TIMEOUT};

pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/api/openapi.json", get(crate::openapi::document))
        .route("/api/user", get(user::get).post(user::post))
        .route(
            "/api/conversations",
            get(conversations::list)
                .post(conversations::create)
                .put(conversations::template_update)
                .delete(conversations::template_delete),
        )
        .route(
            "/api/conversations/{id}",
            get(conversations::get)
                .put(conversations::update)
                .delete(conversations::delete),
        )
        .route(
            "/api/conversations/{id}/restore",
            post(conversations::restore),
        )
        .route(
            "/api/conversations/{id}/messages",
            get(conversations::messages).post(conversations::append),
        )
        .route("/api/changes", get(changes::changes))
        .route("/api/assistant", get(replies::info))
        .route("/api/conversations/{id}/replies", post(replies::start))
        .route(
            "/api/conversations/{id}/replies/{messageId}/stop",
            post(replies::stop),
        )
        // Unauthenticated: a small body keeps the signature check cheap.
        .route(
            "/api/webhooks/clerk",
            post(webhooks::clerk).layer(DefaultBodyLimit::max(
                crate::webhooks::MAX_WEBHOOK_BODY_BYTES,
            )),
        )
        .fallback(not_found)
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: BoxError| async {
                    ApiError::unavailable("the request took too long; retry shortly")
                }))
                .layer(TimeoutLayer::new(REQUEST_TIMEOUT)),
        )
        // Event streams are long-lived: outside the timeout.
        .route("/api/events", get(events::events))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    // Method and path only: query strings and headers (tokens)
                    // stay out of the logs.
                    TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                        let id = req
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-");
                        tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), id = %id)
                    }),
                )
                .layer(PropagateRequestIdLayer::new(request_id)),
        )
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}
