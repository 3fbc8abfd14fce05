use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use confab_wire::HttpError;
use confab_wire::conversations::Profile;

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;

#[utoipa::path(get, path = "/api/user", tag = "user", responses((status = 200, body = Profile), (status = 404, description = "No profile yet", body = HttpError), (status = 400, description = "Invalid input, naming the field", body = HttpError), (status = 401, description = "Missing or invalid token", body = HttpError), (status = 429, description = "Rate limited (Retry-After)", body = HttpError), (status = 503, description = "Store unavailable (Retry-After)", body = HttpError)), security(("bearer" = [])))]
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
#[utoipa::path(post, path = "/api/user", tag = "user", responses((status = 201, description = "Created from the identity provider", body = Profile), (status = 200, description = "Refreshed", body = Profile), (status = 400, description = "Invalid input, naming the field", body = HttpError), (status = 401, description = "Missing or invalid token", body = HttpError), (status = 429, description = "Rate limited (Retry-After)", body = HttpError), (status = 503, description = "Store unavailable (Retry-After)", body = HttpError)), security(("bearer" = [])))]
pub async fn post(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // Read from the provider lately: the stored profile is as fresh as that
    // (a webhook may have updated it since), and the provider is spared.
    if state.recent_profiles.fresh(user.id())
        && let Some(profile) = state.store.get_profile(user.id()).await?
    {
        return Ok((StatusCode::OK, Json(profile)).into_response());
    }
    // AuthUser already verified this token; userinfo needs it as it came.
    let token = crate::auth::bearer(&headers).unwrap_or_default();
    let fields = state.identity.fields(&state.http, user.id(), token).await?;
    state.recent_profiles.record(user.id());
    let existed = state.store.get_profile(user.id()).await?.is_some();
    let profile = state.store.put_profile(user.id(), fields).await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(profile)).into_response())
}
