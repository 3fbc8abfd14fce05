//! The desktop app against design section 7's budgets, in a real window:
//! launch to painted list with 10,000 cached conversations (budget 1 s), and
//! the memory of the whole process tree (PSS) signed out, signed in with an
//! empty cache, and signed in with 10,000 conversations and 100,000 messages
//! cached (budget: 60 MB above the blank window); opening a 5,000-message
//! conversation in the window (the pane renders the newest 200); and what one
//! Enter in such a conversation (held by the server too) costs over IPC:
//! every answer and event the UI receives until it is synced (budget 4 KB).
//!
//!   scripts/build-ui && cargo build --release -p confab-desktop
//!   CONFAB_APP_PROFILE=release cargo bench -p confab-tests --bench desktop
//!
//! (Without `CONFAB_APP_PROFILE` it measures the debug build.)

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::DateTime;
use confab_cache::Cache;
use confab_tests::App;
use confab_tests::stack::{Stack, UI};
use confab_wire::conversations::{Conversation, ConversationDetail, Message, Role};

const CONVERSATIONS: usize = 10_000;
const MESSAGES: usize = 100_000;
const LAUNCHES: usize = 5;
/// One more conversation, the most recent, with this many messages.
const LONG: usize = 5_000;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(bench())
}

/// PSS (kB) of every process in the app's group but the drivers.
fn pss_kb(group: u32) -> anyhow::Result<(u64, Vec<(String, u64)>)> {
    let mut total = 0;
    let mut parts = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesised name: state, ppid, pgrp, ...
        let Some(rest) = stat.rsplit(')').next() else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) != Some(group) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))?
            .trim()
            .to_owned();
        if comm == "tauri-driver" || comm.starts_with("WebKitWebDriver") {
            continue;
        }
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        let pss = rollup
            .lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        total += pss;
        parts.push((comm, pss));
    }
    Ok((total, parts))
}

async fn settled_pss(app: &App) -> anyhow::Result<String> {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (total, parts) = pss_kb(app.process_group())?;
    let detail: Vec<String> = parts
        .iter()
        .map(|(name, kb)| format!("{name} {} MB", kb / 1024))
        .collect();
    Ok(format!("{} MB ({})", total / 1024, detail.join(", ")))
}

/// Conversation `c` with `count` messages, changed `c` seconds after `base`.
fn conversation(c: usize, count: usize, title: String) -> anyhow::Result<ConversationDetail> {
    let base = DateTime::from_timestamp(1_800_000_000, 0).context("time")?;
    let id = ulid::Ulid::from_parts(1_700_000_000_000 + c as u64, c as u128).to_string();
    let messages: Vec<Message> = (0..count)
        .map(|m| Message {
            id: ulid::Ulid::from_parts(1_700_000_000_000 + m as u64, (c * count + m) as u128)
                .to_string(),
            role: if m % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            },
            content: format!(
                "Message {m} of conversation {c}: notes about the plan and the next steps."
            ),
            timestamp: base + chrono::Duration::seconds(m as i64),
            reply: None,
        })
        .collect();
    Ok(ConversationDetail {
        conversation: Conversation {
            id,
            title,
            created_at: base,
            updated_at: base + chrono::Duration::seconds(c as i64),
            version: 1,
            message_count: count as u64,
            last_message_preview: messages.last().map(|m| m.content.clone()),
            pinned: c.is_multiple_of(1000),
            archived: false,
            assistant: Default::default(),
        },
        messages,
        next_cursor: None,
    })
}

fn seed(cache: &Cache) -> anyhow::Result<()> {
    let per = MESSAGES / CONVERSATIONS;
    for c in 0..CONVERSATIONS {
        cache.apply_detail(&conversation(c, per, format!("Conversation {c}"))?)?;
    }
    // The newest: first among the recent ones.
    cache.apply_detail(&conversation(
        CONVERSATIONS + 1,
        LONG,
        "Long conversation".into(),
    )?)?;
    Ok(())
}

/// Launches the app and waits for the first conversation row; answers the
/// wall-clock time from launch and the webview's own time since navigation.
async fn launch_to_list(stack: &Stack) -> anyhow::Result<(App, Duration, f64)> {
    let started = Instant::now();
    let app = stack.launch().await?;
    let deadline = Instant::now() + UI;
    loop {
        let painted = app
            .client
            .execute(
                "return document.querySelector('#conversation-list .row[data-id]') ? performance.now() : null;",
                vec![],
            )
            .await?;
        if let Some(ms) = painted.as_f64() {
            return Ok((app, started.elapsed(), ms));
        }
        anyhow::ensure!(Instant::now() < deadline, "the list never painted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn bench() -> anyhow::Result<()> {
    let profile = std::env::var("CONFAB_APP_PROFILE").unwrap_or_else(|_| "debug".into());
    println!("app: {}", confab_tests::paths::app_binary()?.display());
    let stack = Stack::start("bench/desktop")?;
    // A release build does not register its link handler itself: install it
    // as the package would.
    stack.install_app_entry()?;

    let app = stack.launch().await?;
    app.text("#continue-in-browser").await?;
    println!(
        "signed out, first screen:        PSS {}",
        settled_pss(&app).await?
    );
    stack.sign_in(&app, "user_demo", "Ada Lovelace").await?;
    app.wait_text("#sync-label", UI, |t| t == "Online").await?;
    println!(
        "signed in, empty cache:          PSS {}",
        settled_pss(&app).await?
    );
    app.quit().await?;

    let fill = Instant::now();
    let cache = Cache::open(&stack.home.app_data_dir().join("cache").join("user_demo.db"))?;
    seed(&cache)?;
    drop(cache);
    println!(
        "seeded {CONVERSATIONS} conversations / {MESSAGES} messages in {:.1} s",
        fill.elapsed().as_secs_f64()
    );

    let mut wall = Vec::new();
    let mut webview = Vec::new();
    let mut opened = Vec::new();
    let mut rendered = 0;
    for run in 0..LAUNCHES {
        let (app, elapsed, in_page) = launch_to_list(&stack).await?;
        wall.push(elapsed);
        webview.push(in_page);
        if run == LAUNCHES - 1 {
            println!(
                "signed in, 10,000 cached:        PSS {}",
                settled_pss(&app).await?
            );
        }
        // Open the 5,000-message conversation: time to its newest message.
        let newest = format!("Message {} of conversation {}", LONG - 1, CONVERSATIONS + 1);
        let started = Instant::now();
        let long = ulid::Ulid::from_parts(
            1_700_000_000_000 + (CONVERSATIONS + 1) as u64,
            (CONVERSATIONS + 1) as u128,
        );
        app.click(&format!("#conversation-list .row[data-id='{long}']"))
            .await?;
        app.wait_text("#messages", UI, |t| t.contains(&newest))
            .await?;
        opened.push(started.elapsed());
        rendered = app
            .client
            .find_all(fantoccini::Locator::Css("#messages .message"))
            .await?
            .len();
        app.quit().await?;
    }
    wall.sort();
    webview.sort_by(f64::total_cmp);
    println!(
        "launch to painted list ({profile}, {LAUNCHES} launches): median {:.0} ms wall clock (process start, WebDriver session included), {:.0} ms from page start in the webview (budget 1000 ms)",
        wall[LAUNCHES / 2].as_secs_f64() * 1e3,
        webview[LAUNCHES / 2]
    );
    opened.sort();
    println!(
        "open a {LONG}-message conversation ({profile}): median {:.0} ms from the click to its newest message, {rendered} messages rendered",
        opened[LAUNCHES / 2].as_secs_f64() * 1e3
    );
    drop(stack);
    // On a stack of its own: the conversation is the newest row at once.
    let per_enter = ipc_per_enter(&Stack::start("bench/desktop_ipc")?).await?;
    println!(
        "IPC per Enter in a {LONG}-message conversation: {} B in {} answers and events (budget 4096 B)",
        per_enter.0, per_enter.1
    );
    anyhow::ensure!(per_enter.0 <= 4096, "IPC per Enter over budget");
    Ok(())
}

/// One Enter in a 5,000-message conversation the server holds too: the bytes
/// and the number of answers and events the UI receives until the message is
/// synced and everything settled.
async fn ipc_per_enter(stack: &Stack) -> anyhow::Result<(u64, u64)> {
    stack.install_app_entry()?;
    let app = stack.launch().await?;
    stack.sign_in(&app, "user_demo", "Ada Lovelace").await?;
    app.quit().await?;
    let token = stack.provider.sign_in("user_demo").await?.access_token;
    let http = reqwest::Client::new();
    let mut first = Vec::new();
    for m in 0..1000 {
        first.push(serde_json::json!({"role": "user", "content": format!("Server line {m}")}));
    }
    let created: serde_json::Value = http
        .post(stack.proxy.url("/api/conversations"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"title": "Held by the server", "messages": first}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = created["id"].as_str().context("an id")?.to_owned();
    for m in 1000..LONG {
        // Paced under the per-user rate limit (50/s, burst 200).
        if m % 150 == 0 {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        http.post(
            stack
                .proxy
                .url(&format!("/api/conversations/{id}/messages")),
        )
        .bearer_auth(&token)
        .json(&serde_json::json!({"role": "user", "content": format!("Server line {m}")}))
        .send()
        .await?
        .error_for_status()?;
    }
    let app = stack.launch().await?;
    // Below the ten pinned rows: scrolled into view (the list renders only
    // the rows in view) once it has synced.
    let row = format!("#conversation-list .row[data-id='{id}']");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let shown = app
            .client
            .execute(
                &format!(
                    "const l = document.querySelector('.sidebar .list') || document.querySelector('.list'); if (l) {{ l.scrollTop = 560; l.dispatchEvent(new Event('scroll')); }} return !!document.querySelector(\"{row}\");"
                ),
                vec![],
            )
            .await?;
        if shown.as_bool() == Some(true) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the server's conversation never showed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.click(&row).await?;
    let last = format!("Server line {}", LONG - 1);
    app.wait_text("#messages", Duration::from_secs(120), |t| t.contains(&last))
        .await?;
    app.wait_text("#sync-label", UI, |t| t == "Online").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.client
        .execute(
            "window.__confabIpcCount = {calls: 0, bytes: 0}; return true;",
            vec![],
        )
        .await?;
    app.send("One more line, counted").await?;
    app.wait_text("#sync-status", UI, |t| !t.contains("pending"))
        .await?;
    // The round after the push (its pull, the echo) settles too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let counted = app
        .client
        .execute("return window.__confabIpcCount;", vec![])
        .await?;
    app.quit().await?;
    Ok((
        counted["bytes"].as_f64().unwrap_or_default() as u64,
        counted["calls"].as_f64().unwrap_or_default() as u64,
    ))
}
