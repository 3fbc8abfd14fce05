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
    // Both instances hear Redis before the first write.
    for proxy in [&one, &two] {
        proxy
            .service
            .wait_for_log("subscribed to change notices", Duration::from_secs(10))?;
    }
    let id = create(&two.base, &token, "Written through two").await?;
    // The suite's general timeout: the 2-second promise is real_time.rs's.
    let notice = next_change(&mut on_one, confab_tests::stack::UI)
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

async fn ask(proxy: &str, token: &str, question: &str) -> anyhow::Result<(String, String)> {
    let http = reqwest::Client::new();
    let message = ulid::Ulid::new().to_string();
    let created: serde_json::Value = http
        .post(format!("{proxy}/api/conversations"))
        .bearer_auth(token)
        .json(&serde_json::json!({"title": "Relayed", "messages": [{"id": message, "role": "user", "content": question}]}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let conversation = created["id"].as_str().unwrap_or_default().to_owned();
    let started: serde_json::Value = http
        .post(format!("{proxy}/api/conversations/{conversation}/replies"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "after": message }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let reply = started["message"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok((conversation, reply))
}

/// The stored message `id` of `conversation`, read through `proxy`.
async fn stored(
    proxy: &str,
    token: &str,
    conversation: &str,
    id: &str,
) -> anyhow::Result<serde_json::Value> {
    let detail: serde_json::Value = reqwest::Client::new()
        .get(format!("{proxy}/api/conversations/{conversation}"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(detail["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == id).cloned())
        .unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_stream_across_instances_and_keys_stay_secret() -> anyhow::Result<()> {
    confab_tests::bounded(confab_tests::TEST_DEADLINE, replies_across()).await
}

async fn replies_across() -> anyhow::Result<()> {
    use confab_model_standin::{ModelStandIn, Options};
    let artifacts = paths::artifacts_dir("proxy_redis_replies")?;
    let provider = Provider::start(&artifacts, &[])?;
    let redis = Redis::start(&artifacts)?;
    let model = ModelStandIn::start(Options {
        key: "standin-key".into(),
        word_delay: Duration::from_millis(10),
    })
    .await?;
    let store = format!("--store=sqlite:{}", artifacts.join("shared.db").display());
    let env = |key: &str| {
        vec![
            ("CONFAB_REDIS_URL", redis.url()),
            ("ANTHROPIC_API_KEY", key.to_owned()),
            ("ANTHROPIC_BASE_URL", model.url.clone()),
            ("CONFAB_MODELS", "standin".to_owned()),
        ]
    };
    let one = Proxy::start(&provider.issuer, &artifacts, &store, &env(&model.key))?;
    let two = Proxy::start(&provider.issuer, &artifacts, &store, &env(&model.key))?;
    let token = provider.sign_in("user_demo").await?.access_token;
    let mut on_one = listen(&one.base, &token).await?;
    for proxy in [&one, &two] {
        proxy
            .service
            .wait_for_log("subscribed to change notices", Duration::from_secs(10))?;
    }

    // Asked through two, generated there: its text streams to one's streams.
    let (conversation, reply) = ask(&two.base, &token, "Across instances?").await?;
    let mut text = String::new();
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some((name, data)) = on_one.recv().await {
            let data: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
            match name.as_str() {
                "reply" if data["messageId"] == reply.as_str() => {
                    assert_eq!(data["offset"].as_u64(), Some(text.len() as u64));
                    text.push_str(data["delta"].as_str().unwrap_or_default());
                }
                "reply-done" if data["messageId"] == reply.as_str() => return Some(data),
                _ => {}
            }
        }
        None
    })
    .await?
    .ok_or_else(|| anyhow::anyhow!("the stream on one ended"))?;
    assert_eq!(ended["status"], "complete");
    assert!(text.contains("Across instances?"), "{text}");
    let m = stored(&one.base, &token, &conversation, &reply).await?;
    assert_eq!(m["content"].as_str(), Some(text.as_str()));

    // A refused key: the reply says the assistant is unavailable, the log
    // says the key was refused, and neither shows it.
    let secret = "sk-ant-wrong-0123456789abcdef";
    let wrong = Proxy::start(&provider.issuer, &artifacts, &store, &env(secret))?;
    let (conversation, reply) = ask(&wrong.base, &token, "With a bad key").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let failed = loop {
        let m = stored(&wrong.base, &token, &conversation, &reply).await?;
        if m["status"] == "failed" {
            break m;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "never failed: {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("unavailable"),
        "{failed}"
    );
    assert!(!failed.to_string().contains(secret));
    let log = std::fs::read_to_string(wrong.service.log_path())?;
    assert!(log.contains("refused the API key"), "{log}");
    assert!(!log.contains(secret), "the key is in the log");
    Ok(())
}
