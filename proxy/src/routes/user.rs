use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use confab_wire::conversations::Profile;

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;

pub async fn get(State(state): State<AppState>, user: AuthUser) -> Result<Json<Profile>, ApiError> {
    state
        .store
        .get_profile(user.id())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("profile yet: POST /api/user creates it"))
}

/// Creates or refreshes the caller's profile from the identity provider. The
/// body, if any, is ignored: nothing in a request can set these fields.
pub async fn post(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(_, t)| t.trim())
        .unwrap_or_default();
    let fields = state.identity.fields(&state.http, user.id(), token).await?;
    let existed = state.store.get_profile(user.id()).await?.is_some();
    let profile = state.store.put_profile(user.id(), fields).await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(profile)).into_response())
}
