//! A local stand-in for Anthropic's Messages API, faithful to its documented
//! streaming format (<https://docs.anthropic.com/en/api/messages-streaming>):
//! `message_start`, `content_block_start`, `ping`, `content_block_delta`
//! (`text_delta`), `content_block_stop`, `message_delta` (stop reason and
//! usage), `message_stop`, and `error`. It checks what the real API checks
//! and we rely on: `x-api-key`, `anthropic-version`, `max_tokens`, turns that
//! alternate and start with the user, and a string `system`.
//!
//! It also serves `POST /v1/chat/completions` in the OpenAI-compatible
//! streaming shape, for the self-hosted provider path.
//!
//! Tests script what the next requests meet ([`Behaviour`]): a slow stream,
//! a cut, an `error` event, silence, or a status (429 with `retry-after`,
//! 529, 401). `POST /standin/next` does the same over HTTP, and
//! `GET /standin/requests` lists the bodies received.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub const API_VERSION: &str = "2023-06-01";
/// The model id the stand-in announces when run for people (scripts/run).
pub const STANDIN_MODEL: &str = "confab-local-standin";
pub const STANDIN_NAME: &str = "Local stand-in model (not Claude)";

/// What the next request meets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Behaviour {
    /// A whole answer: `text` (or one made from the question), a word at a
    /// time, `delay_ms` apart.
    Reply {
        #[serde(default)]
        text: Option<String>,
        #[serde(default)]
        delay_ms: Option<u64>,
    },
    /// The connection drops after `after` words.
    Cut { after: usize },
    /// An `error` event (`overloaded_error`) after `after` words.
    ErrorEvent { after: usize },
    /// Nothing more after `after` words; the connection stays open.
    Silent { after: usize },
    /// `count` words, `delay_ms` apart, each the time it was sent (Unix
    /// microseconds): a client measures how long each took to reach it.
    Clock { count: usize, delay_ms: u64 },
    /// An error status before any stream, with `retry-after` when given.
    Status {
        status: u16,
        #[serde(default)]
        retry_after: Option<u64>,
    },
}

#[derive(Debug, Clone)]
pub struct Options {
    /// The key requests must carry (`x-api-key`, or a bearer for the
    /// OpenAI-compatible route).
    pub key: String,
    /// The pause between words when a behaviour names none.
    pub word_delay: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            key: "standin-key".into(),
            word_delay: Duration::from_millis(5),
        }
    }
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Behaviour>>,
    requests: Mutex<Vec<Value>>,
    /// Streams open right now.
    open: std::sync::atomic::AtomicUsize,
}

#[derive(Clone)]
struct AppState {
    options: Arc<Options>,
    shared: Arc<Shared>,
}

/// A running stand-in; stops when dropped.
pub struct ModelStandIn {
    pub url: String,
    pub key: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ModelStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ModelStandIn {
    /// Serves on a free loopback port.
    pub async fn start(options: Options) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Self::serve(listener, options)
    }

    pub fn serve(listener: tokio::net::TcpListener, options: Options) -> std::io::Result<Self> {
        let url = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared::default());
        let key = options.key.clone();
        let app = router(options, shared.clone());
        // Like a real API behind a CDN: each event goes out as it is written.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url,
            key,
            shared,
            task,
        })
    }

    /// The next request meets `behaviour` (queued in order).
    pub fn next(&self, behaviour: Behaviour) {
        if let Ok(mut script) = self.shared.script.lock() {
            script.push_back(behaviour);
        }
    }

    /// The bodies of every request received so far (valid or not).
    pub fn requests(&self) -> Vec<Value> {
        self.shared
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Streams being sent right now.
    pub fn open_streams(&self) -> usize {
        self.shared.open.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn router(options: Options, shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/standin/next", post(queue))
        .route("/standin/requests", get(requests))
        .with_state(AppState {
            options: Arc::new(options),
            shared,
        })
}

async fn queue(State(state): State<AppState>, Json(b): Json<Behaviour>) -> StatusCode {
    if let Ok(mut script) = state.shared.script.lock() {
        script.push_back(b);
    }
    StatusCode::NO_CONTENT
}

async fn requests(State(state): State<AppState>) -> Json<Vec<Value>> {
    Json(
        state
            .shared
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default(),
    )
}

/// Anthropic's error shape.
fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"type": "error", "error": {"type": kind, "message": message}})),
    )
        .into_response()
}

fn invalid(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request_error", message)
}

/// Why a request is refused.
enum Refusal {
    Key,
    Invalid(String),
}

impl Refusal {
    fn response(self) -> Response {
        match self {
            Refusal::Key => error(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid x-api-key",
            ),
            Refusal::Invalid(why) => invalid(&why),
        }
    }
}

/// The checks of the real API that Confab relies on.
fn check_anthropic(headers: &HeaderMap, key: &str, body: &Value) -> Result<(), Refusal> {
    let invalid = |why: &str| Refusal::Invalid(why.to_owned());
    let given = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if given != Some(key) {
        return Err(Refusal::Key);
    }
    match headers
        .get("anthropic-version")
        .and_then(|v| v.to_str().ok())
    {
        Some(API_VERSION) => {}
        Some(_) => return Err(invalid("anthropic-version: unsupported version")),
        None => return Err(invalid("anthropic-version: header is required")),
    }
    if body
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(invalid("model: Field required"));
    }
    match body.get("max_tokens").and_then(Value::as_u64) {
        Some(n) if n >= 1 => {}
        _ => {
            return Err(invalid(
                "max_tokens: Field required (an integer of at least 1)",
            ));
        }
    }
    if let Some(system) = body.get("system")
        && !system.is_string()
    {
        return Err(invalid("system: must be a string"));
    }
    let Some(turns) = body.get("messages").and_then(Value::as_array) else {
        return Err(invalid("messages: Field required"));
    };
    if turns.is_empty() {
        return Err(invalid("messages: at least one message is required"));
    }
    let mut expected = "user";
    for (i, turn) in turns.iter().enumerate() {
        let role = turn.get("role").and_then(Value::as_str).unwrap_or_default();
        if role != expected {
            return Err(Refusal::Invalid(format!(
                "messages.{i}.role: roles must alternate between \"user\" and \"assistant\", starting with \"user\""
            )));
        }
        if turn
            .get("content")
            .and_then(Value::as_str)
            .is_none_or(|c| c.trim().is_empty())
        {
            return Err(Refusal::Invalid(format!(
                "messages.{i}.content: text content blocks must be non-empty"
            )));
        }
        expected = if role == "user" { "assistant" } else { "user" };
    }
    if turns
        .last()
        .and_then(|t| t.get("role"))
        .and_then(Value::as_str)
        != Some("user")
    {
        return Err(invalid("messages: the last message must be from the user"));
    }
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        return Err(invalid(
            "stream: this stand-in answers streaming requests only",
        ));
    }
    Ok(())
}

fn next_behaviour(state: &AppState) -> Behaviour {
    state
        .shared
        .script
        .lock()
        .ok()
        .and_then(|mut s| s.pop_front())
        .unwrap_or(Behaviour::Reply {
            text: None,
            delay_ms: None,
        })
}

fn record(state: &AppState, body: &Value) {
    if let Ok(mut r) = state.shared.requests.lock() {
        r.push(body.clone());
    }
}

/// The answer the stand-in gives: a title for a title request, else a
/// short Markdown reply that quotes the question.
pub fn answer_for(system: Option<&str>, question: &str) -> String {
    let question = question.trim();
    if system.is_some_and(|s| s.contains("title")) {
        let asked = question
            .split("begins:")
            .nth(1)
            .unwrap_or(question)
            .split_whitespace()
            .take(5)
            .collect::<Vec<_>>()
            .join(" ");
        return if asked.is_empty() {
            "Untitled".into()
        } else {
            asked
        };
    }
    let quoted: String = question.chars().take(80).collect();
    let ellipsis = if question.chars().count() > 80 {
        "…"
    } else {
        ""
    };
    format!(
        "You asked: *{quoted}{ellipsis}*\n\nThis answer comes from Confab's **local stand-in model**, not from Claude. \
It streams word by word, like a real model, so that replies can be tried without an API key:\n\n\
- set `ANTHROPIC_API_KEY` to talk to Claude;\n- or `CONFAB_OPENAI_BASE_URL` for a self-hosted model.\n\nEverything else works as it will with a real model."
    )
}

/// The answer's words, each with the whitespace after it.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        current.push(c);
        if c.is_whitespace() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Stands for "the time of sending" in a planned answer ([`Behaviour::Clock`]).
const CLOCK_WORD: &str = "\u{0}clock";
/// The clock word as it appears in an event's JSON.
const CLOCK_JSON: &str = "\\u0000clock";

/// A piece as sent: a clock word becomes the time now, in Unix microseconds.
fn with_time(piece: Bytes) -> Bytes {
    let Ok(text) = std::str::from_utf8(&piece) else {
        return piece;
    };
    if !text.contains(CLOCK_JSON) {
        return piece;
    }
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    Bytes::from(text.replace(CLOCK_JSON, &format!("{micros} ")))
}

fn sse(event: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

type Chunks = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// Counts a stream as open while it is being sent.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Sends `pieces` `delay` apart, then ends as `behaviour` says.
fn paced(
    state: &AppState,
    pieces: Vec<Bytes>,
    delay: Duration,
    tail: Vec<Bytes>,
    end: End,
) -> Chunks {
    state
        .shared
        .open
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let guard = Arc::new(OpenGuard(state.shared.clone()));
    let body = stream::iter(pieces.into_iter().enumerate()).then(move |(i, piece)| {
        let _keep = guard.clone();
        async move {
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, std::io::Error>(with_time(piece))
        }
    });
    let ending: Chunks = match end {
        End::Normal => stream::iter(tail.into_iter().map(Ok)).boxed(),
        End::Cut => stream::once(async {
            // What was sent reaches the client before the connection drops.
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "cut by the stand-in",
            ))
        })
        .boxed(),
        End::Silent => stream::pending().boxed(),
    };
    body.chain(ending).boxed()
}

enum End {
    Normal,
    Cut,
    Silent,
}

fn status_response(status: u16, retry_after: Option<u64>, openai: bool) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match status {
        401 => "authentication_error",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    let mut response = if openai {
        (
            code,
            Json(json!({"error": {"message": kind, "type": kind}})),
        )
            .into_response()
    } else {
        error(code, kind, kind)
    };
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    }
    response
}

fn event_stream(chunks: Chunks) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(chunks))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn input_tokens(body: &Value) -> u64 {
    let text: usize = body
        .get("messages")
        .and_then(Value::as_array)
        .map(|turns| {
            turns
                .iter()
                .filter_map(|t| t.get("content").and_then(Value::as_str))
                .map(str::len)
                .sum()
        })
        .unwrap_or(0);
    let system = body
        .get("system")
        .and_then(Value::as_str)
        .map_or(0, str::len);
    ((text + system) as u64).div_ceil(4).max(1)
}

fn last_user_text(body: &Value) -> String {
    body.get("messages")
        .and_then(Value::as_array)
        .and_then(|t| t.last())
        .and_then(|t| t.get("content"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Words to send, how fast, and how the stream ends.
type Plan = (Vec<String>, Duration, End);

/// The plan for one request, or the status (and `retry-after`) to answer.
fn plan(state: &AppState, body: &Value, system: Option<&str>) -> Result<Plan, (u16, Option<u64>)> {
    let behaviour = next_behaviour(state);
    let answer = |text: Option<String>| {
        words(&text.unwrap_or_else(|| answer_for(system, &last_user_text(body))))
    };
    let delay = state.options.word_delay;
    Ok(match behaviour {
        Behaviour::Reply { text, delay_ms } => (
            answer(text),
            delay_ms.map_or(delay, Duration::from_millis),
            End::Normal,
        ),
        Behaviour::Cut { after } => (
            answer(None).into_iter().take(after).collect(),
            delay,
            End::Cut,
        ),
        Behaviour::ErrorEvent { after } => {
            let mut w: Vec<String> = answer(None).into_iter().take(after).collect();
            // Marks the error's place for `messages`.
            w.push("\u{0}error".into());
            (w, delay, End::Normal)
        }
        Behaviour::Silent { after } => (
            answer(None).into_iter().take(after).collect(),
            delay,
            End::Silent,
        ),
        Behaviour::Clock { count, delay_ms } => (
            vec![CLOCK_WORD.to_owned(); count],
            Duration::from_millis(delay_ms),
            End::Normal,
        ),
        Behaviour::Status {
            status,
            retry_after,
        } => return Err((status, retry_after)),
    })
}

async fn messages(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return invalid(&format!("body: not JSON: {e}")),
    };
    record(&state, &body);
    if let Err(refused) = check_anthropic(&headers, &state.options.key, &body) {
        return refused.response();
    }
    let system = body.get("system").and_then(Value::as_str);
    let (words, delay, end) = match plan(&state, &body, system) {
        Ok(plan) => plan,
        Err((status, retry_after)) => return status_response(status, retry_after, false),
    };
    let model = body.get("model").cloned().unwrap_or(Value::Null);
    let input = input_tokens(&body);
    let mut pieces = vec![
        sse(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": "msg_standin", "type": "message", "role": "assistant", "content": [],
                "model": model, "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": input, "output_tokens": 1}}}),
        ),
        sse(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        sse("ping", &json!({"type": "ping"})),
    ];
    let mut sent = 0u64;
    let mut errored = false;
    for w in &words {
        if w == "\u{0}error" {
            pieces.push(sse(
                "error",
                &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ));
            errored = true;
            break;
        }
        sent += 1;
        pieces.push(sse(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}),
        ));
    }
    let max_tokens = body.get("max_tokens").and_then(Value::as_u64).unwrap_or(1);
    let tail = if errored {
        vec![]
    } else {
        vec![
            sse(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ),
            sse(
                "message_delta",
                &json!({"type": "message_delta",
                    "delta": {"stop_reason": if sent >= max_tokens { "max_tokens" } else { "end_turn" }, "stop_sequence": null},
                    "usage": {"output_tokens": sent}}),
            ),
            sse("message_stop", &json!({"type": "message_stop"})),
        ]
    };
    event_stream(paced(&state, pieces, delay, tail, end))
}

async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return invalid(&format!("body: not JSON: {e}")),
    };
    record(&state, &body);
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(state.options.key.as_str()) {
        return status_response(401, None, true);
    }
    let system = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.first())
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("system"))
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let (words, delay, end) = match plan(&state, &body, system.as_deref()) {
        Ok(plan) => plan,
        Err((status, retry_after)) => return status_response(status, retry_after, true),
    };
    let data = |v: Value| Bytes::from(format!("data: {v}\n\n"));
    let mut pieces = Vec::new();
    let mut sent = 0u64;
    let mut errored = false;
    for w in &words {
        if w == "\u{0}error" {
            pieces.push(data(
                json!({"error": {"message": "overloaded", "type": "server_error"}}),
            ));
            errored = true;
            break;
        }
        sent += 1;
        pieces.push(data(
            json!({"choices": [{"index": 0, "delta": {"content": w}, "finish_reason": null}]}),
        ));
    }
    let tail = if errored {
        vec![]
    } else {
        vec![
            data(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})),
            data(
                json!({"choices": [], "usage": {"prompt_tokens": input_tokens(&body), "completion_tokens": sent}}),
            ),
            Bytes::from_static(b"data: [DONE]\n\n"),
        ]
    };
    event_stream(paced(&state, pieces, delay, tail, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_their_spaces() {
        assert_eq!(words("a b\n\nc"), ["a ", "b\n", "\n", "c"]);
        assert_eq!(words("a b\n\nc").concat(), "a b\n\nc");
    }

    #[test]
    fn clock_words_carry_the_time_of_sending() {
        let piece = sse(
            "content_block_delta",
            &json!({"delta": {"text": CLOCK_WORD}}),
        );
        let sent = String::from_utf8(with_time(piece).to_vec()).unwrap_or_default();
        let micros: u128 = sent
            .split("\"text\":\"")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        assert!(micros > 1_700_000_000_000_000, "{sent}");
    }

    #[test]
    fn titles_are_short() {
        let t = answer_for(
            Some("Answer with a title"),
            "Write a title for the conversation that begins:\n\nCan you add a section on hiring please",
        );
        assert_eq!(t, "Can you add a section");
    }

    #[test]
    fn turns_must_alternate() {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", "k".parse().unwrap_or_else(|_| unreachable!()));
        headers.insert(
            "anthropic-version",
            API_VERSION.parse().unwrap_or_else(|_| unreachable!()),
        );
        let ok = json!({"model": "m", "max_tokens": 5, "stream": true,
            "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]});
        assert!(check_anthropic(&headers, "k", &ok).is_ok());
        let twice = json!({"model": "m", "max_tokens": 5, "stream": true,
            "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "c"}]});
        assert!(check_anthropic(&headers, "k", &twice).is_err());
        let no_max =
            json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "a"}]});
        assert!(check_anthropic(&headers, "k", &no_max).is_err());
        assert!(check_anthropic(&headers, "other", &ok).is_err());
    }
}
