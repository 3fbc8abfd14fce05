//! The store conformance suite: every `Store` implementation must pass all of it.
//!
//! `store_conformance!(factory)` expands to one `#[tokio::test]` per case, where
//! `factory` is an async expression yielding a fresh, empty `Arc<dyn Store>` and
//! a guard that keeps its server running.

// Test support: a failed setup step should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use confab_proxy::ids::{Id, UserId};
use confab_proxy::store::{
    DeviceId, MessageRange, NewConversation, NewMessage, Patch, ProfileFields, Store, StoreError,
};
use confab_wire::conversations::{Change, Role};

pub type DynStore = Arc<dyn Store>;

pub fn user(name: &str) -> UserId {
    UserId::parse(name).expect("valid test user")
}

pub fn msg(content: &str) -> NewMessage {
    NewMessage {
        id: Id::new(),
        role: Role::User,
        content: content.to_owned(),
    }
}

/// A patch replacing every message (the template's PUT).
pub fn replacing(messages: Vec<NewMessage>) -> Patch {
    Patch {
        messages: Some(messages),
        ..Patch::default()
    }
}

pub fn conv(title: &str, messages: Vec<NewMessage>) -> NewConversation {
    NewConversation {
        id: Id::new(),
        title: title.to_owned(),
        messages,
    }
}

pub async fn create_and_get_round_trip(store: DynStore) {
    let ada = user("user_ada");
    let new = conv("Plans", vec![msg("first"), msg("second")]);
    let id = new.id;
    let created = store.create_conversation(&ada, new, None).await.unwrap();
    assert!(created.created);
    assert_eq!(created.value.conversation.version, 1);
    assert_eq!(created.value.conversation.message_count, 2);
    assert_eq!(
        created.value.conversation.last_message_preview.as_deref(),
        Some("second")
    );
    let got = store.get_conversation(&ada, id).await.unwrap();
    assert_eq!(got, created.value);
    let contents: Vec<_> = got.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["first", "second"]);
}

pub async fn replayed_create_returns_the_stored_one(store: DynStore) {
    let ada = user("user_ada");
    let new = conv("Once", vec![msg("hello")]);
    let first = store
        .create_conversation(&ada, new.clone(), None)
        .await
        .unwrap();
    let mut replay = new.clone();
    replay.title = "Different title".into();
    let second = store.create_conversation(&ada, replay, None).await.unwrap();
    assert!(!second.created);
    assert_eq!(second.value, first.value);
    let page = store.list_conversations(&ada, 50, None).await.unwrap();
    assert_eq!(page.items.len(), 1);
}

pub async fn users_never_see_each_other(store: DynStore) {
    let ada = user("user_ada");
    let bob = user("user_bob");
    let new = conv("Ada's", vec![msg("secret")]);
    let id = new.id;
    let before = store
        .create_conversation(&ada, new, None)
        .await
        .unwrap()
        .value;

    assert!(matches!(
        store.get_conversation(&bob, id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .update_conversation(
                &bob,
                id,
                Patch {
                    title: Some("mine now".into()),
                    ..Patch::default()
                },
                None
            )
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.append_message(&bob, id, msg("intrusion"), None).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete_conversation(&bob, id, None, None).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.restore_conversation(&bob, id, None).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        store
            .list_conversations(&bob, 50, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(store.changes(&bob, 0, 50).await.unwrap().items.is_empty());
    // Bob creating the same id makes his own conversation, not a replay of Ada's.
    let bobs = store
        .create_conversation(
            &bob,
            NewConversation {
                id,
                title: "Bob's".into(),
                messages: vec![],
            },
            None,
        )
        .await
        .unwrap();
    assert!(bobs.created);
    assert_eq!(store.get_conversation(&ada, id).await.unwrap(), before);
}

pub async fn list_pages_recent_first_without_gaps(store: DynStore) {
    let ada = user("user_ada");
    let mut ids = Vec::new();
    for i in 0..23 {
        let new = conv(&format!("c{i}"), vec![]);
        ids.push(new.id.to_string());
        store.create_conversation(&ada, new, None).await.unwrap();
    }
    // Touch the first one: it becomes the most recent (timestamps are
    // milliseconds: step past the creates' one).
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    let first = Id::parse(&ids[0]).unwrap();
    store
        .append_message(&ada, first, msg("bump"), None)
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_conversations(&ada, 10, cursor.as_deref())
            .await
            .unwrap();
        pages += 1;
        assert!(page.items.len() <= 10);
        seen.extend(page.items.iter().map(|c| (c.updated_at, c.id.clone())));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen.len(), 23);
    let unique: HashSet<_> = seen.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(unique.len(), 23);
    assert_eq!(seen[0].1, ids[0], "the touched conversation comes first");
    assert!(seen.windows(2).all(|w| w[0].0 >= w[1].0), "recent first");
}

pub async fn bad_cursor_is_refused(store: DynStore) {
    let ada = user("user_ada");
    for bad in ["", "garbage", "12:not-an-id", "x:y:z"] {
        assert!(
            matches!(
                store.list_conversations(&ada, 10, Some(bad)).await,
                Err(StoreError::InvalidCursor)
            ),
            "{bad:?}"
        );
    }
}

pub async fn updates_bump_version_and_detect_conflicts(store: DynStore) {
    let ada = user("user_ada");
    let new = conv("Draft", vec![msg("a")]);
    let id = new.id;
    store.create_conversation(&ada, new, None).await.unwrap();
    let updated = store
        .update_conversation(
            &ada,
            id,
            Patch {
                title: Some("Final".into()),
                pinned: Some(true),
                expected_version: Some(1),
                ..Patch::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(updated.title, "Final");
    assert!(updated.pinned && !updated.archived);
    assert_eq!(updated.version, 2);
    assert_eq!(updated.message_count, 1);

    match store
        .update_conversation(
            &ada,
            id,
            Patch {
                archived: Some(true),
                expected_version: Some(1),
                ..Patch::default()
            },
            None,
        )
        .await
    {
        Err(StoreError::Conflict(current)) => assert_eq!(*current, updated),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

pub async fn concurrent_versioned_updates_one_wins(store: DynStore) {
    let ada = user("user_ada");
    let new = conv("Race", vec![]);
    let id = new.id;
    store.create_conversation(&ada, new, None).await.unwrap();
    let attempt = |title: &'static str| {
        let store = Arc::clone(&store);
        let ada = ada.clone();
        tokio::spawn(async move {
            store
                .update_conversation(
                    &ada,
                    id,
                    Patch {
                        title: Some(title.into()),
                        expected_version: Some(1),
                        ..Patch::default()
                    },
                    None,
                )
                .await
        })
    };
    let (a, b) = tokio::join!(attempt("A"), attempt("B"));
    let results = [a.unwrap(), b.unwrap()];
    let wins = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Conflict(_))))
        .count();
    assert_eq!((wins, conflicts), (1, 1), "{results:?}");
    assert_eq!(
        store
            .get_conversation(&ada, id)
            .await
            .unwrap()
            .conversation
            .version,
        2
    );
}

pub async fn parallel_appends_keep_every_message(store: DynStore) {
    let ada = user("user_ada");
    let new = conv("Busy", vec![]);
    let id = new.id;
    store.create_conversation(&ada, new, None).await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = Arc::clone(&store);
            let ada = ada.clone();
            tokio::spawn(async move {
                store
                    .append_message(&ada, id, msg(&format!("message {i}")), None)
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let detail = store.get_conversation(&ada, id).await.unwrap();
    assert_eq!(detail.messages.len(), 50);
    assert_eq!(detail.conversation.message_count, 50);
    assert_eq!(detail.conversation.version, 51);
    let contents: HashSet<_> = detail.messages.iter().map(|m| m.content.clone()).collect();
    assert_eq!(contents.len(), 50);
}

pub async fn appends_are_idempotent_by_message_id(store: DynStore) {
    let ada = user("user_ada");
    let new = conv("Replay", vec![]);
    let id = new.id;
    store.create_conversation(&ada, new, None).await.unwrap();
    let m = msg("only once");
    let first = store
        .append_message(&ada, id, m.clone(), None)
        .await
        .unwrap();
    assert!(first.created);
    let again = store
        .append_message(&ada, id, m.clone(), None)
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.value.0, first.value.0);
    let mut other = m.clone();
    other.content = "something else".into();
    assert!(matches!(
        store.append_message(&ada, id, other, None).await,
        Err(StoreError::IdTaken(_))
    ));
    let detail = store.get_conversation(&ada, id).await.unwrap();
    assert_eq!(detail.messages.len(), 1);
    assert_eq!(detail.conversation.message_count, 1);
}

pub async fn delete_and_restore_keep_messages(store: DynStore) {
    let ada = user("user_ada");
    let new = conv("Keep me", vec![msg("one"), msg("two")]);
    let id = new.id;
    let created = store
        .create_conversation(&ada, new, None)
        .await
        .unwrap()
        .value;
    let deletion = store
        .delete_conversation(&ada, id, Some(1), None)
        .await
        .unwrap();
    assert!(deletion.deleted);
    assert_eq!(deletion.version, 2);
    assert!(matches!(
        store.get_conversation(&ada, id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete_conversation(&ada, id, None, None).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.append_message(&ada, id, msg("ghost"), None).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        store
            .list_conversations(&ada, 50, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let restored = store.restore_conversation(&ada, id, None).await.unwrap();
    assert_eq!(restored.version, 3);
    let detail = store.get_conversation(&ada, id).await.unwrap();
    assert_eq!(detail.messages, created.messages);
    assert_eq!(detail.conversation.title, "Keep me");
}

pub async fn replace_messages_like_the_template(store: DynStore) {
    let ada = user("user_ada");
    let new = conv("Replace", vec![msg("old 1"), msg("old 2"), msg("old 3")]);
    let id = new.id;
    store.create_conversation(&ada, new, None).await.unwrap();
    let updated = store
        .update_conversation(&ada, id, replacing(vec![msg("new")]), None)
        .await
        .unwrap();
    assert_eq!(updated.message_count, 1);
    let detail = store.get_conversation(&ada, id).await.unwrap();
    assert_eq!(detail.messages.len(), 1);
    assert_eq!(detail.messages[0].content, "new");
}

pub async fn changes_report_updates_and_deletions(store: DynStore) {
    let ada = user("user_ada");
    let a = conv("a", vec![]);
    let b = conv("b", vec![]);
    let (a_id, b_id) = (a.id, b.id);
    store.create_conversation(&ada, a, None).await.unwrap();
    store.create_conversation(&ada, b, None).await.unwrap();
    let start = store.changes(&ada, 0, 100).await.unwrap();
    assert_eq!(start.items.len(), 2);
    assert!(!start.has_more);
    let cursor: u64 = start.cursor.parse().unwrap();

    store
        .delete_conversation(&ada, a_id, None, None)
        .await
        .unwrap();
    store
        .append_message(&ada, b_id, msg("news"), None)
        .await
        .unwrap();
    let next = store.changes(&ada, cursor, 100).await.unwrap();
    assert_eq!(next.items.len(), 2);
    let by_id: BTreeMap<_, _> = next.items.iter().map(|c| (c.id().to_owned(), c)).collect();
    assert!(matches!(by_id[&a_id.to_string()], Change::Deleted(_)));
    match by_id[&b_id.to_string()] {
        Change::Updated(c) => assert_eq!(c.conversation.message_count, 1),
        other => panic!("{other:?}"),
    }
    let idle = store
        .changes(&ada, next.cursor.parse().unwrap(), 100)
        .await
        .unwrap();
    assert!(idle.items.is_empty());
    assert_eq!(idle.cursor, next.cursor);
}

pub async fn changes_page_with_limit(store: DynStore) {
    let ada = user("user_ada");
    for i in 0..7 {
        store
            .create_conversation(&ada, conv(&format!("{i}"), vec![]), None)
            .await
            .unwrap();
    }
    let mut cursor = 0;
    let mut seen = HashSet::new();
    loop {
        let page = store.changes(&ada, cursor, 3).await.unwrap();
        assert!(page.items.len() <= 3);
        for item in &page.items {
            assert!(seen.insert(item.id().to_owned()), "duplicate {}", item.id());
        }
        cursor = page.cursor.parse().unwrap();
        if !page.has_more {
            break;
        }
    }
    assert_eq!(seen.len(), 7);
}

/// Writers and a puller run at once; whatever the puller assembled from the feed
/// must equal the final state, conversation by conversation.
pub async fn changes_never_miss_concurrent_writes(store: DynStore) {
    let ada = user("user_ada");
    let mut seeds = Vec::new();
    for i in 0..5 {
        let new = conv(&format!("seed {i}"), vec![]);
        seeds.push(new.id);
        store.create_conversation(&ada, new, None).await.unwrap();
    }
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = Arc::clone(&store);
            let ada = ada.clone();
            let seeds = seeds.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    let target = seeds[(w + i) % seeds.len()];
                    match i % 3 {
                        0 => {
                            store
                                .create_conversation(&ada, conv(&format!("w{w} {i}"), vec![]), None)
                                .await
                                .unwrap();
                        }
                        1 => {
                            store
                                .append_message(&ada, target, msg(&format!("w{w} {i}")), None)
                                .await
                                .unwrap();
                        }
                        _ => {
                            store
                                .update_conversation(
                                    &ada,
                                    target,
                                    Patch {
                                        title: Some(format!("w{w} {i}")),
                                        ..Patch::default()
                                    },
                                    None,
                                )
                                .await
                                .unwrap();
                        }
                    }
                }
            })
        })
        .collect();
    let puller = {
        let store = Arc::clone(&store);
        let ada = ada.clone();
        tokio::spawn(async move {
            let mut state: BTreeMap<String, u64> = BTreeMap::new();
            let mut cursor = 0u64;
            for _ in 0..200 {
                let page = store.changes(&ada, cursor, 4).await.unwrap();
                for item in page.items {
                    let v = state.entry(item.id().to_owned()).or_default();
                    *v = (*v).max(item.version());
                }
                cursor = page.cursor.parse().unwrap();
                tokio::task::yield_now().await;
            }
            (state, cursor)
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    let (mut state, mut cursor) = puller.await.unwrap();
    // Drain what was written after the puller's last round.
    loop {
        let page = store.changes(&ada, cursor, 4).await.unwrap();
        for item in page.items {
            let v = state.entry(item.id().to_owned()).or_default();
            *v = (*v).max(item.version());
        }
        cursor = page.cursor.parse().unwrap();
        if !page.has_more {
            break;
        }
    }
    let mut truth = BTreeMap::new();
    let mut list_cursor = None;
    loop {
        let page = store
            .list_conversations(&ada, 100, list_cursor.as_deref())
            .await
            .unwrap();
        truth.extend(page.items.into_iter().map(|c| (c.id, c.version)));
        match page.next_cursor {
            Some(c) => list_cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(truth.len(), 5 + 4 * 4);
    assert_eq!(state, truth);
}

pub async fn large_conversations_come_back_whole(store: DynStore) {
    let ada = user("user_ada");
    let new = conv("Big", vec![]);
    let id = new.id;
    store.create_conversation(&ada, new, None).await.unwrap();
    let chunk = "x".repeat(100 * 1024);
    for i in 0..31 {
        store
            .append_message(&ada, id, msg(&format!("{i:03}{chunk}")), None)
            .await
            .unwrap();
    }
    let detail = store.get_conversation(&ada, id).await.unwrap();
    assert_eq!(detail.messages.len(), 31);
    let total: usize = detail.messages.iter().map(|m| m.content.len()).sum();
    assert!(total > 3 * 1024 * 1024, "{total}");
    for (i, m) in detail.messages.iter().enumerate() {
        assert!(m.content.starts_with(&format!("{i:03}")), "order at {i}");
    }

    // Bulk work on more than a store page (1 MB on DynamoDB) goes page by
    // page and still covers every message: delete and restore keep them all,
    // a replace leaves only the new ones, erasing leaves nothing.
    store
        .delete_conversation(&ada, id, None, None)
        .await
        .unwrap();
    store.restore_conversation(&ada, id, None).await.unwrap();
    assert_eq!(
        store
            .get_conversation(&ada, id)
            .await
            .unwrap()
            .messages
            .len(),
        31
    );
    let replace = replacing(vec![msg("only this")]);
    store
        .update_conversation(&ada, id, replace, None)
        .await
        .unwrap();
    let replaced = store.get_conversation(&ada, id).await.unwrap();
    assert_eq!(contents(&replaced.messages), ["only this"]);
    for i in 0..12 {
        store
            .append_message(&ada, id, msg(&format!("{i:03}{chunk}")), None)
            .await
            .unwrap();
    }
    store.erase_user(&ada).await.unwrap();
    assert!(matches!(
        store.get_conversation(&ada, id).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        store
            .list_conversations(&ada, 10, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

pub async fn profiles_upsert_and_keep_created_at(store: DynStore) {
    let ada = user("user_ada");
    assert_eq!(store.get_profile(&ada).await.unwrap(), None);
    let first = store
        .put_profile(
            &ada,
            ProfileFields {
                email: Some("ada@example.com".into()),
                first_name: Some("Ada".into()),
                ..ProfileFields::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(first.id, "user_ada");
    assert_eq!(first.clerk_id, "user_ada");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = store
        .put_profile(
            &ada,
            ProfileFields {
                email: Some("ada@lovelace.org".into()),
                last_name: Some("Lovelace".into()),
                ..ProfileFields::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(second.created_at, first.created_at);
    assert!(second.updated_at > first.updated_at);
    assert_eq!(second.email.as_deref(), Some("ada@lovelace.org"));
    assert_eq!(second.first_name, None);
    assert_eq!(store.get_profile(&ada).await.unwrap(), Some(second));
}

pub async fn erasing_a_user_leaves_others(store: DynStore) {
    let ada = user("user_ada");
    let bob = user("user_bob");
    store
        .put_profile(&ada, ProfileFields::default())
        .await
        .unwrap();
    let a = conv("a", vec![msg("x")]);
    let a_id = a.id;
    store.create_conversation(&ada, a, None).await.unwrap();
    let b = conv("b", vec![msg("y")]);
    let b_id = b.id;
    store.create_conversation(&bob, b, None).await.unwrap();
    store.erase_user(&ada).await.unwrap();
    assert_eq!(store.get_profile(&ada).await.unwrap(), None);
    assert!(matches!(
        store.get_conversation(&ada, a_id).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.changes(&ada, 0, 10).await.unwrap().items.is_empty());
    assert_eq!(
        store
            .get_conversation(&bob, b_id)
            .await
            .unwrap()
            .messages
            .len(),
        1
    );
    // A device still holding a token and an outbox cannot bring the
    // account back: creates and the profile are refused, nothing is stored.
    let late = store
        .create_conversation(&ada, conv("late", vec![msg("z")]), None)
        .await;
    assert!(matches!(late, Err(StoreError::Erased)), "{late:?}");
    let profile = store.put_profile(&ada, ProfileFields::default()).await;
    assert!(matches!(profile, Err(StoreError::Erased)), "{profile:?}");
    assert_eq!(store.get_profile(&ada).await.unwrap(), None);
    assert!(
        store
            .list_conversations(&ada, 10, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // Erasing again (a replayed webhook) is fine; others write as before.
    store.erase_user(&ada).await.unwrap();
    store
        .create_conversation(&bob, conv("still", vec![]), None)
        .await
        .unwrap();
}

pub async fn cursors_from_the_future_are_refused(store: DynStore) {
    let ada = user("user_ada");
    store
        .create_conversation(&ada, conv("a", vec![]), None)
        .await
        .unwrap();
    // Not resumable: list again from where the server is.
    assert!(matches!(
        store.changes(&ada, 2, 10).await,
        Err(StoreError::CursorExpired { current: 1 })
    ));
    assert!(store.changes(&ada, 1, 10).await.unwrap().items.is_empty());
}

pub async fn webhook_deliveries_are_remembered(store: DynStore) {
    assert!(!store.delivery_seen("msg_1").await.unwrap());
    store.record_delivery("msg_1").await.unwrap();
    assert!(store.delivery_seen("msg_1").await.unwrap());
    // Recording again (a retry that raced) is harmless.
    store.record_delivery("msg_1").await.unwrap();
    assert!(!store.delivery_seen("msg_2").await.unwrap());
    // Hostile ids are data, not keys or SQL.
    for id in [
        "USER#user_ada",
        "'; DROP TABLE changes; --",
        &"x".repeat(256),
    ] {
        assert!(!store.delivery_seen(id).await.unwrap());
        store.record_delivery(id).await.unwrap();
        assert!(store.delivery_seen(id).await.unwrap());
    }
    // Another user's data is not touched by delivery records.
    assert!(
        store
            .list_conversations(&user("user_ada"), 10, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// For a store made with `Caps { messages: 3, bytes: 100 }`: a write that
/// would pass a cap is refused naming it, and nothing of it is stored.
pub async fn caps_refuse_what_would_pass_them(store: DynStore) {
    let ada = user("user_ada");
    let new = conv("Capped", vec![msg("one"), msg("two")]);
    let id = new.id;
    store.create_conversation(&ada, new, None).await.unwrap();
    store
        .append_message(&ada, id, msg("three"), None)
        .await
        .unwrap();
    let refused = store.append_message(&ada, id, msg("four"), None).await;
    match refused {
        Err(StoreError::CapReached(why)) => {
            assert!(why.contains("CONFAB_MAX_CONVERSATION_MESSAGES"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    let stored = store.get_conversation(&ada, id).await.unwrap();
    assert_eq!(stored.messages.len(), 3);
    assert_eq!(stored.conversation.message_count, 3);

    // Bytes: 98 of 100 used, then 3 more is one too many; 2 fit.
    let (other, _) = (conv("Bytes", vec![msg(&"x".repeat(98))]), ());
    let other_id = other.id;
    store.create_conversation(&ada, other, None).await.unwrap();
    match store.append_message(&ada, other_id, msg("abc"), None).await {
        Err(StoreError::CapReached(why)) => {
            assert!(why.contains("CONFAB_MAX_CONVERSATION_BYTES"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    store
        .append_message(&ada, other_id, msg("ab"), None)
        .await
        .unwrap();

    // A create or a replace over a cap stores nothing.
    let big = conv("Too many", (0..4).map(|i| msg(&format!("{i}"))).collect());
    let big_id = big.id;
    assert!(matches!(
        store.create_conversation(&ada, big, None).await,
        Err(StoreError::CapReached(_))
    ));
    assert!(matches!(
        store.get_conversation(&ada, big_id).await,
        Err(StoreError::NotFound)
    ));
    let replace = replacing(vec![msg(&"y".repeat(101))]);
    assert!(matches!(
        store.update_conversation(&ada, id, replace, None).await,
        Err(StoreError::CapReached(_))
    ));
    assert_eq!(
        store
            .get_conversation(&ada, id)
            .await
            .unwrap()
            .messages
            .len(),
        3
    );
    // A replace within the caps resets the count: appends fit again.
    let replace = replacing(vec![msg("fresh")]);
    store
        .update_conversation(&ada, id, replace, None)
        .await
        .unwrap();
    store
        .append_message(&ada, id, msg("again"), None)
        .await
        .unwrap();
}

/// A conversation of `n` messages "m0".."m{n-1}", created in one request.
async fn numbered(store: &DynStore, who: &UserId, n: usize) -> (Id, Vec<String>) {
    let new = conv("Numbered", (0..n).map(|i| msg(&format!("m{i}"))).collect());
    let id = new.id;
    let created = store.create_conversation(who, new, None).await.unwrap();
    let ids = created
        .value
        .messages
        .iter()
        .map(|m| m.id.clone())
        .collect();
    (id, ids)
}

fn contents(messages: &[confab_wire::conversations::Message]) -> Vec<String> {
    messages.iter().map(|m| m.content.clone()).collect()
}

pub async fn messages_page_forwards_and_back(store: DynStore) {
    let ada = user("user_ada");
    let (id, ids) = numbered(&store, &ada, 7).await;
    let at = |i: usize| Id::parse(&ids[i]).unwrap();

    // Forwards from the start, three at a time, without gaps or repeats.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .messages(&ada, id, MessageRange::After(after), 3)
            .await
            .unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(contents(&page.items));
        match page.next_cursor {
            Some(cursor) => after = Some(Id::parse(&cursor).unwrap()),
            None => break,
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("m{i}")).collect::<Vec<_>>());

    // After a message: only the later ones, oldest first.
    let page = store
        .messages(&ada, id, MessageRange::After(Some(at(4))), 10)
        .await
        .unwrap();
    assert_eq!(contents(&page.items), ["m5", "m6"]);
    assert_eq!(page.next_cursor, None);

    // Back from a message: the newest before it, oldest first, then further back.
    let page = store
        .messages(&ada, id, MessageRange::Before(Some(at(5))), 2)
        .await
        .unwrap();
    assert_eq!(contents(&page.items), ["m3", "m4"]);
    assert_eq!(page.next_cursor.as_deref(), Some(ids[3].as_str()));
    let earlier = store
        .messages(&ada, id, MessageRange::Before(Some(at(3))), 10)
        .await
        .unwrap();
    assert_eq!(contents(&earlier.items), ["m0", "m1", "m2"]);
    assert_eq!(earlier.next_cursor, None);

    // Another user's, a deleted or an unknown conversation: not found.
    let bob = user("user_bob");
    for (who, conversation) in [(&bob, id), (&ada, Id::new())] {
        let refused = store
            .messages(who, conversation, MessageRange::After(None), 10)
            .await;
        assert!(matches!(refused, Err(StoreError::NotFound)), "{refused:?}");
    }
    store
        .delete_conversation(&ada, id, None, None)
        .await
        .unwrap();
    let gone = store
        .messages(&ada, id, MessageRange::After(None), 10)
        .await;
    assert!(matches!(gone, Err(StoreError::NotFound)), "{gone:?}");
}

pub async fn newest_messages_with_a_cursor_for_earlier_ones(store: DynStore) {
    let ada = user("user_ada");
    let (id, ids) = numbered(&store, &ada, 5).await;
    let newest = store.get_conversation_newest(&ada, id, 2).await.unwrap();
    assert_eq!(contents(&newest.messages), ["m3", "m4"]);
    assert_eq!(newest.conversation.message_count, 5);
    assert_eq!(newest.next_cursor.as_deref(), Some(ids[3].as_str()));
    let all = store.get_conversation_newest(&ada, id, 5).await.unwrap();
    assert_eq!(all.messages.len(), 5);
    assert_eq!(all.next_cursor, None);
    // The whole conversation (the template's shape) carries no cursor.
    let whole = store.get_conversation(&ada, id).await.unwrap();
    assert_eq!(whole.next_cursor, None);
    assert_eq!(whole.messages, all.messages);
}

pub async fn feed_entries_name_the_device_and_the_changed_messages(store: DynStore) {
    use confab_wire::conversations::ConversationChange;
    let ada = user("user_ada");
    let laptop = DeviceId::parse("laptop-1").unwrap();
    let phone = DeviceId::parse("phone-2").unwrap();
    let (a, _) = numbered(&store, &ada, 2).await;
    let (b, _) = numbered(&store, &ada, 1).await;
    let base = store.changes(&ada, 0, 100).await.unwrap().cursor;
    let since: u64 = base.parse().unwrap();

    let first = store
        .append_message(&ada, a, msg("from the laptop"), Some(&laptop))
        .await
        .unwrap()
        .value
        .0;
    store
        .append_message(&ada, a, msg("and more"), Some(&laptop))
        .await
        .unwrap();
    let rename = Patch {
        title: Some("Renamed".into()),
        ..Patch::default()
    };
    store
        .update_conversation(&ada, b, rename, Some(&phone))
        .await
        .unwrap();

    let feed = store.changes(&ada, since, 100).await.unwrap();
    let entry = |id: Id| -> ConversationChange {
        feed.items
            .iter()
            .find_map(|c| match c {
                Change::Updated(u) if u.conversation.id == id.to_string() => Some(u.clone()),
                _ => None,
            })
            .expect("in the feed")
    };
    let a_entry = entry(a);
    assert_eq!(a_entry.device.as_ref(), Some(&laptop));
    let changed = a_entry.message_changes.expect("messages changed");
    // The oldest of the two appended: fetching after the one before it gets both.
    assert_eq!(changed.from.as_deref(), Some(first.id.as_str()));
    assert!(!changed.all);
    let b_entry = entry(b);
    assert_eq!(b_entry.device.as_ref(), Some(&phone));
    assert_eq!(b_entry.message_changes, None);

    // One conversation per page: the second page still knows what the
    // entries it covers did to the messages.
    store
        .append_message(&ada, b, msg("late"), None)
        .await
        .unwrap();
    let replace = replacing(vec![msg("only")]);
    store
        .update_conversation(&ada, a, replace, None)
        .await
        .unwrap();
    let mut cursor = since;
    let mut marks = BTreeMap::new();
    loop {
        let page = store.changes(&ada, cursor, 1).await.unwrap();
        for item in &page.items {
            if let Change::Updated(u) = item {
                let m = u.message_changes.clone().expect("messages changed");
                let slot = marks
                    .entry(u.conversation.id.clone())
                    .or_insert((false, false));
                slot.0 |= m.all;
                slot.1 |= m.from.is_some();
            }
        }
        cursor = page.cursor.parse().unwrap();
        if !page.has_more {
            break;
        }
    }
    assert!(marks[&a.to_string()].0, "a's messages were replaced");
    assert!(marks[&b.to_string()].1, "b got a message");
}

/// A new reply to `after`, as the proxy starts one: empty and streaming.
fn reply_to(after: Id, at_offset: u128) -> confab_wire::conversations::Message {
    use confab_wire::assistant::{Reply, ReplyStatus};
    let at = confab_proxy::store::now();
    confab_wire::conversations::Message {
        id: after.offset(at_offset).unwrap().to_string(),
        role: Role::Assistant,
        content: String::new(),
        timestamp: at,
        reply: Some(Reply {
            status: ReplyStatus::Streaming,
            model: "m".into(),
            after: after.to_string(),
            updated_at: at,
            usage: None,
            stop_reason: None,
            error: None,
        }),
    }
}

pub async fn replies_start_grow_stop_and_regenerate(store: DynStore) {
    use confab_proxy::store::ReplyWrite;
    use confab_wire::assistant::ReplyStatus;
    let ada = user("user_ada");
    let question = msg("What is new?");
    let after = question.id;
    let new = conv("Plans", vec![question]);
    let id = new.id;
    store.create_conversation(&ada, new, None).await.unwrap();

    // Only a message of the user's can be answered.
    let stray = reply_to(Id::new(), 1 << 32);
    let refused = store
        .write_reply(
            &ada,
            id,
            ReplyWrite::Start {
                message: stray,
                regenerate: false,
            },
            None,
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::NotAUserMessage)),
        "{refused:?}"
    );

    let started = reply_to(after, 1 << 32);
    let start = ReplyWrite::Start {
        message: started.clone(),
        regenerate: false,
    };
    let first = store
        .write_reply(&ada, id, start.clone(), None)
        .await
        .unwrap();
    assert!(first.created);
    assert_eq!(first.value.1.message_count, 2);
    assert_eq!(first.value.1.version, 2);
    // A repeat answers the same reply and writes nothing.
    let again = store.write_reply(&ada, id, start, None).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.value.0.id, started.id);
    assert_eq!(again.value.1.version, 2);

    // The run writes its text; the conversation counts it.
    let mut grown = started.clone();
    grown.content = "Hello there".into();
    let written = store
        .write_reply(
            &ada,
            id,
            ReplyWrite::Progress {
                message: grown.clone(),
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(written.value.1.message_count, 2, "the same message, grown");
    assert_eq!(
        written.value.1.last_message_preview.as_deref(),
        Some("Hello there")
    );
    let stored = store.get_conversation(&ada, id).await.unwrap();
    assert_eq!(stored.messages[1].content, "Hello there");
    assert_eq!(
        stored.messages[1].reply.as_ref().unwrap().status,
        ReplyStatus::Streaming
    );

    // The feed marks the reply for a delta fetch.
    let feed = store.changes(&ada, 2, 10).await.unwrap();
    let Change::Updated(change) = &feed.items[0] else {
        panic!("live")
    };
    assert_eq!(
        change.message_changes.as_ref().unwrap().from.as_deref(),
        Some(started.id.as_str())
    );

    // Regenerating a live reply waits for it to end.
    let busy = store
        .write_reply(
            &ada,
            id,
            ReplyWrite::Start {
                message: reply_to(after, 1 << 32),
                regenerate: true,
            },
            None,
        )
        .await;
    assert!(matches!(busy, Err(StoreError::ReplyBusy)), "{busy:?}");

    // Stop keeps the text; the run then learns of it and adds what it has.
    let reply_id = Id::parse(&started.id).unwrap();
    let stopped = store
        .write_reply(&ada, id, ReplyWrite::Stop { id: reply_id }, None)
        .await
        .unwrap();
    assert!(stopped.created);
    assert_eq!(stopped.value.0.content, "Hello there");
    assert_eq!(
        stopped.value.0.reply.as_ref().unwrap().status,
        ReplyStatus::Stopped
    );
    let mut more = grown.clone();
    more.content = "Hello there, friend".into();
    let last = store
        .write_reply(&ada, id, ReplyWrite::Progress { message: more }, None)
        .await
        .unwrap();
    assert_eq!(last.value.0.content, "Hello there, friend");
    assert_eq!(
        last.value.0.reply.as_ref().unwrap().status,
        ReplyStatus::Stopped
    );
    // A stop of an ended reply changes nothing.
    let again = store
        .write_reply(&ada, id, ReplyWrite::Stop { id: reply_id }, None)
        .await
        .unwrap();
    assert!(!again.created);

    // Regenerate replaces it: same id, a new run; the old run is refused.
    let mut second = reply_to(after, 1 << 32);
    second.timestamp += chrono::Duration::milliseconds(5);
    let replaced = store
        .write_reply(
            &ada,
            id,
            ReplyWrite::Start {
                message: second.clone(),
                regenerate: true,
            },
            None,
        )
        .await
        .unwrap();
    assert!(replaced.created);
    assert_eq!(replaced.value.0.content, "");
    assert_eq!(replaced.value.1.message_count, 2);
    let late = store
        .write_reply(&ada, id, ReplyWrite::Progress { message: grown }, None)
        .await;
    assert!(matches!(late, Err(StoreError::ReplyEnded)), "{late:?}");

    // Someone else's conversation is not found.
    let bob = user("user_bob");
    let theirs = store
        .write_reply(&bob, id, ReplyWrite::Stop { id: reply_id }, None)
        .await;
    assert!(matches!(theirs, Err(StoreError::NotFound)), "{theirs:?}");
}

pub async fn assistant_settings_are_kept_and_replaced_whole(store: DynStore) {
    use confab_wire::conversations::AssistantSettings;
    let ada = user("user_ada");
    let new = conv("Settings", vec![msg("hi")]);
    let id = new.id;
    store.create_conversation(&ada, new, None).await.unwrap();
    let chosen = AssistantSettings {
        off: false,
        model: Some("claude-haiku-4-5".into()),
        instructions: Some("Be brief.\nUse lists.".into()),
    };
    let patch = Patch {
        assistant: Some(chosen.clone()),
        ..Patch::default()
    };
    let updated = store
        .update_conversation(&ada, id, patch, None)
        .await
        .unwrap();
    assert_eq!(updated.assistant, chosen);
    assert_eq!(updated.version, 2);
    let got = store.get_conversation(&ada, id).await.unwrap();
    assert_eq!(got.conversation.assistant, chosen);
    // The feed and the list carry them.
    let feed = store.changes(&ada, 0, 10).await.unwrap();
    let Change::Updated(change) = &feed.items[0] else {
        panic!("live")
    };
    assert_eq!(change.conversation.assistant, chosen);
    let listed = store.list_conversations(&ada, 10, None).await.unwrap();
    assert_eq!(listed.items[0].assistant, chosen);
    // Other changes keep them; back to the defaults stores nothing.
    let rename = Patch {
        title: Some("Renamed".into()),
        ..Patch::default()
    };
    let renamed = store
        .update_conversation(&ada, id, rename, None)
        .await
        .unwrap();
    assert_eq!(renamed.assistant, chosen);
    let reset = Patch {
        assistant: Some(AssistantSettings::default()),
        ..Patch::default()
    };
    store
        .update_conversation(&ada, id, reset, None)
        .await
        .unwrap();
    let got = store.get_conversation(&ada, id).await.unwrap();
    assert!(got.conversation.assistant.is_default());
}

pub async fn usage_counts_per_day_and_refuses_past_the_budget(store: DynStore) {
    let ada = user("user_ada");
    let bob = user("user_bob");
    let day =
        |d: i64| confab_proxy::store::usage_day(chrono::Utc::now() + chrono::Duration::days(d));
    let (today, tomorrow, later) = (day(0), day(1), day(2));
    assert_eq!(
        store
            .charge_usage(&ada, &today, 0, Some(100))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.charge_usage(&ada, &today, 60, None).await.unwrap(),
        60
    );
    assert_eq!(
        store
            .charge_usage(&ada, &today, 50, Some(100))
            .await
            .unwrap(),
        110
    );
    let over = store.charge_usage(&ada, &today, 0, Some(100)).await;
    assert!(
        matches!(over, Err(StoreError::OverBudget { used: 110 })),
        "{over:?}"
    );
    // Another day, another user: their own counts.
    assert_eq!(
        store
            .charge_usage(&ada, &tomorrow, 5, Some(100))
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        store
            .charge_usage(&bob, &today, 7, Some(100))
            .await
            .unwrap(),
        7
    );

    // Concurrent charges all count.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        let who = bob.clone();
        let later = later.clone();
        tasks.push(tokio::spawn(async move {
            store.charge_usage(&who, &later, 3, None).await.unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.charge_usage(&bob, &later, 0, None).await.unwrap(), 60);
}

#[macro_export]
macro_rules! store_conformance {
    ($factory:expr) => {
        $crate::store_conformance!(@cases $factory;
            create_and_get_round_trip,
            replayed_create_returns_the_stored_one,
            users_never_see_each_other,
            list_pages_recent_first_without_gaps,
            bad_cursor_is_refused,
            updates_bump_version_and_detect_conflicts,
            concurrent_versioned_updates_one_wins,
            parallel_appends_keep_every_message,
            appends_are_idempotent_by_message_id,
            delete_and_restore_keep_messages,
            replace_messages_like_the_template,
            changes_report_updates_and_deletions,
            changes_page_with_limit,
            changes_never_miss_concurrent_writes,
            large_conversations_come_back_whole,
            profiles_upsert_and_keep_created_at,
            erasing_a_user_leaves_others,
            cursors_from_the_future_are_refused,
            messages_page_forwards_and_back,
            newest_messages_with_a_cursor_for_earlier_ones,
            feed_entries_name_the_device_and_the_changed_messages,
            webhook_deliveries_are_remembered,
            replies_start_grow_stop_and_regenerate,
            assistant_settings_are_kept_and_replaced_whole,
            usage_counts_per_day_and_refuses_past_the_budget
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                // The guard keeps whatever serves the store alive for the test.
                let (store, _guard) = $factory.await;
                store_suite::$case(store).await;
            }
        )*
    };
}
