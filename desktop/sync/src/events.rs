//! Listening to `GET /api/events`: every `change` from another device,
//! `resync`, a reply's end and (re)connect wake the engine, which pulls;
//! a reply's growing text (`reply`) goes straight to whoever listens. A `change` this
//! device made (its own id in the notice) is its own echo: it already holds
//! that state, so it is skipped. Reconnects with backoff; a stream that goes
//! silent (no heartbeat for 45 s) is dropped and reopened.

use std::sync::Arc;
use std::time::Duration;

use confab_wire::assistant::{ReplyDelta, ReplyDone};
use confab_wire::conversations::{ChangeNotice, DEVICE_HEADER};
use reqwest::StatusCode;

use confab_wire::library::ReplyLive;

use crate::{Engine, FIRST_BACKOFF, MAX_BACKOFF, jitter};

/// The proxy sends a heartbeat every 15 s.
const SILENCE: Duration = Duration::from_secs(45);

/// The largest event (or line) read: notices and deltas are small.
const MAX_EVENT_BYTES: usize = 64 * 1024;

/// A stream that stayed up this long was healthy: start backing off afresh.
const HEALTHY: Duration = Duration::from_secs(30);

pub(crate) async fn listen(engine: Arc<Engine>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let opened = tokio::time::Instant::now();
        if let Err(reason) = stream(&engine).await {
            log::info!("event stream: {reason}");
        }
        // Every end waits, even a clean one: a server that closes at once
        // (or a portal answering 200) must not be asked again in a loop.
        if opened.elapsed() >= HEALTHY {
            backoff = FIRST_BACKOFF;
        }
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection, until it ends. `Ok` when it was up and closed normally.
async fn stream(engine: &Engine) -> Result<(), String> {
    let config = engine.session.config().ok_or("not configured")?.clone();
    let token = engine
        .session
        .access_token()
        .await
        .map_err(|e| e.to_string())?;
    // Not through `Session::send`: its client gives up after 30 s of silence,
    // and a stream has its own silence rule (heartbeats every 15 s).
    let mut response = engine
        .http
        .get(config.proxy_endpoint("api/events"))
        .bearer_auth(&token)
        .header(DEVICE_HEADER, engine.device().as_str())
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .timeout(Duration::from_secs(60 * 60 * 24))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    engine.count_response(&response);
    match response.status() {
        StatusCode::OK => {
            let event_stream = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            if !event_stream {
                return Err("the answer is not an event stream".into());
            }
        }
        StatusCode::UNAUTHORIZED => {
            // Refreshed on the next try (access_token renews ahead of expiry).
            return Err("the token was refused".into());
        }
        status => return Err(format!("the server answered {status}")),
    }
    let mut parser = crate::sse::Parser::new(MAX_EVENT_BYTES);
    loop {
        let chunk = tokio::time::timeout(SILENCE, response.chunk())
            .await
            .map_err(|_| "silent for too long".to_owned())?
            .map_err(|e| e.to_string())?;
        let Some(chunk) = chunk else {
            return Ok(());
        };
        engine.count_body(chunk.len());
        for event in parser.push(&chunk).map_err(|e| e.to_string())? {
            let wake = match event.name.as_str() {
                // Pull now, unless it is our own echo.
                "change" => !is_own_echo(engine, &event.data),
                "resync" | "ready" => true,
                // A reply's text as it grows: straight to the windows.
                "reply" => {
                    if let Ok(delta) = serde_json::from_str::<ReplyDelta>(&event.data) {
                        engine.live_reply(ReplyLive::Delta(delta));
                    }
                    false
                }
                // Its end: the final text is stored, pull it.
                "reply-done" => {
                    if let Ok(done) = serde_json::from_str::<ReplyDone>(&event.data) {
                        engine.live_reply(ReplyLive::Done(done));
                    }
                    true
                }
                _ => false,
            };
            if wake {
                engine.sync_now();
            }
        }
    }
}

/// Whether a `change` notice is this device's own (its id in `device`). A
/// notice that cannot be read is never taken for an echo.
fn is_own_echo(engine: &Engine, data: &str) -> bool {
    serde_json::from_str::<ChangeNotice>(data)
        .ok()
        .and_then(|notice| notice.device)
        .is_some_and(|device| &device == engine.device())
}
