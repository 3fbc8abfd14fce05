//! Conversation routes: thin mappings from HTTP onto the store.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use confab_wire::HttpError;
use confab_wire::conversations::ConversationDetail;
use confab_wire::conversations::{
    AppendedMessage, ChangeNotice, Conversation, CreateConversation, DeviceId, Message, NewMessage,
    Page, UpdateConversation,
};
use serde::Deserialize;

use super::extract::{ConversationId, Device, JsonBody, QueryParams};
use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::limits::{DEFAULT_MESSAGE_PAGE, DEFAULT_PAGE, MAX_MESSAGE_PAGE, MAX_PAGE};
use crate::store::MessageRange;
use crate::validate;

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/conversations", tag = "conversations", params(("limit" = Option<u32>, Query, description = "1-200, default 50"), ("cursor" = Option<String>, Query, description = "nextCursor of the previous page")), responses((status = 200, description = "Most recently changed first", body = Page<Conversation>), (status = 400, description = "Invalid input, naming the field", body = HttpError), (status = 401, description = "Missing or invalid token", body = HttpError), (status = 429, description = "Rate limited (Retry-After)", body = HttpError), (status = 503, description = "Store unavailable (Retry-After)", body = HttpError)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<Page<Conversation>>, ApiError> {
    let limit = validate::page_limit(q.limit.as_deref(), DEFAULT_PAGE, MAX_PAGE)?;
    let page = state
        .store
        .list_conversations(user.id(), limit, q.cursor.as_deref())
        .await?;
    Ok(Json(page))
}

#[utoipa::path(post, path = "/api/conversations", tag = "conversations", request_body = CreateConversation, responses((status = 201, body = ConversationDetail), (status = 200, description = "The id was replayed: the stored conversation", body = ConversationDetail), (status = 409, body = HttpError), (status = 413, body = HttpError), (status = 400, description = "Invalid input, naming the field", body = HttpError), (status = 401, description = "Missing or invalid token", body = HttpError), (status = 429, description = "Rate limited (Retry-After)", body = HttpError), (status = 503, description = "Store unavailable (Retry-After)", body = HttpError)), security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Device(device): Device,
    JsonBody(body): JsonBody<CreateConversation>,
) -> Result<Response, ApiError> {
    let new = validate::create(body)?;
    let created = state
        .store
        .create_conversation(user.id(), new, device.as_ref())
        .await?;
    let version = created.value.conversation.version;
    let status = if created.created {
        let id = &created.value.conversation.id;
        announce(&state, &user, id, version, device);
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_etag(
        (status, Json(created.value)).into_response(),
        version,
    ))
}

#[derive(Deserialize)]
pub struct GetQuery {
    limit: Option<String>,
}

#[utoipa::path(get, path = "/api/conversations/{id}", tag = "conversations", params(("id" = String, Path, description = "ULID"), ("limit" = Option<u32>, Query, description = "1-1000: only the newest `limit` messages, and `nextCursor` (pass as `before` to the messages route) when there are earlier ones; without it, every message (the template's shape)")), responses((status = 200, body = ConversationDetail), (status = 404, body = HttpError), (status = 400, description = "Invalid input, naming the field", body = HttpError), (status = 401, description = "Missing or invalid token", body = HttpError), (status = 429, description = "Rate limited (Retry-After)", body = HttpError), (status = 503, description = "Store unavailable (Retry-After)", body = HttpError)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    ConversationId(id): ConversationId,
    QueryParams(q): QueryParams<GetQuery>,
) -> Result<Response, ApiError> {
    let detail = match q.limit {
        None => state.store.get_conversation(user.id(), id).await?,
        Some(raw) => {
            let limit = validate::page_limit(Some(&raw), DEFAULT_MESSAGE_PAGE, MAX_MESSAGE_PAGE)?;
            state
                .store
                .get_conversation_newest(user.id(), id, limit)
                .await?
        }
    };
    let version = detail.conversation.version;
    Ok(with_etag(Json(detail).into_response(), version))
}

#[derive(Deserialize)]
pub struct MessagesQuery {
    after: Option<String>,
    before: Option<String>,
    limit: Option<String>,
}

#[utoipa::path(get, path = "/api/conversations/{id}/messages", tag = "conversations", params(("id" = String, Path, description = "ULID"), ("after" = Option<String>, Query, description = "A message id: the messages after it, oldest first (from the first message when neither after nor before is given)"), ("before" = Option<String>, Query, description = "A message id: the newest messages before it, answered oldest first; nextCursor continues backwards"), ("limit" = Option<u32>, Query, description = "1-1000, default 200; a page also stops at 4 MiB of content")), responses((status = 200, description = "Messages in id order; nextCursor continues in the direction asked", body = Page<Message>), (status = 404, body = HttpError), (status = 400, description = "Invalid input, naming the field", body = HttpError), (status = 401, description = "Missing or invalid token", body = HttpError), (status = 429, description = "Rate limited (Retry-After)", body = HttpError), (status = 503, description = "Store unavailable (Retry-After)", body = HttpError)), security(("bearer" = [])))]
pub async fn messages(
    State(state): State<AppState>,
    user: AuthUser,
    ConversationId(id): ConversationId,
    QueryParams(q): QueryParams<MessagesQuery>,
) -> Result<Json<Page<Message>>, ApiError> {
    let limit = validate::page_limit(q.limit.as_deref(), DEFAULT_MESSAGE_PAGE, MAX_MESSAGE_PAGE)?;
    let range = match (q.after, q.before) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "before",
                "give after or before, not both",
            ));
        }
        (after, None) => {
            MessageRange::After(after.map(|raw| validate::id("after", &raw)).transpose()?)
        }
        (None, Some(before)) => MessageRange::Before(Some(validate::id("before", &before)?)),
    };
    let page = state.store.messages(user.id(), id, range, limit).await?;
    Ok(Json(page))
}

#[utoipa::path(put, path = "/api/conversations/{id}", tag = "conversations", params(("id" = String, Path, description = "ULID"), ("If-Match" = Option<String>, Header, description = "Expected version")), request_body = UpdateConversation, responses((status = 200, body = Conversation), (status = 404, body = HttpError), (status = 409, description = "Version mismatch; `current` holds the stored conversation", body = HttpError), (status = 400, description = "Invalid input, naming the field", body = HttpError), (status = 401, description = "Missing or invalid token", body = HttpError), (status = 429, description = "Rate limited (Retry-After)", body = HttpError), (status = 503, description = "Store unavailable (Retry-After)", body = HttpError)), security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    device: Device,
    ConversationId(id): ConversationId,
    headers: HeaderMap,
    JsonBody(body): JsonBody<UpdateConversation>,
) -> Result<Response, ApiError> {
    if let Some(body_id) = &body.id
        && validate::id("id", body_id)? != id
    {
        return Err(ApiError::invalid("id", "differs from the id in the path"));
    }
    apply_update(state, user, device, id, &headers, body).await
}

/// The template's `PUT /api/conversations` with the id in the body.
#[utoipa::path(put, path = "/api/conversations", tag = "template", request_body = UpdateConversation, responses((status = 200, body = Conversation), (status = 404, body = HttpError), (status = 409, body = HttpError), (status = 400, description = "Invalid input, naming the field", body = HttpError), (status = 401, description = "Missing or invalid token", body = HttpError), (status = 429, description = "Rate limited (Retry-After)", body = HttpError), (status = 503, description = "Store unavailable (Retry-After)", body = HttpError)), security(("bearer" = [])))]
pub async fn template_update(
    State(state): State<AppState>,
    user: AuthUser,
    device: Device,
    headers: HeaderMap,
    JsonBody(body): JsonBody<UpdateConversation>,
) -> Result<Response, ApiError> {
    let raw = body
        .id
        .as_deref()
        .ok_or_else(|| ApiError::invalid("id", "is required"))?;
    let id = validate::path_id(raw)?;
    apply_update(state, user, device, id, &headers, body).await
}

async fn apply_update(
    state: AppState,
    user: AuthUser,
    Device(device): Device,
    id: crate::ids::Id,
    headers: &HeaderMap,
    body: UpdateConversation,
) -> Result<Response, ApiError> {
    let patch = validate::patch(body, validate::if_match(headers)?)?;
    let updated = state
        .store
        .update_conversation(user.id(), id, patch, device.as_ref())
        .await?;
    let version = updated.version;
    announce(&state, &user, &updated.id, version, device);
    Ok(with_etag(Json(updated).into_response(), version))
}

#[utoipa::path(delete, path = "/api/conversations/{id}", tag = "conversations", params(("id" = String, Path, description = "ULID"), ("If-Match" = Option<String>, Header, description = "Expected version")), responses((status = 204, description = "Deleted (restorable)"), (status = 404, body = HttpError), (status = 409, body = HttpError), (status = 400, description = "Invalid input, naming the field", body = HttpError), (status = 401, description = "Missing or invalid token", body = HttpError), (status = 429, description = "Rate limited (Retry-After)", body = HttpError), (status = 503, description = "Store unavailable (Retry-After)", body = HttpError)), security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    Device(device): Device,
    ConversationId(id): ConversationId,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let expected = validate::if_match(&headers)?;
    let deletion = state
        .store
        .delete_conversation(user.id(), id, expected, device.as_ref())
        .await?;
    announce(&state, &user, &deletion.id, deletion.version, device);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct TemplateDeleteQuery {
    id: Option<String>,
}

/// The template's `DELETE /api/conversations?id=`.
#[utoipa::path(delete, path = "/api/conversations", tag = "template", params(("id" = String, Query, description = "ULID")), responses((status = 204, description = "Deleted (restorable)"), (status = 404, body = HttpError), (status = 400, description = "Invalid input, naming the field", body = HttpError), (status = 401, description = "Missing or invalid token", body = HttpError), (status = 429, description = "Rate limited (Retry-After)", body = HttpError), (status = 503, description = "Store unavailable (Retry-After)", body = HttpError)), security(("bearer" = [])))]
pub async fn template_delete(
    State(state): State<AppState>,
    user: AuthUser,
    Device(device): Device,
    QueryParams(q): QueryParams<TemplateDeleteQuery>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let raw = q.id.ok_or_else(|| ApiError::invalid("id", "is required"))?;
    let id = validate::path_id(&raw)?;
    let expected = validate::if_match(&headers)?;
    let deletion = state
        .store
        .delete_conversation(user.id(), id, expected, device.as_ref())
        .await?;
    announce(&state, &user, &deletion.id, deletion.version, device);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/conversations/{id}/restore", tag = "conversations", params(("id" = String, Path, description = "ULID")), responses((status = 200, body = Conversation), (status = 404, body = HttpError), (status = 400, description = "Invalid input, naming the field", body = HttpError), (status = 401, description = "Missing or invalid token", body = HttpError), (status = 429, description = "Rate limited (Retry-After)", body = HttpError), (status = 503, description = "Store unavailable (Retry-After)", body = HttpError)), security(("bearer" = [])))]
pub async fn restore(
    State(state): State<AppState>,
    user: AuthUser,
    Device(device): Device,
    ConversationId(id): ConversationId,
) -> Result<Response, ApiError> {
    let restored = state
        .store
        .restore_conversation(user.id(), id, device.as_ref())
        .await?;
    let version = restored.version;
    announce(&state, &user, &restored.id, version, device);
    Ok(with_etag(Json(restored).into_response(), version))
}

#[utoipa::path(post, path = "/api/conversations/{id}/messages", tag = "conversations", params(("id" = String, Path, description = "ULID")), request_body = NewMessage, responses((status = 201, body = AppendedMessage), (status = 200, description = "The message id was replayed", body = AppendedMessage), (status = 404, body = HttpError), (status = 409, body = HttpError), (status = 413, body = HttpError), (status = 400, description = "Invalid input, naming the field", body = HttpError), (status = 401, description = "Missing or invalid token", body = HttpError), (status = 429, description = "Rate limited (Retry-After)", body = HttpError), (status = 503, description = "Store unavailable (Retry-After)", body = HttpError)), security(("bearer" = [])))]
pub async fn append(
    State(state): State<AppState>,
    user: AuthUser,
    Device(device): Device,
    ConversationId(id): ConversationId,
    JsonBody(body): JsonBody<NewMessage>,
) -> Result<Response, ApiError> {
    let message = validate::message("", body).map_err(|mut e| {
        // Field names read "content", not ".content", for a single message.
        e.message = e.message.trim_start_matches('.').to_owned();
        e
    })?;
    let appended = state
        .store
        .append_message(user.id(), id, message, device.as_ref())
        .await?;
    let (message, conversation) = appended.value;
    let version = conversation.version;
    let status = if appended.created {
        announce(&state, &user, &conversation.id, version, device);
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_etag(
        (
            status,
            Json(AppendedMessage {
                message,
                conversation,
            }),
        )
            .into_response(),
        version,
    ))
}

/// Tells the caller's other devices (their open event streams).
fn announce(state: &AppState, user: &AuthUser, id: &str, version: u64, device: Option<DeviceId>) {
    state.events.publish(
        user.id(),
        ChangeNotice {
            conversation_id: Some(id.to_owned()),
            version: Some(version),
            device,
        },
    );
}

/// The version as an ETag, so clients can answer with `If-Match`.
fn with_etag(mut response: Response, version: u64) -> Response {
    if let Ok(value) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}
