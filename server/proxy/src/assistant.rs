//! Assistant replies: the proxy asks the model and writes its answer into
//! the conversation, so the key stays with the operator, a reply finishes
//! even when the asking app goes away, and every device watches it grow.
//!
//! - [`provider`]: the streaming clients (Anthropic, OpenAI-compatible).
//! - [`context`]: what the model is sent.
//! - [`run`]: one reply, from the first token to the stored final text.
//!
//! This module holds what runs on this instance: at most
//! [`MAX_RUNS_PER_USER`] replies per user at a time, and the handles that
//! stop them.

pub mod context;
pub mod provider;
pub(crate) mod run;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use confab_wire::assistant::{AssistantInfo, ModelInfo};
use confab_wire::conversations::Message;
use tokio::sync::watch;

use crate::error::ApiError;
use crate::events::Hub;
use crate::ids::{Id, UserId};
use crate::store::Store;

pub use provider::Provider;

/// Replies one user may have being written at once, on one instance.
pub const MAX_RUNS_PER_USER: usize = 2;

/// How the assistant runs; from the environment (`config.rs`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub provider: Provider,
    /// The allow-list; the first is the default.
    pub models: Vec<ModelInfo>,
    /// Tokens (input plus output) each user may spend per UTC day.
    pub daily_tokens: Option<u64>,
    /// The longest reply, in tokens.
    pub max_tokens: u32,
    /// The model's context window, in tokens: the history sent is cut to fit.
    pub context_tokens: u64,
    pub first_token_timeout: Duration,
    pub idle_timeout: Duration,
    /// How often the text so far is written to the store.
    pub checkpoint_every: Duration,
    /// Tries after a 429 or 529 before the first token.
    pub retries: u32,
    /// The first backoff when the provider gave no `retry-after`.
    pub first_backoff: Duration,
}

impl Settings {
    /// Defaults for `provider` and `models`.
    pub fn new(provider: Provider, models: Vec<ModelInfo>) -> Self {
        Self {
            provider,
            models,
            daily_tokens: Some(DEFAULT_DAILY_TOKENS),
            max_tokens: 4096,
            context_tokens: 100_000,
            first_token_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            checkpoint_every: Duration::from_secs(1),
            retries: 4,
            first_backoff: Duration::from_secs(1),
        }
    }
}

pub const DEFAULT_DAILY_TOKENS: u64 = 1_000_000;

/// A running reply's controls: its stop switch, and its final message once
/// stored.
struct Control {
    stop: watch::Sender<bool>,
    done: watch::Receiver<Option<Message>>,
}

pub struct Assistant {
    settings: Result<Arc<Settings>, String>,
    /// Without a total timeout: a reply streams for minutes.
    http: reqwest::Client,
    runs: Mutex<HashMap<String, Control>>,
    active: Mutex<HashMap<UserId, usize>>,
}

/// What a run needs from the rest of the proxy.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub hub: Hub,
}

/// A claimed place among the user's running replies; freed on drop.
pub struct Slot {
    assistant: Arc<Assistant>,
    user: UserId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut active) = self.assistant.active.lock() {
            let left = active.get_mut(&self.user).map(|n| {
                *n = n.saturating_sub(1);
                *n
            });
            if left == Some(0) {
                active.remove(&self.user);
            }
        }
    }
}

impl Assistant {
    /// Replies are off; `reason` says why, to users and in `GET /api/assistant`.
    pub fn off(reason: impl Into<String>) -> Self {
        Self::build(Err(reason.into()))
    }

    pub fn new(settings: Settings) -> Self {
        Self::build(Ok(Arc::new(settings)))
    }

    fn build(settings: Result<Arc<Settings>, String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            settings,
            http,
            runs: Mutex::default(),
            active: Mutex::default(),
        }
    }

    pub fn info(&self) -> AssistantInfo {
        match &self.settings {
            Ok(s) => AssistantInfo {
                available: true,
                models: s.models.clone(),
                default_model: s.models.first().map(|m| m.id.clone()),
                reason: None,
            },
            Err(reason) => AssistantInfo {
                available: false,
                models: vec![],
                default_model: None,
                reason: Some(reason.clone()),
            },
        }
    }

    pub fn settings(&self) -> Result<&Arc<Settings>, ApiError> {
        self.settings.as_ref().map_err(|reason| {
            ApiError::new(
                confab_wire::ErrorCode::AssistantUnavailable,
                format!("the assistant is unavailable: {reason}"),
            )
        })
    }

    /// The model to use: the requested one when it is on the allow-list.
    pub fn model(&self, requested: Option<&str>) -> Result<String, ApiError> {
        let settings = self.settings()?;
        match requested {
            None => settings
                .models
                .first()
                .map(|m| m.id.clone())
                .ok_or_else(|| ApiError::unavailable("the assistant has no models configured")),
            Some(id) if settings.models.iter().any(|m| m.id == id) => Ok(id.to_owned()),
            Some(_) => Err(ApiError::invalid(
                "model",
                format!(
                    "not one of this server's models ({})",
                    settings
                        .models
                        .iter()
                        .map(|m| m.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    /// A place for one more running reply of `user`, or 429.
    pub fn claim(self: &Arc<Self>, user: &UserId) -> Result<Slot, ApiError> {
        let mut active = self
            .active
            .lock()
            .map_err(|_| ApiError::internal("assistant state poisoned"))?;
        let n = active.entry(user.clone()).or_default();
        if *n >= MAX_RUNS_PER_USER {
            let mut err = ApiError::rate_limited(5);
            err.message = format!(
                "at most {MAX_RUNS_PER_USER} replies are written at a time: wait for one to finish, or stop it"
            );
            return Err(err);
        }
        *n += 1;
        Ok(Slot {
            assistant: Arc::clone(self),
            user: user.clone(),
        })
    }

    /// Writes the reply `message` (stored, empty and streaming) in the
    /// background; the slot is held until it ends.
    pub fn spawn(
        self: &Arc<Self>,
        slot: Slot,
        deps: Deps,
        user: UserId,
        conversation: Id,
        message: Message,
        instructions: Option<String>,
    ) -> Result<(), ApiError> {
        let settings = Arc::clone(self.settings()?);
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, done) = watch::channel(None);
        let id = message.id.clone();
        if let Ok(mut runs) = self.runs.lock() {
            runs.insert(id.clone(), Control { stop, done });
        }
        let assistant = Arc::clone(self);
        let run = run::Run {
            settings,
            http: self.http.clone(),
            deps,
            user,
            conversation,
            message,
            instructions,
            stop: stop_rx,
            day: crate::store::usage_day(Utc::now()),
        };
        tokio::spawn(async move {
            run.execute(done_tx, slot).await;
            if let Ok(mut runs) = assistant.runs.lock() {
                runs.remove(&id);
            }
        });
        Ok(())
    }

    /// Stops a reply running on this instance and answers its final
    /// message; `None` when it does not run here.
    pub async fn stop_local(&self, message: &str) -> Option<Message> {
        let mut done = {
            let runs = self.runs.lock().ok()?;
            let control = runs.get(message)?;
            let _ = control.stop.send(true);
            control.done.clone()
        };
        // The final message is the run's answer to the stop.
        let finished =
            tokio::time::timeout(Duration::from_secs(10), done.wait_for(Option::is_some))
                .await
                .ok()?
                .ok()?;
        finished.clone()
    }

    /// Ends every reply running here (shutdown): each stores its text as
    /// failed, saying the server restarted, so it can be retried at once.
    pub async fn shutdown(&self) {
        let waits: Vec<_> = match self.runs.lock() {
            Ok(runs) => runs
                .values()
                .map(|c| {
                    let _ = c.stop.send(true);
                    c.done.clone()
                })
                .collect(),
            Err(_) => return,
        };
        for mut done in waits {
            let _ =
                tokio::time::timeout(Duration::from_secs(5), done.wait_for(Option::is_some)).await;
        }
    }

    /// Replies running on this instance.
    pub fn running(&self) -> usize {
        self.runs.lock().map(|r| r.len()).unwrap_or(0)
    }
}

/// Announces that a reply ended and is stored: `reply-done` (its status,
/// usage and reason; `fallback` when the message carries none), then the
/// `change` that brings the stored text (from `device`, when one asked).
pub fn announce_end(
    hub: &Hub,
    user: &UserId,
    message: &Message,
    conversation: &confab_wire::conversations::Conversation,
    fallback: confab_wire::assistant::ReplyStatus,
    device: Option<confab_wire::conversations::DeviceId>,
) {
    let reply = message.reply.as_ref();
    hub.publish(
        user,
        confab_wire::assistant::ReplyDone {
            conversation_id: conversation.id.clone(),
            message_id: message.id.clone(),
            status: reply.map_or(fallback, |r| r.status),
            usage: reply.and_then(|r| r.usage),
            error: reply.and_then(|r| r.error.clone()),
            version: conversation.version,
        },
    );
    hub.publish(
        user,
        confab_wire::conversations::ChangeNotice {
            conversation_id: Some(conversation.id.clone()),
            version: Some(conversation.version),
            device,
        },
    );
}

/// Seconds until the next UTC midnight, when daily budgets reset.
pub fn secs_to_next_day() -> u64 {
    let now = Utc::now();
    let next = next_day(now);
    u64::try_from((next - now).num_seconds())
        .unwrap_or(0)
        .max(1)
}

fn next_day(now: DateTime<Utc>) -> DateTime<Utc> {
    (now.date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(now)
}

/// "in 3 h 20 min": when the daily budget resets.
pub fn reset_in_words() -> String {
    let secs = secs_to_next_day();
    let (h, m) = (secs / 3600, (secs % 3600).div_ceil(60));
    match (h, m) {
        (0, m) => format!("in {m} min"),
        (h, 0) => format!("in {h} h"),
        (h, m) => format!("in {h} h {m} min"),
    }
}

/// The id of the reply to `after`: a fixed step past it, so the reply sorts
/// right after the message it answers, and a repeated request names the
/// same reply (idempotency). Ids made by clients within one millisecond
/// step by one; this step is 2^32.
pub fn reply_id(after: Id) -> Option<Id> {
    after.offset(1 << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_id_follows_its_question() {
        let after = Id::new();
        let reply = reply_id(after).unwrap();
        assert!(reply > after);
        assert_eq!(reply_id(after), Some(reply));
        assert_eq!(reply.timestamp_ms(), after.timestamp_ms());
    }

    #[test]
    fn budgets_reset_at_midnight_utc() {
        let at = DateTime::parse_from_rfc3339("2026-11-29T22:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(next_day(at).to_rfc3339(), "2026-11-30T00:00:00+00:00");
        assert!(secs_to_next_day() <= 86_400);
        assert!(reset_in_words().starts_with("in "));
    }

    #[test]
    fn at_most_two_replies_per_user() {
        let assistant = Arc::new(Assistant::off("test"));
        let ada = UserId::parse("user_ada").unwrap();
        let a = assistant.claim(&ada).unwrap();
        let _b = assistant.claim(&ada).unwrap();
        let refused = assistant.claim(&ada).err().unwrap();
        assert_eq!(refused.status(), axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert!(assistant.claim(&UserId::parse("user_bob").unwrap()).is_ok());
        drop(a);
        assert!(assistant.claim(&ada).is_ok());
    }
}
