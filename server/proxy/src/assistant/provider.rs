//! Streaming clients for the model providers: Anthropic's Messages API and
//! any OpenAI-compatible chat-completions server (Ollama, llama.cpp, vLLM).
//!
//! A small typed client over reqwest plus `eventsource-stream` for the SSE
//! framing, rather than an SDK crate: we use one endpoint of each provider,
//! need its raw status codes and `retry-after` for our retry rule, and must
//! keep the key out of every error and log line (docs/decisions.md).

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Anthropic's API version header value this client speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
pub const DEFAULT_ANTHROPIC_URL: &str = "https://api.anthropic.com";

/// Who answers, and with which key. The key never leaves this value except
/// in the request header.
#[derive(Clone)]
pub enum Provider {
    Anthropic {
        base_url: String,
        key: String,
    },
    OpenAi {
        base_url: String,
        key: Option<String>,
    },
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        match self {
            Provider::Anthropic { base_url, .. } => write!(f, "Anthropic({base_url})"),
            Provider::OpenAi { base_url, .. } => write!(f, "OpenAi({base_url})"),
        }
    }
}

/// One turn of the conversation as the model sees it. Turns alternate,
/// starting and ending with the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Turn {
    pub role: &'static str,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub model: String,
    pub system: Option<String>,
    pub turns: Vec<Turn>,
    pub max_tokens: u32,
}

/// What a stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Text(String),
    /// Token counts so far (the last one seen wins, field by field).
    Usage {
        input: Option<u64>,
        output: Option<u64>,
    },
    /// Why the model stopped (`end_turn`, `max_tokens`, `stop`, `length`…).
    Stop(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Rate limited or overloaded (429, 529, 503): worth retrying, after
    /// `retry_after` when the provider said.
    #[error("the model provider is busy ({status})")]
    Busy {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// 401 or 403: the operator's key was refused.
    #[error("the model provider refused the API key")]
    KeyRefused,
    /// The provider refused the request itself (400, 404, 413…).
    #[error("the model provider refused the request: {0}")]
    Refused(String),
    /// The connection failed or broke, or the stream was malformed.
    #[error("the connection to the model provider broke: {0}")]
    Broken(String),
    /// The provider reported an error in the stream.
    #[error("the model provider reported an error: {0}")]
    Stream(String),
}

impl ProviderError {
    /// What a reply that failed with this error tells the user.
    pub fn for_users(&self) -> String {
        match self {
            ProviderError::Busy { .. } => {
                "The model is overloaded right now. Retry in a moment.".into()
            }
            ProviderError::KeyRefused => {
                "The assistant is unavailable: the server's model key was refused. Tell the operator."
                    .into()
            }
            ProviderError::Refused(why) => format!("The model refused the request: {why}"),
            ProviderError::Broken(_) => {
                "The connection to the model broke off. Retry to get a whole reply.".into()
            }
            ProviderError::Stream(why) => format!("The model stopped with an error: {why}"),
        }
    }
}

pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Chunk, ProviderError>> + Send>>;

/// How long establishing a stream (until response headers) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

impl Provider {
    /// Sends `request` and answers the stream of its reply once the provider
    /// accepted it (status 200); anything else is an error to classify.
    pub async fn stream(
        &self,
        http: &reqwest::Client,
        request: &Request,
    ) -> Result<ChunkStream, ProviderError> {
        let builder = match self {
            Provider::Anthropic { base_url, key } => http
                .post(format!("{}/v1/messages", base_url.trim_end_matches('/')))
                .header("x-api-key", key)
                .header("anthropic-version", ANTHROPIC_VERSION)
                .json(&anthropic_body(request)),
            Provider::OpenAi { base_url, key } => {
                let builder = http
                    .post(format!(
                        "{}/chat/completions",
                        base_url.trim_end_matches('/')
                    ))
                    .json(&openai_body(request));
                match key {
                    Some(key) => builder.bearer_auth(key),
                    None => builder,
                }
            }
        };
        let response = tokio::time::timeout(CONNECT_TIMEOUT, builder.send())
            .await
            .map_err(|_| ProviderError::Busy {
                status: 504,
                retry_after: None,
            })?
            .map_err(|e| ProviderError::Broken(without_url(&e)))?;
        let status = response.status();
        if status != StatusCode::OK {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s.min(300.0)));
            let body = response.text().await.unwrap_or_default();
            return Err(classify(status, retry_after, &body));
        }
        let events = response.bytes_stream().eventsource();
        Ok(match self {
            Provider::Anthropic { .. } => Box::pin(
                events
                    .map(|event| match event {
                        Ok(event) => anthropic_event(&event.event, &event.data),
                        Err(e) => vec![Err(ProviderError::Broken(e.to_string()))],
                    })
                    .flat_map(futures_util::stream::iter),
            ),
            Provider::OpenAi { .. } => Box::pin(
                events
                    .map(|event| match event {
                        Ok(event) => openai_event(&event.data),
                        Err(e) => vec![Err(ProviderError::Broken(e.to_string()))],
                    })
                    .flat_map(futures_util::stream::iter),
            ),
        })
    }
}

/// A reqwest error without its URL (which could carry a query with secrets
/// behind a misconfigured base URL).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<provider>");
    }
    text
}

fn classify(status: StatusCode, retry_after: Option<Duration>, body: &str) -> ProviderError {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("status {status}"));
    match status.as_u16() {
        401 | 403 => ProviderError::KeyRefused,
        429 | 529 | 503 | 502 | 500 => ProviderError::Busy {
            status: status.as_u16(),
            retry_after,
        },
        _ => ProviderError::Refused(cut(&message, 300)),
    }
}

fn cut(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

fn anthropic_body(request: &Request) -> Value {
    let mut body = serde_json::json!({
        "model": request.model,
        "max_tokens": request.max_tokens,
        "stream": true,
        "messages": request.turns,
    });
    if let Some(system) = &request.system {
        body["system"] = Value::String(system.clone());
    }
    body
}

fn openai_body(request: &Request) -> Value {
    let mut messages = Vec::with_capacity(request.turns.len() + 1);
    if let Some(system) = &request.system {
        messages.push(serde_json::json!({"role": "system", "content": system}));
    }
    messages.extend(
        request
            .turns
            .iter()
            .map(|t| serde_json::json!({"role": t.role, "content": t.content})),
    );
    serde_json::json!({
        "model": request.model,
        "max_tokens": request.max_tokens,
        "stream": true,
        "stream_options": {"include_usage": true},
        "messages": messages,
    })
}

#[derive(Deserialize)]
struct AnthropicUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

/// One event of Anthropic's stream
/// (<https://docs.anthropic.com/en/api/messages-streaming>). Unknown event
/// types are skipped, as Anthropic's versioning policy asks.
fn anthropic_event(name: &str, data: &str) -> Vec<Result<Chunk, ProviderError>> {
    let Ok(value) = serde_json::from_str::<Value>(data) else {
        return vec![Err(ProviderError::Broken(format!(
            "an unreadable `{}` event",
            cut(name, 40)
        )))];
    };
    let usage = |v: Option<&Value>| {
        v.and_then(|u| serde_json::from_value::<AnthropicUsage>(u.clone()).ok())
            .map(|u| {
                Ok(Chunk::Usage {
                    input: u.input_tokens,
                    output: u.output_tokens,
                })
            })
    };
    match value.get("type").and_then(Value::as_str).unwrap_or(name) {
        "message_start" => usage(value.pointer("/message/usage")).into_iter().collect(),
        "content_block_delta" => match value.pointer("/delta/type").and_then(Value::as_str) {
            Some("text_delta") => value
                .pointer("/delta/text")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(|t| Ok(Chunk::Text(t.to_owned())))
                .into_iter()
                .collect(),
            _ => vec![],
        },
        "message_delta" => {
            let mut out: Vec<_> = usage(value.get("usage")).into_iter().collect();
            if let Some(reason) = value.pointer("/delta/stop_reason").and_then(Value::as_str) {
                out.push(Ok(Chunk::Stop(reason.to_owned())));
            }
            out
        }
        "error" => {
            let kind = value
                .pointer("/error/type")
                .and_then(Value::as_str)
                .unwrap_or("error");
            let message = value
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("no details");
            vec![Err(ProviderError::Stream(cut(
                &format!("{kind}: {message}"),
                300,
            )))]
        }
        // ping, content_block_start/stop, message_stop and anything newer.
        _ => vec![],
    }
}

/// One event of an OpenAI-compatible stream: `data: {choices: [{delta:
/// {content}, finish_reason}], usage?}`, ended by `data: [DONE]`.
fn openai_event(data: &str) -> Vec<Result<Chunk, ProviderError>> {
    if data.trim() == "[DONE]" {
        return vec![];
    }
    let Ok(value) = serde_json::from_str::<Value>(data) else {
        return vec![Err(ProviderError::Broken("an unreadable event".into()))];
    };
    if let Some(message) = value.pointer("/error/message").and_then(Value::as_str) {
        return vec![Err(ProviderError::Stream(cut(message, 300)))];
    }
    let mut out = Vec::new();
    if let Some(text) = value
        .pointer("/choices/0/delta/content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        out.push(Ok(Chunk::Text(text.to_owned())));
    }
    if let Some(reason) = value
        .pointer("/choices/0/finish_reason")
        .and_then(Value::as_str)
    {
        out.push(Ok(Chunk::Stop(reason.to_owned())));
    }
    if let Some(usage) = value.get("usage").filter(|u| u.is_object()) {
        out.push(Ok(Chunk::Usage {
            input: usage.get("prompt_tokens").and_then(Value::as_u64),
            output: usage.get("completion_tokens").and_then(Value::as_u64),
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_events_become_chunks() {
        let start = r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"m","stop_reason":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#;
        assert_eq!(
            anthropic_event("message_start", start),
            vec![Ok(Chunk::Usage {
                input: Some(25),
                output: Some(1)
            })]
        );
        let delta = r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}"#;
        assert_eq!(
            anthropic_event("content_block_delta", delta),
            vec![Ok(Chunk::Text("Hel".into()))]
        );
        let end = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#;
        assert_eq!(
            anthropic_event("message_delta", end),
            vec![
                Ok(Chunk::Usage {
                    input: None,
                    output: Some(15)
                }),
                Ok(Chunk::Stop("end_turn".into()))
            ]
        );
        assert!(anthropic_event("ping", r#"{"type":"ping"}"#).is_empty());
        let thinking = r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{"}}"#;
        assert!(anthropic_event("content_block_delta", thinking).is_empty());
        let error =
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            anthropic_event("error", error),
            vec![Err(ProviderError::Stream(
                "overloaded_error: Overloaded".into()
            ))]
        );
        assert!(matches!(
            anthropic_event("content_block_delta", "{not json").as_slice(),
            [Err(ProviderError::Broken(_))]
        ));
    }

    #[test]
    fn openai_events_become_chunks() {
        assert_eq!(
            openai_event(r#"{"choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}"#),
            vec![Ok(Chunk::Text("Hi".into()))]
        );
        assert_eq!(
            openai_event(
                r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#
            ),
            vec![Ok(Chunk::Usage {
                input: Some(9),
                output: Some(2)
            })]
        );
        assert!(openai_event("[DONE]").is_empty());
    }

    #[test]
    fn statuses_are_classified() {
        let secs = Some(Duration::from_secs(3));
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, secs, ""),
            ProviderError::Busy {
                status: 429,
                retry_after: secs
            }
        );
        assert!(matches!(
            classify(StatusCode::from_u16(529).unwrap(), None, ""),
            ProviderError::Busy { status: 529, .. }
        ));
        assert_eq!(
            classify(StatusCode::UNAUTHORIZED, None, "{}"),
            ProviderError::KeyRefused
        );
        let refused = classify(
            StatusCode::BAD_REQUEST,
            None,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too large"}}"#,
        );
        assert_eq!(
            refused,
            ProviderError::Refused("max_tokens: too large".into())
        );
    }

    #[test]
    fn the_key_is_not_in_debug_output() {
        let p = Provider::Anthropic {
            base_url: "http://x".into(),
            key: "sk-ant-secret".into(),
        };
        assert!(!format!("{p:?}").contains("secret"));
    }
}
