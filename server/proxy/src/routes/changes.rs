use axum::Json;
use axum::extract::State;
use confab_wire::HttpError;
use confab_wire::conversations::Changes;
use serde::Deserialize;

use super::extract::QueryParams;
use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::limits::{DEFAULT_CHANGES_PAGE, MAX_CHANGES_PAGE};
use crate::validate;

#[derive(Deserialize)]
pub struct ChangesQuery {
    since: Option<String>,
    limit: Option<String>,
}

/// Everything of the caller's that changed after `since` (a cursor from an
/// earlier answer; absent = from the beginning).
#[utoipa::path(get, path = "/api/changes", tag = "changes", params(("since" = Option<String>, Query, description = "Cursor from an earlier answer; absent = from the beginning"), ("limit" = Option<u32>, Query, description = "1-500, default 100")), responses((status = 200, body = Changes), (status = 400, description = "Invalid input, naming the field", body = HttpError), (status = 401, description = "Missing or invalid token", body = HttpError), (status = 429, description = "Rate limited (Retry-After)", body = HttpError), (status = 503, description = "Store unavailable (Retry-After)", body = HttpError)), security(("bearer" = [])))]
pub async fn changes(
    State(state): State<AppState>,
    user: AuthUser,
    QueryParams(q): QueryParams<ChangesQuery>,
) -> Result<Json<Changes>, ApiError> {
    let since = match q.since.as_deref() {
        None | Some("") => 0,
        Some(raw) => raw
            .parse::<u64>()
            .map_err(|_| ApiError::invalid("since", "not a cursor this API issued"))?,
    };
    let limit = validate::page_limit(q.limit.as_deref(), DEFAULT_CHANGES_PAGE, MAX_CHANGES_PAGE)?;
    Ok(Json(state.store.changes(user.id(), since, limit).await?))
}
