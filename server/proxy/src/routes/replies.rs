//! Assistant routes: what the assistant offers, start a reply, stop one.
//! The work is in `crate::assistant`; these map HTTP onto it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use confab_wire::HttpError;
use confab_wire::assistant::{AssistantInfo, ReplyMessage, StartReply};
use confab_wire::conversations::ChangeNotice;

use super::extract::{ConversationId, Device, JsonBody};
use crate::AppState;
use crate::assistant::{self, Deps};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::ids::Id;
use crate::store::{ReplyWrite, usage_day};
use crate::validate;

#[utoipa::path(get, path = "/api/assistant", tag = "assistant", responses((status = 200, description = "Whether replies are on, and the models to choose from", body = AssistantInfo), (status = 401, description = "Missing or invalid token", body = HttpError)), security(("bearer" = [])))]
pub async fn info(State(state): State<AppState>, _user: AuthUser) -> Json<AssistantInfo> {
    Json(state.assistant.info())
}

#[utoipa::path(post, path = "/api/conversations/{id}/replies", tag = "assistant", params(("id" = String, Path, description = "ULID")), request_body = StartReply, responses((status = 202, description = "The reply, streaming (or, for a repeat, as it is now); its text arrives as `reply` events and in the stored message", body = ReplyMessage), (status = 400, description = "Invalid input, naming the field (`after` must name a message you wrote; `model` one of GET /api/assistant's)", body = HttpError), (status = 404, body = HttpError), (status = 409, description = "regenerate while the reply is being written", body = HttpError), (status = 413, body = HttpError), (status = 429, description = "Two replies already running, or the daily budget spent (Retry-After: when it resets)", body = HttpError), (status = 503, description = "The assistant is off (the message says why), or the store is unavailable", body = HttpError), (status = 401, description = "Missing or invalid token", body = HttpError)), security(("bearer" = [])))]
pub async fn start(
    State(state): State<AppState>,
    user: AuthUser,
    ConversationId(conversation): ConversationId,
    JsonBody(body): JsonBody<StartReply>,
) -> Result<(StatusCode, Json<ReplyMessage>), ApiError> {
    let after = validate::id("after", &body.after)?;
    let settings = state.assistant.settings()?.clone();
    // The conversation's settings: is the assistant on here, with which
    // model and instructions.
    let here = state
        .store
        .get_conversation_newest(user.id(), conversation, 0)
        .await?
        .conversation
        .assistant;
    if here.off {
        return Err(ApiError::conflict(
            "the assistant is turned off in this conversation: turn it on to ask",
            None,
        ));
    }
    // A model the server no longer offers falls back to its default.
    let model = match (body.model.as_deref(), here.model.as_deref()) {
        (Some(asked), _) => state.assistant.model(Some(asked))?,
        (None, Some(chosen)) => state
            .assistant
            .model(Some(chosen))
            .or_else(|_| state.assistant.model(None))?,
        (None, None) => state.assistant.model(None)?,
    };
    let id = assistant::reply_id(after)
        .ok_or_else(|| ApiError::invalid("after", "no reply can follow this id"))?;
    // Claimed before the write, so two requests cannot both pass the limit;
    // a repeat gives it back at once.
    let slot = state.assistant.claim(user.id())?;
    if let Some(budget) = settings.daily_tokens {
        state
            .store
            .charge_usage(user.id(), &usage_day(chrono::Utc::now()), 0, Some(budget))
            .await?;
    }
    let message = assistant::run::new_reply(id, after, model);
    let written = state
        .store
        .write_reply(
            user.id(),
            conversation,
            ReplyWrite::Start {
                message,
                regenerate: body.regenerate,
            },
            // Not the asking device's write: every device, the asking one
            // too, fetches the new reply from the feed.
            None,
        )
        .await?;
    let (message, c) = written.value;
    if written.created {
        state.events.publish(
            user.id(),
            ChangeNotice {
                conversation_id: Some(c.id.clone()),
                version: Some(c.version),
                device: None,
            },
        );
        state.assistant.spawn(
            slot,
            Deps {
                store: state.store.clone(),
                hub: state.events.clone(),
            },
            user.id().clone(),
            conversation,
            message.clone(),
            here.instructions,
        )?;
    }
    Ok((StatusCode::ACCEPTED, Json(ReplyMessage { message })))
}

#[utoipa::path(post, path = "/api/conversations/{id}/replies/{messageId}/stop", tag = "assistant", params(("id" = String, Path, description = "ULID"), ("messageId" = String, Path, description = "The reply's id")), responses((status = 200, description = "The reply, stopped with the text so far (or as it ended, when it already had)", body = ReplyMessage), (status = 404, body = HttpError), (status = 401, description = "Missing or invalid token", body = HttpError), (status = 503, description = "Store unavailable (Retry-After)", body = HttpError)), security(("bearer" = [])))]
pub async fn stop(
    State(state): State<AppState>,
    user: AuthUser,
    Device(device): Device,
    Path((raw_conversation, raw_message)): Path<(String, String)>,
) -> Result<Json<ReplyMessage>, ApiError> {
    let conversation = validate::path_id(&raw_conversation)?;
    let id: Id = validate::path_id(&raw_message).map_err(|_| ApiError::not_found("reply"))?;
    // Running here: its run stores the text it has and the status.
    let written = state
        .store
        .write_reply(
            user.id(),
            conversation,
            ReplyWrite::Stop { id },
            device.as_ref(),
        )
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound => ApiError::not_found("reply"),
            other => other.into(),
        })?;
    let (message, c) = written.value;
    if let Some(finished) = state.assistant.stop_local(&message.id).await {
        return Ok(Json(ReplyMessage { message: finished }));
    }
    if written.created {
        // Running elsewhere (another instance, or nowhere after a restart):
        // the stored text is the reply; its run, if any, learns of the stop
        // at its next checkpoint and adds what it has.
        assistant::announce_end(
            &state.events,
            user.id(),
            &message,
            &c,
            confab_wire::assistant::ReplyStatus::Stopped,
            device,
        );
    }
    Ok(Json(ReplyMessage { message }))
}
