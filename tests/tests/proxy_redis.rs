//! Two proxy processes on one store with a real redis-server between them: a
//! write through one reaches the event streams held by the other, and a Redis
//! outage costs notices, never writes.

use std::time::Duration;

use confab_tests::oidc::Provider;
use confab_tests::paths;
use confab_tests::proxy::Proxy;
use confab_tests::redis::Redis;
use tokio::sync::mpsc;

/// Opens `GET /api/events` and forwards each event's name and data.
async fn listen(
    proxy: &str,
    token: &str,
) -> anyhow::Result<mpsc::UnboundedReceiver<(String, String)>> {
    let mut response = reqwest::Client::new()
        .get(format!("{proxy}/api/events"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buffer = String::new();
        let (mut event, mut data) = (String::new(), String::new());
        while let Ok(Some(chunk)) = response.chunk().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find('\n') {
                let line: String = buffer.drain(..=end).collect();
                let line = line.trim_end();
                if line.is_empty() {
                    if !event.is_empty() && tx.send((event.clone(), data.clone())).is_err() {
                        return;
                    }
                    event.clear();
                    data.clear();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = v.trim().to_owned();
                }
            }
        }
    });
    Ok(rx)
}

/// The next `change` event, within `limit`.
async fn next_change(
    events: &mut mpsc::UnboundedReceiver<(String, String)>,
    limit: Duration,
) -> Option<String> {
    tokio::time::timeout(limit, async {
        while let Some((name, data)) = events.recv().await {
            if name == "change" {
                return Some(data);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

async fn create(proxy: &str, token: &str, title: &str) -> anyhow::Result<String> {
    let body: serde_json::Value = reqwest::Client::new()
        .post(format!("{proxy}/api/conversations"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "title": title }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(body["id"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_cross_instances_through_redis() -> anyhow::Result<()> {
    confab_tests::bounded(confab_tests::TEST_DEADLINE, crossing()).await
}

async fn crossing() -> anyhow::Result<()> {
    let artifacts = paths::artifacts_dir("proxy_redis")?;
    let provider = Provider::start(&artifacts, &[])?;
    let mut redis = Redis::start(&artifacts)?;
    let store = format!("--store=sqlite:{}", artifacts.join("shared.db").display());
    let relay = [("CONFAB_REDIS_URL", redis.url())];
    let one = Proxy::start(&provider.issuer, &artifacts, &store, &relay)?;
    let two = Proxy::start(&provider.issuer, &artifacts, &store, &relay)?;
    let token = provider.sign_in("user_demo").await?.access_token;

    let mut on_one = listen(&one.base, &token).await?;
    // Subscriptions settle before the first write.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = create(&two.base, &token, "Written through two").await?;
    let notice = next_change(&mut on_one, Duration::from_secs(2))
        .await
        .ok_or_else(|| anyhow::anyhow!("no change event on instance one"))?;
    assert!(notice.contains(&id), "{notice}");

    // A third instance without Redis: its writes reach only its own streams.
    let alone = Proxy::start(&provider.issuer, &artifacts, &store, &[])?;
    create(&alone.base, &token, "Not relayed").await?;
    assert_eq!(next_change(&mut on_one, Duration::from_secs(1)).await, None);

    // Redis goes away: writes still succeed; when it is back, notices cross again.
    redis.stop();
    create(&two.base, &token, "During the outage").await?;
    redis.resume()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let id = create(&two.base, &token, "After the outage").await?;
        if let Some(notice) = next_change(&mut on_one, Duration::from_secs(2)).await
            && notice.contains(&id)
        {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "notices never crossed again"
        );
    }
    Ok(())
}
