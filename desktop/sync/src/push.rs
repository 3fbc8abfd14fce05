//! Sending the outbox, oldest first.

use std::time::Duration;

use confab_cache::{Op, OutboxEntry};
use confab_wire::HttpErrorWith;
use confab_wire::assistant::StartReply;
use confab_wire::conversations::{
    AppendedMessage, Change, Conversation, ConversationChange, CreateConversation, NewMessage,
    UpdateConversation,
};
use reqwest::StatusCode;

use crate::{Engine, SyncError, error_message, retry_after};

/// What became of one entry.
pub(crate) enum Outcome {
    /// Applied; the server's answer is stored.
    Done,
    /// The server refused it for good; it stays, marked.
    Refused(String),
    /// 409: the conversation changed; its current state is stored, send again.
    Conflict,
}

/// Pushes until the outbox is empty or a retryable failure stops it.
pub(crate) async fn push_all(engine: &Engine) -> Result<(), SyncError> {
    // Bounded: a conflict loop (another device renaming as fast as we do) must
    // not spin; the rest waits for the next round.
    let mut conflicts = 0;
    while let Some(entry) = engine.cache.next_outbox()? {
        engine.cache.note_attempt(entry.seq)?;
        match send(engine, &entry).await? {
            Outcome::Done => {}
            Outcome::Refused(reason) => {
                log::warn!("the server refused outbox entry {}: {reason}", entry.seq);
                engine.cache.reject(entry.seq, &reason)?;
            }
            Outcome::Conflict => {
                conflicts += 1;
                if conflicts > 5 {
                    return Err(SyncError::Retry {
                        message: "the conversation keeps changing on another device".into(),
                        after: Some(Duration::from_secs(2)),
                    });
                }
            }
        }
        engine.announce(vec![entry.conversation_id.clone()]);
    }
    Ok(())
}

async fn send(engine: &Engine, entry: &OutboxEntry) -> Result<Outcome, SyncError> {
    let config = engine.session.config().ok_or(SyncError::SignedOut)?.clone();
    let id = &entry.conversation_id;
    // The id goes in as a path segment: percent-encoded, never read as a path.
    let url = |tail: &[&str]| {
        let mut url = config.proxy_endpoint("api/conversations");
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(id).extend(tail);
        }
        url
    };
    let response = match &entry.op {
        Op::Create { title } => {
            let body = CreateConversation {
                id: Some(id.clone()),
                title: Some(title.clone()),
                messages: None,
            };
            let collection = config.proxy_endpoint("api/conversations");
            engine
                .send(|http, token| http.post(collection.clone()).bearer_auth(token).json(&body))
                .await?
        }
        Op::Update {
            title,
            pinned,
            archived,
            assistant,
        } => {
            let body = UpdateConversation {
                title: title.clone(),
                pinned: *pinned,
                archived: *archived,
                assistant: assistant.clone(),
                version: Some(entry.server_version),
                ..UpdateConversation::default()
            };
            let url = url(&[]);
            engine
                .send(|http, token| http.put(url.clone()).bearer_auth(token).json(&body))
                .await?
        }
        Op::Delete => {
            let url = url(&[]);
            engine
                .send(|http, token| http.delete(url.clone()).bearer_auth(token))
                .await?
        }
        Op::Restore => {
            let url = url(&["restore"]);
            engine
                .send(|http, token| http.post(url.clone()).bearer_auth(token))
                .await?
        }
        Op::Append { message } => {
            let body = NewMessage {
                id: Some(message.id.clone()),
                role: message.role,
                content: message.content.clone(),
            };
            let url = url(&["messages"]);
            engine
                .send(|http, token| http.post(url.clone()).bearer_auth(token).json(&body))
                .await?
        }
        Op::Ask {
            after,
            model,
            regenerate,
        } => {
            let body = StartReply {
                after: after.clone(),
                model: model.clone(),
                regenerate: *regenerate,
            };
            let url = url(&["replies"]);
            let response = engine
                .send(|http, token| http.post(url.clone()).bearer_auth(token).json(&body))
                .await?;
            return classify_ask(engine, entry, response).await;
        }
    };
    classify(engine, entry, response).await
}

async fn classify(
    engine: &Engine,
    entry: &OutboxEntry,
    response: reqwest::Response,
) -> Result<Outcome, SyncError> {
    let status = response.status();
    let cache = &engine.cache;
    if status.is_success() {
        match &entry.op {
            Op::Delete => cache.acknowledge(entry.seq, None, None)?,
            Op::Append { .. } => {
                let appended: AppendedMessage = parse(engine, response).await?;
                cache.acknowledge(
                    entry.seq,
                    Some(&appended.conversation),
                    Some(&appended.message),
                )?;
            }
            _ => {
                let conversation: Conversation = parse(engine, response).await?;
                cache.acknowledge(entry.seq, Some(&conversation), None)?;
            }
        }
        return Ok(Outcome::Done);
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        let after = retry_after(&response);
        return Err(SyncError::Retry {
            message: error_message(response).await,
            after,
        });
    }
    if status == StatusCode::UNAUTHORIZED {
        // `send` already refreshed once: the session is over.
        return Err(SyncError::SignedOut);
    }
    if status == StatusCode::CONFLICT {
        let body: Result<HttpErrorWith<Conversation>, _> =
            crate::read_json(engine, response, "the conflict's answer").await;
        if let Ok(HttpErrorWith { current, .. }) = body {
            cache.apply_changes(&[Change::Updated(ConversationChange::whole(current))])?;
            return Ok(Outcome::Conflict);
        }
        return Ok(Outcome::Refused(
            "the server reported a conflict without the current state".into(),
        ));
    }
    if status == StatusCode::NOT_FOUND {
        return Ok(match &entry.op {
            // Deleted elsewhere: deletes win, the update or delete is moot.
            Op::Update { .. } | Op::Delete => {
                cache.acknowledge(entry.seq, None, None)?;
                Outcome::Done
            }
            Op::Append { .. } => Outcome::Refused(
                "The conversation was deleted on another device, so this message was not added. Restore the conversation and retry, or discard the message.".into(),
            ),
            Op::Restore => Outcome::Refused(
                "This conversation can no longer be restored.".into(),
            ),
            Op::Create { .. } | Op::Ask { .. } => Outcome::Refused(error_message(response).await),
        });
    }
    Ok(Outcome::Refused(error_message(response).await))
}

/// A reply request's answer. A reply request never waits long in the
/// outbox: what cannot be helped soon (the assistant is off, the day's
/// budget is spent) is refused, for the user to retry, and holds up nothing.
async fn classify_ask(
    engine: &Engine,
    entry: &OutboxEntry,
    response: reqwest::Response,
) -> Result<Outcome, SyncError> {
    let status = response.status();
    // 409: a reply to this message is being written already.
    if status.is_success() || status == StatusCode::CONFLICT {
        engine.cache.acknowledge(entry.seq, None, None)?;
        return Ok(Outcome::Done);
    }
    if status == StatusCode::UNAUTHORIZED {
        return Err(SyncError::SignedOut);
    }
    let wait = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = crate::read_capped(response, 64 * 1024).await.ok();
    let error = body.and_then(|b| serde_json::from_slice::<confab_wire::HttpError>(&b).ok());
    let message = error
        .as_ref()
        .map(|e| confab_session::attempt::printable(&e.error.message, 300))
        .unwrap_or_else(|| format!("the server answered {status}"));
    let assistant_off =
        error.is_some_and(|e| e.error.code == confab_wire::ErrorCode::AssistantUnavailable);
    // Soon: two replies running, or the store busy. Later: the budget.
    let soon = wait.is_none_or(|secs| secs <= 60);
    if !assistant_off
        && (status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS)
        && soon
    {
        return Err(SyncError::Retry {
            message,
            after: wait.map(Duration::from_secs),
        });
    }
    Ok(Outcome::Refused(message))
}

async fn parse<T: serde::de::DeserializeOwned>(
    engine: &Engine,
    response: reqwest::Response,
) -> Result<T, SyncError> {
    crate::read_json(engine, response, "the server's answer").await
}
