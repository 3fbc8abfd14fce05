//! Export through the system's save dialog, as a user does it: the app opens
//! GTK's file chooser (a native window, outside the webview), the user types
//! where to save and presses Enter (xdotool, on the test's X server), and the
//! file holds the conversation. Cancelling saves nothing and says nothing.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use confab_tests::Desktop;
use confab_tests::stack::{Stack, UI};

/// The title the app gives its save dialog.
const DIALOG: &str = "Export conversation";

fn xdotool(desktop: &Desktop, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("xdotool")
        .args(args)
        .envs(desktop.env())
        .output()
        .context("xdotool is missing: run scripts/setup")?;
    if !out.status.success() {
        bail!(
            "xdotool {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Waits for the save dialog and gives it the keyboard (there is no window
/// manager to do it).
async fn dialog(desktop: &Desktop) -> anyhow::Result<String> {
    let deadline = Instant::now() + UI;
    loop {
        if let Ok(found) = xdotool(
            desktop,
            &["search", "--onlyvisible", "--name", &format!("^{DIALOG}$")],
        ) && let Some(id) = found.lines().next()
        {
            // Mapped is not yet ready for keys: wait until X says the
            // dialog holds the keyboard focus.
            let id = id.to_owned();
            let _ = xdotool(desktop, &["windowfocus", "--sync", &id]);
            if xdotool(desktop, &["getwindowfocus"]).is_ok_and(|focused| focused == id) {
                return Ok(id);
            }
        }
        if Instant::now() > deadline {
            bail!("the save dialog did not open");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn dialog_closed(desktop: &Desktop) -> anyhow::Result<()> {
    let deadline = Instant::now() + UI;
    while xdotool(
        desktop,
        &["search", "--onlyvisible", "--name", &format!("^{DIALOG}$")],
    )
    .is_ok()
    {
        if Instant::now() > deadline {
            bail!("the save dialog stayed open");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// In the open dialog, replaces the suggested name with `path` and saves.
async fn save_as(desktop: &Desktop, path: &std::path::Path) -> anyhow::Result<()> {
    xdotool(desktop, &["key", "ctrl+a"])?;
    xdotool(
        desktop,
        &["type", "--delay", "20", &path.display().to_string()],
    )?;
    xdotool(desktop, &["key", "Return"])?;
    dialog_closed(desktop).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_goes_through_the_system_save_dialog() -> anyhow::Result<()> {
    confab_tests::bounded(confab_tests::TEST_DEADLINE, export()).await
}

async fn export() -> anyhow::Result<()> {
    let stack = Stack::start("e2e_export")?;
    let app = stack.launch().await?;
    stack.sign_in(&app, "user_demo", "Ada Lovelace").await?;
    app.click("#new-conversation").await?;
    app.wait_text("#conversation-title", UI, |t| t == "New conversation")
        .await?;
    app.send("Pack the blue tent").await?;
    let target = tempfile::tempdir()?;

    // Markdown: the suggested name is replaced by a full path, then Enter.
    let markdown = target.path().join("trip.md");
    app.click("#export-markdown").await?;
    dialog(&stack.desktop).await?;
    app.screenshot("save-dialog")?;
    save_as(&stack.desktop, &markdown).await?;
    app.wait_text("#toast", UI, |t| {
        t.contains(&format!("Saved to {}", markdown.display()))
    })
    .await?;
    let text = std::fs::read_to_string(&markdown)?;
    assert!(text.starts_with("# New conversation\n"), "{text}");
    assert!(text.contains("Pack the blue tent"), "{text}");

    // Cancel: nothing is written, no error is shown.
    app.click("#export-json").await?;
    dialog(&stack.desktop).await?;
    xdotool(&stack.desktop, &["key", "Escape"])?;
    dialog_closed(&stack.desktop).await?;
    app.wait_for_log("export cancelled", UI).await?;
    let files: Vec<_> = std::fs::read_dir(target.path())?.flatten().collect();
    assert_eq!(files.len(), 1, "{files:?}");
    // Errors would replace the toast: it still says where the first went.
    let toast = app.text("#toast").await?;
    assert!(
        toast.contains(&format!("Saved to {}", markdown.display())),
        "cancelling is not an error: {toast}"
    );

    // JSON, the whole conversation as data.
    let json = target.path().join("trip.json");
    app.click("#export-json").await?;
    dialog(&stack.desktop).await?;
    save_as(&stack.desktop, &json).await?;
    // The toast comes after the file is written.
    app.wait_text("#toast", UI, |t| {
        t.contains(&format!("Saved to {}", json.display()))
    })
    .await?;
    let value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    let text = value.to_string();
    assert!(text.contains("Pack the blue tent"), "{text}");
    app.quit().await
}
