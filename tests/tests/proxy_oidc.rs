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
