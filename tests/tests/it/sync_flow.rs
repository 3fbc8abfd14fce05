//! Sync between devices through the real proxy on DynamoDB (moto), without a
//! window: each "device" is a signed-in `confab_session::Session`, a cache file
//! and a running `confab_sync::Engine`, as in the app.

use std::time::Duration;

use confab_cache::local::Patch;
use confab_tests::oidc::Provider;
use confab_tests::paths;
use confab_tests::proxy::Proxy;
use confab_tests::session::Device;
use confab_wire::conversations::Role;
use confab_wire::library::{Connection, ListFilter};

const SETTLE: Duration = Duration::from_secs(20);

/// Ids as the app makes them: monotonic, so messages written within one
/// millisecond keep their order (the server orders messages by id).
fn ulid() -> String {
    static IDS: std::sync::Mutex<Option<::ulid::Generator>> = std::sync::Mutex::new(None);
    let mut ids = IDS.lock().unwrap_or_else(|p| p.into_inner());
    let generator = ids.get_or_insert_with(::ulid::Generator::new);
    generator
        .generate()
        .unwrap_or_else(|_| ::ulid::Ulid::new())
        .to_string()
}

/// The proxy's store in these tests: DynamoDB, as moto serves it.
const STORE: &str = "--store=dynamodb";

async fn settled(device: &Device) -> anyhow::Result<()> {
    device
        .eventually(SETTLE, "pushed", |c| {
            (c.outbox_counts().ok()? == (0, 0)).then_some(())
        })
        .await
}

fn title_of(cache: &confab_cache::Cache, id: &str) -> Option<String> {
    cache.item(id).ok().flatten().map(|i| i.conversation.title)
}

/// One new message reaches the other device as a delta: the messages it
/// already held are not fetched again (a local edit to one of them, which no
/// full reload would leave, survives), and the new one arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_message_travels_as_a_delta() -> anyhow::Result<()> {
    let artifacts = paths::artifacts_dir("sync_flow/delta")?;
    let provider = Provider::start(&artifacts, &[])?;
    let moto = confab_tests::moto::Moto::with_table(&artifacts)?;
    let proxy = Proxy::start(&provider.issuer, &artifacts, STORE, &moto.aws_env())?;
    let laptop = Device::start(&provider, &proxy.base, "user_demo").await?;
    let desktop = Device::start(&provider, &proxy.base, "user_demo").await?;
    assert_ne!(laptop.engine.device(), desktop.engine.device());

    let id = ulid();
    laptop
        .cache()
        .create(&id, Some("Long talk"), confab_cache::now())?;
    for line in ["first", "second", "third"] {
        laptop
            .cache()
            .append(&id, &ulid(), Role::User, line, confab_cache::now())?;
    }
    laptop.engine.local_change(&id);
    desktop
        .eventually(SETTLE, "three messages on the desktop", |c| {
            c.get(&id).ok().flatten().filter(|v| v.messages.len() == 3)
        })
        .await?;

    // The desktop has pulled everything so far (its cursor is the server's),
    // so no round still in flight covers the first messages.
    let token = provider.sign_in("user_demo").await?.access_token;
    let feed: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/changes?limit=500", proxy.base))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let server_cursor = feed["cursor"].as_str().unwrap_or_default().to_owned();
    desktop
        .eventually(SETTLE, "the desktop at the server's cursor", |c| {
            (c.sync_value("cursor").ok()?? == server_cursor).then_some(())
        })
        .await?;

    // Mark what the desktop holds, behind the engine's back.
    let marked = rusqlite::Connection::open(desktop.dir.path().join("cache.db"))?.execute(
        "UPDATE messages SET content = 'held here' WHERE conversation_id = ?1 AND content = 'first'",
        [&id],
    )?;
    assert_eq!(marked, 1);

    laptop
        .cache()
        .append(&id, &ulid(), Role::User, "fourth", confab_cache::now())?;
    laptop.engine.local_change(&id);
    let view = desktop
        .eventually(SETTLE, "the fourth message on the desktop", |c| {
            c.get(&id).ok().flatten().filter(|v| v.messages.len() == 4)
        })
        .await?;
    let lines: Vec<&str> = view
        .messages
        .iter()
        .map(|m| m.message.content.as_str())
        .collect();
    assert_eq!(lines, ["held here", "second", "third", "fourth"]);
    assert_eq!(view.conversation.message_count, 4);
    assert!(desktop.cache().stale_conversations()?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_writes_sync_exactly_once_when_the_proxy_returns() -> anyhow::Result<()> {
    let artifacts = paths::artifacts_dir("sync_flow/offline")?;
    let provider = Provider::start(&artifacts, &[])?;
    let moto = confab_tests::moto::Moto::with_table(&artifacts)?;
    let proxy = Proxy::start(&provider.issuer, &artifacts, STORE, &moto.aws_env())?;
    let listen = proxy.base.trim_start_matches("http://").to_owned();
    let device = Device::start(&provider, &proxy.base, "user_demo").await?;
    let doomed = ulid();
    device
        .cache()
        .create(&doomed, Some("Doomed"), confab_cache::now())?;
    device.engine.local_change(&doomed);
    device
        .eventually(SETTLE, "synced", |c| {
            (c.outbox_counts().ok()? == (0, 0)).then_some(())
        })
        .await?;

    drop(proxy);
    let id = ulid();
    let cache = device.cache();
    cache.create(&id, Some("Written offline"), confab_cache::now())?;
    cache.update(
        &id,
        Patch {
            title: Some("Renamed offline".into()),
            ..Patch::default()
        },
        confab_cache::now(),
    )?;
    for n in 0..3 {
        cache.append(
            &id,
            &ulid(),
            Role::User,
            &format!("line {n}"),
            confab_cache::now(),
        )?;
    }
    cache.delete(&doomed, confab_cache::now())?;
    device.engine.local_change(&id);
    device
        .eventually(SETTLE, "offline", |_| {
            (device.engine.status().connection == Connection::Offline).then_some(())
        })
        .await?;
    assert_eq!(cache.outbox_counts()?, (6, 0));

    let proxy = Proxy::start_at(
        &provider.issuer,
        &artifacts,
        STORE,
        &listen,
        &moto.aws_env(),
    )?;
    // Nobody nudges the engine: it comes back by itself.
    device
        .eventually(confab_sync::RECOVERY, "everything pushed", |c| {
            (c.outbox_counts().ok()? == (0, 0)).then_some(())
        })
        .await?;

    let server = proxy.conversations_of(&provider, "user_demo").await?;
    assert_eq!(server.len(), 1, "{server:?}");
    assert_eq!(server[0].conversation.title, "Renamed offline");
    let lines: Vec<&str> = server[0]
        .messages
        .iter()
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(
        lines,
        ["line 0", "line 1", "line 2"],
        "each write exactly once"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_renames_converge_and_refusals_are_kept() -> anyhow::Result<()> {
    let artifacts = paths::artifacts_dir("sync_flow/conflict")?;
    let provider = Provider::start(&artifacts, &[])?;
    let moto = confab_tests::moto::Moto::with_table(&artifacts)?;
    let proxy = Proxy::start(&provider.issuer, &artifacts, STORE, &moto.aws_env())?;
    let listen = proxy.base.trim_start_matches("http://").to_owned();
    let mut a = Device::start(&provider, &proxy.base, "user_demo").await?;
    let b = Device::start(&provider, &proxy.base, "user_demo").await?;
    let id = ulid();
    a.cache()
        .create(&id, Some("Original"), confab_cache::now())?;
    a.engine.local_change(&id);
    b.eventually(SETTLE, "seen on b", |c| title_of(c, &id))
        .await?;

    // Both rename while the proxy is away, then both push.
    drop(proxy);
    a.cache().update(
        &id,
        Patch {
            title: Some("From A".into()),
            ..Patch::default()
        },
        confab_cache::now(),
    )?;
    b.cache().update(
        &id,
        Patch {
            title: Some("From B".into()),
            pinned: Some(true),
            ..Patch::default()
        },
        confab_cache::now(),
    )?;
    let _proxy = Proxy::start_at(
        &provider.issuer,
        &artifacts,
        STORE,
        &listen,
        &moto.aws_env(),
    )?;
    a.engine.sync_now();
    b.engine.sync_now();
    settled(&a).await?;
    settled(&b).await?;
    a.engine.sync_now();
    b.engine.sync_now();
    let final_a = a
        .eventually(SETTLE, "converged", |c| {
            let ta = title_of(c, &id)?;
            let tb = title_of(b.cache(), &id)?;
            (ta == tb).then_some(ta)
        })
        .await?;
    assert!(final_a == "From A" || final_a == "From B", "{final_a}");
    // Field by field: B's pin survives whichever title won.
    a.eventually(SETTLE, "pin kept", |c| {
        c.item(&id).ok().flatten().filter(|i| i.conversation.pinned)
    })
    .await?;

    // An append to a conversation deleted on the other device is refused,
    // kept with the reason, and can be discarded. A writes before it has
    // heard of the delete (its sync paused).
    a.stop_sync();
    b.cache().delete(&id, confab_cache::now())?;
    b.engine.local_change(&id);
    settled(&b).await?;
    let message = ulid();
    a.cache()
        .append(&id, &message, Role::User, "too late", confab_cache::now())?;
    a.start_sync();
    let entry = a
        .eventually(SETTLE, "refused", |c| {
            c.outbox().ok()?.into_iter().find(|e| e.failed.is_some())
        })
        .await?;
    let reason = entry.failed.clone().unwrap_or_default();
    assert!(reason.contains("deleted on another device"), "{reason}");
    assert_eq!(a.cache().outbox_counts()?, (0, 1));
    a.cache().discard(entry.seq)?;
    assert_eq!(a.cache().outbox_counts()?, (0, 0));
    a.eventually(SETTLE, "deleted on a", |c| {
        c.get(&id).ok().flatten().filter(|v| v.deleted)
    })
    .await?;
    Ok(())
}

/// History pruned on the server (TTL after 30 days), and a cursor ahead of
/// the server (a restored backup): a device relists and ends with exactly
/// the server's state, on both stores, without being nudged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruned_history_and_cursors_ahead_end_in_the_servers_state() -> anyhow::Result<()> {
    for dynamo in [false, true] {
        let name = if dynamo { "dynamodb" } else { "sqlite" };
        let artifacts = paths::artifacts_dir(&format!("sync_flow/relist_{name}"))?;
        let provider = Provider::start(&artifacts, &[])?;
        let moto = if dynamo {
            Some(confab_tests::moto::Moto::with_table(&artifacts)?)
        } else {
            None
        };
        let db = artifacts.join("proxy.db");
        let _ = std::fs::remove_file(&db);
        let proxy = match &moto {
            Some(moto) => Proxy::start(&provider.issuer, &artifacts, STORE, &moto.aws_env())?,
            None => Proxy::start(
                &provider.issuer,
                &artifacts,
                &format!("--store=sqlite:{}", db.display()),
                &[],
            )?,
        };
        let a = Device::start(&provider, &proxy.base, "user_demo").await?;
        let (kept, gone) = (ulid(), ulid());
        for (id, title) in [(&kept, "Kept"), (&gone, "Gone")] {
            a.cache().create(id, Some(title), confab_cache::now())?;
            a.cache()
                .append(id, &ulid(), Role::User, "a line", confab_cache::now())?;
        }
        a.cache().delete(&gone, confab_cache::now())?;
        a.engine.local_change(&kept);
        settled(&a).await?;

        // The whole change history goes, as TTL would take it.
        match &moto {
            Some(moto) => {
                assert!(moto.delete_items("confab", "CHG#").await? > 0);
            }
            None => {
                let pruned = rusqlite::Connection::open(&db)?.execute("DELETE FROM changes", [])?;
                assert!(pruned > 0);
            }
        }

        // A new device cannot walk the history: it lists instead.
        let mut b = Device::start(&provider, &proxy.base, "user_demo").await?;
        b.eventually(SETTLE, "the server's state on B", |c| {
            let list = c.list(ListFilter::Active, 0, 10).ok()?;
            let view = c.get(&kept).ok().flatten()?;
            (list.len() == 1 && view.messages.len() == 1).then_some(())
        })
        .await?;
        assert!(b.cache().get(&gone)?.is_none_or(|v| v.deleted));

        // A cursor ahead of the server: B lists again and follows on.
        b.stop_sync();
        b.cache().set_sync_value("cursor", "999999")?;
        b.start_sync();
        a.cache().update(
            &kept,
            Patch {
                title: Some("Kept, renamed".into()),
                ..Patch::default()
            },
            confab_cache::now(),
        )?;
        a.engine.local_change(&kept);
        b.eventually(SETTLE, "the rename on B", |c| {
            (title_of(c, &kept).as_deref() == Some("Kept, renamed")).then_some(())
        })
        .await?;
        let cursor: u64 = b
            .cache()
            .sync_value("cursor")?
            .unwrap_or_default()
            .parse()?;
        assert!(cursor < 999_999, "B kept a cursor the server never issued");
        let server = proxy.conversations_of(&provider, "user_demo").await?;
        assert_eq!(server.len(), 1, "{name}: {server:?}");
    }
    Ok(())
}

/// Collects a reply's text from `device`'s live events until it ends.
async fn follow_reply(
    replies: &mut tokio::sync::broadcast::Receiver<confab_wire::library::ReplyLive>,
    limit: Duration,
) -> anyhow::Result<(String, String, confab_wire::assistant::ReplyStatus)> {
    use confab_wire::library::ReplyLive;
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let live = tokio::time::timeout_at(deadline, replies.recv())
            .await
            .map_err(|_| anyhow::anyhow!("the reply did not end within {limit:?}"))??;
        match live {
            ReplyLive::Delta(d) if d.offset as usize == text.len() => text.push_str(&d.delta),
            ReplyLive::Delta(d) => anyhow::bail!("a gap: offset {} after {}", d.offset, text.len()),
            ReplyLive::Done(done) => return Ok((done.message_id, text, done.status)),
        }
    }
}

/// The text and status of the reply `id` in a device's cache.
fn cached_reply(
    cache: &confab_cache::Cache,
    conversation: &str,
    id: &str,
) -> Option<(String, confab_wire::assistant::ReplyStatus)> {
    let view = cache.get(conversation).ok().flatten()?;
    let m = view.messages.into_iter().find(|m| m.message.id == id)?;
    Some((m.message.content, m.message.reply?.status))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_stream_to_every_device_and_outlive_the_asker() -> anyhow::Result<()> {
    use confab_tests::model::{Behaviour, Model};
    use confab_wire::assistant::ReplyStatus;
    let artifacts = paths::artifacts_dir("sync_flow/replies")?;
    let provider = Provider::start(&artifacts, &[])?;
    let model = Model::start(&artifacts, 10)?;
    let store = format!("--store=sqlite:{}", artifacts.join("proxy.db").display());
    let proxy = Proxy::start(&provider.issuer, &artifacts, &store, &model.proxy_env())?;
    let mut a = Device::start(&provider, &proxy.base, "user_demo").await?;
    let b = Device::start(&provider, &proxy.base, "user_demo").await?;
    for device in [&a, &b] {
        device
            .eventually(SETTLE, "online", |_| {
                (device.engine.status().connection == Connection::Online).then_some(())
            })
            .await?;
    }
    let (mut on_a, mut on_b) = (a.engine.subscribe_replies(), b.engine.subscribe_replies());

    // A asks; the reply grows on both devices, and both end with its text.
    let id = ulid();
    a.cache().create(&id, None, confab_cache::now())?;
    let question = ulid();
    a.cache().append(
        &id,
        &question,
        Role::User,
        "Can you add a section on hiring?",
        confab_cache::now(),
    )?;
    a.cache()
        .ask(&id, &question, None, false, confab_cache::now())?;
    a.engine.local_change(&id);
    let (reply, text_a, status) = follow_reply(&mut on_a, SETTLE).await?;
    let (reply_b, text_b, _) = follow_reply(&mut on_b, SETTLE).await?;
    assert_eq!(status, ReplyStatus::Complete);
    assert_eq!(reply, reply_b);
    assert!(
        text_a.contains("Can you add a section on hiring?"),
        "{text_a}"
    );
    assert_eq!(text_a, text_b, "B's text equals A's");
    for device in [&a, &b] {
        let (content, status) = device
            .eventually(SETTLE, "the final reply in the cache", |c| {
                cached_reply(c, &id, &reply).filter(|(_, s)| *s == ReplyStatus::Complete)
            })
            .await?;
        assert_eq!(content, text_a);
        assert_eq!(status, ReplyStatus::Complete);
    }
    // The generated title reaches both.
    b.eventually(SETTLE, "the generated title", |c| {
        (title_of(c, &id).as_deref() == Some("Can you add a section")).then_some(())
    })
    .await?;

    // A goes away mid-reply: the reply finishes on the server, and A has it
    // when it is back.
    model
        .next(&Behaviour::Reply {
            text: Some("a long answer ".repeat(60)),
            delay_ms: Some(15),
        })
        .await?;
    let second = ulid();
    a.cache().append(
        &id,
        &second,
        Role::User,
        "And the budget?",
        confab_cache::now(),
    )?;
    a.cache()
        .ask(&id, &second, None, false, confab_cache::now())?;
    a.engine.local_change(&id);
    loop {
        if let confab_wire::library::ReplyLive::Delta(_) =
            tokio::time::timeout(SETTLE, on_a.recv()).await??
        {
            break;
        }
    }
    a.stop_sync();
    let (long, text, status) = follow_reply(&mut on_b, SETTLE).await?;
    assert_eq!(status, ReplyStatus::Complete);
    assert_eq!(text, "a long answer ".repeat(60));
    a.start_sync();
    a.eventually(SETTLE, "the finished reply on A", |c| {
        cached_reply(c, &id, &long).filter(|(t, s)| *s == ReplyStatus::Complete && *t == text)
    })
    .await?;

    // Asked offline: the request goes once the message is on the server,
    // exactly once.
    a.stop_sync();
    let offline = ulid();
    a.cache().append(
        &id,
        &offline,
        Role::User,
        "Written offline",
        confab_cache::now(),
    )?;
    a.cache()
        .ask(&id, &offline, None, false, confab_cache::now())?;
    assert!(
        a.cache()
            .get(&id)?
            .is_some_and(|v| v.messages.last().is_some_and(|m| m.asking))
    );
    a.start_sync();
    settled(&a).await?;
    b.eventually(SETTLE, "the offline question's reply on B", |c| {
        let view = c.get(&id).ok().flatten()?;
        let last = view.messages.last()?;
        (last.message.reply.as_ref()?.after == offline
            && last.message.reply.as_ref()?.status == ReplyStatus::Complete)
            .then_some(())
    })
    .await?;
    let asked: Vec<_> = model
        .requests()
        .await?
        .into_iter()
        .filter(|r| r.get("system").is_none())
        .filter(|r| r.to_string().contains("Written offline"))
        .collect();
    assert_eq!(asked.len(), 1, "one reply request for the offline question");
    let server = proxy.conversations_of(&provider, "user_demo").await?;
    assert_eq!(
        server[0].messages.len(),
        6,
        "three questions, three replies"
    );
    Ok(())
}

/// Sync does not trust the server (issue 14, item 11): a "proxy" that
/// expires every cursor it gives, and lists a conversation whose id is a
/// path, gets a bounded number of requests (the engine backs off instead of
/// relisting in a loop), and the hostile id never reaches a URL or the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_server_gets_backoff_and_no_path_from_its_ids() -> anyhow::Result<()> {
    use std::sync::{Arc, Mutex};

    use axum::extract::{Request, State};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use serde_json::json;

    #[derive(Default)]
    struct Seen {
        changes: usize,
        paths: Vec<String>,
    }

    async fn answer(State(seen): State<Arc<Mutex<Seen>>>, request: Request) -> impl IntoResponse {
        let path = request.uri().path().to_owned();
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.paths.push(path.clone());
        let now = chrono::Utc::now();
        let conversation = |id: &str| {
            json!({"id": id, "title": "From the server", "createdAt": now, "updatedAt": now,
                   "version": 1, "messageCount": 0, "lastMessagePreview": null,
                   "pinned": false, "archived": false})
        };
        match path.as_str() {
            "/api/changes" => {
                seen.changes += 1;
                let body = json!({"error": {"code": "cursor_expired", "message": "expired"},
                                  "current": {"cursor": "c1"}});
                (StatusCode::GONE, axum::Json(body)).into_response()
            }
            "/api/conversations" => axum::Json(json!({
                "items": [conversation(&ulid()), conversation("../../admin")],
                "nextCursor": null,
            }))
            .into_response(),
            "/api/user" => axum::Json(json!({
                "id": "user_demo", "email": "ada@example.com", "firstName": "Ada",
                "lastName": "Lovelace", "imageUrl": null,
                "createdAt": now, "updatedAt": now,
            }))
            .into_response(),
            _ if path.ends_with("/messages") => {
                axum::Json(json!({"items": [], "nextCursor": null})).into_response()
            }
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }

    let artifacts = paths::artifacts_dir("sync_flow/hostile")?;
    let provider = Provider::start(&artifacts, &[])?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = axum::Router::new()
        .fallback(answer)
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let device = Device::start(&provider, &base, "user_demo").await?;
    device
        .eventually(SETTLE, "the listed conversation", |c| {
            let items = c.list(ListFilter::Active, 0, 10).ok()?;
            (!items.is_empty()).then_some(())
        })
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    // Without the backoff: a relisting loop, hundreds of requests a second.
    assert!(
        (2..=10).contains(&seen.changes),
        "{} change-feed requests in about 3 s",
        seen.changes
    );
    assert!(
        !seen
            .paths
            .iter()
            .any(|p| p.contains("admin") || p.contains("..")),
        "a hostile id reached a URL: {:?}",
        seen.paths
    );
    let items = device.cache().list(ListFilter::Active, 0, 10)?;
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(confab_wire::limits::is_ulid(&items[0].conversation.id));
    Ok(())
}
