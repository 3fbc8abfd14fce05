//! A bounded soak on loopback, run with
//! `cargo bench -p confab-proxy --bench soak` (after `cargo build`; 60 s,
//! `SOAK_SECS` to change it):
//! - the proxy binary on SQLite, 200 event streams (25 users, 8 each) and
//!   50 writers (2 per user) creating conversations and appending messages;
//! - halfway, a deliberate store outage: another connection holds the
//!   database's write lock for 8 s (past the store's 5 s busy timeout);
//! - no notice is lost: at the end every stream has seen, for every
//!   conversation of its user, the version the change feed ends at (or a
//!   `resync`, after which it would pull);
//! - no 5xx but 503 during the outage, and writes succeed again after it;
//! - the proxy's RSS after warm-up and at the end.
//!
//! Exits non-zero when any of these fails.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up should stop

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confab_bench_report::Report;
use confab_tests::oidc::Provider;
use confab_tests::proxy::Proxy;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};

const USERS: usize = 25;
const STREAMS_PER_USER: usize = 8;
const WRITERS_PER_USER: usize = 2;
const OUTAGE: Duration = Duration::from_secs(8);

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// What one stream saw: the highest version noticed per conversation, and
/// whether it was told to resync.
#[derive(Default)]
struct Seen {
    versions: HashMap<String, u64>,
    resync: bool,
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    unavailable: AtomicU64,
    other_errors: AtomicU64,
    /// Successful writes after the outage ended.
    after_outage: AtomicU64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
        .max(20);
    let duration = Duration::from_secs(secs);
    let artifacts = confab_tests::paths::artifacts_dir("bench/soak").unwrap();
    let provider = Provider::start(&artifacts, &[]).unwrap();
    let db = artifacts.join("proxy.db");
    let store = format!("--store=sqlite:{}", db.display());
    let env = [
        ("CONFAB_RATE_LIMIT", "0".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let proxy = Proxy::start(&provider.issuer, &artifacts, &store, &env).unwrap();
    let base = proxy.base.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();

    let mut tokens = Vec::new();
    for u in 0..USERS {
        tokens.push(
            provider
                .sign_in(&format!("user_soak{u}"))
                .await
                .unwrap()
                .access_token,
        );
    }

    // 200 streams.
    let mut seen: Vec<(usize, Arc<Mutex<Seen>>)> = Vec::new();
    for (u, token) in tokens.iter().enumerate() {
        for _ in 0..STREAMS_PER_USER {
            let record = Arc::new(Mutex::new(Seen::default()));
            let response = http
                .get(format!("{base}/api/events"))
                .bearer_auth(token)
                .timeout(Duration::from_secs(3600))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let sink = record.clone();
            tokio::spawn(async move {
                let mut events = response.bytes_stream().eventsource();
                while let Some(Ok(event)) = events.next().await {
                    let mut seen = sink.lock().unwrap();
                    match event.event.as_str() {
                        "change" => {
                            let notice: Value =
                                serde_json::from_str(&event.data).unwrap_or_default();
                            if let (Some(id), Some(v)) = (
                                notice["conversationId"].as_str(),
                                notice["version"].as_u64(),
                            ) {
                                let slot = seen.versions.entry(id.to_owned()).or_default();
                                *slot = (*slot).max(v);
                            }
                        }
                        "resync" => seen.resync = true,
                        _ => {}
                    }
                }
            });
            seen.push((u, record));
        }
    }

    // 50 writers.
    let started = Instant::now();
    let outage_at = duration / 2;
    let outage_over = Arc::new(Mutex::new(None::<Instant>));
    let counts = Arc::new(Counts::default());
    let mut writers = Vec::new();
    for (u, token) in tokens.iter().enumerate() {
        for w in 0..WRITERS_PER_USER {
            let (http, base, token, counts, outage_over) = (
                http.clone(),
                base.clone(),
                token.clone(),
                counts.clone(),
                outage_over.clone(),
            );
            writers.push(tokio::spawn(async move {
                let mut conversation: Option<String> = None;
                let mut i = 0u64;
                while started.elapsed() < duration {
                    i += 1;
                    let response = match &conversation {
                        Some(id) if !i.is_multiple_of(20) => {
                            http.post(format!("{base}/api/conversations/{id}/messages"))
                                .bearer_auth(&token)
                                .json(&json!({"role": "user", "content": format!("message {i} from writer {u}.{w}")}))
                                .send()
                                .await
                        }
                        _ => {
                            http.post(format!("{base}/api/conversations"))
                                .bearer_auth(&token)
                                .json(&json!({"title": format!("writer {u}.{w} #{i}")}))
                                .send()
                                .await
                        }
                    };
                    match response {
                        Ok(r) if r.status().is_success() => {
                            counts.ok.fetch_add(1, Ordering::Relaxed);
                            if outage_over.lock().unwrap().is_some_and(|at| Instant::now() > at) {
                                counts.after_outage.fetch_add(1, Ordering::Relaxed);
                            }
                            if conversation.is_none() || i.is_multiple_of(20) {
                                let body: Value = r.json().await.unwrap_or_default();
                                conversation = body["id"].as_str().map(str::to_owned);
                            }
                        }
                        Ok(r) if r.status() == 503 => {
                            counts.unavailable.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            eprintln!("unexpected {}: {:?}", r.status(), r.text().await);
                            counts.other_errors.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            eprintln!("request failed: {e}");
                            counts.other_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }));
        }
    }

    // Warm-up, then the outage in the middle, then the rest.
    let pid = proxy.service.pid();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let warm = rss_kib(pid);
    tokio::time::sleep(outage_at.saturating_sub(started.elapsed())).await;
    let ok_before = counts.ok.load(Ordering::Relaxed);
    let unavailable_before = counts.unavailable.load(Ordering::Relaxed);
    {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
            std::thread::sleep(OUTAGE);
            conn.execute_batch("COMMIT").unwrap();
        })
        .await
        .unwrap();
    }
    *outage_over.lock().unwrap() = Some(Instant::now() + Duration::from_secs(6));
    let unavailable = counts.unavailable.load(Ordering::Relaxed) - unavailable_before;
    for writer in writers {
        writer.await.unwrap();
    }
    let end = rss_kib(pid);

    // Reconcile every stream against its user's change feed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut finals: Vec<HashMap<String, u64>> = Vec::new();
    for token in &tokens {
        let mut versions = HashMap::new();
        let mut since = "0".to_owned();
        loop {
            let page: Value = http
                .get(format!("{base}/api/changes?since={since}&limit=500"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for item in page["items"].as_array().cloned().unwrap_or_default() {
                versions.insert(
                    item["id"].as_str().unwrap_or_default().to_owned(),
                    item["version"].as_u64().unwrap_or(0),
                );
            }
            since = page["cursor"].as_str().unwrap_or("0").to_owned();
            if page["hasMore"] != true {
                break;
            }
        }
        finals.push(versions);
    }
    let (mut lost, mut resynced) = (0usize, 0usize);
    for (u, record) in &seen {
        let seen = record.lock().unwrap();
        if seen.resync {
            resynced += 1;
            continue;
        }
        for (id, version) in &finals[*u] {
            if seen.versions.get(id) != Some(version) {
                lost += 1;
            }
        }
    }
    let conversations: usize = finals.iter().map(HashMap::len).sum();
    println!(
        "soak {secs} s: {} writes ok ({} during the first half), {} answered 503 during the {OUTAGE:?} store outage, {} other errors, {} ok after it; {} streams, {} told to resync, {lost} (stream, conversation) final versions missed of {}; proxy RSS {warm} KiB after warm-up, {end} KiB at the end",
        counts.ok.load(Ordering::Relaxed),
        ok_before,
        unavailable,
        counts.other_errors.load(Ordering::Relaxed),
        counts.after_outage.load(Ordering::Relaxed),
        seen.len(),
        resynced,
        conversations * STREAMS_PER_USER,
    );

    let mut report = Report::new("soak");
    let other = counts.other_errors.load(Ordering::Relaxed);
    let after = counts.after_outage.load(Ordering::Relaxed);
    report.budget(
        format!(
            "{secs} s, 200 event streams, 50 writers, a {OUTAGE:?} store outage: notices missed"
        ),
        format!(
            "{lost} of {} final versions ({} writes, {resynced} streams resynced)",
            conversations * STREAMS_PER_USER,
            counts.ok.load(Ordering::Relaxed)
        ),
        "none",
        lost == 0,
    );
    report.budget(
        "answers during and after the outage",
        format!("{unavailable} × 503 during it, {after} ok after it, {other} other errors"),
        "503 during it, ok after, nothing else",
        unavailable > 0 && after > 0 && other == 0,
    );
    report.budget(
        "proxy RSS after warm-up / at the end",
        format!(
            "{:.1} / {:.1} MB",
            warm as f64 / 1024.0,
            end as f64 / 1024.0
        ),
        "at most +50 %",
        end <= warm + warm / 2,
    );
    report.finish()
}
