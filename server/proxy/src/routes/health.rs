use axum::Json;
use axum::extract::State;
use confab_wire::HttpError;
use serde::Serialize;

use crate::AppState;
use crate::error::ApiError;

#[derive(Serialize)]
pub struct Health {
    status: &'static str,
    version: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "The process answers")))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Readiness: the store answers too.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, description = "The store answers too"), (status = 503, body = HttpError)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.store.ping().await?;
    Ok(Json(Health {
        status: "ready",
        version: env!("CARGO_PKG_VERSION"),
    }))
}
