//! The proxy as a real process: it binds, answers, and shuts down gracefully.

use std::process::Command;
use std::time::Duration;

use confab_tests::{Service, paths};
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
    let mut cmd = Command::new(paths::binary("confab-proxy")?);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--clerk-issuer", "http://127.0.0.1:9"])
        .args(["--clerk-oauth-client-ids", "confab-desktop"])
        .arg(format!(
            "--store=sqlite:{}",
            artifacts.join("confab.db").display()
        ));
    let mut proxy = Service::spawn(cmd, "proxy", &artifacts)?;
    let line = proxy.wait_for_line(Duration::from_secs(10), |l| l.contains("listening on"))?;
    let base = line
        .rsplit(' ')
        .next()
        .ok_or_else(|| anyhow::anyhow!("no address in {line:?}"))?
        .to_owned();

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

    proxy.signal(Signal::SIGTERM)?;
    let status = proxy.wait_exit(Duration::from_secs(10))?;
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
