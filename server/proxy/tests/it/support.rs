//! Shared builders for the HTTP API tests: a router over a real SQLite store,
//! tokens signed with the test issuer's key, and requests.

// Test support: a failed setup step should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use confab_proxy::auth::{AuthConfig, Verifier};
use confab_proxy::identity::Identity;
use confab_proxy::ids::{Id, UserId};
use confab_proxy::store::{
    self, Created, DeviceId, MessageRange, NewConversation, NewMessage, Patch, ProfileFields,
    ReplyWrite, SqliteStore, Store,
};
use confab_proxy::{AppState, router};
use confab_wire::conversations::{
    Changes, Conversation, ConversationDetail, Deletion, Message, Page, Profile,
};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const ISSUER: &str = "https://clerk.confab.test";
pub const CLIENT_ID: &str = "confab-desktop";
pub const WEB_PARTY: &str = "https://app.confab.test";
pub const KID: &str = "test-key-1";
pub const SIGNING_PEM: &str = include_str!("../fixtures/signing.pem");
pub const SIGNING_PUB_PEM: &str = include_str!("../fixtures/signing.pub.pem");
pub const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const OTHER_PEM: &str = include_str!("../fixtures/other.pem");

/// Counts every store call, so tests can assert that refused requests never
/// reached the data.
pub struct CountingStore {
    inner: SqliteStore,
    pub calls: AtomicUsize,
}

macro_rules! counted {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {{
        $self.calls.fetch_add(1, Ordering::SeqCst);
        $self.inner.$method($($arg),*).await
    }};
}

#[async_trait]
impl Store for CountingStore {
    async fn ping(&self) -> store::Result<()> {
        counted!(self.ping())
    }
    async fn get_profile(&self, user: &UserId) -> store::Result<Option<Profile>> {
        counted!(self.get_profile(user))
    }
    async fn put_profile(&self, user: &UserId, f: ProfileFields) -> store::Result<Profile> {
        counted!(self.put_profile(user, f))
    }
    async fn list_conversations(
        &self,
        user: &UserId,
        limit: usize,
        cursor: Option<&str>,
    ) -> store::Result<Page<Conversation>> {
        counted!(self.list_conversations(user, limit, cursor))
    }
    async fn create_conversation(
        &self,
        user: &UserId,
        new: NewConversation,
        d: Option<&DeviceId>,
    ) -> store::Result<Created<ConversationDetail>> {
        counted!(self.create_conversation(user, new, d))
    }
    async fn get_conversation(&self, user: &UserId, id: Id) -> store::Result<ConversationDetail> {
        counted!(self.get_conversation(user, id))
    }
    async fn get_conversation_newest(
        &self,
        user: &UserId,
        id: Id,
        limit: usize,
    ) -> store::Result<ConversationDetail> {
        counted!(self.get_conversation_newest(user, id, limit))
    }
    async fn messages(
        &self,
        user: &UserId,
        id: Id,
        range: MessageRange,
        limit: usize,
    ) -> store::Result<Page<Message>> {
        counted!(self.messages(user, id, range, limit))
    }
    async fn update_conversation(
        &self,
        user: &UserId,
        id: Id,
        patch: Patch,
        d: Option<&DeviceId>,
    ) -> store::Result<Conversation> {
        counted!(self.update_conversation(user, id, patch, d))
    }
    async fn delete_conversation(
        &self,
        user: &UserId,
        id: Id,
        v: Option<u64>,
        d: Option<&DeviceId>,
    ) -> store::Result<Deletion> {
        counted!(self.delete_conversation(user, id, v, d))
    }
    async fn restore_conversation(
        &self,
        user: &UserId,
        id: Id,
        d: Option<&DeviceId>,
    ) -> store::Result<Conversation> {
        counted!(self.restore_conversation(user, id, d))
    }
    async fn append_message(
        &self,
        user: &UserId,
        id: Id,
        m: NewMessage,
        d: Option<&DeviceId>,
    ) -> store::Result<Created<(Message, Conversation)>> {
        counted!(self.append_message(user, id, m, d))
    }
    async fn changes(&self, user: &UserId, since: u64, limit: usize) -> store::Result<Changes> {
        counted!(self.changes(user, since, limit))
    }
    async fn write_reply(
        &self,
        user: &UserId,
        id: Id,
        w: ReplyWrite,
        d: Option<&DeviceId>,
    ) -> store::Result<Created<(Message, Conversation)>> {
        counted!(self.write_reply(user, id, w, d))
    }
    async fn charge_usage(
        &self,
        user: &UserId,
        day: &str,
        tokens: i64,
        budget: Option<u64>,
    ) -> store::Result<u64> {
        counted!(self.charge_usage(user, day, tokens, budget))
    }
    async fn delivery_seen(&self, delivery: &str) -> store::Result<bool> {
        counted!(self.delivery_seen(delivery))
    }
    async fn record_delivery(&self, delivery: &str) -> store::Result<()> {
        counted!(self.record_delivery(delivery))
    }
    async fn erase_user(&self, user: &UserId) -> store::Result<()> {
        counted!(self.erase_user(user))
    }
}

/// Nothing listens there: tests that need no profile from the provider.
const NO_USERINFO: &str = "http://127.0.0.1:9/oauth/userinfo";

pub struct Api {
    pub router: Router,
    pub store: Arc<CountingStore>,
    /// The store's folder, removed when the last instance over it goes.
    dir: Option<Arc<tempfile::TempDir>>,
    /// The instance's event hub: tests subscribe to see what streams see.
    pub events: confab_proxy::events::Hub,
    pub assistant: Arc<confab_proxy::assistant::Assistant>,
}

impl Api {
    pub fn new() -> Self {
        Self::with_limit(None)
    }

    pub fn with_limit(limit: Option<confab_proxy::limits::RateLimit>) -> Self {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
        let store = Arc::new(CountingStore {
            inner: SqliteStore::open(&dir.path().join("confab.db")).expect("store"),
            calls: AtomicUsize::new(0),
        });
        let mut api = Self::over(store, limit, NO_USERINFO, None);
        api.dir = Some(Arc::new(dir));
        api
    }

    /// With assistant replies on these settings.
    pub fn with_assistant(settings: confab_proxy::assistant::Settings) -> Self {
        Self::new().alike(None, NO_USERINFO, Some(settings))
    }

    /// Another instance over the same store, with its own assistant.
    pub fn another_assistant(&self, settings: confab_proxy::assistant::Settings) -> Self {
        self.alike(None, NO_USERINFO, Some(settings))
    }

    /// Another router over this one's store (and folder).
    fn alike(
        &self,
        limit: Option<confab_proxy::limits::RateLimit>,
        userinfo: &str,
        assistant: Option<confab_proxy::assistant::Settings>,
    ) -> Self {
        let mut api = Self::over(self.store.clone(), limit, userinfo, assistant);
        api.dir = self.dir.clone();
        api
    }

    /// Another proxy instance over the same store (as behind a load balancer).
    pub fn another_instance(&self) -> Self {
        self.alike(None, NO_USERINFO, None)
    }

    /// With profiles read from the userinfo endpoint at `url`.
    pub fn with_userinfo(url: &str) -> Self {
        Self::new().alike(None, url, None)
    }

    fn over(
        store: Arc<CountingStore>,
        limit: Option<confab_proxy::limits::RateLimit>,
        userinfo: &str,
        assistant: Option<confab_proxy::assistant::Settings>,
    ) -> Self {
        let mut auth = AuthConfig::new(ISSUER);
        auth.allowed_client_ids = vec![CLIENT_ID.into()];
        auth.allowed_parties = vec![WEB_PARTY.into()];
        auth.static_key_pem = Some(SIGNING_PUB_PEM.into());
        // Nothing listens there: the JWKS is never needed with the static key.
        auth.jwks_url = "http://127.0.0.1:9/.well-known/jwks.json".into();
        let mut state = AppState::new(
            store.clone(),
            Verifier::new(auth).expect("verifier"),
            Identity::Userinfo {
                url: userinfo.into(),
            },
            reqwest::Client::new(),
        );
        state.webhooks = Some(Arc::new(
            confab_proxy::webhooks::WebhookVerifier::new(WEBHOOK_SECRET).expect("secret"),
        ));
        // Tests make many requests quickly; the limit has its own test.
        state.limiter = limit
            .and_then(confab_proxy::limits::UserLimiter::new)
            .map(Arc::new);
        if let Some(settings) = assistant {
            state.assistant = Arc::new(confab_proxy::assistant::Assistant::new(settings));
        }
        Self {
            dir: None,
            events: state.events.clone(),
            assistant: state.assistant.clone(),
            router: router(state),
            store,
        }
    }

    pub fn store_calls(&self) -> usize {
        self.store.calls.load(Ordering::SeqCst)
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        // A body that never ends (an event stream) fails the test, never hangs it.
        let bytes = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            response.into_body().collect(),
        )
        .await
        .expect("the response body did not end within 30 s")
        .expect("body")
        .to_bytes();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "{status}: body is not JSON: {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Reply {
            status,
            headers,
            json,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => builder
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        }
        .expect("request");
        self.send(request).await
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub json: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn claims(sub: &str) -> Value {
    json!({
        "iss": ISSUER,
        "sub": sub,
        "client_id": CLIENT_ID,
        "scope": "openid profile email offline_access",
        "iat": now(),
        "exp": now() + 300,
    })
}

pub fn sign_with(claims: &Value, pem: &str, kid: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.into());
    header.typ = Some("at+jwt".into());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).expect("test key");
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

pub fn sign(claims: &Value) -> String {
    sign_with(claims, SIGNING_PEM, KID)
}

pub fn token_for(sub: &str) -> String {
    sign(&claims(sub))
}
