//! The proxy as a real process: it binds, answers, and shuts down gracefully.

use std::process::Command;
use std::time::Duration;

use confab_tests::paths;
use confab_tests::proxy::Proxy;
use nix::sys::signal::Signal;

#[tokio::test]
async fn proxy_serves_healthz_and_stops_on_sigterm() -> anyhow::Result<()> {
    confab_tests::bounded(
        confab_tests::TEST_DEADLINE,
        proxy_serves_healthz_and_stops_on_sigterm_body(),
    )
    .await
}

async fn proxy_serves_healthz_and_stops_on_sigterm_body() -> anyhow::Result<()> {
    let artifacts = paths::artifacts_dir("proxy_process")?;
    // Nothing listens at the issuer: this test sends no tokens.
    let mut proxy = Proxy::sqlite("http://127.0.0.1:9", &artifacts)?;
    let base = proxy.base.clone();

    let health: serde_json::Value = reqwest::get(format!("{base}/healthz"))
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(health["status"], "ok");

    let missing = reqwest::get(format!("{base}/no-such-route")).await?;
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await?;
    assert_eq!(body["error"]["code"], "not_found");

    proxy.service.signal(Signal::SIGTERM)?;
    let status = proxy.service.wait_exit(Duration::from_secs(10))?;
    assert!(status.success(), "proxy exited with {status}");
    Ok(())
}

#[test]
fn proxy_refuses_a_bad_listen_address_naming_the_variable() -> anyhow::Result<()> {
    let output = Command::new(paths::binary("confab-proxy")?)
        .arg("serve")
        .env("CONFAB_LISTEN", "not-an-address")
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("CONFAB_LISTEN") || stderr.contains("--listen"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn proxy_refuses_to_start_without_an_issuer_naming_the_variable() -> anyhow::Result<()> {
    let output = Command::new(paths::binary("confab-proxy")?)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("CLERK_ISSUER")
        .env_remove("CLERK_PUBLISHABLE_KEY")
        .env_remove("NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY")
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CLERK_ISSUER"), "{stderr}");
    Ok(())
}

/// `confab-proxy seed`: the local stack's demo user gets sample conversations
/// once; a second run changes nothing; a bad user id is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_gives_a_new_user_samples_once() -> anyhow::Result<()> {
    let artifacts = confab_tests::paths::artifacts_dir("proxy_process/seed")?;
    let db = artifacts.join("seed.db");
    let store = format!("sqlite:{}", db.display());
    let run = |user: &str| -> anyhow::Result<std::process::Output> {
        Ok(
            std::process::Command::new(confab_tests::paths::binary("confab-proxy")?)
                .args(["seed", "--user", user, "--store", &store])
                .output()?,
        )
    };
    let first = run("user_demo")?;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&first.stdout).trim(),
        "seeded 3 sample conversations for user_demo"
    );
    let second = run("user_demo")?;
    assert!(String::from_utf8_lossy(&second.stdout).contains("nothing to do"));
    let bad = run("../../etc")?;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--user"));

    // What the user sees: three conversations, the welcome one pinned.
    let provider = confab_tests::oidc::Provider::start(&artifacts, &[])?;
    let proxy = confab_tests::proxy::Proxy::start(
        &provider.issuer,
        &artifacts,
        &format!("--store={store}"),
        &[],
    )?;
    let token = provider.sign_in("user_demo").await?.access_token;
    let page: serde_json::Value = reqwest::Client::new()
        .get(proxy.url("/api/conversations"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let items = page["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 3, "{page}");
    assert!(
        items
            .iter()
            .any(|c| c["title"] == "Welcome to Confab" && c["pinned"] == true),
        "{page}"
    );
    Ok(())
}
