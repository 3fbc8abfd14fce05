//! The HTTP surface. Each route's contract is in ../shared/design.md section 3.

mod changes;
mod conversations;
mod events;
mod extract;
mod health;
mod user;
mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use confab_wire::ErrorCode;
use tower_http::trace::TraceLayer;

use crate::AppState;
use crate::error::ApiError;
use crate::limits::MAX_BODY_BYTES;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
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
            post(conversations::append),
        )
        .route("/api/changes", get(changes::changes))
        .route("/api/events", get(events::events))
        .route("/api/webhooks/clerk", post(webhooks::clerk))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}
