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
    let artifacts = confab_tests::paths::artifacts_dir("proxy_process_seed")?;
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

/// Slow clients: connections that open and never finish their headers
/// (slowloris), more of them than the proxy takes at once, do not stop
/// normal requests; each is cut off at the header deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_cannot_stop_normal_requests() -> anyhow::Result<()> {
    confab_tests::bounded(confab_tests::TEST_DEADLINE, slowloris()).await
}

async fn slowloris() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let artifacts = paths::artifacts_dir("proxy_process_slowloris")?;
    let store = format!("--store=sqlite:{}", artifacts.join("proxy.db").display());
    let proxy = Proxy::start(
        "http://127.0.0.1:9",
        &artifacts,
        &store,
        &[
            ("CONFAB_HEADER_TIMEOUT_SECS", "1".into()),
            ("CONFAB_MAX_CONNECTIONS", "32".into()),
        ],
    )?;
    let address = proxy.base.trim_start_matches("http://").to_owned();

    // 64 connections (twice what the proxy takes at once), each sending part of a request head, then a byte
    // every 200 ms: never a whole head.
    let mut slow = Vec::new();
    for _ in 0..64 {
        let mut stream = tokio::net::TcpStream::connect(&address).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await?;
        slow.push(tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            loop {
                if stream.write_all(b"X").await.is_err() {
                    break;
                }
                let mut buf = [0u8; 256];
                match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await
                {
                    // Closed (or answered and closed): the proxy gave up on it.
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(_)) => {}
                    Err(_) => {}
                }
                if started.elapsed() > Duration::from_secs(20) {
                    return None;
                }
            }
            Some(started.elapsed())
        }));
    }

    // Meanwhile every normal request is answered, each within a few seconds.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    for _ in 0..10 {
        let started = tokio::time::Instant::now();
        let health = http.get(format!("{}/healthz", proxy.base)).send().await?;
        assert_eq!(health.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a normal request waited {:?}",
            started.elapsed()
        );
    }
    // And every slow connection was cut off, none kept past the deadline
    // by much (a waiting one gets its slot, then the same deadline).
    let mut cut = 0;
    for task in slow {
        if let Some(after) = task.await? {
            assert!(after < Duration::from_secs(15), "held for {after:?}");
            cut += 1;
        }
    }
    assert_eq!(cut, 64, "every slow connection was closed by the proxy");
    Ok(())
}
