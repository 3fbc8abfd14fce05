//! Assistant replies through the router, against the Messages API stand-in:
//! streaming, idempotency, stop, regenerate, limits, quota, provider
//! failures and hostile input.

use std::time::Duration;

use confab_model_standin::{Behaviour, ModelStandIn, Options};
use confab_proxy::assistant::{Provider, Settings};
use confab_proxy::events::Live;
use confab_proxy::ids::{Id, UserId};
use confab_wire::assistant::{ModelInfo, ReplyDone, ReplyStatus};
use serde_json::{Value, json};

use crate::support::*;

async fn standin() -> ModelStandIn {
    ModelStandIn::start(Options::default()).await.unwrap()
}

fn settings(standin: &ModelStandIn) -> Settings {
    let mut s = Settings::new(
        Provider::Anthropic {
            base_url: standin.url.clone(),
            key: standin.key.clone(),
        },
        vec![
            ModelInfo {
                id: "claude-test".into(),
                name: "Claude Test".into(),
            },
            ModelInfo {
                id: "claude-other".into(),
                name: "Claude Other".into(),
            },
        ],
    );
    s.first_backoff = Duration::from_millis(20);
    s.checkpoint_every = Duration::from_millis(100);
    s.first_token_timeout = Duration::from_secs(5);
    s.idle_timeout = Duration::from_secs(5);
    s
}

/// A conversation with one message of the user's: (conversation, message).
async fn asked(api: &Api, token: &str, question: &str) -> (String, String) {
    let message = Id::new().to_string();
    let created = api
        .call(
            "POST",
            "/api/conversations",
            Some(token),
            Some(json!({"messages": [{"id": message, "role": "user", "content": question}]})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json);
    (created.json["id"].as_str().unwrap().to_owned(), message)
}

async fn ask(api: &Api, token: &str, conversation: &str, body: Value) -> Reply {
    api.call(
        "POST",
        &format!("/api/conversations/{conversation}/replies"),
        Some(token),
        Some(body),
    )
    .await
}

/// The deltas of `message` and its end, as an event stream sees them.
async fn until_done(
    sub: &mut confab_proxy::events::Subscription,
    message: &str,
) -> (String, Vec<u64>, ReplyDone) {
    let mut text = String::new();
    let mut seqs = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), sub.receiver.recv())
            .await
            .expect("the reply ends within 20 s")
            .expect("events");
        match event {
            Live::Reply(d) if d.message_id == message => {
                assert_eq!(d.offset as usize, text.len(), "deltas follow each other");
                text.push_str(&d.delta);
                seqs.push(d.seq);
            }
            Live::ReplyDone(done) if done.message_id == message => return (text, seqs, done),
            _ => {}
        }
    }
}

fn subscribe(api: &Api, sub: &str) -> confab_proxy::events::Subscription {
    api.events.subscribe(&UserId::parse(sub).unwrap()).unwrap()
}

/// The conversation with all its messages, as `GET` answers it.
async fn detail(api: &Api, token: &str, conversation: &str) -> Reply {
    api.call(
        "GET",
        &format!("/api/conversations/{conversation}"),
        Some(token),
        None,
    )
    .await
}

async fn stored(api: &Api, token: &str, conversation: &str, id: &str) -> Value {
    detail(api, token, conversation).await.json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

/// The reply once a checkpoint has stored some of its text, polled: the
/// stored message as it then is.
async fn checkpointed(api: &Api, token: &str, conversation: &str, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let message = stored(api, token, conversation, id).await;
        if message["content"].as_str().is_some_and(|t| !t.is_empty()) {
            return message;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checkpoint within 10 s: {message}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Model requests (title requests have a system prompt).
fn replies_asked(standin: &ModelStandIn) -> Vec<Value> {
    standin
        .requests()
        .into_iter()
        .filter(|r| r.get("system").is_none())
        .collect()
}

async fn wait_requests(standin: &ModelStandIn, n: usize) {
    for _ in 0..250 {
        if standin.requests().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the stand-in got {} requests, not {n}",
        standin.requests().len()
    );
}

#[tokio::test]
async fn the_assistant_says_whether_it_is_on() {
    let off = Api::new();
    let token = token_for("user_ada");
    let info = off.call("GET", "/api/assistant", Some(&token), None).await;
    assert_eq!(info.status, 200);
    assert_eq!(info.json["available"], false);
    assert!(
        info.json["reason"]
            .as_str()
            .unwrap()
            .contains("ANTHROPIC_API_KEY")
    );
    let (conversation, after) = asked(&off, &token, "hello").await;
    let refused = ask(&off, &token, &conversation, json!({"after": after})).await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.code(), "assistant_unavailable");
    assert!(
        refused.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unavailable")
    );
    assert_eq!(
        off.call("GET", "/api/assistant", None, None).await.status,
        401
    );

    let s = standin().await;
    let on = Api::with_assistant(settings(&s));
    let info = on.call("GET", "/api/assistant", Some(&token), None).await;
    assert_eq!(info.json["available"], true);
    assert_eq!(info.json["defaultModel"], "claude-test");
    assert_eq!(info.json["models"][1]["name"], "Claude Other");
}

#[tokio::test]
async fn a_reply_streams_to_the_users_streams_and_is_stored() {
    let s = standin().await;
    let api = Api::with_assistant(settings(&s));
    let token = token_for("user_ada");
    let (conversation, after) = asked(&api, &token, "Can you add a section on hiring?").await;
    let mut sub = subscribe(&api, "user_ada");
    let mut other = subscribe(&api, "user_bob");

    let started = ask(&api, &token, &conversation, json!({"after": after})).await;
    assert_eq!(started.status, 202, "{:?}", started.json);
    let message = &started.json["message"];
    assert_eq!(message["status"], "streaming");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["model"], "claude-test");
    assert_eq!(message["after"], after.as_str());
    let id = message["id"].as_str().unwrap().to_owned();
    assert!(id > after, "the reply sorts after its question");

    let (text, seqs, done) = until_done(&mut sub, &id).await;
    assert!(text.contains("Can you add a section on hiring?"), "{text}");
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(done.status, ReplyStatus::Complete);
    let usage = done.usage.unwrap();
    assert!(usage.input_tokens > 0 && usage.output_tokens as usize == seqs.len());
    assert!(
        other.receiver.try_recv().is_err(),
        "nothing reaches another user"
    );

    let m = stored(&api, &token, &conversation, &id).await;
    assert_eq!(m["content"], text.as_str());
    assert_eq!(m["status"], "complete");
    assert_eq!(m["stopReason"], "end_turn");
    assert_eq!(m["usage"]["outputTokens"], usage.output_tokens);

    // The model saw the conversation, as the Messages API wants it.
    let asked = replies_asked(&s);
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0]["model"], "claude-test");
    assert_eq!(asked[0]["stream"], true);
    assert_eq!(
        asked[0]["messages"],
        json!([{"role": "user", "content": "Can you add a section on hiring?"}])
    );

    // Then the conversation, titled by default, gets a short title.
    let mut title = String::new();
    for _ in 0..100 {
        let c = api
            .call(
                "GET",
                &format!("/api/conversations/{conversation}?limit=1"),
                Some(&token),
                None,
            )
            .await;
        title = c.json["title"].as_str().unwrap().to_owned();
        if title != "New conversation" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(title, "Can you add a section");
}

#[tokio::test]
async fn a_repeat_answers_the_same_reply_without_asking_again() {
    let s = standin().await;
    let api = Api::with_assistant(settings(&s));
    let token = token_for("user_ada");
    let (conversation, after) = asked(&api, &token, "Once only").await;
    let mut sub = subscribe(&api, "user_ada");
    let body = json!({"after": after});
    // Concurrent and sequential repeats all name one reply.
    let (a, b) = tokio::join!(
        ask(&api, &token, &conversation, body.clone()),
        ask(&api, &token, &conversation, body.clone())
    );
    assert_eq!(a.status, 202);
    assert_eq!(b.status, 202);
    assert_eq!(a.json["message"]["id"], b.json["message"]["id"]);
    let id = a.json["message"]["id"].as_str().unwrap().to_owned();
    until_done(&mut sub, &id).await;
    let again = ask(&api, &token, &conversation, body).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.json["message"]["id"], id.as_str());
    assert_eq!(again.json["message"]["status"], "complete");
    assert_eq!(replies_asked(&s).len(), 1, "one provider call");
    let detail = detail(&api, &token, &conversation).await;
    assert_eq!(detail.json["messageCount"], 2);
}

#[tokio::test]
async fn stop_keeps_the_text_so_far() {
    let s = standin().await;
    let api = Api::with_assistant(settings(&s));
    let token = token_for("user_ada");
    let (conversation, after) = asked(&api, &token, "Tell me a long story").await;
    s.next(Behaviour::Reply {
        text: Some("word ".repeat(400)),
        delay_ms: Some(10),
    });
    let mut sub = subscribe(&api, "user_ada");
    let started = ask(&api, &token, &conversation, json!({"after": after})).await;
    let id = started.json["message"]["id"].as_str().unwrap().to_owned();
    let mut seen = String::new();
    while seen.len() < 50 {
        if let Ok(Live::Reply(d)) = sub.receiver.recv().await {
            seen.push_str(&d.delta);
        }
    }
    let stopped = api
        .call(
            "POST",
            &format!("/api/conversations/{conversation}/replies/{id}/stop"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(stopped.status, 200, "{:?}", stopped.json);
    let message = &stopped.json["message"];
    assert_eq!(message["status"], "stopped");
    let text = message["content"].as_str().unwrap();
    assert!(
        text.len() >= seen.len() && text.len() < 2000,
        "{}",
        text.len()
    );
    let (_, _, done) = until_done(&mut sub, &id).await;
    assert_eq!(done.status, ReplyStatus::Stopped);
    let m = stored(&api, &token, &conversation, &id).await;
    assert_eq!(m["content"], text);
    assert_eq!(m["status"], "stopped");
    // Nothing grows after the stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        stored(&api, &token, &conversation, &id).await["content"],
        text
    );
    assert_eq!(s.open_streams(), 0, "the provider stream was closed");

    // Stopping again answers the stopped reply; unknown ids are 404.
    let again = api
        .call(
            "POST",
            &format!("/api/conversations/{conversation}/replies/{id}/stop"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json["message"]["content"], text);
    for bad in [Id::new().to_string(), "nope".into(), after.clone()] {
        let r = api
            .call(
                "POST",
                &format!("/api/conversations/{conversation}/replies/{bad}/stop"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(r.status, 404, "{bad}");
    }
    let bob = token_for("user_bob");
    let theirs = api
        .call(
            "POST",
            &format!("/api/conversations/{conversation}/replies/{id}/stop"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(theirs.status, 404);
}

#[tokio::test]
async fn a_stop_on_another_instance_ends_the_run() {
    let s = standin().await;
    let a = Api::with_assistant(settings(&s));
    let b = a.another_assistant(settings(&s));
    let token = token_for("user_ada");
    let (conversation, after) = asked(&a, &token, "Long one").await;
    s.next(Behaviour::Reply {
        text: Some("word ".repeat(400)),
        delay_ms: Some(10),
    });
    let mut sub = subscribe(&a, "user_ada");
    let started = ask(&a, &token, &conversation, json!({"after": after})).await;
    let id = started.json["message"]["id"].as_str().unwrap().to_owned();
    // Past the first checkpoint.
    checkpointed(&a, &token, &conversation, &id).await;
    let stopped = b
        .call(
            "POST",
            &format!("/api/conversations/{conversation}/replies/{id}/stop"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(stopped.status, 200);
    assert_eq!(stopped.json["message"]["status"], "stopped");
    let at_stop = stopped.json["message"]["content"].as_str().unwrap().len();
    assert!(at_stop > 0, "the checkpointed text is kept");
    // The run on A learns of it at its next checkpoint and adds its text.
    let (_, _, done) = until_done(&mut sub, &id).await;
    assert_eq!(done.status, ReplyStatus::Stopped);
    let m = stored(&a, &token, &conversation, &id).await;
    assert_eq!(m["status"], "stopped");
    let text = m["content"].as_str().unwrap();
    assert!(text.len() >= at_stop && text.len() < 2000, "{}", text.len());
    for _ in 0..100 {
        if a.assistant.running() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.assistant.running(), 0, "the run ended");
}

#[tokio::test]
async fn regenerate_replaces_a_finished_reply_and_waits_for_a_live_one() {
    let s = standin().await;
    let api = Api::with_assistant(settings(&s));
    let token = token_for("user_ada");
    let (conversation, after) = asked(&api, &token, "Again").await;
    let mut sub = subscribe(&api, "user_ada");
    s.next(Behaviour::Reply {
        text: Some("first answer".into()),
        delay_ms: None,
    });
    let first = ask(&api, &token, &conversation, json!({"after": after})).await;
    let id = first.json["message"]["id"].as_str().unwrap().to_owned();
    until_done(&mut sub, &id).await;
    // The title request comes after the first reply: script what follows it.
    wait_requests(&s, 2).await;

    s.next(Behaviour::Reply {
        text: Some("second answer, slowly ".repeat(30)),
        delay_ms: Some(20),
    });
    let again = ask(
        &api,
        &token,
        &conversation,
        json!({"after": after, "regenerate": true, "model": "claude-other"}),
    )
    .await;
    assert_eq!(again.status, 202);
    assert_eq!(again.json["message"]["id"], id.as_str());
    assert_eq!(again.json["message"]["content"], "");
    assert_eq!(again.json["message"]["model"], "claude-other");
    let busy = ask(
        &api,
        &token,
        &conversation,
        json!({"after": after, "regenerate": true}),
    )
    .await;
    assert_eq!(busy.status, 409, "{:?}", busy.json);
    let (text, _, done) = until_done(&mut sub, &id).await;
    assert_eq!(done.status, ReplyStatus::Complete);
    assert!(text.starts_with("second answer"));
    let m = stored(&api, &token, &conversation, &id).await;
    assert_eq!(m["content"], text.as_str());
    let detail = detail(&api, &token, &conversation).await;
    assert_eq!(detail.json["messageCount"], 2, "replaced, not added");
    assert_eq!(replies_asked(&s)[1]["model"], "claude-other");
}

#[tokio::test]
async fn at_most_two_replies_run_per_user() {
    let s = standin().await;
    let api = Api::with_assistant(settings(&s));
    let token = token_for("user_ada");
    let mut sub = subscribe(&api, "user_ada");
    let mut ids = Vec::new();
    for i in 0..2 {
        let (conversation, after) = asked(&api, &token, &format!("q{i}")).await;
        s.next(Behaviour::Reply {
            text: Some("slow ".repeat(100)),
            delay_ms: Some(10),
        });
        let r = ask(&api, &token, &conversation, json!({"after": after})).await;
        assert_eq!(r.status, 202);
        ids.push(r.json["message"]["id"].as_str().unwrap().to_owned());
    }
    let (conversation, after) = asked(&api, &token, "third").await;
    let third = ask(&api, &token, &conversation, json!({"after": after})).await;
    assert_eq!(third.status, 429, "{:?}", third.json);
    assert!(third.headers.contains_key("retry-after"));
    assert!(
        third.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 2")
    );
    // Nothing was stored for the refused one.
    let detail = detail(&api, &token, &conversation).await;
    assert_eq!(detail.json["messageCount"], 1);
    // Another user is not held up.
    let bob = token_for("user_bob");
    let (theirs, question) = asked(&api, &bob, "mine").await;
    assert_eq!(
        ask(&api, &bob, &theirs, json!({"after": question}))
            .await
            .status,
        202
    );
    let mut ended = 0;
    while ended < ids.len() {
        if let Ok(Live::ReplyDone(done)) = sub.receiver.recv().await
            && ids.contains(&done.message_id)
        {
            ended += 1;
        }
    }
    assert_eq!(
        ask(&api, &token, &conversation, json!({"after": after}))
            .await
            .status,
        202
    );
}

#[tokio::test]
async fn the_daily_budget_refuses_with_when_it_resets() {
    let s = standin().await;
    let mut tight = settings(&s);
    tight.daily_tokens = Some(10);
    let api = Api::with_assistant(tight);
    let token = token_for("user_ada");
    let (conversation, after) = asked(&api, &token, "spend it").await;
    let mut sub = subscribe(&api, "user_ada");
    let first = ask(&api, &token, &conversation, json!({"after": after})).await;
    assert_eq!(first.status, 202);
    let id = first.json["message"]["id"].as_str().unwrap().to_owned();
    let (_, _, done) = until_done(&mut sub, &id).await;
    assert!(done.usage.unwrap().input_tokens + done.usage.unwrap().output_tokens > 10);
    // Usage was counted before the end was announced.
    let question = Id::new().to_string();
    api.call(
        "POST",
        &format!("/api/conversations/{conversation}/messages"),
        Some(&token),
        Some(json!({"id": question, "role": "user", "content": "more"})),
    )
    .await;
    let refused = ask(&api, &token, &conversation, json!({"after": question})).await;
    assert_eq!(refused.status, 429, "{:?}", refused.json);
    let message = refused.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("resets at midnight UTC"), "{message}");
    let retry: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry));
    assert_eq!(
        stored(&api, &token, &conversation, &question).await["content"],
        "more"
    );
    // Another user has their own budget.
    let bob = token_for("user_bob");
    let (theirs, q) = asked(&api, &bob, "mine").await;
    assert_eq!(
        ask(&api, &bob, &theirs, json!({"after": q})).await.status,
        202
    );
}

async fn failed_with(behaviours: &[Behaviour], tune: impl FnOnce(&mut Settings)) -> (Value, usize) {
    let s = standin().await;
    let mut config = settings(&s);
    tune(&mut config);
    let api = Api::with_assistant(config);
    let token = token_for("user_ada");
    let (conversation, after) = asked(&api, &token, "Will this work?").await;
    for b in behaviours {
        s.next(b.clone());
    }
    let mut sub = subscribe(&api, "user_ada");
    let started = ask(&api, &token, &conversation, json!({"after": after})).await;
    assert_eq!(started.status, 202);
    let id = started.json["message"]["id"].as_str().unwrap().to_owned();
    until_done(&mut sub, &id).await;
    (
        stored(&api, &token, &conversation, &id).await,
        replies_asked(&s).len(),
    )
}

#[tokio::test]
async fn busy_providers_are_retried_before_the_first_token() {
    let (m, calls) = failed_with(
        &[
            Behaviour::Status {
                status: 429,
                retry_after: Some(0),
            },
            Behaviour::Status {
                status: 529,
                retry_after: None,
            },
        ],
        |_| {},
    )
    .await;
    assert_eq!(m["status"], "complete", "{m}");
    assert_eq!(calls, 3);

    // Past the retries: failed, saying so.
    let (m, calls) = failed_with(
        &vec![
            Behaviour::Status {
                status: 529,
                retry_after: None,
            };
            3
        ],
        |s| s.retries = 2,
    )
    .await;
    assert_eq!(calls, 3);
    assert_eq!(m["status"], "failed");
    assert!(m["error"].as_str().unwrap().contains("overloaded"), "{m}");
}

#[tokio::test]
async fn a_refused_key_says_unavailable_and_never_shows_the_key() {
    let s = standin().await;
    let mut config = settings(&s);
    config.provider = Provider::Anthropic {
        base_url: s.url.clone(),
        key: "sk-ant-wrong-key-0123".into(),
    };
    let api = Api::with_assistant(config);
    let token = token_for("user_ada");
    let (conversation, after) = asked(&api, &token, "hello").await;
    let mut sub = subscribe(&api, "user_ada");
    let started = ask(&api, &token, &conversation, json!({"after": after})).await;
    let id = started.json["message"]["id"].as_str().unwrap().to_owned();
    let (_, _, done) = until_done(&mut sub, &id).await;
    assert_eq!(done.status, ReplyStatus::Failed);
    let error = done.error.unwrap();
    assert!(error.contains("unavailable"), "{error}");
    let m = stored(&api, &token, &conversation, &id).await;
    assert!(!m.to_string().contains("sk-ant-wrong"), "{m}");
    assert_eq!(replies_asked(&s).len(), 1, "a refused key is not retried");
}

#[tokio::test]
async fn a_broken_stream_fails_and_keeps_its_text() {
    let (m, _) = failed_with(&[Behaviour::Cut { after: 4 }], |_| {}).await;
    assert_eq!(m["status"], "failed");
    assert_eq!(m["content"], "You asked: *Will this ");
    assert!(m["error"].as_str().unwrap().contains("broke off"), "{m}");

    let (m, _) = failed_with(&[Behaviour::ErrorEvent { after: 3 }], |_| {}).await;
    assert_eq!(m["status"], "failed");
    assert_eq!(m["content"], "You asked: *Will ");
    assert!(
        m["error"].as_str().unwrap().contains("overloaded_error"),
        "{m}"
    );
}

#[tokio::test]
async fn silent_models_time_out() {
    let (m, _) = failed_with(&[Behaviour::Silent { after: 0 }], |s| {
        s.first_token_timeout = Duration::from_millis(300);
    })
    .await;
    assert_eq!(m["status"], "failed");
    assert!(
        m["error"].as_str().unwrap().contains("did not start"),
        "{m}"
    );

    let (m, _) = failed_with(&[Behaviour::Silent { after: 2 }], |s| {
        s.idle_timeout = Duration::from_millis(300);
    })
    .await;
    assert_eq!(m["status"], "failed");
    assert_eq!(m["content"], "You asked: ");
    assert!(m["error"].as_str().unwrap().contains("went silent"), "{m}");
}

#[tokio::test]
async fn the_text_so_far_is_checkpointed() {
    let s = standin().await;
    let api = Api::with_assistant(settings(&s));
    let token = token_for("user_ada");
    let (conversation, after) = asked(&api, &token, "slowly").await;
    s.next(Behaviour::Reply {
        text: Some("piece ".repeat(100)),
        delay_ms: Some(10),
    });
    let mut sub = subscribe(&api, "user_ada");
    let started = ask(&api, &token, &conversation, json!({"after": after})).await;
    let id = started.json["message"]["id"].as_str().unwrap().to_owned();
    let partial = checkpointed(&api, &token, &conversation, &id).await;
    assert_eq!(partial["status"], "streaming");
    let text = partial["content"].as_str().unwrap();
    assert!(!text.is_empty() && text.len() < 600, "{}", text.len());
    assert!("piece ".repeat(100).starts_with(text));
    until_done(&mut sub, &id).await;
}

#[tokio::test]
async fn the_history_is_sent_as_alternating_turns() {
    let s = standin().await;
    let api = Api::with_assistant(settings(&s));
    let token = token_for("user_ada");
    let (conversation, first) = asked(&api, &token, "one").await;
    let mut sub = subscribe(&api, "user_ada");
    let r = ask(&api, &token, &conversation, json!({"after": first})).await;
    until_done(&mut sub, r.json["message"]["id"].as_str().unwrap()).await;
    for text in ["two", "three"] {
        api.call(
            "POST",
            &format!("/api/conversations/{conversation}/messages"),
            Some(&token),
            Some(json!({"role": "user", "content": text})),
        )
        .await;
    }
    let detail = detail(&api, &token, &conversation).await;
    let last = detail.json["messages"][3]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = ask(&api, &token, &conversation, json!({"after": last})).await;
    until_done(&mut sub, r.json["message"]["id"].as_str().unwrap()).await;
    let turns = &replies_asked(&s)[1]["messages"];
    let roles: Vec<_> = turns
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    assert_eq!(turns[2]["content"], "two\n\nthree");
}

#[tokio::test]
async fn an_openai_compatible_server_answers_too() {
    let s = standin().await;
    let mut config = settings(&s);
    config.provider = Provider::OpenAi {
        base_url: format!("{}/v1", s.url),
        key: Some(s.key.clone()),
    };
    let api = Api::with_assistant(config);
    let token = token_for("user_ada");
    let (conversation, after) = asked(&api, &token, "Local model?").await;
    let mut sub = subscribe(&api, "user_ada");
    let r = ask(&api, &token, &conversation, json!({"after": after})).await;
    let id = r.json["message"]["id"].as_str().unwrap().to_owned();
    let (text, _, done) = until_done(&mut sub, &id).await;
    assert_eq!(done.status, ReplyStatus::Complete);
    assert!(text.contains("Local model?"));
    assert!(done.usage.unwrap().output_tokens > 0);
    let m = stored(&api, &token, &conversation, &id).await;
    assert_eq!(m["stopReason"], "stop");
    let asked = &s.requests()[0];
    assert_eq!(
        asked["messages"],
        json!([{"role": "user", "content": "Local model?"}])
    );

    let (m, _) = failed_with(&[Behaviour::Cut { after: 2 }], |c| {
        c.provider = Provider::OpenAi {
            base_url: "http://127.0.0.1:9/v1".into(),
            key: None,
        };
    })
    .await;
    assert_eq!(m["status"], "failed");
    assert!(m["error"].as_str().unwrap().contains("broke off"), "{m}");
}

#[tokio::test]
async fn a_conversations_settings_choose_the_model_and_the_instructions() {
    let s = standin().await;
    let api = Api::with_assistant(settings(&s));
    let token = token_for("user_ada");
    let (conversation, after) = asked(&api, &token, "Bonjour").await;
    let path = format!("/api/conversations/{conversation}");
    let put = |body: Value| api.call("PUT", &path, Some(&token), Some(body));
    let saved =
        put(json!({"assistant": {"model": "claude-other", "instructions": "Answer in French."}}))
            .await;
    assert_eq!(saved.status, 200, "{:?}", saved.json);
    assert_eq!(saved.json["assistant"]["instructions"], "Answer in French.");
    let mut sub = subscribe(&api, "user_ada");
    let r = ask(&api, &token, &conversation, json!({"after": after})).await;
    assert_eq!(r.json["message"]["model"], "claude-other");
    until_done(&mut sub, r.json["message"]["id"].as_str().unwrap()).await;
    let sent = &s.requests()[0];
    assert_eq!(sent["system"], "Answer in French.");
    assert_eq!(sent["model"], "claude-other");

    // A model the server does not offer is refused; instructions are bounded.
    for (body, field) in [
        (
            json!({"assistant": {"model": "has space"}}),
            "assistant.model",
        ),
        (
            json!({"assistant": {"instructions": "x".repeat(8_001)}}),
            "assistant.instructions",
        ),
        (json!({"assistant": {"off": "yes"}}), "assistant.off"),
    ] {
        let r = put(body).await;
        assert_eq!(r.status, 400, "{:?}", r.json);
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{:?}",
            r.json
        );
    }

    // Off: asking is refused, and nothing is written.
    assert_eq!(put(json!({"assistant": {"off": true}})).await.status, 200);
    let question = Id::new().to_string();
    api.call(
        "POST",
        &format!("/api/conversations/{conversation}/messages"),
        Some(&token),
        Some(json!({"id": question, "role": "user", "content": "quiet now"})),
    )
    .await;
    let refused = ask(&api, &token, &conversation, json!({"after": question})).await;
    assert_eq!(refused.status, 409, "{:?}", refused.json);
    assert!(
        refused.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("turned off")
    );
    let detail = detail(&api, &token, &conversation).await;
    assert_eq!(detail.json["messageCount"], 3);
    assert_eq!(detail.json["assistant"]["off"], true);
    assert!(
        detail.json["assistant"].get("instructions").is_none(),
        "replaced whole"
    );
}

#[tokio::test]
async fn hostile_reply_requests_are_refused_and_store_nothing() {
    let s = standin().await;
    let api = Api::with_assistant(settings(&s));
    let token = token_for("user_ada");
    let (conversation, after) = asked(&api, &token, "hi").await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({}), 400, "body"),
        (json!({"after": "not-an-id"}), 400, "after"),
        (json!({"after": Id::new().to_string()}), 400, "after"),
        (json!({"after": after, "model": "gpt-evil"}), 400, "model"),
        (json!({"after": after, "model": 7}), 400, "model"),
        (json!({"after": after, "stream": false}), 400, "stream"),
        (
            json!({"after": after, "regenerate": "yes"}),
            400,
            "regenerate",
        ),
        (json!({"after": "x".repeat(100_000)}), 400, "after"),
    ];
    for (body, status, field) in cases {
        let r = ask(&api, &token, &conversation, body.clone()).await;
        assert_eq!(r.status, status, "{body}: {:?}", r.json);
        let message = r.json["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{body}: {message}");
    }
    let huge = ask(
        &api,
        &token,
        &conversation,
        json!({"after": "x".repeat(3_000_000)}),
    )
    .await;
    assert_eq!(huge.status, 413);
    // Another user's conversation, or none.
    let bob = token_for("user_bob");
    assert_eq!(
        ask(&api, &bob, &conversation, json!({"after": after}))
            .await
            .status,
        404
    );
    assert_eq!(
        ask(
            &api,
            &token,
            &Id::new().to_string(),
            json!({"after": after})
        )
        .await
        .status,
        404
    );
    // An assistant message cannot be answered.
    let mut sub = subscribe(&api, "user_ada");
    let r = ask(&api, &token, &conversation, json!({"after": after})).await;
    let reply = r.json["message"]["id"].as_str().unwrap().to_owned();
    until_done(&mut sub, &reply).await;
    let r = ask(&api, &token, &conversation, json!({"after": reply})).await;
    assert_eq!(r.status, 400);
    assert_eq!(replies_asked(&s).len(), 1);
    let detail = detail(&api, &token, &conversation).await;
    assert_eq!(detail.json["messageCount"], 2);
}
