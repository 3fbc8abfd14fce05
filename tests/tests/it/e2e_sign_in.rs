//! Sign-in as a user does it, in the real window: the app opens the system
//! browser (a stand-in registered as the desktop's default browser), the user
//! signs in at the real OpenID provider, the desktop hands the callback link
//! to the app's registered `x-scheme-handler` (`gio open`), and the secrets go
//! to gnome-keyring's Secret Service on the test desktop's bus.

use std::path::Path;

use confab_tests::session::Device;
use confab_tests::stack::{Stack, UI};
use confab_tests::{App, paths};

async fn signed_in_as(app: &App, name: &str) -> anyhow::Result<()> {
    app.wait_text("#user-name", UI, |t| t == name).await?;
    Ok(())
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str, skip: &[&Path]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if skip.iter().any(|s| path.starts_with(s)) {
            continue;
        }
        if path.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            hits.push(path.display().to_string());
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_through_the_browser_and_the_os_link_handler() -> anyhow::Result<()> {
    confab_tests::bounded(confab_tests::TEST_DEADLINE, full_sign_in()).await
}

async fn full_sign_in() -> anyhow::Result<()> {
    let stack = Stack::start("e2e_sign_in/full")?;
    let app = stack.launch().await?;
    app.wait_text("#sign-in-note", UI, |t| t.contains("your own browser"))
        .await?;
    if std::env::var_os("CONFAB_UPDATE_SCREENSHOT").is_some() {
        stack
            .desktop
            .screenshot(&paths::workspace_root().join("docs/screenshot.png"))?;
    }

    let authorize = stack.continue_in_browser(&app).await?;
    assert!(
        authorize.starts_with(&format!("{}/oauth/authorize?", stack.provider.issuer)),
        "{authorize}"
    );
    for part in [
        "code_challenge_method=S256",
        "state=",
        "nonce=",
        "offline_access",
    ] {
        assert!(authorize.contains(part), "{part} missing from {authorize}");
    }
    app.screenshot("waiting")?;

    // The user signs in in the browser; the provider redirects to the app's
    // scheme, and the desktop launches the registered handler, which hands
    // the link to the running app (single-instance) and exits.
    let callback = stack.provider.authorize(&authorize, "user_demo").await?;
    stack.desktop.open_url(&stack.home, &callback)?;
    signed_in_as(&app, "Ada Lovelace").await?;
    assert_eq!(app.text("#user-email").await?, "ada@example.com");
    let avatar = app
        .client
        .find(fantoccini::Locator::Css("img#user-avatar"))
        .await?
        .attr("src")
        .await?
        .unwrap_or_default();
    assert!(avatar.starts_with("data:image/"), "{avatar}");
    app.screenshot("signed-in")?;

    // The proxy accepted the app's token: POST /api/user created the profile.
    let token = stack.provider.sign_in("user_demo").await?.access_token;
    let profile: serde_json::Value = reqwest::Client::new()
        .get(stack.proxy.url("/api/user"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(profile["clerkId"], "user_demo");

    // The refresh token is in the keyring, and in no file of the user's home
    // (the keyring's own encrypted files aside); the code is in no log.
    let refresh = stack
        .keyring
        .lookup("refresh-token")?
        .ok_or_else(|| anyhow::anyhow!("no refresh token in the keyring"))?;
    let keyrings = stack.home.path().join("data").join("keyrings");
    assert_eq!(
        files_containing(stack.home.path(), &refresh, &[&keyrings]),
        Vec::<String>::new()
    );
    let code = url::Url::parse(&callback)?
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    assert!(code.len() > 10);
    assert_eq!(
        files_containing(stack.home.path(), &code, &[&keyrings]),
        Vec::<String>::new()
    );
    assert_eq!(
        files_containing(&stack.artifacts, &refresh, &[]),
        Vec::<String>::new()
    );
    app.quit().await?;

    // Restart: signed in at once, without the browser.
    let app = stack.launch().await?;
    signed_in_as(&app, "Ada Lovelace").await?;
    assert_eq!(
        stack.browser.opened().len(),
        1,
        "the browser was opened again"
    );

    // Sign out: back to the sign-in screen, the keyring entry gone.
    app.click("#sign-out").await?;
    app.wait_text("#continue-in-browser", UI, |t| t == "Continue in browser")
        .await?;
    assert_eq!(stack.keyring.lookup("refresh-token")?, None);
    app.quit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_by_the_callback_link_finishes_sign_in() -> anyhow::Result<()> {
    confab_tests::bounded(confab_tests::TEST_DEADLINE, cold_start()).await
}

async fn cold_start() -> anyhow::Result<()> {
    let stack = Stack::start("e2e_sign_in/cold_start")?;
    let app = stack.launch().await?;
    let authorize = stack.continue_in_browser(&app).await?;
    // The user closes the app while the browser is open.
    app.quit().await?;

    // The callback then starts the app, with the link as its only argument,
    // exactly as the registered handler's `Exec=confab %u` does.
    let callback = stack.provider.authorize(&authorize, "user_second").await?;
    let app = App::launch(&stack.desktop, &stack.home, stack.options(vec![callback])).await?;
    signed_in_as(&app, "Grace Hopper").await?;
    assert!(stack.keyring.lookup("refresh-token")?.is_some());
    assert_eq!(
        stack.keyring.lookup("sign-in-attempt")?,
        None,
        "the finished attempt is forgotten"
    );
    app.quit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_in_the_browser_or_the_app_is_explained() -> anyhow::Result<()> {
    confab_tests::bounded(confab_tests::TEST_DEADLINE, cancelled()).await
}

async fn cancelled() -> anyhow::Result<()> {
    let stack = Stack::start("e2e_sign_in/cancelled")?;
    let app = stack.launch().await?;

    // Cancel at the provider: the app says so and offers to try again.
    let authorize = stack.continue_in_browser(&app).await?;
    let callback = stack.provider.deny(&authorize).await?;
    stack.desktop.open_url(&stack.home, &callback)?;
    app.wait_text("#auth-notice", UI, |t| {
        t.contains("cancelled in the browser")
    })
    .await?;
    app.screenshot("denied")?;

    // Cancel in the app while waiting: back to the start, and the browser's
    // late callback cannot sign anyone in.
    let authorize = stack.continue_in_browser(&app).await?;
    app.click("#cancel-sign-in").await?;
    app.wait_text("#continue-in-browser", UI, |t| t == "Continue in browser")
        .await?;
    let late = stack.provider.authorize(&authorize, "user_demo").await?;
    stack.desktop.open_url(&stack.home, &late)?;
    app.wait_text("#auth-notice", UI, |t| t.contains("no longer valid"))
        .await?;
    assert_eq!(stack.keyring.lookup("refresh-token")?, None);
    app.quit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_browser_the_sign_in_link_can_be_pasted_anywhere() -> anyhow::Result<()> {
    confab_tests::bounded(confab_tests::TEST_DEADLINE, no_browser()).await
}

async fn no_browser() -> anyhow::Result<()> {
    let stack = Stack::start("e2e_sign_in/no_browser")?;
    stack.browser.uninstall(&stack.home)?;
    let mut options = stack.options(Vec::new());
    // Nothing to fall back on either.
    options
        .env
        .push(("BROWSER".into(), "/nonexistent/browser".into()));
    let app = App::launch(&stack.desktop, &stack.home, options).await?;
    app.click("#continue-in-browser").await?;
    let link = app
        .wait_text("#sign-in-link", UI, |t| t.starts_with("http"))
        .await?;
    let page = app.text("#waiting").await?;
    for raw in ["xdg-open", "ExitStatus", "Launcher"] {
        assert!(!page.contains(raw), "the launcher's words show: {page}");
    }
    assert!(page.contains("could not be opened"), "{page}");
    // The long link wraps inside the card: nothing overflows sideways.
    let overflow = app
        .client
        .execute(
            "const e = document.querySelector('#sign-in-link');
             const card = document.querySelector('.card');
             return [e.scrollWidth > e.clientWidth + 1, card.scrollWidth > card.clientWidth + 1];",
            vec![],
        )
        .await?;
    assert_eq!(
        overflow,
        serde_json::json!([false, false]),
        "the link overflows"
    );
    app.screenshot("no-browser")?;
    app.click("#copy-sign-in-link").await?;
    app.wait_text("#copy-sign-in-link", UI, |t| t == "Copied")
        .await?;

    // Pasted into any browser: the sign-in finishes in the app.
    let callback = stack.provider.authorize(&link, "user_demo").await?;
    stack.desktop.open_url(&stack.home, &callback)?;
    signed_in_as(&app, "Ada Lovelace").await?;
    assert!(
        stack.browser.opened().is_empty(),
        "no browser was ever opened"
    );
    app.quit().await?;
    Ok(())
}

/// Issue 16: a Clerk instance that issues opaque access tokens (`oat_…`, not
/// JWTs). The app treats tokens as opaque already: sign-in, a conversation
/// written in the window, and its sync to another device work unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_access_tokens_sign_in_and_sync() -> anyhow::Result<()> {
    confab_tests::bounded(confab_tests::TEST_DEADLINE, opaque_tokens()).await
}

async fn opaque_tokens() -> anyhow::Result<()> {
    let stack = Stack::with_opaque_tokens("e2e_sign_in/opaque")?;
    let app = stack.launch().await?;
    stack.sign_in(&app, "user_demo", "Ada Lovelace").await?;
    app.wait_text("#sync-label", UI, |t| t == "Online").await?;
    app.click("#new-conversation").await?;
    app.wait_text("#conversation-title", UI, |t| t == "New conversation")
        .await?;
    app.send("sent with an opaque token").await?;
    app.wait_text("#sync-status", UI, |t| !t.contains("pending"))
        .await?;
    assert!(
        stack.provider.verify_calls().await? > 0,
        "the proxy never asked the Backend API: were the tokens opaque?"
    );

    // Another device of Ada's, with its own opaque token, gets it.
    let phone = Device::start(&stack.provider, &stack.proxy.base, "user_demo").await?;
    phone
        .eventually(UI, "the app's message on the phone", |c| {
            let items = c
                .list(confab_wire::library::ListFilter::Active, 0, 10)
                .ok()?;
            let view = c.get(&items.first()?.conversation.id).ok()??;
            view.messages
                .iter()
                .any(|m| m.message.content == "sent with an opaque token")
                .then_some(())
        })
        .await?;
    app.quit().await?;
    Ok(())
}
