//! Verification through the issuer's JWKS over real HTTP: keys are fetched once,
//! refetched for an unknown `kid`, and no faster than the bounded rate however
//! many forged tokens arrive.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::{OTHER_PEM, claims, sign, sign_with};
use axum::routing::get;
use confab_proxy::auth::{AuthConfig, AuthError, Verifier};
use serde_json::json;

const JWKS: &str = include_str!("../fixtures/signing.jwks.json");

async fn serve_jwks() -> (String, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                ([("content-type", "application/json")], JWKS)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), fetches)
}

#[tokio::test]
async fn keys_come_from_the_jwks_and_unknown_kids_refetch_at_a_bounded_rate() {
    let (issuer, fetches) = serve_jwks().await;
    let mut config = AuthConfig::new(&issuer);
    config.allowed_client_ids = vec![crate::support::CLIENT_ID.into()];
    config.refetch_interval = std::time::Duration::from_millis(300);
    let verifier = Verifier::new(config).unwrap();
    let token = |sub: &str| {
        let mut c = claims(sub);
        c["iss"] = json!(issuer);
        sign(&c)
    };
    // Signed up front: signing is slow in a debug build, verifying these is not.
    let flood: Vec<String> = (0..50)
        .map(|i| {
            let mut c = claims(&format!("user_eve{i}"));
            c["iss"] = json!(issuer);
            sign_with(&c, OTHER_PEM, &format!("kid-{i}"))
        })
        .collect();

    assert_eq!(
        verifier.verify(&token("user_ada")).await.unwrap().as_str(),
        "user_ada"
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    // Another token under the same key: verified with the cached key.
    assert_eq!(
        verifier.verify(&token("user_bob")).await.unwrap().as_str(),
        "user_bob"
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    // A kid the JWKS does not have, right after a fetch: refused without
    // fetching again (the rate bound counts from the last fetch).
    let mut c = claims("user_eve");
    c["iss"] = json!(issuer);
    let forged = sign_with(&c, OTHER_PEM, "test-key-other");
    assert!(matches!(
        verifier.verify(&forged).await,
        Err(AuthError::UnknownKey(_))
    ));
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    // Later, an unknown kid (a rotated key, say) makes one refetch.
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    assert!(matches!(
        verifier.verify(&forged).await,
        Err(AuthError::UnknownKey(_))
    ));
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    // A flood of them does not turn into a flood of fetches.
    let started = std::time::Instant::now();
    for forged in &flood {
        assert!(verifier.verify(forged).await.is_err());
    }
    assert!(started.elapsed() < std::time::Duration::from_millis(300));
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    // A forged token under the real kid fails on the signature, not by fetching.
    let forged = sign_with(&c, OTHER_PEM, crate::support::KID);
    assert!(matches!(
        verifier.verify(&forged).await,
        Err(AuthError::Invalid(_))
    ));
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_unreachable_jwks_is_unavailable_not_unauthenticated() {
    let mut config = AuthConfig::new("http://127.0.0.1:9");
    config.allowed_client_ids = vec![crate::support::CLIENT_ID.into()];
    let verifier = Verifier::new(config).unwrap();
    let mut c = claims("user_ada");
    c["iss"] = json!("http://127.0.0.1:9");
    for _ in 0..2 {
        // The second attempt falls in the back-off window: still "retry".
        assert!(matches!(
            verifier.verify(&sign(&c)).await,
            Err(AuthError::KeysUnavailable(_))
        ));
    }
}
