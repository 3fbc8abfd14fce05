//! Assistant replies in the real window, with the model stand-in behind the
//! proxy and a second (headless) device of the same user: a reply grows in
//! the window, Stop keeps its text on both, a killed app finds the reply
//! finished, an offline question is answered once, an outage shows its
//! reason and Retry, and hostile model output stays inert.

use std::time::Duration;

use confab_tests::App;
use confab_tests::model::{Behaviour, STANDIN_NAME};
use confab_tests::session::Device;
use confab_tests::stack::{Stack, UI};
use confab_wire::assistant::ReplyStatus;
use fantoccini::Locator;
use serde_json::Value;

/// The last reply in the window: (status, text, author).
async fn last_reply(app: &App) -> Option<(String, String, String)> {
    let value = app
        .client
        .execute(
            "const rows = document.querySelectorAll('#messages article.message.assistant');
             const r = rows[rows.length - 1];
             return r ? [r.dataset.status || '', r.querySelector('.message-body').textContent,
                         r.querySelector('.author').textContent] : null;",
            vec![],
        )
        .await
        .ok()?;
    let list = value.as_array()?;
    let text = |i: usize| {
        list.get(i)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Some((text(0), text(1), text(2)))
}

/// Waits until the last reply satisfies `want`.
async fn wait_reply(
    app: &App,
    limit: Duration,
    what: &str,
    want: impl Fn(&str, &str) -> bool,
) -> anyhow::Result<(String, String, String)> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = None;
    loop {
        if let Some(reply) = last_reply(app).await {
            if want(&reply.0, &reply.1) {
                return Ok(reply);
            }
            last = Some(reply);
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("{what}: not within {limit:?} (last: {last:?})");
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

/// The phone's copy of the reply whose text is `text`-like: (status, text).
fn phone_reply(phone: &Device, conversation: &str, index: usize) -> Option<(ReplyStatus, String)> {
    let view = phone.cache().get(conversation).ok().flatten()?;
    let m = view
        .messages
        .iter()
        .filter(|m| m.message.reply.is_some())
        .nth(index)?;
    Some((m.message.reply.as_ref()?.status, m.message.content.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_stream_stop_survive_and_fail_plainly_in_the_window() -> anyhow::Result<()> {
    confab_tests::bounded(Duration::from_secs(240), replies()).await
}

async fn replies() -> anyhow::Result<()> {
    let mut stack = Stack::with_assistant("e2e_replies/window", 40)?;
    let app = stack.launch().await?;
    stack.sign_in(&app, "user_demo", "Ada Lovelace").await?;
    app.wait_text("#sync-label", UI, |t| t == "Online").await?;
    let phone = Device::start(&stack.provider, &stack.proxy.base, "user_demo").await?;

    // Ctrl+N puts the keyboard in the new conversation's composer: what is
    // typed next is the question, and Enter asks.
    app.client
        .find(Locator::Css("body"))
        .await?
        .send_keys("\u{E009}n\u{E000}")
        .await?;
    app.wait_text("#conversation-title", UI, |t| t == "New conversation")
        .await?;
    let focused = app
        .client
        .execute(
            "return document.activeElement && document.activeElement.id;",
            vec![],
        )
        .await?;
    assert_eq!(
        focused,
        Value::String("composer".into()),
        "Ctrl+N focuses the composer"
    );
    app.client
        .active_element()
        .await?
        .send_keys("Can you add a section on hiring?\u{E007}")
        .await?;

    // The reply grows in the window, then ends; the title follows.
    let (status, early, author) = wait_reply(&app, UI, "a growing reply", |s, t| {
        s == "streaming" && t.len() > 20
    })
    .await?;
    assert_eq!(status, "streaming");
    assert_eq!(author, STANDIN_NAME, "the stand-in is named plainly");
    app.screenshot("streaming")?;
    // (Rendered Markdown: an emphasis is only one once its closing mark came.)
    wait_reply(&app, UI, "more text", |_, t| t.len() > early.len()).await?;
    let (_, done, _) = wait_reply(&app, UI, "the finished reply", |s, _| s == "complete").await?;
    assert!(done.contains("Can you add a section on hiring?"), "{done}");
    app.wait_text("#conversation-title", UI, |t| t == "Can you add a section")
        .await?;
    let server = stack.server_conversations("user_demo").await?;
    let conversation = server[0].conversation.id.clone();
    let stored = server[0].messages[1].content.clone();
    let (status, text) = phone
        .eventually(UI, "the reply on the phone", |_| {
            phone_reply(&phone, &conversation, 0).filter(|(s, _)| *s == ReplyStatus::Complete)
        })
        .await?;
    assert_eq!((status, text), (ReplyStatus::Complete, stored));
    let model = stack
        .model
        .take()
        .ok_or_else(|| anyhow::anyhow!("no model"))?;

    // Stop keeps the text so far, in the window and on the phone.
    model
        .next(&Behaviour::Reply {
            text: Some("word ".repeat(400)),
            delay_ms: Some(30),
        })
        .await?;
    app.send("Tell me more").await?;
    wait_reply(&app, UI, "the long reply", |s, t| {
        s == "streaming" && t.len() > 30
    })
    .await?;
    let stops = app
        .client
        .find_all(Locator::Css("#messages .stop-reply"))
        .await?;
    stops
        .last()
        .ok_or_else(|| anyhow::anyhow!("no Stop"))?
        .click()
        .await?;
    let (_, kept, _) = wait_reply(&app, UI, "the stopped reply", |s, _| s == "stopped").await?;
    assert!(kept.len() > 30 && kept.len() < 2000, "{}", kept.len());
    phone
        .eventually(UI, "the stop on the phone", |_| {
            phone_reply(&phone, &conversation, 1)
                .filter(|(s, t)| *s == ReplyStatus::Stopped && t.trim_end() == kept.trim_end())
        })
        .await?;

    // Hostile model output stays inert: no script runs, no javascript: link.
    model
        .next(&Behaviour::Reply {
            text: Some(
                "<script>window.__pwned=1</script> <img src=x onerror=\"window.__pwned=3\">\n\nSee [click me](javascript:window.__pwned=2)"
                    .into(),
            ),
            delay_ms: Some(5),
        })
        .await?;
    app.send("Say something hostile").await?;
    wait_reply(&app, UI, "the hostile reply", |s, t| {
        s == "complete" && t.contains("click me")
    })
    .await?;
    let inert = app
        .client
        .execute(
            "return [typeof window.__pwned, document.querySelectorAll('#messages script, #messages img').length,
                     document.querySelectorAll('#messages .link-inert').length];",
            vec![],
        )
        .await?;
    assert_eq!(inert, serde_json::json!(["undefined", 0, 1]), "{inert}");

    // A hostile 20 KB of nested quotes and lists renders (flattened past a
    // few levels) and the window stays usable.
    // The quotes as one word (`>>>…`), so the stand-in streams them in one
    // piece; the lists need their spaces.
    let deep = format!(
        "{} deep quote\n\n{}deep list",
        ">".repeat(19_000),
        "- ".repeat(500)
    );
    model
        .next(&Behaviour::Reply {
            text: Some(deep),
            delay_ms: Some(0),
        })
        .await?;
    app.send("Nest deeply").await?;
    wait_reply(&app, UI, "the deep reply", |s, t| {
        s == "complete" && t.contains("deep quote") && t.contains("deep list")
    })
    .await?;
    let depth = app
        .client
        .execute(
            "const rows = document.querySelectorAll('#messages article.message.assistant');
             const body = rows[rows.length - 1].querySelector('.message-body');
             let max = 0;
             for (const el of body.querySelectorAll('*')) {
                 let d = 0;
                 for (let p = el; p && p !== body; p = p.parentElement) d++;
                 if (d > max) max = d;
             }
             return max;",
            vec![],
        )
        .await?;
    assert!(
        depth.as_u64().is_some_and(|d| d <= 20),
        "nesting depth {depth}"
    );
    app.send("Still responsive").await?;

    // A provider outage shows its reason and Retry; Retry answers.
    for _ in 0..5 {
        model
            .next(&Behaviour::Status {
                status: 429,
                retry_after: Some(0),
            })
            .await?;
    }
    app.send("During an outage").await?;
    wait_reply(&app, UI, "the failed reply", |s, _| s == "failed").await?;
    let reason = app
        .wait_text(
            "#messages article.message.assistant:last-of-type .reply-error",
            UI,
            |t| !t.is_empty(),
        )
        .await?;
    assert!(reason.contains("overloaded"), "{reason}");
    app.click("#messages article.message.assistant:last-of-type .retry-reply")
        .await?;
    wait_reply(&app, UI, "the retried reply", |s, t| {
        s == "complete" && t.contains("During an outage")
    })
    .await?;

    // Per conversation: instructions reach the model; turned off, Enter
    // only sends.
    app.click("#assistant-settings").await?;
    app.client
        .find(Locator::Css("#assistant-instructions"))
        .await?
        .send_keys("Answer in French.")
        .await?;
    app.screenshot("assistant-settings")?;
    app.click("#assistant-save").await?;
    app.send("Bonjour").await?;
    wait_reply(&app, UI, "the reply with instructions", |s, t| {
        s == "complete" && t.contains("Bonjour")
    })
    .await?;
    let instructed = model
        .requests()
        .await?
        .into_iter()
        .any(|r| r["system"] == "Answer in French." && r.to_string().contains("Bonjour"));
    assert!(instructed, "the instructions are the system prompt");
    app.click("#assistant-settings").await?;
    app.click("#assistant-on").await?;
    app.click("#assistant-save").await?;
    app.send("Just a note").await?;
    let deadline = tokio::time::Instant::now() + UI;
    loop {
        let server = stack.server_conversations("user_demo").await?;
        if server[0]
            .messages
            .last()
            .is_some_and(|m| m.content == "Just a note")
        {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the note never synced"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Given time to (wrongly) ask, nothing asked.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let server = stack.server_conversations("user_demo").await?;
    assert_eq!(
        server[0].messages.last().map(|m| m.content.as_str()),
        Some("Just a note")
    );
    assert!(
        !model
            .requests()
            .await?
            .iter()
            .any(|r| r.to_string().contains("Just a note"))
    );
    app.click("#assistant-settings").await?;
    app.click("#assistant-on").await?;
    app.click("#assistant-save").await?;

    // The app is killed mid-reply: the reply finishes on the server and
    // shows at the next start.
    model
        .next(&Behaviour::Reply {
            text: Some("steady ".repeat(120)),
            delay_ms: Some(30),
        })
        .await?;
    app.send("Keep going after I quit").await?;
    wait_reply(&app, UI, "the reply before the kill", |s, t| {
        s == "streaming" && !t.is_empty()
    })
    .await?;
    app.kill()?;
    let finished = "steady ".repeat(120);
    let deadline = tokio::time::Instant::now() + UI;
    loop {
        let server = stack.server_conversations("user_demo").await?;
        let last = server[0].messages.last().cloned();
        if last.as_ref().is_some_and(|m| {
            m.reply
                .as_ref()
                .is_some_and(|r| r.status == ReplyStatus::Complete)
                && m.content == finished
        }) {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the server never finished the reply"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let app = stack.launch().await?;
    app.click(&format!("button[data-id='{conversation}']"))
        .await?;
    wait_reply(&app, UI, "the finished reply after a restart", |s, t| {
        s == "complete" && t == finished.trim_end()
    })
    .await?;

    // Offline, a question waits, says so, and is answered once back online.
    stack.stop_proxy()?;
    app.send("Written offline").await?;
    app.wait_text("#messages", UI, |t| {
        t.contains("Will ask the assistant when back online")
    })
    .await?;
    stack.restart_proxy(&[])?;
    // The user asks to sync now (the app would by itself, within its backoff).
    app.click("#sync-retry").await?;
    wait_reply(&app, UI * 2, "the offline question's reply", |s, t| {
        s == "complete" && t.contains("Written offline")
    })
    .await?;
    // Reply requests whose question is the offline one (title requests ask
    // about the first message).
    let asked: Vec<_> = model
        .requests()
        .await?
        .into_iter()
        .filter(|r| {
            r["messages"]
                .as_array()
                .and_then(|turns| turns.last())
                .is_some_and(|t| t["content"] == "Written offline")
        })
        .collect();
    assert_eq!(asked.len(), 1, "asked exactly once");
    app.quit().await?;

    // What the app left on disk is the user's alone, and its log holds no
    // token and no word of the conversation.
    let mut logs = String::new();
    for entry in walk(&stack.home.app_data_dir())? {
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::symlink_metadata(&entry)?.permissions().mode() & 0o777
        };
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", entry.display());
        if entry.extension().is_some_and(|e| e == "log") {
            logs.push_str(&std::fs::read_to_string(&entry)?);
        }
    }
    assert!(logs.contains("starting"), "the app's log was found");
    for secret in [
        "eyJ",
        "Bearer ",
        "refresh_token",
        "Can you add a section on hiring?",
        "Written offline",
        "Answer in French.",
        "You asked:",
    ] {
        assert!(!logs.contains(secret), "the log contains {secret:?}");
    }
    Ok(())
}

/// Every file and folder under `dir` (itself included).
fn walk(dir: &std::path::Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let path = out[i].clone();
        if std::fs::symlink_metadata(&path)?.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                out.push(entry?.path());
            }
        }
        i += 1;
    }
    Ok(out)
}
