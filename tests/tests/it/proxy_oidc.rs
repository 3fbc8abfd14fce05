//! The proxy against a real OpenID provider: tokens from a real sign-in (PKCE),
//! verified through the provider's JWKS; profiles from its userinfo endpoint.

use std::time::Duration;

use confab_tests::moto::Moto;
use confab_tests::oidc::Provider;
use confab_tests::paths;
use confab_tests::proxy::Proxy;
use serde_json::{Value, json};

fn aws_env(moto: &Moto) -> Vec<(&'static str, String)> {
    moto.aws_env()
}

fn setup_table(moto: &Moto) -> anyhow::Result<()> {
    moto.setup_table()
}

async fn call(
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)?
    };
    Ok((status, json))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_provider_tokens_profiles_and_isolation() -> anyhow::Result<()> {
    confab_tests::bounded(
        confab_tests::TEST_DEADLINE,
        real_provider_tokens_profiles_and_isolation_body(),
    )
    .await
}

async fn real_provider_tokens_profiles_and_isolation_body() -> anyhow::Result<()> {
    let artifacts = paths::artifacts_dir("proxy_oidc")?;
    let provider = Provider::start(&artifacts, &[])?;
    let proxy = Proxy::sqlite(&provider.issuer, &artifacts)?;
    let api = |path: &str| proxy.url(path);

    let ada = provider.sign_in("user_demo").await?;
    let grace = provider.sign_in("user_second").await?;
    assert!(
        ada.refresh_token.is_some(),
        "the provider issues refresh tokens"
    );

    // No profile until POST /api/user makes one from the provider's userinfo.
    let (status, _) = call(
        reqwest::Method::GET,
        api("/api/user"),
        &ada.access_token,
        None,
    )
    .await?;
    assert_eq!(status, 404);
    let (status, profile) = call(
        reqwest::Method::POST,
        api("/api/user"),
        &ada.access_token,
        // Whatever the body says is ignored: the provider is the source.
        Some(json!({"email": "mallory@example.com", "firstName": "Mallory"})),
    )
    .await?;
    assert_eq!(status, 201, "{profile}");
    assert_eq!(profile["id"], "user_demo");
    assert_eq!(profile["email"], "ada@example.com");
    assert_eq!(profile["firstName"], "Ada");
    assert_eq!(profile["lastName"], "Lovelace");
    let (status, again) = call(
        reqwest::Method::POST,
        api("/api/user"),
        &ada.access_token,
        None,
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(again["createdAt"], profile["createdAt"]);

    let (status, created) = call(
        reqwest::Method::POST,
        api("/api/conversations"),
        &ada.access_token,
        Some(json!({"title": "Engines", "messages": [{"role": "user", "content": "Note G"}]})),
    )
    .await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap_or_default().to_owned();

    // Another real user sees nothing of Ada's.
    let (status, list) = call(
        reqwest::Method::GET,
        api("/api/conversations"),
        &grace.access_token,
        None,
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(list["items"], json!([]));
    let (status, _) = call(
        reqwest::Method::GET,
        api(&format!("/api/conversations/{id}")),
        &grace.access_token,
        None,
    )
    .await?;
    assert_eq!(status, 404);

    // A real token with one byte of its signature changed is refused.
    let mut forged = ada.access_token.clone();
    let last = forged.pop().unwrap_or('A');
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (status, body) = call(
        reqwest::Method::GET,
        api("/api/conversations"),
        &forged,
        None,
    )
    .await?;
    assert_eq!(status, 401, "{body}");

    // The ID token is not an access token: no client_id claim, refused.
    if let Some(id_token) = &ada.id_token {
        let (status, _) = call(
            reqwest::Method::GET,
            api("/api/conversations"),
            id_token,
            None,
        )
        .await?;
        assert_eq!(status, 401);
    }

    let (status, list) = call(
        reqwest::Method::GET,
        api("/api/conversations"),
        &ada.access_token,
        None,
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(list["items"][0]["id"], id.as_str());
    assert_eq!(list["items"][0]["lastMessagePreview"], "Note G");
    Ok(())
}

/// The proxy on DynamoDB (moto) through the standard AWS configuration; the
/// store goes away mid-test: 503 with Retry-After, then recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_store_outage_answers_503_then_recovers() -> anyhow::Result<()> {
    confab_tests::bounded(
        confab_tests::TEST_DEADLINE,
        dynamodb_store_outage_answers_503_then_recovers_body(),
    )
    .await
}

async fn dynamodb_store_outage_answers_503_then_recovers_body() -> anyhow::Result<()> {
    let artifacts = paths::artifacts_dir("proxy_dynamodb_outage")?;
    let provider = Provider::start(&artifacts, &[])?;
    let mut moto = Moto::start(&artifacts)?;
    setup_table(&moto)?;
    setup_table(&moto)?; // idempotent
    let proxy = Proxy::start(
        &provider.issuer,
        &artifacts,
        "--store=dynamodb",
        &aws_env(&moto),
    )?;
    let api = |path: &str| proxy.url(path);
    let ada = provider.sign_in("user_demo").await?;

    let (status, created) = call(
        reqwest::Method::POST,
        api("/api/conversations"),
        &ada.access_token,
        Some(json!({"title": "On DynamoDB"})),
    )
    .await?;
    assert_eq!(status, 201, "{created}");
    let ready = reqwest::get(api("/readyz")).await?;
    assert_eq!(ready.status(), 200);

    moto.stop();
    let response = reqwest::Client::new()
        .get(api("/api/conversations"))
        .bearer_auth(&ada.access_token)
        .send()
        .await?;
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_some());
    let body: Value = response.json().await?;
    assert_eq!(body["error"]["code"], "unavailable");
    assert_eq!(reqwest::get(api("/readyz")).await?.status(), 503);
    // Liveness does not depend on the store.
    assert_eq!(reqwest::get(api("/healthz")).await?.status(), 200);

    moto.resume()?;
    setup_table(&moto)?;
    let (status, list) = call(
        reqwest::Method::GET,
        api("/api/conversations"),
        &ada.access_token,
        None,
    )
    .await?;
    assert_eq!(status, 200, "{list}");
    assert_eq!(reqwest::get(api("/readyz")).await?.status(), 200);
    Ok(())
}

/// SIGTERM with an event stream open: the stream ends and the proxy exits
/// cleanly instead of waiting forever for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_ends_event_streams() -> anyhow::Result<()> {
    confab_tests::bounded(
        confab_tests::TEST_DEADLINE,
        graceful_shutdown_ends_event_streams_body(),
    )
    .await
}

async fn graceful_shutdown_ends_event_streams_body() -> anyhow::Result<()> {
    use nix::sys::signal::Signal;
    let artifacts = paths::artifacts_dir("proxy_shutdown")?;
    let provider = Provider::start(&artifacts, &[])?;
    let mut proxy = Proxy::sqlite(&provider.issuer, &artifacts)?;
    let ada = provider.sign_in("user_demo").await?;
    let mut stream = reqwest::Client::new()
        .get(format!("{}/api/events", proxy.base))
        .bearer_auth(&ada.access_token)
        .send()
        .await?;
    assert_eq!(stream.status(), 200);
    let first = stream.chunk().await?.unwrap_or_default();
    assert!(String::from_utf8_lossy(&first).contains("event: ready"));

    proxy.service.signal(Signal::SIGTERM)?;
    let status = tokio::task::spawn_blocking(move || {
        let status = proxy.service.wait_exit(Duration::from_secs(10));
        (status, proxy)
    })
    .await?;
    let exit = status.0?;
    assert!(exit.success(), "proxy exited with {exit}");
    // The stream ended rather than hanging.
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(rest.is_ok(), "the event stream did not end");
    Ok(())
}

/// The per-conversation caps as an operator sets them: a write past one is
/// 413 naming the setting, and nothing of it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_caps_are_configurable_and_named() -> anyhow::Result<()> {
    confab_tests::bounded(
        confab_tests::TEST_DEADLINE,
        conversation_caps_are_configurable_and_named_body(),
    )
    .await
}

async fn conversation_caps_are_configurable_and_named_body() -> anyhow::Result<()> {
    let artifacts = paths::artifacts_dir("proxy_caps")?;
    let provider = Provider::start(&artifacts, &[])?;
    let store = format!("--store=sqlite:{}", artifacts.join("caps.db").display());
    let _ = std::fs::remove_file(artifacts.join("caps.db"));
    let proxy = Proxy::start(
        &provider.issuer,
        &artifacts,
        &store,
        &[
            ("CONFAB_MAX_CONVERSATION_MESSAGES", "2".into()),
            ("CONFAB_MAX_CONVERSATION_BYTES", "1000".into()),
        ],
    )?;
    let ada = provider.sign_in("user_demo").await?.access_token;
    let (status, created) = call(
        reqwest::Method::POST,
        proxy.url("/api/conversations"),
        &ada,
        Some(json!({"messages": [{"role": "user", "content": "one"}]})),
    )
    .await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let append = |content: String| {
        call(
            reqwest::Method::POST,
            proxy.url(&format!("/api/conversations/{id}/messages")),
            &ada,
            Some(json!({"role": "user", "content": content})),
        )
    };
    assert_eq!(append("two".into()).await?.0, 201);
    let (status, refused) = append("three".into()).await?;
    assert_eq!(status, 413, "{refused}");
    assert_eq!(refused["error"]["code"], "too_large");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("CONFAB_MAX_CONVERSATION_MESSAGES"),
        "{message}"
    );
    let (_, stored) = call(
        reqwest::Method::GET,
        proxy.url(&format!("/api/conversations/{id}")),
        &ada,
        None,
    )
    .await?;
    assert_eq!(stored["messageCount"], 2);

    // A cap of zero is no cap at all: refused at start, naming the variable.
    let refused = Proxy::start(
        &provider.issuer,
        &artifacts,
        &store,
        &[("CONFAB_MAX_CONVERSATION_BYTES", "0".into())],
    );
    let why = refused.err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(
        std::fs::read_to_string(artifacts.join("proxy.log"))?
            .contains("CONFAB_MAX_CONVERSATION_BYTES")
            || why.contains("CONFAB_MAX_CONVERSATION_BYTES"),
        "{why}"
    );
    Ok(())
}

/// Issue 16: a Clerk OAuth application without JWT access tokens. Its opaque
/// tokens are verified through Clerk's Backend API (the provider's stand-in),
/// on every route, with one call for many concurrent requests, revocation
/// within the cache window, and 503 (never 401) while Clerk cannot answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tokens_are_verified_through_clerks_backend_api() -> anyhow::Result<()> {
    confab_tests::bounded(
        confab_tests::TEST_DEADLINE,
        opaque_tokens_are_verified_through_clerks_backend_api_body(),
    )
    .await
}

async fn opaque_tokens_are_verified_through_clerks_backend_api_body() -> anyhow::Result<()> {
    let artifacts = paths::artifacts_dir("proxy_opaque")?;
    let provider = Provider::opaque(&artifacts, &[])?;
    let store = format!("--store=sqlite:{}", artifacts.join("opaque.db").display());
    let _ = std::fs::remove_file(artifacts.join("opaque.db"));
    let mut env = provider.clerk_backend_env();
    // 60 s by default; short here so that the revocation below shows in seconds.
    env.push(("CLERK_TOKEN_CACHE_SECS", "2".into()));
    let proxy = Proxy::start(&provider.issuer, &artifacts, &store, &env)?;
    let ada = provider.sign_in("user_demo").await?.access_token;
    assert_eq!(ada.split('.').count(), 1, "not an opaque token: {ada}");

    // Every route that takes a token takes this one.
    let api = |path: &str| proxy.url(path);
    let (status, profile) = call(reqwest::Method::POST, api("/api/user"), &ada, None).await?;
    assert!(status == 200 || status == 201, "{status} {profile}");
    // From the Backend API's user record (the secret key's other use).
    assert_eq!(profile["email"], "ada@example.com");
    assert_eq!(profile["id"], "user_demo");
    let (status, _) = call(reqwest::Method::GET, api("/api/user"), &ada, None).await?;
    assert_eq!(status, 200);
    let (status, created) = call(
        reqwest::Method::POST,
        api("/api/conversations"),
        &ada,
        Some(json!({"title": "Opaque", "messages": [{"role": "user", "content": "hello"}]})),
    )
    .await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let conversation = format!("/api/conversations/{id}");
    for (method, path, body, expected) in [
        (
            reqwest::Method::GET,
            "/api/conversations".to_owned(),
            None,
            200,
        ),
        (reqwest::Method::GET, conversation.clone(), None, 200),
        (
            reqwest::Method::POST,
            format!("{conversation}/messages"),
            Some(json!({"role": "user", "content": "again"})),
            201,
        ),
        (
            reqwest::Method::GET,
            format!("{conversation}/messages"),
            None,
            200,
        ),
        (reqwest::Method::GET, "/api/changes".to_owned(), None, 200),
        (reqwest::Method::GET, "/api/assistant".to_owned(), None, 200),
        (reqwest::Method::DELETE, conversation.clone(), None, 204),
        (
            reqwest::Method::POST,
            format!("{conversation}/restore"),
            None,
            200,
        ),
    ] {
        let (status, answer) = call(method.clone(), api(&path), &ada, body).await?;
        assert_eq!(status, expected, "{method} {path}: {answer}");
    }
    let mut events = reqwest::Client::new()
        .get(api("/api/events"))
        .bearer_auth(&ada)
        .send()
        .await?;
    assert_eq!(events.status(), 200);
    let first = events.chunk().await?.unwrap_or_default();
    assert!(String::from_utf8_lossy(&first).contains("event: ready"));
    drop(events);

    // 100 concurrent requests with one new token: one call to Clerk.
    let grace = provider.sign_in("user_second").await?.access_token;
    let before = provider.verify_calls().await?;
    let http = reqwest::Client::new();
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let request = http.get(api("/api/conversations")).bearer_auth(&grace);
        requests.spawn(async move { request.send().await.map(|r| r.status()) });
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status??, 200);
    }
    assert_eq!(provider.verify_calls().await? - before, 1);

    // Revoked at the provider: accepted from the cache, refused once it lapses.
    provider.revoke(&grace).await?;
    let revoked_at = std::time::Instant::now();
    let (status, _) = call(reqwest::Method::GET, api("/api/user"), &grace, None).await?;
    assert_ne!(status, 401, "refused before the cache lapsed: no cache?");
    loop {
        let (status, _) = call(reqwest::Method::GET, api("/api/user"), &grace, None).await?;
        if status == 401 {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "a revoked token still accepted after {:?}",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Clerk failing: 503 with Retry-After, never 401; then the same token works.
    let carol = provider.sign_in("user_carol").await?.access_token;
    provider.fail_verification(Some(503), None).await?;
    let response = http
        .get(api("/api/conversations"))
        .bearer_auth(&carol)
        .send()
        .await?;
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_some());
    // Past the pause after a failure, a 429 passes Clerk's hint on.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    provider.fail_verification(Some(429), Some(3)).await?;
    let response = http
        .get(api("/api/conversations"))
        .bearer_auth(&carol)
        .send()
        .await?;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("3")
    );
    provider.fail_verification(None, None).await?;
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let (status, answer) = call(
        reqwest::Method::GET,
        api("/api/conversations"),
        &carol,
        None,
    )
    .await?;
    assert_eq!(status, 200, "{answer}");

    // The secret key never reaches the log.
    let log = std::fs::read_to_string(proxy.service.log_path())?;
    assert!(!log.contains(confab_tests::oidc::SECRET_KEY));
    assert!(!log.contains(&ada), "a token in the log");
    Ok(())
}

/// Opaque tokens refused: none expired, of another client, or without the
/// secret key (a 401 naming the setting); an unreachable Backend API is 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tokens_refused_and_unverifiable() -> anyhow::Result<()> {
    confab_tests::bounded(
        confab_tests::TEST_DEADLINE,
        opaque_tokens_refused_and_unverifiable_body(),
    )
    .await
}

async fn opaque_tokens_refused_and_unverifiable_body() -> anyhow::Result<()> {
    let artifacts = paths::artifacts_dir("proxy_opaque_refused")?;
    let provider = Provider::opaque(&artifacts, &[("OIDC_ACCESS_TTL", "3")])?;
    let start = |name: &str, env: Vec<(&'static str, String)>| -> anyhow::Result<Proxy> {
        let dir = paths::artifacts_dir(&format!("proxy_opaque_refused_{name}"))?;
        let store = format!("--store=sqlite:{}", dir.join("proxy.db").display());
        Proxy::start(&provider.issuer, &dir, &store, &env)
    };
    let ada = provider.sign_in("user_demo").await?.access_token;
    let list = |proxy: &Proxy| {
        call(
            reqwest::Method::GET,
            proxy.url("/api/conversations"),
            &ada,
            None,
        )
    };

    let no_key = start("no_key", Vec::new())?;
    let (status, answer) = list(&no_key).await?;
    assert_eq!(status, 401);
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("CLERK_SECRET_KEY"), "{message}");

    let mut env = provider.clerk_backend_env();
    env.push(("CLERK_OAUTH_CLIENT_IDS", "someone-else".into()));
    let other_client = start("other_client", env)?;
    assert_eq!(list(&other_client).await?.0, 401);

    let unreachable = start(
        "unreachable",
        vec![
            ("CLERK_SECRET_KEY", confab_tests::oidc::SECRET_KEY.into()),
            ("CLERK_API_URL", "http://127.0.0.1:9".into()),
        ],
    )?;
    let response = reqwest::Client::new()
        .get(unreachable.url("/api/conversations"))
        .bearer_auth(&ada)
        .send()
        .await?;
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_some());

    // Accepted while it lives (3 s), refused once expired.
    let proxy = start("expiry", provider.clerk_backend_env())?;
    let fresh = provider.sign_in("user_demo").await?.access_token;
    let url = proxy.url("/api/conversations");
    let (status, _) = call(reqwest::Method::GET, url.clone(), &fresh, None).await?;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, _) = call(reqwest::Method::GET, url, &fresh, None).await?;
    assert_eq!(status, 401);
    Ok(())
}
