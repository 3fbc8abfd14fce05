//! Assistant replies' budgets, run with
//! `cargo bench -p confab-proxy --bench replies` (scripts/bench runs it;
//! build first: `cargo build`).
//!
//! The real proxy binary on its embedded store, the OpenID provider for
//! tokens, and the model stand-in (in this process) as the provider:
//! - time to first token added by the proxy: from `POST …/replies` to the
//!   first `reply` event on the user's event stream, against the same
//!   stand-in asked directly for its first token; budget p50 ≤ 5 ms;
//! - fan-out: from the stand-in sending a word (its clock in the word) to a
//!   second device's event stream receiving it; budget p50 ≤ 50 ms;
//! - the proxy's memory (RSS) idle and with 100 replies streaming at once
//!   (50 users, two each, one event stream per user).
//!
//! Exits non-zero when a budget is exceeded.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up should stop

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use confab_bench_report::Report;
use confab_model_standin::{Behaviour, ModelStandIn, Options};
use confab_tests::oidc::Provider;
use confab_tests::proxy::Proxy;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};

const TTFT_RUNS: usize = 40;
const FANOUT_REPLIES: usize = 6;
const FANOUT_WORDS: usize = 40;
const USERS: usize = 50;
const BUDGET_TTFT_P50: Duration = Duration::from_millis(5);
const BUDGET_FANOUT_P50: Duration = Duration::from_millis(50);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

type Events = std::pin::Pin<
    Box<
        dyn futures_util::Stream<
                Item = Result<
                    eventsource_stream::Event,
                    eventsource_stream::EventStreamError<reqwest::Error>,
                >,
            > + Send,
    >,
>;

/// A user's event stream, past its `ready` event.
async fn events(http: &reqwest::Client, proxy: &Proxy, token: &str) -> Events {
    let response = http
        .get(proxy.url("/api/events"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream: Events = Box::pin(response.bytes_stream().eventsource());
    while let Some(event) = stream.next().await {
        if event.unwrap().event == "ready" {
            break;
        }
    }
    stream
}

/// The next event named `name`, with its data.
async fn next_named(stream: &mut Events, name: &str) -> Value {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("an event within 30 s")
            .expect("the stream stays open")
            .unwrap();
        if event.event == name {
            return serde_json::from_str(&event.data).unwrap();
        }
    }
}

/// A conversation (titled, so no title is generated) with one question.
async fn question(http: &reqwest::Client, proxy: &Proxy, token: &str) -> (String, String) {
    let message = ulid::Ulid::new().to_string();
    let created: Value = http
        .post(proxy.url("/api/conversations"))
        .bearer_auth(token)
        .json(&json!({"title": "Bench", "messages": [{"id": message, "role": "user", "content": "How fast?"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (created["id"].as_str().unwrap().to_owned(), message)
}

async fn ask(http: &reqwest::Client, proxy: &Proxy, token: &str, c: &str, after: &str) {
    let response = http
        .post(proxy.url(&format!("/api/conversations/{c}/replies")))
        .bearer_auth(token)
        .json(&json!({"after": after}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
}

/// The stand-in's own time to first token, asked directly.
async fn direct_ttft(http: &reqwest::Client, standin: &ModelStandIn) -> Duration {
    let started = Instant::now();
    let response = http
        .post(format!("{}/v1/messages", standin.url))
        .header("x-api-key", &standin.key)
        .header("anthropic-version", confab_model_standin::API_VERSION)
        .json(&json!({"model": "m", "max_tokens": 100, "stream": true,
            "messages": [{"role": "user", "content": "How fast?"}]}))
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream().eventsource();
    while let Some(event) = stream.next().await {
        if event.unwrap().event == "content_block_delta" {
            break;
        }
    }
    started.elapsed()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> ExitCode {
    let artifacts = confab_tests::paths::artifacts_dir("bench/replies").unwrap();
    let provider = Provider::start(&artifacts, &[]).unwrap();
    let standin = ModelStandIn::start(Options {
        key: "bench-key".into(),
        word_delay: Duration::from_millis(1),
    })
    .await
    .unwrap();
    let store = format!("--store=sqlite:{}", artifacts.join("proxy.db").display());
    let env = [
        ("ANTHROPIC_API_KEY", standin.key.clone()),
        ("ANTHROPIC_BASE_URL", standin.url.clone()),
        ("CONFAB_MODELS", "bench-model".to_owned()),
        ("CONFAB_DAILY_TOKENS", "0".to_owned()),
        ("CONFAB_RATE_LIMIT", "0".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let proxy = Proxy::start(&provider.issuer, &artifacts, &store, &env).unwrap();
    let http = reqwest::Client::new();
    let token = provider.sign_in("user_bench").await.unwrap().access_token;
    let mut stream = events(&http, &proxy, &token).await;

    // Time to first token, through the proxy and directly, in pairs.
    let (mut through, mut direct, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..TTFT_RUNS + 5 {
        let (c, after) = question(&http, &proxy, &token).await;
        let started = Instant::now();
        ask(&http, &proxy, &token, &c, &after).await;
        next_named(&mut stream, "reply").await;
        let proxied = started.elapsed();
        next_named(&mut stream, "reply-done").await;
        let own = direct_ttft(&http, &standin).await;
        if run >= 5 {
            // The first runs warm connections and caches.
            through.push(proxied);
            direct.push(own);
            added.push(proxied.saturating_sub(own));
        }
    }
    for list in [&mut through, &mut direct, &mut added] {
        list.sort();
    }
    println!(
        "time to first token: through the proxy p50 {:.2} ms (p95 {:.2}), the stand-in's own p50 {:.2} ms; added by the proxy p50 {:.2} ms, p95 {:.2} ms",
        ms(percentile(&through, 0.5)),
        ms(percentile(&through, 0.95)),
        ms(percentile(&direct, 0.5)),
        ms(percentile(&added, 0.5)),
        ms(percentile(&added, 0.95))
    );

    // Fan-out: a second device's stream, the stand-in's clock in each word.
    let mut second = events(&http, &proxy, &token).await;
    let mut fanout = Vec::new();
    for _ in 0..FANOUT_REPLIES {
        let (c, after) = question(&http, &proxy, &token).await;
        standin.next(Behaviour::Clock {
            count: FANOUT_WORDS,
            delay_ms: 20,
        });
        ask(&http, &proxy, &token, &c, &after).await;
        loop {
            let event = tokio::time::timeout(Duration::from_secs(30), second.next())
                .await
                .expect("an event within 30 s")
                .expect("the stream stays open")
                .unwrap();
            let received = now_micros();
            match event.event.as_str() {
                "reply" => {
                    let data: Value = serde_json::from_str(&event.data).unwrap();
                    let sent: u128 = data["delta"]
                        .as_str()
                        .and_then(|d| d.trim().parse().ok())
                        .unwrap_or(received);
                    fanout.push(Duration::from_micros(
                        u64::try_from(received.saturating_sub(sent)).unwrap_or(0),
                    ));
                }
                "reply-done" => break,
                _ => {}
            }
        }
    }
    drop(stream);
    fanout.sort();
    println!(
        "fan-out to a second device: {} words, p50 {:.2} ms, p95 {:.2} ms",
        fanout.len(),
        ms(percentile(&fanout, 0.5)),
        ms(percentile(&fanout, 0.95))
    );

    // Memory with 100 replies streaming at once.
    let pid = proxy.service.pid();
    let mut users = Vec::new();
    for i in 0..USERS {
        let token = provider
            .sign_in(&format!("user_load{i}"))
            .await
            .unwrap()
            .access_token;
        let stream = events(&http, &proxy, &token).await;
        let questions = [
            question(&http, &proxy, &token).await,
            question(&http, &proxy, &token).await,
        ];
        users.push((token, stream, questions));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_kib(pid);
    for _ in 0..USERS * 2 {
        standin.next(Behaviour::Reply {
            text: Some("word ".repeat(150)),
            delay_ms: Some(40),
        });
    }
    for (token, _, questions) in &users {
        for (c, after) in questions {
            ask(&http, &proxy, token, c, after).await;
        }
    }
    let mut peak = idle;
    let mut streaming = 0;
    let sampling = Instant::now();
    while sampling.elapsed() < Duration::from_secs(3) {
        peak = peak.max(rss_kib(pid));
        streaming = streaming.max(standin.open_streams());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every reply ends (each user's stream sees two reply-done events).
    for (_, stream, _) in &mut users {
        next_named(stream, "reply-done").await;
        next_named(stream, "reply-done").await;
    }
    println!(
        "proxy memory: {} KiB idle with {USERS} event streams, peak {} KiB with {streaming} replies streaming ({:.1} KiB per reply)",
        idle,
        peak,
        (peak.saturating_sub(idle)) as f64 / streaming.max(1) as f64
    );

    let mut report = Report::new("replies");
    let ttft = percentile(&added, 0.5);
    report.budget(
        "time to first token added by the proxy (debug proxy, SQLite), p50 / p95",
        format!("{:.1} / {:.1} ms", ms(ttft), ms(percentile(&added, 0.95))),
        format!("p50 {} ms", BUDGET_TTFT_P50.as_millis()),
        ttft <= BUDGET_TTFT_P50,
    );
    let fan = percentile(&fanout, 0.5);
    report.budget(
        format!(
            "fan-out to a second device, {} words, p50 / p95",
            fanout.len()
        ),
        format!("{:.1} / {:.1} ms", ms(fan), ms(percentile(&fanout, 0.95))),
        format!("p50 {} ms", BUDGET_FANOUT_P50.as_millis()),
        fan <= BUDGET_FANOUT_P50,
    );
    report.budget(
        "proxy RSS: idle with 50 event streams / with every reply streaming at once",
        format!(
            "{:.1} / {:.1} MB, {streaming} replies streaming",
            idle as f64 / 1024.0,
            peak as f64 / 1024.0
        ),
        format!("{} replies at once", USERS * 2),
        streaming >= USERS * 2,
    );
    report.finish()
}
