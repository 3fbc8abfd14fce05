//! Load benchmark of the proxy (design section 7), run with
//! `cargo bench -p confab-proxy --bench api` (add `-- --moto` to include DynamoDB
//! on a moto server; scripts/setup installs it).
//!
//! Reports, for an authenticated list (50 conversations) and an append:
//! - the proxy's own added latency: the same store call through the router
//!   (JWT check, routing, JSON) minus the store call alone, p50;
//! - one user's throughput and latency over real HTTP on loopback: the
//!   server pinned to one core, clients on the other;
//! - authenticated lists by 1,000 users with the rate limiter at its
//!   defaults, the server pinned to one core (workers and blocking pool):
//!   tokens reused (budget, design section 7: 5,000 req/s, p99 10 ms), and a
//!   new token per request (budget: 8,000 req/s).
//!
//! Prints a summary row per figure (`confab_bench_report`); exits non-zero
//! when a budget (added latency 0.2 ms, lists, cold tokens) is missed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up should stop

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use confab_bench_report::Report;
use confab_proxy::auth::{AuthConfig, Verifier};
use confab_proxy::identity::Identity;
use confab_proxy::ids::{Id, UserId};
use confab_proxy::store::{DynamoStore, NewConversation, NewMessage, SqliteStore, Store};
use confab_proxy::{AppState, router};
use confab_wire::conversations::Role;
use serde_json::json;
use tower::ServiceExt;

const ISSUER: &str = "https://clerk.confab.bench";
/// Requests per second with a new token on every request, server on one core.
const BUDGET_COLD_REQS: f64 = 8_000.0;
const SIGNING_PEM: &str = include_str!("../tests/fixtures/signing.pem");
const SIGNING_PUB_PEM: &str = include_str!("../tests/fixtures/signing.pub.pem");

fn token(sub: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("test-key-1".into());
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iss": ISSUER, "sub": sub, "client_id": "confab-desktop", "iat": now, "exp": now + 3600});
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(SIGNING_PEM.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn state(store: Arc<dyn Store>) -> AppState {
    let mut auth = AuthConfig::new(ISSUER);
    auth.allowed_client_ids = vec!["confab-desktop".into()];
    auth.static_key_pem = Some(SIGNING_PUB_PEM.into());
    let mut state = AppState::new(
        store,
        Verifier::new(auth).unwrap(),
        Identity::Userinfo {
            url: "http://127.0.0.1:9/".into(),
        },
        reqwest::Client::new(),
    );
    state.limiter = None; // measuring the proxy, not the limiter's refusals
    state
}

/// 50 conversations of one message each; their ids.
async fn seed(store: &dyn Store, user: &UserId) -> Vec<Id> {
    let mut ids = Vec::new();
    for i in 0..50 {
        let id = Id::new();
        store
            .create_conversation(
                user,
                NewConversation {
                    id,
                    title: format!("Conversation {i}"),
                    messages: vec![NewMessage {
                        id: Id::new(),
                        role: Role::User,
                        content: "hello there".into(),
                    }],
                },
                None,
            )
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// p50 of the router minus p50 of the bare store call, same work: for a list
/// and for an append.
async fn added_latency(name: &str, store: Arc<dyn Store>, rounds: usize) -> (Duration, Duration) {
    let user = UserId::parse("user_bench").unwrap();
    let conversation = *seed(store.as_ref(), &user).await.last().unwrap();
    let app = router(state(store.clone()));
    let bearer = format!("Bearer {}", token("user_bench"));

    let mut bare = Vec::with_capacity(rounds);
    let mut routed = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        store.list_conversations(&user, 50, None).await.unwrap();
        bare.push(t.elapsed());
        let t = Instant::now();
        let response = app
            .clone()
            .oneshot(
                Request::get("/api/conversations?limit=50")
                    .header("authorization", &bearer)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let _ = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        routed.push(t.elapsed());
    }
    bare.sort();
    routed.sort();
    let (b, r) = (percentile(&bare, 0.5), percentile(&routed, 0.5));
    let list = r.saturating_sub(b);
    println!(
        "{name:<8} list   store p50 {:>8.1} µs   through proxy p50 {:>8.1} µs   added p50 {:>7.1} µs",
        micros(b),
        micros(r),
        micros(r.saturating_sub(b))
    );

    let mut bare = Vec::with_capacity(rounds);
    let mut routed = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        store
            .append_message(
                &user,
                conversation,
                NewMessage {
                    id: Id::new(),
                    role: Role::User,
                    content: "bench".into(),
                },
                None,
            )
            .await
            .unwrap();
        bare.push(t.elapsed());
        let t = Instant::now();
        let response = app
            .clone()
            .oneshot(
                Request::post(format!("/api/conversations/{conversation}/messages"))
                    .header("authorization", &bearer)
                    .header("content-type", "application/json")
                    .body(Body::from(r#"{"role":"user","content":"bench"}"#))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert!(response.status().is_success());
        let _ = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        routed.push(t.elapsed());
    }
    bare.sort();
    routed.sort();
    let (b, r) = (percentile(&bare, 0.5), percentile(&routed, 0.5));
    println!(
        "{name:<8} append store p50 {:>8.1} µs   through proxy p50 {:>8.1} µs   added p50 {:>7.1} µs",
        micros(b),
        micros(r),
        micros(r.saturating_sub(b))
    );
    (list, r.saturating_sub(b))
}

/// What a load run measured.
struct Throughput {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

impl Throughput {
    /// From every request's latency over a run of `elapsed`.
    fn of(mut latencies: Vec<Duration>, elapsed: Duration) -> Self {
        latencies.sort();
        Self {
            per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: percentile(&latencies, 0.5),
            p99: percentile(&latencies, 0.99),
        }
    }
}

impl std::fmt::Display for Throughput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
            self.per_second,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3
        )
    }
}

#[derive(Clone, Copy)]
enum Load {
    List,
    Append,
}

/// Authenticated requests over loopback HTTP for `duration`.
fn throughput(
    name: &str,
    store: Arc<dyn Store>,
    load: Load,
    concurrency: usize,
    duration: Duration,
) -> Throughput {
    // The server on core 0 (its worker and blocking pool), the clients on
    // core 1.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_start(|| pin_to(0))
        .enable_all()
        .build()
        .unwrap();
    let user = UserId::parse("user_load").unwrap();
    // Appends spread over the conversations: one would reach its message cap.
    let conversations = server.block_on(seed(store.as_ref(), &user));
    let app = router(state(store));
    let listener = server
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    server.spawn(async move { axum::serve(listener, app).await });

    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_start(|| pin_to(1))
        .enable_all()
        .build()
        .unwrap();
    let urls: Vec<String> = conversations
        .iter()
        .map(|conversation| match load {
            Load::List => format!("http://{addr}/api/conversations?limit=50"),
            Load::Append => format!("http://{addr}/api/conversations/{conversation}/messages"),
        })
        .collect();
    let bearer = token("user_load");
    let latencies = clients.block_on(async move {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .build()
            .unwrap();
        let deadline = Instant::now() + duration;
        let tasks: Vec<_> = (0..concurrency)
            .map(|task| {
                let http = http.clone();
                let url = urls[task % urls.len()].clone();
                let bearer = bearer.clone();
                tokio::spawn(async move {
                    let mut local = Vec::new();
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        let request = match load {
                            Load::List => http.get(&url),
                            Load::Append => http
                                .post(&url)
                                .header("content-type", "application/json")
                                .body(r#"{"role":"user","content":"load"}"#),
                        };
                        let response = request.bearer_auth(&bearer).send().await.unwrap();
                        let status = response.status();
                        assert!(status.is_success(), "{status}");
                        let _ = response.bytes().await.unwrap();
                        local.push(t.elapsed());
                    }
                    local
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all
    });
    let what = match load {
        Load::List => "list  ",
        Load::Append => "append",
    };
    let measured = Throughput::of(latencies, duration);
    println!(
        "{name:<8} {what} over HTTP, server pinned to 1 core, {concurrency} connections: {measured}"
    );
    drop(server);
    measured
}

/// Pins the calling thread to `core` (on Linux), so "one core" means one.
fn pin_to(core: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(core).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

/// Authenticated lists by `USERS` users over loopback HTTP, the rate limiter
/// at its defaults, the server (workers and blocking pool) pinned to core 0
/// and the clients to core 1: each user's token reused (verified once, then
/// from the cache), or a new token on every request (its RS256 signature
/// verified each time). Each user has `conversations_each` conversations; 16
/// connections.
fn token_throughput(fresh: bool, conversations_each: usize, duration: Duration) -> Throughput {
    const USERS: usize = 1_000;
    const CONNECTIONS: usize = 16;
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(4)
        .on_thread_start(|| pin_to(0))
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("tokens.db")).unwrap());
    // A few conversations each, so every list reads and encodes rows.
    server.block_on(async {
        for u in 0..USERS {
            let user = UserId::parse(&format!("user_{u}")).unwrap();
            for i in 0..conversations_each {
                store
                    .create_conversation(
                        &user,
                        NewConversation {
                            id: Id::new(),
                            title: format!("Conversation {i}"),
                            messages: Vec::new(),
                        },
                        None,
                    )
                    .await
                    .unwrap();
            }
        }
    });
    let mut state = state(store);
    state.limiter =
        confab_proxy::limits::UserLimiter::new(confab_proxy::limits::RateLimit::default())
            .map(Arc::new);
    let app = router(state);
    let listener = server
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    server.spawn(async move { axum::serve(listener, app).await });

    // Signed before the clock starts, on both cores: a fresh token per
    // request needs as many as the run can send.
    let wanted = if fresh { 40_000 } else { USERS };
    let tokens: Vec<String> = std::thread::scope(|scope| {
        let halves: Vec<_> = (0..2)
            .map(|half| {
                scope.spawn(move || {
                    (half..wanted)
                        .step_by(2)
                        .map(|i| token(&format!("user_{}", i % USERS)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let tokens = Arc::new(tokens);
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_start(|| pin_to(1))
        .enable_all()
        .build()
        .unwrap();
    let url = format!("http://{addr}/api/conversations?limit=50");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let latencies = clients.block_on(async move {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(CONNECTIONS)
            .build()
            .unwrap();
        let deadline = Instant::now() + duration;
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|_| {
                let (http, url, tokens, next) =
                    (http.clone(), url.clone(), tokens.clone(), next.clone());
                tokio::spawn(async move {
                    let mut local = Vec::new();
                    while Instant::now() < deadline {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if fresh && i >= tokens.len() {
                            break;
                        }
                        let t = Instant::now();
                        let response = http
                            .get(&url)
                            .bearer_auth(&tokens[i % tokens.len()])
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(response.status(), 200);
                        let _ = response.bytes().await.unwrap();
                        local.push(t.elapsed());
                    }
                    local
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all
    });
    let elapsed = started.elapsed();
    drop(server);
    Throughput::of(latencies, elapsed)
}

/// Design section 7: what the proxy may add to a store call, and what one
/// core must serve.
const BUDGET_ADDED: Duration = Duration::from_micros(200);
const BUDGET_LIST_REQS: f64 = 5_000.0;
const BUDGET_LIST_P99: Duration = Duration::from_millis(10);

fn main() -> ExitCode {
    let mut report = Report::new("api");
    let with_moto = std::env::args().any(|a| a == "--moto");
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (list, append) = rt.block_on(added_latency("sqlite", sqlite, 2000));
    for (what, added) in [("list of 50", list), ("append", append)] {
        report.budget(
            format!("proxy added latency over the store, {what}, SQLite, p50"),
            format!("{:.0} µs", micros(added)),
            format!("{:.0} µs", micros(BUDGET_ADDED)),
            added <= BUDGET_ADDED,
        );
    }
    let sqlite2: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("load.db")).unwrap());
    let five = Duration::from_secs(5);
    // Lists of 3 conversations each (design section 7's budget), and empty
    // lists, the setup the cold-token target was set in.
    for each in [3, 0] {
        let cached = token_throughput(false, each, five);
        let cold = token_throughput(true, each, five);
        println!(
            "tokens   1,000 users with {each} conversations each, limiter on, server pinned to one core: {cached} with each user's token reused, {cold} with a new token per request"
        );
        let setup = format!(
            "authenticated lists, 1,000 users with {each} conversations each, limiter at its defaults, server pinned to 1 core, 16 connections, SQLite"
        );
        if each > 0 {
            report.budget(
                format!("{setup}: each user's token reused"),
                &cached,
                format!(
                    "{BUDGET_LIST_REQS:.0} req/s, p99 {} ms",
                    BUDGET_LIST_P99.as_millis()
                ),
                cached.per_second >= BUDGET_LIST_REQS && cached.p99 <= BUDGET_LIST_P99,
            );
            report.figure(format!("{setup}: a new token per request"), &cold);
        } else {
            report.figure(format!("{setup}: each user's token reused"), &cached);
            report.budget(
                format!("{setup}: a new token per request (RS256 verified each time)"),
                &cold,
                format!("{BUDGET_COLD_REQS:.0} req/s"),
                cold.per_second >= BUDGET_COLD_REQS,
            );
        }
    }
    let lists = throughput("sqlite", sqlite2.clone(), Load::List, 16, five);
    report.figure(
        "one user's list of 50 over HTTP, same setup without the limiter",
        lists,
    );
    let appends = throughput("sqlite", sqlite2, Load::Append, 16, five);
    report.figure("one user's appends over HTTP, same setup", appends);

    if with_moto {
        let artifacts = dir.path().join("moto");
        std::fs::create_dir_all(&artifacts).unwrap();
        let moto = confab_tests::moto::Moto::start(&artifacts).expect("moto (run scripts/setup)");
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .endpoint_url(moto.endpoint())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "b", "b", None, None, "bench",
            ))
            .build();
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), "confab-bench");
        rt.block_on(store.setup()).unwrap();
        let store: Arc<dyn Store> = Arc::new(store);
        let (list, append) = rt.block_on(added_latency("moto", store.clone(), 200));
        report.figure(
            "proxy added latency over the store, list / append, moto, p50",
            format!("{:.0} / {:.0} µs", micros(list), micros(append)),
        );
        let lists = throughput("moto", store.clone(), Load::List, 8, five);
        let appends = throughput("moto", store, Load::Append, 8, five);
        report.figure("list over HTTP on moto, 8 connections", lists);
        report.figure("append over HTTP on moto, 8 connections", appends);
    }
    report.finish()
}
