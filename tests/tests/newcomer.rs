//! The README's first command, run as a newcomer does: `scripts/run` on a
//! desktop (Xvfb, D-Bus, gnome-keyring, a default browser), with no cloud
//! account. The window it opens is the one WebDriver drives: tauri-driver
//! launches `scripts/run` itself, which builds what is missing, starts the
//! local provider and the proxy, seeds the demo user and starts the app. The
//! test signs in as the demo user through the local provider, sees the sample
//! conversations; starts a second device with `scripts/run --second-device`,
//! signs it in too and sees a conversation it starts reach the first; then
//! presses Ctrl+C (SIGINT to each `scripts/run`) and checks the second stops
//! alone and then nothing the first started is left running.
//!
//! scripts/test runs this suite on its own, after the others: `scripts/run`
//! builds, and a build must not relink the app under a running test.

use std::time::{Duration, Instant};

use anyhow::bail;
use confab_tests::browser::Browser;
use confab_tests::keyring::Keyring;
use confab_tests::net::free_port;
use confab_tests::oidc::Provider;
use confab_tests::stack::UI;
use confab_tests::{App, AppHome, AppOptions, Desktop, paths};

/// `scripts/run` checks the machine and builds before the window appears.
const FIRST_WINDOW: Duration = Duration::from_secs(180);

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The processes started for this run (they all inherit `marker` in their
/// environment), except the WebDriver pair that launched it: pid and command
/// line.
fn started_by_the_run(marker: &str) -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter_map(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let ours = environ
                .split(|b| *b == 0)
                .any(|var| var == marker.as_bytes());
            let driver = cmdline.contains("tauri-driver") || cmdline.contains("WebKitWebDriver");
            (ours && !driver).then_some((pid, cmdline))
        })
        .collect()
}

/// Ctrl+C, as the terminal delivers it to the script.
fn interrupt(pid: i32) -> anyhow::Result<()> {
    anyhow::ensure!(pid > 0, "no such process");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGINT,
    )?;
    Ok(())
}

/// The second device's app (scripts/run gives it its profile).
fn is_device_2(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| {
            env.split(|b| *b == 0)
                .any(|v| v == b"CONFAB_PROFILE=device-2")
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_first_command_runs_the_stack_and_stops_it() -> anyhow::Result<()> {
    confab_tests::bounded(Duration::from_secs(420), newcomer()).await
}

async fn newcomer() -> anyhow::Result<()> {
    let artifacts = paths::artifacts_dir("newcomer")?;
    let desktop = Desktop::start(&artifacts)?;
    let home = AppHome::new()?;
    let _keyring = Keyring::start(&desktop, &home)?;
    let browser = Browser::install(&home)?;
    let data = tempfile::tempdir()?;
    let (oidc_port, proxy_port, model_port) = (free_port()?, free_port()?, free_port()?);
    let options = AppOptions {
        binary: Some(paths::workspace_root().join("scripts").join("run")),
        env: vec![
            (
                "CONFAB_LOCAL_DATA".into(),
                data.path().display().to_string(),
            ),
            ("OIDC_PORT".into(), oidc_port.to_string()),
            ("PROXY_PORT".into(), proxy_port.to_string()),
            ("MODEL_PORT".into(), model_port.to_string()),
            // The suite's machine is set up (scripts/test ran scripts/setup
            // first); everything else scripts/run does, it does here.
            ("CONFAB_SKIP_SETUP".into(), "1".into()),
        ],
        ..AppOptions::default()
    };
    let app = App::launch_within(&desktop, &home, options.clone(), FIRST_WINDOW).await?;

    // It says where everything listens.
    let banner = std::fs::read_to_string(app.driver_log()).unwrap_or_default();
    for line in [
        format!("http://127.0.0.1:{oidc_port}"),
        format!("http://127.0.0.1:{proxy_port}"),
        format!("{}/confab.db", data.path().display()),
        // Without a key, the stand-in model answers, and says it is one.
        format!("local stand-in model on http://127.0.0.1:{model_port}"),
    ] {
        assert!(
            banner.contains(&line),
            "{line} missing from the banner:\n{banner}"
        );
    }

    // Pre-configured: sign-in is ready, through the local provider.
    app.wait_text("#sign-in-note", UI, |t| t.contains("your own browser"))
        .await?;
    app.click("#continue-in-browser").await?;
    let authorize = browser.wait_for(1, UI).await?;
    let provider = Provider::running_at(&format!("http://127.0.0.1:{oidc_port}"));
    let callback = provider.authorize(&authorize, "user_demo").await?;
    desktop.open_url(&home, &callback)?;
    app.wait_text("#user-name", UI, |t| t == "Ada Lovelace")
        .await?;
    // The demo user's sample conversations, seeded on first run.
    let list = app
        .wait_text("#conversation-list", UI, |t| {
            t.contains("Welcome to Confab")
        })
        .await?;
    assert!(list.matches("Welcome to Confab").count() == 1, "{list}");
    app.screenshot("signed-in")?;

    // Another device is one flag away: `scripts/run --second-device` starts
    // one more app, with its own profile, against the running stack.
    let second = App::launch_within(
        &desktop,
        &home,
        AppOptions {
            args: vec!["--second-device".into()],
            ..options.clone()
        },
        FIRST_WINDOW,
    )
    .await?;
    second
        .wait_text("#sign-in-note", UI, |t| t.contains("your own browser"))
        .await?;
    second.click("#continue-in-browser").await?;
    let authorize = browser.wait_for(2, UI).await?;
    assert!(
        authorize.contains("redirect_uri=app.confab.desktop%3A%2F%2Foauth%2Fcallback%2Fdevice-2"),
        "{authorize}"
    );
    let callback = provider.authorize(&authorize, "user_demo").await?;
    // The desktop hands the link to the app's handler, which finds the
    // instance waiting for it by the profile in the link.
    desktop.open_url(&home, &callback)?;
    second
        .wait_text("#user-name", UI, |t| t == "Ada Lovelace")
        .await?;
    second
        .wait_text("#conversation-list", UI, |t| t.contains("Trip to Lisbon"))
        .await?;
    // The first device is still signed in (its own keyring entry), and a
    // conversation started on the second reaches it without a click.
    app.wait_text("#user-name", UI, |t| t == "Ada Lovelace")
        .await?;
    second.click("#new-conversation").await?;
    app.wait_text("#conversation-list", UI, |t| t.contains("New conversation"))
        .await?;
    second.screenshot("second-device")?;
    // Its own folders, next to the first device's.
    let profile_dir = home.path().join("data").join("app.confab.desktop.device-2");
    assert!(
        profile_dir.join("cache").is_dir(),
        "{}",
        profile_dir.display()
    );

    // Ctrl+C on the second device stops only its app.
    let marker = format!("CONFAB_LOCAL_DATA={}", data.path().display());
    let second_run = started_by_the_run(&marker)
        .into_iter()
        .find(|(_, cmd)| cmd.contains("scripts/run --second-device"))
        .map(|(pid, _)| pid)
        .unwrap_or_default();
    interrupt(second_run)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while started_by_the_run(&marker)
        .iter()
        .any(|(pid, _)| *pid == second_run || is_device_2(*pid))
    {
        if Instant::now() > deadline {
            bail!("the second device still runs after Ctrl+C");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(listening(oidc_port) && listening(proxy_port));
    app.wait_text("#user-name", UI, |t| t == "Ada Lovelace")
        .await?;
    second.kill()?;

    // Ctrl+C on scripts/run stops everything it started: the provider, the
    // proxy and the app.
    let running = started_by_the_run(&marker);
    for needle in [
        "scripts/run",
        "provider.mjs",
        "confab-proxy serve",
        "confab-model-standin",
        "debug/confab",
    ] {
        assert!(
            running.iter().any(|(_, cmd)| cmd.contains(needle)),
            "{needle} is not running: {running:?}"
        );
    }
    let (script, _) = running
        .iter()
        .find(|(_, cmd)| cmd.contains("scripts/run"))
        .cloned()
        .unwrap_or_default();
    interrupt(script)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = started_by_the_run(&marker);
        if left.is_empty()
            && !listening(oidc_port)
            && !listening(proxy_port)
            && !listening(model_port)
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("still running after Ctrl+C: {left:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.kill()
}
