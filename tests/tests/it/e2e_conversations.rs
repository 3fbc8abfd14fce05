//! Conversations in the real window, with another device of the same user
//! (a headless client on the same proxy) writing at the same time.

use std::time::{Duration, Instant};

use confab_cache::local::Patch;
use confab_tests::data::{conversation_id, synced_conversation};
use confab_tests::session::Device;
use confab_tests::stack::{Stack, UI};
use confab_wire::conversations::Role;
use fantoccini::Locator;

/// How long another device's change may take to show here: the suite's
/// general timeout (the 2-second promise has its own test, `real_time.rs`,
/// which runs alone).
const REAL_TIME: Duration = UI;

fn ulid() -> String {
    static IDS: std::sync::Mutex<Option<ulid::Generator>> = std::sync::Mutex::new(None);
    let mut ids = IDS.lock().unwrap_or_else(|p| p.into_inner());
    ids.get_or_insert_with(ulid::Generator::new)
        .generate()
        .unwrap_or_else(|_| ulid::Ulid::new())
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_in_real_time_and_untrusted_content_stays_inert() -> anyhow::Result<()> {
    confab_tests::bounded(confab_tests::TEST_DEADLINE, two_devices()).await
}

async fn two_devices() -> anyhow::Result<()> {
    let stack = Stack::on_moto("e2e_conversations/two_devices")?;
    let app = stack.launch().await?;
    stack.sign_in(&app, "user_demo", "Ada Lovelace").await?;
    app.wait_text("#empty-list", UI, |t| t.contains("No conversations yet"))
        .await?;
    app.wait_text("#sync-label", UI, |t| t == "Online").await?;

    // The other device writes; the open app shows it without any action.
    let phone = Device::start(&stack.provider, &stack.proxy.base, "user_demo").await?;
    let id = ulid();
    phone
        .cache()
        .create(&id, Some("Groceries"), confab_cache::now())?;
    phone.cache().append(
        &id,
        &ulid(),
        Role::User,
        "Milk, **eggs** and [bread](https://example.com/bread)",
        confab_cache::now(),
    )?;
    phone.engine.local_change(&id);
    app.wait_text(
        "#conversation-list",
        REAL_TIME + Duration::from_secs(1),
        |t| t.contains("Groceries"),
    )
    .await?;

    // Open it: Markdown renders, the link is a link the shell opens.
    app.click(&format!("button[data-id='{id}']")).await?;
    app.wait_text("#messages", UI, |t| t.contains("Milk, eggs and bread"))
        .await?;
    let strong = app
        .client
        .find(Locator::Css("#messages strong"))
        .await?
        .text()
        .await?;
    assert_eq!(strong, "eggs");
    let link = app.client.find(Locator::Css("#messages a.link")).await?;
    assert_eq!(
        link.attr("data-href").await?.as_deref(),
        Some("https://example.com/bread")
    );

    // The app writes; the other device has it within 2 s.
    // Typed and sent (Enter) in one WebDriver call.
    app.client
        .find(Locator::Css("#composer"))
        .await?
        .send_keys("Also coffee\u{E007}")
        .await?;
    phone
        .eventually(REAL_TIME, "the app's message on the phone", |c| {
            c.get(&id).ok().flatten().filter(|v| {
                v.messages
                    .iter()
                    .any(|m| m.message.content == "Also coffee")
            })
        })
        .await?;
    app.wait_text("#messages", UI, |t| t.contains("Also coffee"))
        .await?;
    assert_eq!(
        app.client
            .find(Locator::Css("#composer"))
            .await?
            .prop("value")
            .await?
            .as_deref(),
        Some("")
    );

    // Rename on the phone shows in the app's title and list.
    phone.cache().update(
        &id,
        Patch {
            title: Some("Shopping".into()),
            ..Patch::default()
        },
        confab_cache::now(),
    )?;
    phone.engine.local_change(&id);
    app.wait_text(
        "#conversation-title",
        REAL_TIME + Duration::from_secs(1),
        |t| t == "Shopping",
    )
    .await?;

    // Untrusted content from the other device renders inert.
    let hostile = [
        "<script>window.__pwned = 'script'</script>",
        "<img src=x onerror=\"window.__pwned = 'img'\">",
        "[click me](javascript:window.__pwned='link')",
        "<iframe src=\"https://example.com\"></iframe>",
        "![pixel](https://example.com/track.png)",
    ];
    for text in hostile {
        phone
            .cache()
            .append(&id, &ulid(), Role::Assistant, text, confab_cache::now())?;
    }
    phone.engine.local_change(&id);
    app.wait_text("#messages", UI, |t| {
        t.contains("click me") && t.contains("pixel")
    })
    .await?;
    // Give anything that could run a moment to run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for selector in [
        "#messages script",
        "#messages img",
        "#messages iframe",
        "#messages [onerror]",
    ] {
        assert!(
            app.client
                .find_all(Locator::Css(selector))
                .await?
                .is_empty(),
            "{selector} exists"
        );
    }
    let pwned = app
        .client
        .execute("return String(window.__pwned)", vec![])
        .await?;
    assert_eq!(pwned, "undefined");
    let inert = app
        .client
        .find(Locator::Css("#messages .link-inert"))
        .await?;
    inert.click().await?;
    let pwned = app
        .client
        .execute("return String(window.__pwned)", vec![])
        .await?;
    assert_eq!(pwned, "undefined", "the javascript: link ran");
    assert_eq!(
        stack.browser.opened().len(),
        1,
        "only the sign-in opened the browser"
    );
    app.screenshot("conversation")?;
    if std::env::var_os("CONFAB_UPDATE_SCREENSHOT").is_some() {
        stack
            .desktop
            .screenshot(&confab_tests::paths::workspace_root().join("docs/conversation.png"))?;
    }

    // Delete, then Undo: back on both devices with every message.
    app.click("#delete-conversation").await?;
    phone
        .eventually(
            REAL_TIME + Duration::from_secs(1),
            "deleted on the phone",
            |c| c.get(&id).ok().flatten().filter(|v| v.deleted),
        )
        .await?;
    app.click("#undo").await?;
    phone
        .eventually(
            REAL_TIME + Duration::from_secs(1),
            "restored on the phone",
            |c| {
                c.get(&id)
                    .ok()
                    .flatten()
                    .filter(|v| !v.deleted && v.messages.len() == 7)
            },
        )
        .await?;
    app.wait_text("#conversation-list", UI, |t| t.contains("Shopping"))
        .await?;
    app.quit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_renames_converge_on_both_devices() -> anyhow::Result<()> {
    confab_tests::bounded(confab_tests::TEST_DEADLINE, concurrent_renames()).await
}

async fn concurrent_renames() -> anyhow::Result<()> {
    let mut stack = Stack::on_moto("e2e_conversations/conflict")?;
    let app = stack.launch().await?;
    stack.sign_in(&app, "user_demo", "Ada Lovelace").await?;
    let mut phone = Device::start(&stack.provider, &stack.proxy.base, "user_demo").await?;
    let id = ulid();
    phone
        .cache()
        .create(&id, Some("Original"), confab_cache::now())?;
    phone.engine.local_change(&id);
    app.wait_text("#conversation-list", UI, |t| t.contains("Original"))
        .await?;
    app.click(&format!("button[data-id='{id}']")).await?;
    app.wait_text("#conversation-title", UI, |t| t == "Original")
        .await?;

    // Both rename while the proxy is away.
    phone.stop_sync();
    stack.stop_proxy()?;
    app.click("#conversation-title").await?;
    app.client
        .find(Locator::Css("#rename-input"))
        .await?
        .send_keys("\u{E009}a\u{E009}From the app\u{E007}")
        .await?;
    app.wait_text("#conversation-title", UI, |t| t == "From the app")
        .await?;
    phone.cache().update(
        &id,
        Patch {
            title: Some("From the phone".into()),
            ..Patch::default()
        },
        confab_cache::now(),
    )?;

    // Back online: both push, the server keeps one, both show it.
    stack.restart_proxy(&[])?;
    phone.start_sync();
    // Nobody clicks Retry: the app comes back by itself.
    let settle = confab_sync::RECOVERY;
    phone
        .eventually(settle, "phone pushed", |c| {
            (c.outbox_counts().ok()? == (0, 0)).then_some(())
        })
        .await?;
    app.wait_text("#sync-status", settle, |t| !t.contains("pending"))
        .await?;
    let server = stack.server_conversations("user_demo").await?;
    let winner = server
        .iter()
        .find(|c| c.conversation.id == id)
        .map(|c| c.conversation.title.clone())
        .unwrap_or_default();
    assert!(
        winner == "From the app" || winner == "From the phone",
        "{winner}"
    );
    app.wait_text("#conversation-title", settle, |t| t == winner)
        .await?;
    phone
        .eventually(settle, "phone converged", |c| {
            (c.item(&id).ok()??.conversation.title == winner).then_some(())
        })
        .await?;
    app.quit().await?;
    Ok(())
}

/// A long conversation is a window: the newest 200 messages, earlier ones on
/// "Show earlier"; a message from another device and one written here are
/// appended to it, and the list row follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_conversations_are_windowed_and_grow_at_the_end() -> anyhow::Result<()> {
    confab_tests::bounded(confab_tests::TEST_DEADLINE, windowed()).await
}

async fn windowed() -> anyhow::Result<()> {
    let stack = Stack::start("e2e_conversations/windowed")?;
    let app = stack.launch().await?;
    stack.sign_in(&app, "user_demo", "Ada Lovelace").await?;
    let token = stack.provider.sign_in("user_demo").await?.access_token;
    let http = reqwest::Client::new();
    let lines: Vec<serde_json::Value> = (0..260)
        .map(|m| serde_json::json!({"role": "user", "content": format!("Line {m}.")}))
        .collect();
    let created: serde_json::Value = http
        .post(stack.proxy.url("/api/conversations"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"title": "A long talk", "messages": lines}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    app.wait_text("#conversation-list", UI, |t| t.contains("A long talk"))
        .await?;
    app.click(&format!("#conversation-list .row[data-id='{id}']"))
        .await?;
    app.wait_text("#messages", UI, |t| t.contains("Line 259."))
        .await?;
    let rendered = || async {
        anyhow::Ok(
            app.client
                .find_all(Locator::Css("#messages .message"))
                .await?
                .len(),
        )
    };
    assert_eq!(rendered().await?, 200);
    app.wait_text("#show-earlier", UI, |t| t.contains("60 more"))
        .await?;

    http.post(
        stack
            .proxy
            .url(&format!("/api/conversations/{id}/messages")),
    )
    .bearer_auth(&token)
    .json(&serde_json::json!({"role": "user", "content": "From another device"}))
    .send()
    .await?
    .error_for_status()?;
    app.wait_text("#messages", UI, |t| t.contains("From another device"))
        .await?;
    app.send("And from this one").await?;
    app.wait_text("#sync-status", UI, |t| !t.contains("pending"))
        .await?;
    app.wait_text("#conversation-list", UI, |t| {
        t.contains("And from this one")
    })
    .await?;
    assert_eq!(rendered().await?, 202, "appended, nothing reloaded away");

    app.click("#show-earlier").await?;
    app.wait_text("#messages", UI, |t| t.contains("Line 0."))
        .await?;
    assert_eq!(rendered().await?, 262);
    assert!(
        app.client
            .find_all(Locator::Css("#show-earlier"))
            .await?
            .is_empty(),
        "nothing earlier is left"
    );
    app.quit().await?;
    Ok(())
}

/// More conversations than one list call answers (`MAX_LIST_PAGE`, 500):
/// scrolling down the list reaches the oldest one, which opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_list_scrolls_to_its_oldest_conversation() -> anyhow::Result<()> {
    confab_tests::bounded(confab_tests::TEST_DEADLINE, long_list()).await
}

async fn long_list() -> anyhow::Result<()> {
    const COUNT: usize = 1_200;
    let stack = Stack::start("e2e_conversations/long_list")?;
    let app = stack.launch().await?;
    stack.sign_in(&app, "user_demo", "Ada Lovelace").await?;
    app.quit().await?;
    // Held by the cache as if synced: faster than 1,200 requests.
    let cache =
        confab_cache::Cache::open(&stack.home.app_data_dir().join("cache").join("user_demo.db"))?;
    for c in 0..COUNT {
        cache.apply_detail(&synced_conversation(c, 0, format!("Listed {c}"))?)?;
    }
    let oldest = conversation_id(0);
    drop(cache);

    let app = stack.launch().await?;
    app.wait_text("#conversation-list", UI, |t| {
        t.contains(&format!("Listed {}", COUNT - 1))
    })
    .await?;
    // The list renders the rows in view: scroll to its end until the
    // oldest is in view (each scroll near the end reads another page, and
    // a page read moves the end), then click it.
    let row = format!("#conversation-list .row[data-id='{oldest}']");
    let deadline = Instant::now() + UI;
    loop {
        let seen = app
            .client
            .execute(
                &format!(
                    "const l = document.querySelector('.sidebar .list'); const r = document.querySelector(\"{row}\"); const a = r && r.getBoundingClientRect(), b = l.getBoundingClientRect(); if (r && a.top >= b.top && a.bottom <= b.bottom + 1) {{ r.click(); return {{shown: true}}; }} l.scrollTop = l.scrollHeight; l.dispatchEvent(new Event('scroll')); return {{shown: false, rendered: !!r, top: l.scrollTop, height: l.scrollHeight, rows: document.querySelectorAll('#conversation-list .row').length}};"
                ),
                vec![],
            )
            .await?;
        // Shown: rendered inside the list's view where it is scrolled to (a
        // row rendered off in a gap does not count).
        if seen["shown"].as_bool() == Some(true) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the oldest of {COUNT} conversations never showed in the list's view ({seen})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Clicked where it is (in the script above), as a pointer would.
    app.wait_text("#conversation-title", UI, |t| t == "Listed 0")
        .await?;
    app.screenshot("oldest-open")?;
    app.quit().await
}
