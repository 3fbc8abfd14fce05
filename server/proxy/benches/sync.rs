//! The sync protocol's budgets (design section 7), run with
//! `cargo bench -p confab-proxy --bench sync` (scripts/bench runs it).
//!
//! Two headless devices (session, cache, engine, as in the app) of one user,
//! against the real proxy binary on each store (SQLite; DynamoDB on moto).
//! A 5,000-message conversation is seeded through the store, both devices
//! sync it, then device A appends one message at a time. Measured from the
//! engines' own counters (`Engine::traffic`: requests sent, bytes received
//! with their headers):
//! - what device B receives for one new message (budget: 8 KB, 3 requests);
//! - the requests device A makes per append (budget: 2);
//! - A → B latency: from A's write to the message in B's cache, p50 and p95.
//!
//! For comparison it also measures what the previous protocol moved per
//! append: the whole conversation (`GET /api/conversations/{id}`).
//! Exits non-zero when a budget is exceeded.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up should stop

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use confab_bench_report::Report;
use confab_proxy::ids::{Id, UserId};
use confab_proxy::store::{DynamoStore, NewConversation, NewMessage, SqliteStore, Store};
use confab_tests::oidc::Provider;
use confab_tests::proxy::Proxy;
use confab_tests::session::Device;
use confab_wire::conversations::Role;

const MESSAGES: usize = 5_000;
const APPENDS: usize = 30;
const USER: &str = "user_bench";
const BUDGET_BYTES: u64 = 8 * 1024;
const BUDGET_REQUESTS_RECEIVER: u64 = 3;
const BUDGET_REQUESTS_WRITER: u64 = 2;
const SETTLE: Duration = Duration::from_secs(60);

struct Figures {
    store: &'static str,
    whole_bytes: usize,
    receiver_bytes: Vec<u64>,
    receiver_requests: Vec<u64>,
    writer_requests: Vec<u64>,
    latency: Vec<Duration>,
}

async fn seed(store: &dyn Store) -> Id {
    let user = UserId::parse(USER).unwrap();
    let messages = (0..MESSAGES)
        .map(|i| NewMessage {
            id: Id::new(),
            role: if i % 2 == 0 { Role::User } else { Role::Assistant },
            content: format!(
                "Message {i}: a paragraph of ordinary length, about what was planned for the week and who does what next."
            ),
        })
        .collect();
    let new = NewConversation {
        id: Id::new(),
        title: "Long conversation".into(),
        messages,
    };
    let id = new.id;
    store.create_conversation(&user, new, None).await.unwrap();
    id
}

fn dynamo_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "bench"))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

async fn measure(
    store: &'static str,
    provider: &Provider,
    proxy: &Proxy,
    conversation: Id,
) -> Figures {
    let a = Device::start(provider, &proxy.base, USER).await.unwrap();
    let b = Device::start(provider, &proxy.base, USER).await.unwrap();
    let id = conversation.to_string();
    for device in [&a, &b] {
        device
            .eventually(SETTLE, "the long conversation", |c| {
                c.get(&id)
                    .ok()
                    .flatten()
                    .filter(|v| v.messages.len() == MESSAGES)
            })
            .await
            .unwrap();
    }
    // What the previous protocol fetched per append: the whole conversation.
    let token = provider.sign_in(USER).await.unwrap().access_token;
    let whole = reqwest::Client::new()
        .get(proxy.url(&format!("/api/conversations/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();

    let mut figures = Figures {
        store,
        whole_bytes: whole,
        receiver_bytes: Vec::new(),
        receiver_requests: Vec::new(),
        writer_requests: Vec::new(),
        latency: Vec::new(),
    };
    let mut ids = ulid::Generator::new();
    for n in 0..APPENDS {
        // Both engines idle: nothing else in flight counts against the append.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before_a = a.engine.traffic();
        let before_b = b.engine.traffic();
        let started = Instant::now();
        let message = ids.generate().unwrap().to_string();
        a.cache()
            .append(
                &id,
                &message,
                Role::User,
                &format!("New line {n}"),
                confab_cache::now(),
            )
            .unwrap();
        a.engine.local_change(&id);
        let want = MESSAGES + n + 1;
        b.eventually(SETTLE, "the new message on B", |c| {
            c.get(&id)
                .ok()
                .flatten()
                .filter(|v| v.messages.len() == want)
        })
        .await
        .unwrap();
        figures.latency.push(started.elapsed());
        // Let both finish the round (A's pull after its push).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after_a = a.engine.traffic();
        let after_b = b.engine.traffic();
        figures
            .writer_requests
            .push(after_a.requests - before_a.requests);
        figures
            .receiver_requests
            .push(after_b.requests - before_b.requests);
        figures
            .receiver_bytes
            .push(after_b.bytes_received - before_b.bytes_received);
    }
    figures
}

fn percentile<T: Copy + Ord>(values: &[T], p: f64) -> T {
    let mut sorted = values.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let artifacts = confab_tests::paths::artifacts_dir("bench/sync").unwrap();
    let results = runtime.block_on(async {
        let mut results = Vec::new();
        let provider = Provider::start(&artifacts, &[]).unwrap();

        // SQLite: seeded in the file before the proxy opens it.
        let db = artifacts.join("bench.db");
        let _ = std::fs::remove_file(&db);
        let conversation = seed(&SqliteStore::open(&db).unwrap()).await;
        let store = format!("--store=sqlite:{}", db.display());
        let proxy = Proxy::start(&provider.issuer, &artifacts, &store, &no_limit()).unwrap();
        results.push(measure("sqlite", &provider, &proxy, conversation).await);
        drop(proxy);

        // DynamoDB on moto.
        let moto = confab_tests::moto::Moto::with_table(&artifacts).unwrap();
        let dynamo = DynamoStore::new(dynamo_client(&moto.endpoint()), "confab");
        let conversation = seed(&dynamo).await;
        let mut env = moto.aws_env();
        env.extend(no_limit());
        let proxy = Proxy::start(&provider.issuer, &artifacts, "--store=dynamodb", &env).unwrap();
        results.push(measure("dynamodb (moto)", &provider, &proxy, conversation).await);
        results
    });
    report(&results, &artifacts)
}

/// The benchmark measures the protocol, not the per-user rate limit.
fn no_limit() -> Vec<(&'static str, String)> {
    vec![("CONFAB_RATE_LIMIT", "0".into())]
}

fn report(results: &[Figures], artifacts: &Path) -> ExitCode {
    let mut report = Report::new("sync");
    println!(
        "\none new message in a {MESSAGES}-message conversation, {APPENDS} appends per store\n"
    );
    println!(
        "| store | before: whole conversation | B received p50 / max | B requests max | A requests max | A→B p50 | A→B p95 |"
    );
    println!("|---|---|---|---|---|---|---|");
    for f in results {
        let bytes_max = *f.receiver_bytes.iter().max().unwrap_or(&0);
        let b_requests = *f.receiver_requests.iter().max().unwrap_or(&0);
        let a_requests = *f.writer_requests.iter().max().unwrap_or(&0);
        let (p50, p95) = (
            percentile(&f.latency, 0.5).as_secs_f64() * 1000.0,
            percentile(&f.latency, 0.95).as_secs_f64() * 1000.0,
        );
        println!(
            "| {} | {} B | {} B / {} B | {} | {} | {p50:.1} ms | {p95:.1} ms |",
            f.store,
            f.whole_bytes,
            percentile(&f.receiver_bytes, 0.5),
            bytes_max,
            b_requests,
            a_requests,
        );
        report.budget(
            format!(
                "{}: what another device receives for one new message in a {MESSAGES}-message conversation (most of {APPENDS})",
                f.store
            ),
            format!("{bytes_max} B in at most {b_requests} requests"),
            format!("{BUDGET_BYTES} B, {BUDGET_REQUESTS_RECEIVER} requests"),
            bytes_max <= BUDGET_BYTES && b_requests <= BUDGET_REQUESTS_RECEIVER,
        );
        report.budget(
            format!("{}: requests the writer makes per append", f.store),
            a_requests,
            BUDGET_REQUESTS_WRITER,
            a_requests <= BUDGET_REQUESTS_WRITER,
        );
        report.figure(
            format!("{}: A → B latency, p50 / p95 (debug proxy)", f.store),
            format!("{p50:.0} / {p95:.0} ms"),
        );
    }
    println!("\nlogs: {}", artifacts.display());
    report.finish()
}
