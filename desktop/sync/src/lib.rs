//! The sync engine: keeps one user's cache and the proxy in agreement.
//!
//! - Push: the outbox in order, one entry at a time. Creates and appends carry
//!   client ids, so a replay after a crash is harmless. Failures are
//!   classified ([`push::Outcome`]): network trouble, 5xx and 429 are retried
//!   later (honouring `Retry-After`) and stop the push, so order holds; a 4xx
//!   marks the entry refused, for the user to retry or discard.
//! - Pull: `GET /api/changes` from the stored cursor, on start, after each
//!   push, on every server event, on reconnect and every minute; then only
//!   the messages that changed (`GET /api/conversations/{id}/messages?after=`).
//!   An expired cursor (410) means a full listing. Rounds are bounded.
//! - Listen: `GET /api/events`; a `change` from another device, `resync` or a
//!   (re)connect wakes the engine. It reconnects with backoff.
//!
//! Every request names this install (`X-Confab-Device`, a random id kept in
//! the cache), so its own changes coming back are recognised and skipped.
//!
//! Conflicts (ARCHITECTURE.md): the server's version is authoritative; an
//! update refused with 409 is re-sent against the current version with only
//! its own fields, so the last writer wins field by field; an update or delete
//! of something deleted elsewhere is dropped (deletes win); appends never
//! conflict.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use confab_cache::Cache;
use confab_session::Session;
use confab_wire::conversations::{DEVICE_HEADER, DeviceId};
use confab_wire::library::{Connection, ReplyLive, SyncStatus};
use tokio::sync::{Notify, broadcast, watch};

mod events;
mod pull;
mod push;
pub mod sse;

/// How often to pull without any server event (a safety net).
const PERIODIC: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long after the proxy is reachable again the engine has caught up by
/// itself, at worst: the event stream's and the loop's backoff are each at
/// most [`MAX_BACKOFF`] (+25 % jitter), and either one reconnecting syncs.
pub const RECOVERY: Duration = Duration::from_secs(2 * 60);
/// The largest answer read from the proxy: a page is at most 4 MiB of
/// message content plus its JSON.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Where the cache keeps this install's device id.
const DEVICE: &str = "device_id";

#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    /// Worth trying again later (network, 5xx, 429); `after` when the server
    /// said how long to wait.
    #[error("{message}")]
    Retry {
        message: String,
        after: Option<Duration>,
    },
    /// Signed out or the session ended: nothing to do until signed in again.
    #[error("not signed in")]
    SignedOut,
    #[error("the local cache failed: {0}")]
    Cache(String),
}

impl From<confab_cache::CacheError> for SyncError {
    fn from(err: confab_cache::CacheError) -> Self {
        SyncError::Cache(err.to_string())
    }
}

impl From<confab_session::AuthError> for SyncError {
    fn from(err: confab_session::AuthError) -> Self {
        use confab_session::AuthError as A;
        match err {
            A::SignedOut | A::SessionEnded | A::NotConfigured(_) | A::AlreadySignedIn => {
                SyncError::SignedOut
            }
            A::Unreachable(what) => SyncError::Retry {
                message: format!("cannot reach {what}"),
                after: None,
            },
            A::Provider(what) => SyncError::Retry {
                message: what,
                after: None,
            },
        }
    }
}

/// What the windows are told: signed out asks for sign-in, the rest says
/// what failed.
impl From<SyncError> for confab_wire::ErrorBody {
    fn from(err: SyncError) -> Self {
        use confab_wire::{ErrorBody, ErrorCode};
        match err {
            SyncError::SignedOut => ErrorBody::new(ErrorCode::Unauthenticated, "Sign in again."),
            SyncError::Retry { message, .. } => ErrorBody::new(ErrorCode::Unavailable, message),
            SyncError::Cache(message) => ErrorBody::new(ErrorCode::Internal, message),
        }
    }
}

/// What an engine exchanged with the proxy since it was made: requests sent
/// (event streams included) and bytes received (status lines, headers and
/// bodies). For diagnostics and the sync benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub requests: u64,
    pub bytes_received: u64,
}

/// Conversations whose cached state changed, for the UI to read again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheChanged {
    pub conversation_ids: Vec<String>,
}

/// One user's engine. Create it, then [`Engine::spawn`] it; dropping every
/// handle and aborting the tasks stops it.
pub struct Engine {
    cache: Arc<Cache>,
    session: Session,
    device: DeviceId,
    http: reqwest::Client,
    wake: Notify,
    status: watch::Sender<SyncStatus>,
    changed: broadcast::Sender<CacheChanged>,
    replies: broadcast::Sender<ReplyLive>,
    requests: AtomicU64,
    received: AtomicU64,
}

impl Engine {
    pub fn new(cache: Arc<Cache>, session: Session) -> Arc<Self> {
        let (pending, failed) = cache.outbox_counts().unwrap_or_default();
        let last_synced_at = cache
            .sync_value(pull::LAST_SYNCED)
            .ok()
            .flatten()
            .and_then(|t| t.parse::<DateTime<Utc>>().ok());
        let device = device_id(&cache);
        Arc::new(Self {
            cache,
            session,
            device,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
            wake: Notify::new(),
            status: watch::channel(SyncStatus {
                connection: Connection::Offline,
                pending,
                failed,
                last_synced_at,
                last_error: None,
            })
            .0,
            changed: broadcast::channel(256).0,
            replies: broadcast::channel(1024).0,
            requests: AtomicU64::new(0),
            received: AtomicU64::new(0),
        })
    }

    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// The id this install sends as `X-Confab-Device`.
    pub fn device(&self) -> &DeviceId {
        &self.device
    }

    /// What this engine exchanged with the proxy so far.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            requests: self.requests.load(Ordering::Relaxed),
            bytes_received: self.received.load(Ordering::Relaxed),
        }
    }

    /// Counts a response's status line and headers, and the request.
    pub(crate) fn count_response(&self, response: &reqwest::Response) {
        let headers: usize = response
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.count_body(headers + "HTTP/1.1 200 OK\r\n\r\n".len());
    }

    pub(crate) fn count_body(&self, bytes: usize) {
        self.received.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A request to the proxy, with the access token and this device's id.
    pub(crate) async fn send<F>(&self, build: F) -> Result<reqwest::Response, SyncError>
    where
        F: Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    {
        let device = self.device.as_str();
        let response = self
            .session
            .send(|http, token| build(http, token).header(DEVICE_HEADER, device))
            .await?;
        self.count_response(&response);
        Ok(response)
    }

    pub fn status(&self) -> SyncStatus {
        self.status.borrow().clone()
    }

    pub fn subscribe_status(&self) -> watch::Receiver<SyncStatus> {
        self.status.subscribe()
    }

    pub fn subscribe_changes(&self) -> broadcast::Receiver<CacheChanged> {
        self.changed.subscribe()
    }

    /// Replies as they stream, for the windows.
    pub fn subscribe_replies(&self) -> broadcast::Receiver<ReplyLive> {
        self.replies.subscribe()
    }

    pub(crate) fn live_reply(&self, reply: ReplyLive) {
        let _ = self.replies.send(reply);
    }

    /// What the server's assistant offers (`GET /api/assistant`).
    pub async fn assistant(&self) -> Result<confab_wire::assistant::AssistantInfo, SyncError> {
        let config = self.session.config().ok_or(SyncError::SignedOut)?.clone();
        let url = config.proxy_endpoint("api/assistant");
        let response = self
            .send(|http, token| http.get(url.clone()).bearer_auth(token))
            .await?;
        if !response.status().is_success() {
            return Err(self.failure(response).await);
        }
        read_json(self, response, "the assistant's description").await
    }

    /// Stops a streaming reply; its text so far is kept. Needs the server:
    /// offline, the reply runs on (there, it finishes anyway).
    pub async fn stop_reply(&self, conversation: &str, message: &str) -> Result<(), SyncError> {
        let config = self.session.config().ok_or(SyncError::SignedOut)?.clone();
        let mut url = config.proxy_endpoint("api/conversations");
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.extend([conversation, "replies", message, "stop"]);
        }
        let response = self
            .send(|http, token| http.post(url.clone()).bearer_auth(token))
            .await?;
        if !response.status().is_success() {
            return Err(self.failure(response).await);
        }
        self.sync_now();
        Ok(())
    }

    async fn failure(&self, response: reqwest::Response) -> SyncError {
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            return SyncError::SignedOut;
        }
        let after = retry_after(&response);
        SyncError::Retry {
            message: error_message(response).await,
            after,
        }
    }

    /// Sync as soon as possible (a local write, "sync now", a server event).
    pub fn sync_now(&self) {
        self.wake.notify_one();
    }

    /// A local write to `conversation_id` happened: tell the UI, refresh the
    /// counts, push it.
    pub fn local_change(&self, conversation_id: &str) {
        self.announce(vec![conversation_id.to_owned()]);
        self.refresh_counts();
        self.sync_now();
    }

    /// Local writes to any number of conversations (e.g. every refused write
    /// queued again): the UI reads everything again.
    pub fn local_change_all(&self) {
        self.announce_all();
        self.refresh_counts();
        self.sync_now();
    }

    /// Starts the sync loop and the event listener.
    pub fn spawn(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            tokio::spawn(self.clone().run()),
            tokio::spawn(events::listen(self.clone())),
        ]
    }

    pub(crate) fn announce_all(&self) {
        let _ = self.changed.send(CacheChanged {
            conversation_ids: Vec::new(),
        });
    }

    pub(crate) fn announce(&self, ids: Vec<String>) {
        if !ids.is_empty() {
            let _ = self.changed.send(CacheChanged {
                conversation_ids: ids,
            });
        }
    }

    fn refresh_counts(&self) {
        if let Ok((pending, failed)) = self.cache.outbox_counts() {
            self.status.send_if_modified(|s| {
                let changed = s.pending != pending || s.failed != failed;
                s.pending = pending;
                s.failed = failed;
                changed
            });
        }
    }

    fn set_connection(&self, connection: Connection, error: Option<String>) {
        self.status.send_if_modified(|s| {
            let changed = s.connection != connection || s.last_error != error;
            s.connection = connection;
            s.last_error = error;
            changed
        });
    }

    /// One round: push everything that can go, then pull.
    pub async fn sync_once(&self) -> Result<(), SyncError> {
        let pushed = push::push_all(self).await;
        self.refresh_counts();
        pushed?;
        pull::pull(self).await?;
        let now = Utc::now();
        let _ = self
            .cache
            .set_sync_value(pull::LAST_SYNCED, &now.to_rfc3339());
        self.status.send_modify(|s| s.last_synced_at = Some(now));
        self.refresh_counts();
        Ok(())
    }

    async fn run(self: Arc<Self>) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            self.set_connection(Connection::Syncing, None);
            // A server that said how long to wait is not asked sooner, not
            // even by a local write or an event.
            let mut not_before = None;
            let wait = match self.sync_once().await {
                Ok(()) => {
                    backoff = FIRST_BACKOFF;
                    self.set_connection(Connection::Online, None);
                    PERIODIC
                }
                Err(SyncError::SignedOut) => {
                    self.set_connection(Connection::SignedOut, None);
                    PERIODIC
                }
                Err(SyncError::Retry { message, after }) => {
                    log::info!("sync postponed: {message}");
                    self.set_connection(Connection::Offline, Some(message));
                    not_before = after;
                    let wait = after.unwrap_or_else(|| jitter(backoff));
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
                Err(SyncError::Cache(message)) => {
                    log::error!("sync stopped by the cache: {message}");
                    self.set_connection(Connection::Offline, Some(message));
                    MAX_BACKOFF
                }
            };
            match not_before {
                Some(after) => tokio::time::sleep(after).await,
                None => tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.wake.notified() => {}
                },
            }
        }
    }
}

/// This install's device id: made once (random), kept in the cache.
fn device_id(cache: &Cache) -> DeviceId {
    if let Some(id) = cache
        .sync_value(DEVICE)
        .ok()
        .flatten()
        .and_then(|raw| DeviceId::parse(&raw).ok())
    {
        return id;
    }
    let fresh = DeviceId::from_bits(rand::random());
    if let Err(err) = cache.set_sync_value(DEVICE, fresh.as_str()) {
        // Still a valid id for this run; the next start makes another.
        log::warn!("the device id could not be kept: {err}");
    }
    fresh
}

/// Reads a JSON answer of at most [`MAX_BODY_BYTES`]; `what` names it in
/// the error. A body that is too large or malformed is worth a retry later,
/// never a crash.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    engine: &Engine,
    response: reqwest::Response,
    what: &str,
) -> Result<T, SyncError> {
    let retry = |message: String| SyncError::Retry {
        message,
        after: None,
    };
    let body = read_capped(response, MAX_BODY_BYTES)
        .await
        .map_err(|e| retry(format!("{what} {e}")))?;
    engine.count_body(body.len());
    serde_json::from_slice(&body).map_err(|e| retry(format!("{what} could not be read: {e}")))
}

/// A body of at most `max` bytes; the error completes "<what> …".
async fn read_capped(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    let too_large = || format!("is larger than {max} bytes");
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("could not be read: {e}"))?
    {
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `base` ± 25 %, so many clients coming back at once spread out.
fn jitter(base: Duration) -> Duration {
    let factor = 0.75 + rand::random::<f64>() * 0.5;
    base.mul_f64(factor)
}

/// `Retry-After` in seconds, bounded to 10 minutes.
pub(crate) fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(600)))
}

/// The proxy's `{"error": {code, message}}`, read from a failed response.
pub(crate) async fn error_message(response: reqwest::Response) -> String {
    let status = response.status();
    // Bounded like every answer: an error page is no excuse to read forever.
    let body = read_capped(response, 64 * 1024).await.ok();
    body.and_then(|b| serde_json::from_slice::<confab_wire::HttpError>(&b).ok())
        .map(|e| confab_session::attempt::printable(&e.error.message, 300))
        .unwrap_or_else(|| format!("the server answered {status}"))
}
