//! Self-update end to end: the app installed from a real `.deb` finds the next
//! version on a loopback update server, shows it, downloads only when the user
//! agrees, checks the signature with a key made in the test, installs with
//! dpkg and restarts into the new version, leaving the user's data alone. Bad
//! signatures, odd answers and unreachable servers change nothing and are
//! reported once.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use confab_tests::stack::{Stack, UI};
use confab_tests::updates::{
    Installed, Manifest, SigningKey, UpdateServer, bundle, installed_version, versions,
};
use confab_tests::{App, AppHome, AppOptions, Desktop, paths};
use confab_wire::library::ListFilter;

const OFFER: Duration = Duration::from_secs(30);

/// The package database is the machine's: the test that installs and the one
/// that checks nothing was installed take turns.
static PACKAGES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn options_for(server: &UpdateServer, key: &SigningKey) -> Vec<(String, String)> {
    vec![
        ("CONFAB_UPDATE_URL".into(), server.url.clone()),
        ("CONFAB_UPDATER_PUBKEY".into(), key.public.clone()),
    ]
}

fn options(server: &UpdateServer, key: &SigningKey) -> AppOptions {
    AppOptions {
        env: options_for(server, key),
        ..AppOptions::default()
    }
}

async fn eventually(
    limit: Duration,
    what: &str,
    mut ok: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !ok() {
        if Instant::now() > deadline {
            bail!("{what} did not happen within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

fn log_of(home: &AppHome) -> String {
    std::fs::read_to_string(home.app_data_dir().join("logs").join("confab.log")).unwrap_or_default()
}

/// What the user wrote, as the cache at `path` holds it: each conversation's
/// id and title with its messages' ids and text (sync bookkeeping aside).
type Words = Vec<(String, String, Vec<(String, String)>)>;

fn words_in(path: &Path) -> anyhow::Result<Words> {
    let cache = confab_cache::Cache::open(path)?;
    let mut words = Vec::new();
    for item in cache.list(ListFilter::Active, 0, 100)? {
        let id = item.conversation.id;
        let Some(view) = cache.get(&id)? else {
            bail!("{id} is listed but cannot be read");
        };
        let messages = view
            .messages
            .into_iter()
            .map(|m| (m.message.id, m.message.content))
            .collect();
        words.push((id, view.conversation.title, messages));
    }
    Ok(words)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installed_app_updates_to_the_next_version_and_restarts_into_it() -> anyhow::Result<()> {
    confab_tests::bounded(Duration::from_secs(240), updates_and_restarts()).await
}

async fn updates_and_restarts() -> anyhow::Result<()> {
    let _packages = PACKAGES.lock().await;
    let (current, next) = versions();
    let key = SigningKey::generate()?;
    let next_deb = std::fs::read(bundle(&next)?)?;
    let signature = key.sign(&next_deb, Some(&next))?;
    let server = UpdateServer::start().await?;
    server.serve(
        Manifest::Offer {
            version: next.clone(),
            notes: "Faster search.\nFixes a crash on start.".into(),
            signature,
        },
        next_deb,
    );

    let installed = Installed::deb(&bundle(&current)?)?;
    assert_eq!(installed_version()?.as_deref(), Some(current.as_str()));

    // A signed-in user with a conversation: the installed app opens their
    // cache, which the update must leave as it was.
    let stack = Stack::start("e2e_updates_install")?;
    let (desktop, home) = (&stack.desktop, &stack.home);
    let launch = || {
        let mut options = stack.options(Vec::new());
        options.env.extend(options_for(&server, &key));
        options.binary = Some(installed.binary.clone());
        options
    };
    let app = App::launch(desktop, home, launch()).await?;
    stack.sign_in(&app, "user_demo", "Ada Lovelace").await?;
    app.click("#new-conversation").await?;
    app.wait_text("#conversation-title", UI, |t| t == "New conversation")
        .await?;
    app.send("Kept across the update").await?;
    let cache = home.app_data_dir().join("cache").join("user_demo.db");
    let words = words_in(&cache)?;
    assert!(
        words.iter().any(|(_, _, messages)| messages
            .iter()
            .any(|(_, text)| text == "Kept across the update")),
        "the app wrote to {}: {words:?}",
        cache.display()
    );

    // The start-up check offers N+1 with its notes; nothing is downloaded yet.
    app.wait_text("#update-version", OFFER, |t| t == format!("Confab {next}"))
        .await?;
    let banner = app.text("#update-banner").await?;
    assert!(banner.contains(&format!("you have {current}")), "{banner}");
    assert!(app.text("#update-notes").await?.contains("Faster search."));
    app.screenshot("offer")?;
    // Long enough for any download on its own to have reached the server.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        server.hits().1,
        0,
        "nothing downloads before the user agrees"
    );

    app.click("#install-update").await?;
    eventually(Duration::from_secs(90), "dpkg installing N+1", || {
        installed_version().ok().flatten().as_deref() == Some(next.as_str())
    })
    .await?;
    // The app restarted itself into the new version (its log, written by the
    // new process, says which version started and that it was an update).
    // It also restored the session, keeping the rotated refresh token in the
    // keyring: a kill before that would leave a spent token behind, which
    // the provider refuses (the user signs in again, losing nothing).
    eventually(Duration::from_secs(30), "the restart into N+1", || {
        let log = log_of(home);
        log.contains(&format!("Confab {next} ("))
            && log.contains(&format!("updated from {current} to {next}"))
            && log.contains("session restored from the keyring")
    })
    .await?;
    assert_eq!(server.hits().1, 1, "one download");
    // Killing the session's process group ends the restarted app too.
    app.kill()?;
    assert_eq!(
        words_in(&cache)?,
        words,
        "the update must leave the user's words as they were"
    );

    // Launched again, it is N+1, still signed in, with the conversation, and
    // N+1 is the newest.
    let started = format!("Confab {next} (");
    let starts_before = log_of(home).matches(&started).count();
    let app = App::launch(desktop, home, launch()).await?;
    app.wait_text("#user-name", UI, |t| t == "Ada Lovelace")
        .await?;
    eventually(UI, "N+1 starting again", || {
        log_of(home).matches(&started).count() > starts_before
    })
    .await?;
    let kept = &words[0].0;
    app.click(&format!("#conversation-list .row[data-id='{kept}']"))
        .await?;
    app.wait_text("#messages", UI, |t| t.contains("Kept across the update"))
        .await?;
    app.wait_text("#update-status", OFFER, |t| t.contains("up to date"))
        .await?;
    app.quit().await?;
    drop(installed);
    assert_eq!(installed_version()?, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_are_rejected_and_change_nothing() -> anyhow::Result<()> {
    confab_tests::bounded(Duration::from_secs(240), rejects_bad_signatures()).await
}

async fn rejects_bad_signatures() -> anyhow::Result<()> {
    let _packages = PACKAGES.lock().await;
    let (current, next) = versions();
    let key = SigningKey::generate()?;
    let other = SigningKey::generate()?;
    let good = std::fs::read(bundle(&next)?)?;
    let signature = key.sign(&good, Some(&next))?;
    let foreign = other.sign(&good, Some(&next))?;
    // The right key, but bound to another version than the manifest says
    // (a manifest pairing a new number with an older release), or to none.
    let other_version = key.sign(&good, Some(&current))?;
    let unversioned = key.sign(&good, None)?;
    let mut tampered = good.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x55;

    let binary = paths::app_binary()?;
    let binary_before = std::fs::read(&binary)?;
    let package_before = installed_version()?;
    let server = UpdateServer::start().await?;
    let artifacts = paths::artifacts_dir("e2e_updates_signatures")?;
    let desktop = Desktop::start(&artifacts)?;
    let home = AppHome::new()?;
    let app = App::launch(&desktop, &home, options(&server, &key)).await?;
    // The start-up check finds nothing (no manifest yet).
    app.wait_text("#update-status", OFFER, |t| t.contains("up to date"))
        .await?;

    let cases = [
        ("a tampered bundle", signature.clone(), tampered),
        ("another key's signature", foreign, good.clone()),
        (
            "a signature for another version",
            other_version,
            good.clone(),
        ),
        ("a signature bound to no version", unversioned, good.clone()),
        (
            "a signature field that is no signature",
            "bm90IGEgc2lnbmF0dXJl".to_owned(),
            good.clone(),
        ),
    ];
    for (n, (case, signature, bytes)) in cases.into_iter().enumerate() {
        server.serve(
            Manifest::Offer {
                version: next.clone(),
                notes: format!("Case {n}"),
                signature,
            },
            bytes,
        );
        app.click("#check-updates").await?;
        app.wait_text("#update-notes", OFFER, |t| t == format!("Case {n}"))
            .await?;
        app.click("#install-update").await?;
        let message = app
            .wait_text("#update-failed", OFFER, |t| !t.is_empty())
            .await?;
        assert!(
            message.contains("not signed with Confab's release key")
                && message.contains("Nothing was installed"),
            "{case}: {message}"
        );
        let banner = app.text("#update-banner").await?;
        assert!(
            banner.contains(&format!("Confab {current} keeps running")),
            "{case}: {banner}"
        );
        app.screenshot(&format!("rejected-{n}"))?;
        app.click("#dismiss-update").await?;
        assert_eq!(
            std::fs::read(&binary)?,
            binary_before,
            "{case}: the app changed"
        );
        assert_eq!(
            installed_version()?,
            package_before,
            "{case}: a package changed"
        );
    }
    // The window still answers: the running version is untouched.
    assert_eq!(app.text("#app-version").await?, format!("Confab {current}"));
    // A version that failed is not offered at start again, only on request,
    // with the reason.
    app.kill()?;
    let before = server.hits().0;
    let app = App::launch(&desktop, &home, options(&server, &key)).await?;
    eventually(OFFER, "the start-up check", || server.hits().0 > before).await?;
    eventually(OFFER, "the start-up check's decision", || {
        log_of(&home).contains(&format!("not offering {next} at start"))
    })
    .await?;
    assert!(
        app.client
            .find(fantoccini::Locator::Css("#install-update"))
            .await
            .is_err(),
        "a version that failed to install was offered again at start"
    );
    app.click("#check-updates").await?;
    let why = app
        .wait_text("#update-failed-before", OFFER, |t| !t.is_empty())
        .await?;
    assert!(why.contains("Installing it failed before"), "{why}");
    app.quit().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_update_and_broken_servers_are_reported_once() -> anyhow::Result<()> {
    confab_tests::bounded(Duration::from_secs(240), reports_once()).await
}

async fn reports_once() -> anyhow::Result<()> {
    let (current, _) = versions();
    let key = SigningKey::generate()?;
    let server = UpdateServer::start().await?;
    let artifacts = paths::artifacts_dir("e2e_updates_checks")?;
    let desktop = Desktop::start(&artifacts)?;
    let home = AppHome::new()?;
    let app = App::launch(&desktop, &home, options(&server, &key)).await?;
    // The start-up check (204: nothing newer).
    app.wait_text("#update-status", OFFER, |t| t.contains("up to date"))
        .await?;

    let older = "0.0.1".to_owned();
    let cases = [
        (
            "the same version",
            Manifest::Offer {
                version: current.clone(),
                notes: String::new(),
                signature: "x".into(),
            },
            "up to date",
        ),
        ("204 No Content", Manifest::NoContent, "up to date"),
        (
            "an older version",
            Manifest::Offer {
                version: older,
                notes: String::new(),
                signature: "x".into(),
            },
            "up to date",
        ),
        (
            "a malformed manifest",
            Manifest::Raw("{\"version\": 42, \"platforms\": [".into()),
            "not a valid update manifest",
        ),
        (
            "a manifest without this platform",
            Manifest::Raw("{\"version\": \"99.0.0\", \"platforms\": {}}".into()),
            "not a valid update manifest",
        ),
    ];
    for (case, manifest, expected) in cases {
        server.serve(manifest, Vec::new());
        let before = server.hits().0;
        app.click("#check-updates").await?;
        eventually(OFFER, case, || server.hits().0 > before).await?;
        app.wait_text("#update-status", OFFER, |t| t.contains(expected))
            .await?;
        // One request per check: nothing retries by itself.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(server.hits().0, before + 1, "{case}: requests");
        // Read again once this check's answer has surely arrived: the text
        // above may still have been the previous case's.
        let status = app.text("#update-status").await?;
        assert!(status.contains(expected), "{case}: {status}");
        assert!(
            app.client
                .find(fantoccini::Locator::Css("#install-update"))
                .await
                .is_err(),
            "{case}: offered"
        );
    }

    // A download that cannot complete is not held against the version: the
    // next start offers it again.
    let (_, next) = versions();
    server.serve_without_bundle(Manifest::Offer {
        version: next.clone(),
        notes: "Unreachable bundle".into(),
        signature: key.sign(&std::fs::read(bundle(&next)?)?, Some(&next))?,
    });
    app.click("#check-updates").await?;
    app.wait_text("#update-notes", OFFER, |t| t == "Unreachable bundle")
        .await?;
    app.click("#install-update").await?;
    let message = app
        .wait_text("#update-failed", OFFER, |t| !t.is_empty())
        .await?;
    assert!(
        message.contains(&format!("Downloading Confab {next} failed")),
        "{message}"
    );
    app.kill()?;
    let app = App::launch(&desktop, &home, options(&server, &key)).await?;
    app.wait_text("#update-version", OFFER, |t| t == format!("Confab {next}"))
        .await?;
    assert!(
        app.client
            .find(fantoccini::Locator::Css("#update-failed-before"))
            .await
            .is_err(),
        "an interrupted download is not a failed version"
    );

    // The server goes away: one clear error, the app carries on.
    let url = server.url.clone();
    server.stop().await;
    app.click("#check-updates").await?;
    let status = app
        .wait_text("#update-status", OFFER, |t| t.contains("cannot be reached"))
        .await?;
    assert!(
        status.starts_with("Could not check for updates"),
        "{status} ({url})"
    );
    app.screenshot("unreachable")?;
    assert_eq!(app.text("#app-version").await?, format!("Confab {current}"));
    app.quit().await
}
