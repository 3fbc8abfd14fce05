//! What the Linux packages tell the desktop: the `.desktop` entry the deb and
//! rpm bundles install must pass the callback URL to the app (`%u`) and claim
//! the `app.confab.desktop` scheme, or a browser's redirect after sign-in
//! reaches nothing. (The bundles themselves are built by the release issue's
//! suite; this checks the template they are built from.)

use std::process::Command;

use confab_tests::paths;

#[test]
fn both_linux_bundles_use_our_desktop_entry() -> anyhow::Result<()> {
    let conf: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        paths::workspace_root().join("src-tauri/tauri.conf.json"),
    )?)?;
    for bundle in ["deb", "rpm"] {
        assert_eq!(
            conf["bundle"]["linux"][bundle]["desktopTemplate"], "linux/confab.desktop",
            "{bundle}"
        );
    }
    assert_eq!(
        conf["plugins"]["deep-link"]["desktop"]["schemes"],
        serde_json::json!(["app.confab.desktop"])
    );
    Ok(())
}

#[test]
fn the_desktop_entry_passes_the_url_and_declares_the_scheme() -> anyhow::Result<()> {
    let rendered = paths::desktop_entry("confab")?;
    assert!(
        !rendered.contains("{{"),
        "unrendered placeholder:\n{rendered}"
    );
    let exec = rendered
        .lines()
        .find_map(|l| l.strip_prefix("Exec="))
        .unwrap_or_default();
    assert_eq!(exec, "confab %u");
    let mime = rendered
        .lines()
        .find_map(|l| l.strip_prefix("MimeType="))
        .unwrap_or_default();
    assert!(
        mime.split(';')
            .any(|m| m == "x-scheme-handler/app.confab.desktop"),
        "{mime}"
    );

    let dir = tempfile::tempdir()?;
    let file = dir.path().join("confab.desktop");
    std::fs::write(&file, &rendered)?;
    let out = Command::new("desktop-file-validate").arg(&file).output()?;
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "desktop-file-validate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
