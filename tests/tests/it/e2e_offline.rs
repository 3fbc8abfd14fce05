//! Offline and crashes in the real window: writes made with the proxy gone
//! survive a restart, still shown as pending, and reach the server exactly
//! once when it returns; an app killed in the middle of pushing loses and
//! duplicates nothing. The proxy runs on DynamoDB (moto).

use std::time::Duration;

use anyhow::Context;

use confab_tests::stack::{Stack, UI};
use fantoccini::Locator;

const SETTLE: Duration = Duration::from_secs(30);

async fn server_messages(stack: &Stack) -> anyhow::Result<(String, Vec<String>)> {
    let server = stack.server_conversations("user_demo").await?;
    anyhow::ensure!(
        server.len() == 1,
        "expected one conversation, got {}",
        server.len()
    );
    let c = &server[0];
    Ok((
        c.conversation.title.clone(),
        c.messages.iter().map(|m| m.content.clone()).collect(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_writes_survive_restarts_and_crashes() -> anyhow::Result<()> {
    confab_tests::bounded(confab_tests::TEST_DEADLINE, offline()).await
}

async fn offline() -> anyhow::Result<()> {
    let mut stack = Stack::on_moto("e2e_offline/offline")?;
    let app = stack.launch().await?;
    stack.sign_in(&app, "user_demo", "Ada Lovelace").await?;
    app.click("#new-conversation").await?;
    app.wait_text("#conversation-title", UI, |t| t == "New conversation")
        .await?;
    app.send("first").await?;
    app.wait_text("#sync-label", UI, |t| t == "Online").await?;

    // The network goes away; the user keeps writing.
    stack.stop_proxy()?;
    app.click("#conversation-title").await?;
    let rename = app.client.find(Locator::Css("#rename-input")).await?;
    // Select all (Ctrl+A), type over it, Enter.
    rename.send_keys("\u{E009}a\u{E009}Written offline").await?;
    rename.send_keys("\u{E007}").await?;
    app.wait_text("#conversation-title", UI, |t| t == "Written offline")
        .await?;
    app.send("second").await?;
    app.send("third").await?;
    app.wait_text("#sync-label", SETTLE, |t| t == "Offline")
        .await?;
    app.wait_text("#sync-detail", UI, |t| t.contains("pending"))
        .await?;
    app.quit().await?;

    // Restart while still offline: everything is there, still pending.
    let app = stack.launch().await?;
    app.wait_text("#conversation-list", UI, |t| t.contains("Written offline"))
        .await?;
    app.wait_text("#sync-detail", UI, |t| t.contains("3 pending"))
        .await?;
    app.click(".row[data-id]").await?;
    app.wait_text("#messages", UI, |t| {
        t.contains("first") && t.contains("third")
    })
    .await?;
    assert_eq!(
        app.client
            .find_all(Locator::Css(".message.pending"))
            .await?
            .len(),
        2
    );

    // The proxy returns: it syncs, each change exactly once.
    stack.restart_proxy(&[])?;
    // Nobody clicks Retry: the app comes back by itself.
    app.wait_text("#sync-label", confab_sync::RECOVERY, |t| t == "Online")
        .await?;
    app.wait_text("#sync-status", UI, |t| !t.contains("pending"))
        .await?;
    let (title, messages) = server_messages(&stack).await?;
    assert_eq!(title, "Written offline");
    assert_eq!(messages, ["first", "second", "third"]);

    // Crash in the middle of a push: the proxy comes back slowed down (a
    // strict rate limit), the app is killed while the outbox drains.
    stack.stop_proxy()?;
    let batch: Vec<String> = (1..=12).map(|n| format!("batch {n}")).collect();
    for text in &batch {
        app.send(text).await?;
    }
    app.wait_text("#sync-label", SETTLE, |t| t == "Offline")
        .await?;
    stack.restart_proxy(&[
        ("CONFAB_RATE_LIMIT", "4".into()),
        ("CONFAB_RATE_BURST", "4".into()),
    ])?;
    // Watched in the proxy's DynamoDB directly: polling the API would spend
    // the very rate limit that slows the push.
    let moto = stack.moto.as_ref().context("the stack runs on moto")?;
    let deadline = tokio::time::Instant::now() + confab_sync::RECOVERY;
    let pushed = loop {
        let count = moto.count_items("confab", "MSG#").await?;
        let pushed = count.saturating_sub(3);
        if pushed > 0 {
            break pushed;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "nothing was pushed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    app.kill()?;
    assert!(
        pushed < batch.len(),
        "the push finished before the crash ({pushed})"
    );

    stack.restart_proxy(&[])?;
    let app = stack.launch().await?;
    app.wait_text("#sync-label", SETTLE, |t| t == "Online")
        .await?;
    app.wait_text("#sync-status", SETTLE, |t| !t.contains("pending"))
        .await?;
    let (_, messages) = server_messages(&stack).await?;
    let mut expected = vec!["first".to_owned(), "second".into(), "third".into()];
    expected.extend(batch.iter().cloned());
    assert_eq!(messages, expected, "nothing lost, nothing twice");
    app.quit().await?;
    Ok(())
}

/// Both the provider and the proxy are down when the app starts: it shows
/// the cached conversations, who is signed in and "Offline", takes writes,
/// and when both return it syncs by itself, still signed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_down_at_launch_then_back() -> anyhow::Result<()> {
    confab_tests::bounded(confab_tests::TEST_DEADLINE, everything_down()).await
}

async fn everything_down() -> anyhow::Result<()> {
    let mut stack = Stack::start("e2e_offline/everything_down")?;
    let app = stack.launch().await?;
    stack.sign_in(&app, "user_demo", "Ada Lovelace").await?;
    app.click("#new-conversation").await?;
    app.wait_text("#conversation-title", UI, |t| t == "New conversation")
        .await?;
    app.send("before the outage").await?;
    app.wait_text("#sync-status", SETTLE, |t| !t.contains("pending"))
        .await?;
    app.quit().await?;

    stack.stop_proxy()?;
    stack.stop_provider();
    let app = stack.launch().await?;
    app.wait_text("#user-name", UI, |t| t == "Ada Lovelace")
        .await?;
    app.wait_text("#sync-label", SETTLE, |t| t == "Offline")
        .await?;
    app.click(".row[data-id]").await?;
    app.wait_text("#messages", UI, |t| t.contains("before the outage"))
        .await?;
    app.send("during the outage").await?;
    app.wait_text("#sync-detail", UI, |t| t.contains("1 pending"))
        .await?;

    stack.restart_provider()?;
    stack.restart_proxy(&[])?;
    // Nobody clicks Retry: the app comes back by itself, still signed in.
    app.wait_text("#sync-label", confab_sync::RECOVERY, |t| t == "Online")
        .await?;
    app.wait_text("#sync-status", SETTLE, |t| !t.contains("pending"))
        .await?;
    app.wait_text("#user-name", UI, |t| t == "Ada Lovelace")
        .await?;
    let (_, messages) = server_messages(&stack).await?;
    assert_eq!(messages, ["before the outage", "during the outage"]);
    app.quit().await?;
    Ok(())
}
