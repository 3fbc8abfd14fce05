//! Assistant replies: what a generated message carries, the routes that start
//! and stop one, and the live events that stream it to every device.
//!
//! A reply is an ordinary assistant message plus [`Reply`]: it is stored,
//! paged and synced like any message; its text grows while `status` is
//! `streaming`, checkpointed at least every second, and the `reply` events of
//! `GET /api/events` carry the text in between.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::conversations::Message;

/// Where a reply stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ReplyStatus {
    /// The model finished (or reached its length limit: see `stopReason`).
    Complete,
    /// Being written: the text so far is stored, more arrives as events.
    Streaming,
    /// Stopped by the user; the text so far is kept.
    Stopped,
    /// The provider or the proxy failed; the text so far is kept and
    /// `error` says why.
    Failed,
}

impl ReplyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyStatus::Complete => "complete",
            ReplyStatus::Streaming => "streaming",
            ReplyStatus::Stopped => "stopped",
            ReplyStatus::Failed => "failed",
        }
    }

    pub fn is_final(self) -> bool {
        self != ReplyStatus::Streaming
    }
}

/// Tokens a reply cost, as the provider counted them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// What a generated message carries besides its text (flattened into the
/// message's JSON; absent on messages people wrote).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    pub status: ReplyStatus,
    /// The model id that wrote it.
    pub model: String,
    /// The user message it answers.
    pub after: String,
    /// When the stored text was last written. A `streaming` reply not
    /// written for [`STALLED_AFTER_SECS`] lost its writer (the server
    /// stopped): it may be regenerated, and shows as interrupted.
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The provider's reason for ending (`end_turn`, `max_tokens`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// Why a `failed` reply failed, in words for the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A streaming reply is checkpointed every second; one silent this long has
/// no writer any more.
pub const STALLED_AFTER_SECS: i64 = 30;

impl Reply {
    /// Whether this reply is still being written by someone.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.is_live_at(now.timestamp_millis())
    }

    /// [`Reply::is_live`] at `now_ms` (Unix milliseconds), for a side
    /// without a clock of its own (the UI has the browser's).
    pub fn is_live_at(&self, now_ms: i64) -> bool {
        self.status == ReplyStatus::Streaming
            && now_ms.saturating_sub(self.updated_at.timestamp_millis()) < STALLED_AFTER_SECS * 1000
    }
}

/// A model the assistant may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    pub id: String,
    /// What the UI shows.
    pub name: String,
}

/// `GET /api/assistant`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AssistantInfo {
    pub available: bool,
    pub models: Vec<ModelInfo>,
    pub default_model: Option<String>,
    /// Why replies are off, when they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /api/conversations/{id}/replies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartReply {
    /// The user message to answer.
    pub after: String,
    /// One of `GET /api/assistant`'s models; the default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Write a new reply in place of the finished one for `after`
    /// (regenerate). Without it a repeat answers the existing reply.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub regenerate: bool,
}

/// The answer of the reply routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReplyMessage {
    pub message: Message,
}

/// The data of a `reply` event: text appended to a streaming reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReplyDelta {
    pub conversation_id: String,
    pub message_id: String,
    /// 1, 2, 3… per reply run: a gap means events were missed.
    pub seq: u64,
    /// The bytes of text before `delta`: a device holding a checkpoint of
    /// that length appends; one holding more skips what it has.
    pub offset: u64,
    pub delta: String,
}

/// The data of a `reply-done` event: the reply ended; its final text is
/// stored (pull it if any `reply` event was missed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReplyDone {
    pub conversation_id: String,
    pub message_id: String,
    pub status: ReplyStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The conversation's version once the final text is stored.
    pub version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversations::Role;

    fn reply(status: ReplyStatus, age_secs: i64) -> Reply {
        Reply {
            status,
            model: "m".into(),
            after: "a".into(),
            updated_at: Utc::now() - chrono::Duration::seconds(age_secs),
            usage: None,
            stop_reason: None,
            error: None,
        }
    }

    #[test]
    fn a_reply_is_flat_in_its_message() {
        let mut r = reply(ReplyStatus::Streaming, 0);
        r.usage = Some(Usage {
            input_tokens: 3,
            output_tokens: 4,
        });
        let m = Message {
            id: "01".into(),
            role: Role::Assistant,
            content: "hi".into(),
            timestamp: Utc::now(),
            reply: Some(r.clone()),
        };
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["status"], "streaming");
        assert_eq!(json["usage"]["outputTokens"], 4);
        assert!(json.get("error").is_none());
        let back: Message = serde_json::from_value(json).unwrap();
        assert_eq!(back.reply, Some(r));

        let plain = Message { reply: None, ..m };
        let json = serde_json::to_value(&plain).unwrap();
        assert!(json.get("status").is_none(), "{json}");
        let back: Message = serde_json::from_value(json).unwrap();
        assert_eq!(back.reply, None);
    }

    #[test]
    fn a_silent_streaming_reply_is_not_live() {
        let now = Utc::now();
        assert!(reply(ReplyStatus::Streaming, 1).is_live(now));
        assert!(!reply(ReplyStatus::Streaming, STALLED_AFTER_SECS + 1).is_live(now));
        assert!(!reply(ReplyStatus::Complete, 0).is_live(now));
    }

    #[test]
    fn start_reply_refuses_unknown_fields() {
        let ok: StartReply = serde_json::from_str(r#"{"after":"x"}"#).unwrap();
        assert!(!ok.regenerate);
        assert!(serde_json::from_str::<StartReply>(r#"{"after":"x","stream":true}"#).is_err());
    }
}
