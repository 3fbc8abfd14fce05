//! The app opens a real window, renders its first screen, and IPC works.

use std::time::Duration;

use confab_tests::{App, AppHome, AppOptions, Desktop, paths};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_screen_renders_with_build_info_from_the_shell() -> anyhow::Result<()> {
    confab_tests::bounded(
        confab_tests::TEST_DEADLINE,
        first_screen_renders_with_build_info_from_the_shell_body(),
    )
    .await
}

async fn first_screen_renders_with_build_info_from_the_shell_body() -> anyhow::Result<()> {
    let artifacts = paths::artifacts_dir("e2e_smoke")?;
    let desktop = Desktop::start(&artifacts)?;
    let home = AppHome::new()?;
    let app = App::launch(&desktop, &home, AppOptions::default()).await?;

    // The first screen: the sign-in card, with its accessible heading and action.
    assert_eq!(app.text("h1#sign-in-title").await?, "Welcome to Confab");
    assert_eq!(
        app.text("button#continue-in-browser").await?,
        "Continue in browser"
    );
    assert_eq!(app.client.title().await?, "Confab");

    // Nothing configured (no provider, client id or proxy): the first-run
    // message says what to set, and sign-in cannot start.
    let setup = app.text("#setup-message").await?;
    for needle in [
        "not set up yet",
        "CONFAB_ISSUER",
        "CONFAB_PROXY_URL",
        "config.toml",
    ] {
        assert!(setup.contains(needle), "{needle} missing from {setup:?}");
    }
    let button = app
        .client
        .find(fantoccini::Locator::Css("button#continue-in-browser"))
        .await?;
    assert!(!button.is_enabled().await?);

    // Data that only the Rust side knows, fetched over IPC by the app_info command.
    assert_eq!(
        app.text("#app-version").await?,
        format!("Confab {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        app.text("#app-commit").await?,
        paths::git_commit(),
        "the app shows another commit than HEAD: rebuild it (`cargo build`)"
    );
    assert_eq!(
        app.text("#app-platform").await?,
        format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH)
    );
    assert!(app.text("#app-runtime").await?.starts_with("Tauri 2."));

    app.screenshot("first-screen")?;
    desktop.screenshot(&artifacts.join("desktop.png"))?;

    // The app wrote its log file where Tauri's log dir is.
    let log = home.app_data_dir().join("logs").join("confab.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !log.is_file() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(&log)
        .map_err(|e| anyhow::anyhow!("no log at {}: {e}", log.display()))?;
    assert!(
        text.contains("starting"),
        "log lacks the start line: {text}"
    );

    app.quit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webview_is_locked_down_by_csp_and_acl() -> anyhow::Result<()> {
    confab_tests::bounded(
        confab_tests::TEST_DEADLINE,
        webview_is_locked_down_by_csp_and_acl_body(),
    )
    .await
}

async fn webview_is_locked_down_by_csp_and_acl_body() -> anyhow::Result<()> {
    let artifacts = paths::artifacts_dir("e2e_lockdown")?;
    let desktop = Desktop::start(&artifacts)?;
    let home = AppHome::new()?;
    let app = App::launch(&desktop, &home, AppOptions::default()).await?;
    app.text("#app-version").await?;

    // A granted command answers.
    let granted = app
        .client
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               window.__TAURI__.core.invoke('app_info')
                 .then(v => done('ok:' + v.name), e => done('err:' + String(e)));"#,
            vec![],
        )
        .await?;
    assert_eq!(granted, "ok:Confab");

    // A plugin command the capability does not grant is refused: the webview
    // cannot open URLs or files by itself.
    let refused = app
        .client
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               window.__TAURI__.core.invoke('plugin:opener|open_url', { url: 'https://example.com' })
                 .then(() => done('allowed'), e => done('refused:' + String(e)));"#,
            vec![],
        )
        .await?;
    let refused = refused.as_str().unwrap_or_default().to_owned();
    assert!(refused.starts_with("refused:"), "{refused}");
    assert!(refused.contains("not allowed"), "{refused}");

    // The CSP forbids eval and remote scripts.
    let eval = app
        .client
        .execute(
            r#"try { window.eval('1 + 1'); return 'eval-allowed'; } catch (e) { return 'blocked'; }"#,
            vec![],
        )
        .await?;
    assert_eq!(eval, "blocked");

    let remote = app
        .client
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               document.addEventListener('securitypolicyviolation',
                 e => done('violation:' + e.violatedDirective), { once: true });
               const s = document.createElement('script');
               s.src = 'https://cdn.example.com/x.js';
               document.head.appendChild(s);
               setTimeout(() => done('no-violation'), 3000);"#,
            vec![],
        )
        .await?;
    assert!(
        remote
            .as_str()
            .unwrap_or_default()
            .starts_with("violation:script-src"),
        "{remote}"
    );

    app.quit().await?;
    Ok(())
}
