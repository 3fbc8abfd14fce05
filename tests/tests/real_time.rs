//! The real-time promise (design section 7): a change shows on the other
//! device within 2 s. Its own test binary, so it runs alone: elsewhere the
//! suites wait with their general timeout, and a loaded 2-core machine does
//! not make them flake.

use std::time::Duration;

use confab_cache::local::Patch;
use confab_tests::oidc::Provider;
use confab_tests::paths;
use confab_tests::proxy::Proxy;
use confab_tests::session::Device;
use confab_wire::conversations::Role;
use confab_wire::library::{Connection, ListFilter};

const REAL_TIME: Duration = Duration::from_secs(2);
const SETTLE: Duration = Duration::from_secs(20);
const STORE: &str = "--store=dynamodb";

fn ulid() -> String {
    ulid::Ulid::new().to_string()
}

fn title_of(cache: &confab_cache::Cache, id: &str) -> Option<String> {
    cache.item(id).ok().flatten().map(|i| i.conversation.title)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_the_other_device_in_real_time() -> anyhow::Result<()> {
    let artifacts = paths::artifacts_dir("sync_flow/two_devices")?;
    let provider = Provider::start(&artifacts, &[])?;
    let moto = confab_tests::moto::Moto::with_table(&artifacts)?;
    let proxy = Proxy::start(&provider.issuer, &artifacts, STORE, &moto.aws_env())?;
    let laptop = Device::start(&provider, &proxy.base, "user_demo").await?;
    let desktop = Device::start(&provider, &proxy.base, "user_demo").await?;
    for device in [&laptop, &desktop] {
        device
            .eventually(SETTLE, "online", |_| {
                (device.engine.status().connection == Connection::Online).then_some(())
            })
            .await?;
    }

    // Laptop writes; the desktop shows it without anyone asking.
    let id = ulid();
    laptop
        .cache()
        .create(&id, Some("Weekend plans"), confab_cache::now())?;
    laptop.cache().append(
        &id,
        &ulid(),
        Role::User,
        "Hiking on Saturday?",
        confab_cache::now(),
    )?;
    laptop.engine.local_change(&id);
    desktop
        .eventually(
            REAL_TIME + Duration::from_secs(1),
            "create and message on the desktop",
            |c| c.get(&id).ok().flatten().filter(|v| v.messages.len() == 1),
        )
        .await?;

    // And the reverse, timed from the write.
    let started = tokio::time::Instant::now();
    desktop.cache().update(
        &id,
        Patch {
            title: Some("Weekend: hiking".into()),
            pinned: Some(true),
            ..Patch::default()
        },
        confab_cache::now(),
    )?;
    desktop.engine.local_change(&id);
    laptop
        .eventually(REAL_TIME, "rename on the laptop", |c| {
            (title_of(c, &id).as_deref() == Some("Weekend: hiking")).then_some(())
        })
        .await?;
    assert!(
        started.elapsed() <= REAL_TIME,
        "took {:?}",
        started.elapsed()
    );
    assert!(
        laptop
            .cache()
            .item(&id)?
            .map(|i| i.conversation.pinned)
            .unwrap_or(false)
    );

    // Delete on one, undo on the other: the conversation and its message come back.
    laptop.cache().delete(&id, confab_cache::now())?;
    laptop.engine.local_change(&id);
    desktop
        .eventually(REAL_TIME, "deleted on the desktop", |c| {
            c.list(ListFilter::Active, 0, 10)
                .ok()
                .filter(|l| l.is_empty())
        })
        .await?;
    desktop.cache().restore(&id, confab_cache::now())?;
    desktop.engine.local_change(&id);
    laptop
        .eventually(REAL_TIME, "restored on the laptop", |c| {
            c.get(&id)
                .ok()
                .flatten()
                .filter(|v| !v.deleted && v.messages.len() == 1)
        })
        .await?;
    Ok(())
}
