//! What verifying a token costs a request, run with
//! `cargo bench -p confab-proxy --bench tokens`:
//! - a cold JWT (a new token each time: its RS256 signature verified), for
//!   the cost of a request whose token the proxy has not seen; budget: 200 µs;
//! - a cached JWT and a cached opaque token (Clerk's answer remembered): the
//!   verifier's own time, p50; budget: the opaque one within 20 µs of the JWT;
//! - an uncached opaque token: the verifier's time minus a bare call to the
//!   same Backend API stand-in (an axum route on loopback that answers as
//!   Clerk does), p50; budget: at most 1 ms added to the round trip.
//!
//! Exits non-zero when a budget is exceeded.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up should stop

use std::process::ExitCode;
use std::time::{Duration, Instant};

use axum::Json;
use axum::routing::post;
use confab_bench_report::Report;
use confab_proxy::auth::{AuthConfig, ClerkBackend, Secret, Verifier};
use serde_json::{Value, json};

const ISSUER: &str = "https://clerk.confab.bench";
const SIGNING_PEM: &str = include_str!("../tests/fixtures/signing.pem");
const SIGNING_PUB_PEM: &str = include_str!("../tests/fixtures/signing.pub.pem");
const ROUNDS: usize = 2_000;
const BUDGET_COLD_JWT: Duration = Duration::from_micros(200);
const BUDGET_CACHED_GAP: Duration = Duration::from_micros(20);
const BUDGET_UNCACHED_ADDED: Duration = Duration::from_millis(1);

fn jwt(sub: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("test-key-1".into());
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iss": ISSUER, "sub": sub, "client_id": "confab-desktop", "iat": now, "exp": now + 3600});
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(SIGNING_PEM.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// Clerk's verify route: every token is Ada's, live for an hour.
async fn describe(Json(body): Json<Value>) -> Json<Value> {
    let now = chrono::Utc::now().timestamp();
    Json(json!({
        "object": "clerk_idp_oauth_access_token",
        "id": format!("oat_{}", body["access_token"].as_str().unwrap_or_default().len()),
        "client_id": "confab-desktop",
        "subject": "user_bench",
        "scopes": ["openid", "profile", "email"],
        "revoked": false,
        "revocation_reason": null,
        "expired": false,
        "expiration": now + 3600,
        "created_at": now,
        "updated_at": now,
    }))
}

fn percentile(mut samples: Vec<Duration>, p: f64) -> Duration {
    samples.sort();
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx.min(samples.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/v1/oauth_applications/access_tokens/verify",
        post(describe),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut auth = AuthConfig::new(ISSUER);
    auth.allowed_client_ids = vec!["confab-desktop".into()];
    auth.static_key_pem = Some(SIGNING_PUB_PEM.into());
    auth.clerk_backend = Some(ClerkBackend {
        api: api.clone(),
        secret: Secret::new("sk_test_bench".into()),
    });
    let verifier = Verifier::new(auth).unwrap();

    // Cold: a token never seen, so its signature is checked.
    let fresh: Vec<String> = (0..ROUNDS).map(|i| jwt(&format!("user_{i}"))).collect();
    let mut cold_jwt = Vec::with_capacity(ROUNDS);
    for token in &fresh {
        let t = Instant::now();
        verifier.verify(token).await.unwrap();
        cold_jwt.push(t.elapsed());
    }

    // Cached: the same token again and again.
    let token = jwt("user_bench");
    verifier.verify(&token).await.unwrap();
    let mut cached_jwt = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        verifier.verify(&token).await.unwrap();
        cached_jwt.push(t.elapsed());
    }
    verifier.verify("oat_cached").await.unwrap();
    let mut cached_opaque = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        verifier.verify("oat_cached").await.unwrap();
        cached_opaque.push(t.elapsed());
    }

    // Uncached: a new token each time, against a bare call of the same route.
    let http = reqwest::Client::new();
    let url = format!("{api}/v1/oauth_applications/access_tokens/verify");
    let mut bare = Vec::with_capacity(ROUNDS);
    let mut uncached = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let t = Instant::now();
        let answer: Value = http
            .post(&url)
            .bearer_auth("sk_test_bench")
            .json(&json!({"access_token": format!("oat_bare_{i}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["subject"], "user_bench");
        bare.push(t.elapsed());
        let t = Instant::now();
        verifier.verify(&format!("oat_new_{i}")).await.unwrap();
        uncached.push(t.elapsed());
    }
    let calls = verifier.clerk_calls();

    let cold_jwt = percentile(cold_jwt, 0.5);
    let cached_jwt = percentile(cached_jwt, 0.5);
    let cached_opaque = percentile(cached_opaque, 0.5);
    let bare = percentile(bare, 0.5);
    let uncached = percentile(uncached, 0.5);
    let added = uncached.saturating_sub(bare);
    println!("token verification, p50 over {ROUNDS} rounds:");
    println!(
        "  cold JWT (RS256 verified)  {:>8.1} µs ({:.0} per second on one core)",
        micros(cold_jwt),
        1.0 / cold_jwt.as_secs_f64()
    );
    println!(
        "  cached JWT                 {:>8.1} µs",
        micros(cached_jwt)
    );
    println!(
        "  cached opaque token        {:>8.1} µs",
        micros(cached_opaque)
    );
    println!(
        "  Backend API round trip     {:>8.1} µs (bare call)",
        micros(bare)
    );
    println!(
        "  uncached opaque token      {:>8.1} µs (+{:.1} µs over the round trip)",
        micros(uncached),
        micros(added)
    );
    println!(
        "  calls to the Backend API   {calls} (expected {})",
        ROUNDS + 1
    );

    let mut report = Report::new("tokens");
    let us = |d: Duration| format!("{:.1} µs", micros(d));
    report.budget(
        "cold JWT (a new token: RS256 verified), p50",
        us(cold_jwt),
        us(BUDGET_COLD_JWT),
        cold_jwt <= BUDGET_COLD_JWT,
    );
    report.figure("cached JWT, p50", us(cached_jwt));
    report.budget(
        "cached opaque token, p50",
        us(cached_opaque),
        format!("cached JWT + {}", us(BUDGET_CACHED_GAP)),
        cached_opaque <= cached_jwt + BUDGET_CACHED_GAP,
    );
    report.budget(
        "uncached opaque token: added to the Backend API round trip, p50",
        format!("{} ({} round trip)", us(added), us(bare)),
        us(BUDGET_UNCACHED_ADDED),
        added <= BUDGET_UNCACHED_ADDED,
    );
    report.budget(
        format!("calls to the Backend API for {} new tokens", ROUNDS + 1),
        calls,
        ROUNDS + 1,
        calls == (ROUNDS + 1) as u64,
    );
    report.finish()
}
