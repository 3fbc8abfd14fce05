//! What the packages and the release pipeline promise: the `.desktop` entry the
//! deb and rpm bundles install must pass the callback URL to the app (`%u`) and
//! claim the `app.confab.desktop` scheme, or a browser's redirect after sign-in
//! reaches nothing; the built `.deb` must carry it; the updater must be wired
//! with no key committed; the release workflow must build every platform and
//! sign for the updater. (`e2e_updates.rs` installs the bundles.)

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

#[test]
fn the_built_deb_installs_the_entry_and_the_binary() -> anyhow::Result<()> {
    let (current, _) = confab_tests::updates::versions();
    let deb = confab_tests::updates::bundle(&current)?;
    let listing = Command::new("dpkg-deb")
        .arg("--contents")
        .arg(&deb)
        .output()?;
    let listing = String::from_utf8_lossy(&listing.stdout);
    for path in ["usr/bin/confab", "usr/share/applications/Confab.desktop"] {
        assert!(
            listing.contains(path),
            "{path} missing from the .deb:\n{listing}"
        );
    }
    let dir = tempfile::tempdir()?;
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(dir.path())
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entry = std::fs::read_to_string(dir.path().join("usr/share/applications/Confab.desktop"))?;
    assert!(entry.lines().any(|l| l == "Exec=confab %u"), "{entry}");
    assert!(
        entry.contains("x-scheme-handler/app.confab.desktop"),
        "{entry}"
    );
    let fields = Command::new("dpkg-deb")
        .args(["-f"])
        .arg(&deb)
        .args(["Package", "Version"])
        .output()?;
    let fields = String::from_utf8_lossy(&fields.stdout);
    assert!(
        fields.contains("Package: confab") && fields.contains(&format!("Version: {current}")),
        "{fields}"
    );
    Ok(())
}

#[test]
fn the_updater_is_wired_without_a_committed_key() -> anyhow::Result<()> {
    let conf: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        paths::workspace_root().join("src-tauri/tauri.conf.json"),
    )?)?;
    let updater = &conf["plugins"]["updater"];
    assert_eq!(
        updater["pubkey"], "",
        "the signing key comes from the release pipeline"
    );
    // A manifest cannot pair a version number with another release, and
    // never offers an older one.
    assert_eq!(updater["requireSignedVersion"], true);
    assert_eq!(updater["allowDowngrades"], false);
    let endpoints = updater["endpoints"].as_array().cloned().unwrap_or_default();
    assert!(!endpoints.is_empty());
    for endpoint in endpoints {
        let endpoint = endpoint.as_str().unwrap_or_default().to_owned();
        assert!(endpoint.starts_with("https://"), "{endpoint}");
    }
    assert!(
        conf["bundle"].get("createUpdaterArtifacts").is_none(),
        "updater artifacts need the private key: the release workflow turns them on"
    );
    Ok(())
}

/// Third-party actions run with the release's secrets in reach: each is
/// pinned to a full commit (a tag can be moved), its tag in a comment.
#[test]
fn release_actions_are_pinned_to_commits() -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(paths::workspace_root().join(".github/workflows/release.yml"))?;
    let mut pinned = 0;
    for line in text.lines().map(str::trim) {
        let Some(action) = line
            .strip_prefix("- uses: ")
            .or_else(|| line.strip_prefix("uses: "))
        else {
            continue;
        };
        let (name, rest) = action.split_once('@').unwrap_or((action, ""));
        let (sha, comment) = rest.split_once(" # ").unwrap_or((rest, ""));
        assert!(
            sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
            "{name} is not pinned to a commit: {line}"
        );
        assert!(
            comment.starts_with('v'),
            "{name}: name its tag in a comment: {line}"
        );
        pinned += 1;
    }
    assert!(pinned >= 4, "found {pinned} actions");
    Ok(())
}

/// `.github/workflows/release.yml`, parsed (PyYAML, a Debian package) into JSON.
fn release_workflow() -> anyhow::Result<serde_json::Value> {
    let path = paths::workspace_root().join(".github/workflows/release.yml");
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&path)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{} does not parse: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[test]
fn the_release_workflow_builds_signs_and_publishes_every_platform() -> anyhow::Result<()> {
    let workflow = release_workflow()?;
    // PyYAML reads the bare key `on` as true.
    let trigger = workflow
        .get("on")
        .or_else(|| workflow.get("true"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(trigger["push"]["tags"], serde_json::json!(["v*"]));
    let bundle = &workflow["jobs"]["bundle"];
    let matrix = bundle["strategy"]["matrix"]["include"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let targets: Vec<(&str, &str)> = matrix
        .iter()
        .map(|m| {
            (
                m["target"].as_str().unwrap_or(""),
                m["bundles"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for (target, bundles) in [
        ("x86_64-unknown-linux-gnu", "deb"),
        ("x86_64-pc-windows-msvc", "nsis"),
        ("x86_64-pc-windows-msvc", "msi"),
        ("aarch64-apple-darwin", "app"),
        ("x86_64-apple-darwin", "app"),
    ] {
        assert!(
            targets
                .iter()
                .any(|(t, b)| *t == target && b.split(',').any(|x| x == bundles)),
            "{target} {bundles} missing from {targets:?}"
        );
    }
    let steps = bundle["steps"].as_array().cloned().unwrap_or_default();
    let action = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("tauri-apps/tauri-action"))
        })
        .cloned()
        .unwrap_or_default();
    assert_eq!(action["with"]["uploadUpdaterJson"], true);
    // One draft made before the matrix, so the jobs never race to create it;
    // published only when every platform is in.
    assert_eq!(
        action["with"]["releaseId"],
        "${{ needs.create-release.outputs.id }}"
    );
    assert_eq!(bundle["needs"], "create-release");
    let create = serde_json::to_string(&workflow["jobs"]["create-release"])?;
    assert!(create.contains("draft=true"), "{create}");
    for secret in [
        "TAURI_SIGNING_PRIVATE_KEY",
        "TAURI_SIGNING_PRIVATE_KEY_PASSWORD",
    ] {
        assert_eq!(
            action["env"][secret],
            format!("${{{{ secrets.{secret} }}}}"),
            "{secret} must come from the repository's secrets"
        );
    }
    let args = action["with"]["args"].as_str().unwrap_or_default();
    assert!(
        args.contains("--config") && args.contains("--bundles"),
        "{args}"
    );
    let checks = serde_json::to_string(&steps)?;
    assert!(checks.contains("createUpdaterArtifacts") && checks.contains("TAURI_UPDATER_PUBKEY"));
    assert_eq!(
        workflow["jobs"]["publish"]["needs"],
        serde_json::json!(["create-release", "bundle"])
    );
    Ok(())
}

/// The wasm-bindgen CLI scripts/setup installs (a locked wrapper) is the
/// wasm-bindgen library's exact version: the two must agree byte for byte
/// on the bindings they generate.
#[test]
fn the_wasm_bindgen_tool_matches_the_library() -> anyhow::Result<()> {
    let root = paths::workspace_root();
    let version_of = |lock: &str, name: &str| -> Option<String> {
        let mut lines = lock.lines();
        while let Some(line) = lines.next() {
            if line == format!("name = \"{name}\"") {
                return lines
                    .next()
                    .and_then(|v| v.strip_prefix("version = \""))
                    .map(|v| v.trim_end_matches('"').to_owned());
            }
        }
        None
    };
    let workspace = std::fs::read_to_string(root.join("Cargo.lock"))?;
    let tool = std::fs::read_to_string(root.join("scripts/tools/wasm-bindgen/Cargo.lock"))?;
    let library = version_of(&workspace, "wasm-bindgen")
        .ok_or_else(|| anyhow::anyhow!("no wasm-bindgen in Cargo.lock"))?;
    assert_eq!(version_of(&tool, "wasm-bindgen-cli"), Some(library.clone()));
    assert_eq!(version_of(&tool, "wasm-bindgen"), Some(library.clone()));
    assert_eq!(version_of(&tool, "confab-wasm-bindgen"), Some(library));
    Ok(())
}
