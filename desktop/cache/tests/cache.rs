//! The cache on a real SQLite file: local writes and their outbox, the server's
//! changes on top, search, and schema upgrades.

#![allow(clippy::unwrap_used)] // test builders: a failure is a broken test

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use confab_cache::local::Patch;
use confab_cache::{Cache, CacheError, Op, schema};
use confab_wire::conversations::{
    Change, Conversation, ConversationChange, ConversationDetail, Deletion, Message, Role,
};
use confab_wire::library::ListFilter;

/// Monotonic, as the app makes them: two ids made within one millisecond
/// keep their order (messages are ordered by id).
fn id() -> String {
    static IDS: std::sync::Mutex<Option<ulid::Generator>> = std::sync::Mutex::new(None);
    let mut ids = IDS.lock().unwrap_or_else(|p| p.into_inner());
    ids.get_or_insert_with(ulid::Generator::new)
        .generate()
        .unwrap_or_else(|_| ulid::Ulid::new())
        .to_string()
}

fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::minutes(minutes)
}

/// The server's view of a conversation (builder for the tests).
fn server(id: &str, version: u64, title: &str, count: u64, minutes: i64) -> Conversation {
    Conversation {
        id: id.into(),
        title: title.into(),
        created_at: at(0),
        updated_at: at(minutes),
        version,
        message_count: count,
        last_message_preview: None,
        pinned: false,
        archived: false,
        assistant: Default::default(),
    }
}

/// The contents of a conversation's messages as shown, in order.
fn shown(cache: &Cache, id: &str) -> Vec<String> {
    let view = cache.get(id).unwrap().unwrap();
    view.messages
        .iter()
        .map(|m| m.message.content.clone())
        .collect()
}

fn updated(c: Conversation) -> Change {
    Change::Updated(ConversationChange::whole(c))
}

fn message(id: &str, content: &str, minutes: i64) -> Message {
    Message {
        id: id.into(),
        role: Role::User,
        content: content.into(),
        timestamp: at(minutes),
        reply: None,
    }
}

fn open() -> (tempfile::TempDir, Cache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("cache.db")).unwrap();
    (dir, cache)
}

fn titles(cache: &Cache, filter: ListFilter) -> Vec<String> {
    cache
        .list(filter, 0, 100)
        .unwrap()
        .into_iter()
        .map(|i| i.conversation.title)
        .collect()
}

fn ops(cache: &Cache) -> Vec<Op> {
    cache.outbox().unwrap().into_iter().map(|e| e.op).collect()
}

#[test]
fn local_writes_show_at_once_and_queue_in_order() {
    let (_dir, cache) = open();
    let (a, b) = (id(), id());
    cache.create(&a, Some("Alpha"), at(1)).unwrap();
    cache.create(&b, None, at(2)).unwrap();
    assert_eq!(
        titles(&cache, ListFilter::Active),
        ["New conversation", "Alpha"]
    );

    cache
        .update(
            &a,
            Patch {
                pinned: Some(true),
                ..Patch::default()
            },
            at(3),
        )
        .unwrap();
    assert_eq!(
        titles(&cache, ListFilter::Active),
        ["Alpha", "New conversation"],
        "pinned first"
    );
    let m = id();
    let view = cache
        .append(&b, &m, Role::User, "hello  there\nfriend", at(4))
        .unwrap();
    assert!(view.pending);
    let item = cache.item(&b).unwrap().unwrap();
    assert_eq!(item.conversation.message_count, 1);
    assert_eq!(
        item.conversation.last_message_preview.as_deref(),
        Some("hello there friend")
    );
    assert_eq!(item.pending, 2);

    cache
        .update(
            &b,
            Patch {
                archived: Some(true),
                title: Some(" Renamed ".into()),
                ..Patch::default()
            },
            at(5),
        )
        .unwrap();
    assert_eq!(titles(&cache, ListFilter::Active), ["Alpha"]);
    assert_eq!(titles(&cache, ListFilter::Archived), ["Renamed"]);
    cache.delete(&a, at(6)).unwrap();
    assert!(titles(&cache, ListFilter::Active).is_empty());
    assert!(cache.get(&a).unwrap().unwrap().deleted);
    cache.restore(&a, at(7)).unwrap();
    assert_eq!(titles(&cache, ListFilter::Active), ["Alpha"]);

    assert_eq!(
        ops(&cache),
        vec![
            Op::Create {
                title: "Alpha".into()
            },
            Op::Create {
                title: "New conversation".into()
            },
            Op::Update {
                title: None,
                pinned: Some(true),
                archived: None,
                assistant: None
            },
            Op::Append {
                message: message(&m, "hello  there\nfriend", 4)
            },
            Op::Update {
                title: Some("Renamed".into()),
                pinned: None,
                archived: Some(true),
                assistant: None
            },
            Op::Delete,
            Op::Restore,
        ]
    );
    assert_eq!(cache.outbox_counts().unwrap(), (7, 0));
}

#[test]
fn bad_input_is_refused_and_queues_nothing() {
    let (_dir, cache) = open();
    let a = id();
    cache.create(&a, Some("Alpha"), at(1)).unwrap();
    let before = cache.outbox().unwrap().len();
    let long_title = "x".repeat(501);
    let huge = "x".repeat(256 * 1024 + 1);
    let results: Vec<(&str, Result<(), CacheError>)> = vec![
        (
            "bad id",
            cache.create("not-a-ulid", None, at(2)).map(|_| ()),
        ),
        (
            "lower-case id",
            cache.create(&id().to_lowercase(), None, at(2)).map(|_| ()),
        ),
        (
            "empty title",
            cache.create(&id(), Some("   "), at(2)).map(|_| ()),
        ),
        (
            "long title",
            cache.create(&id(), Some(&long_title), at(2)).map(|_| ()),
        ),
        (
            "control chars",
            cache
                .update(
                    &a,
                    Patch {
                        title: Some("a\u{0}b".into()),
                        ..Patch::default()
                    },
                    at(2),
                )
                .map(|_| ()),
        ),
        (
            "empty patch",
            cache.update(&a, Patch::default(), at(2)).map(|_| ()),
        ),
        (
            "unknown",
            cache
                .update(
                    &id(),
                    Patch {
                        pinned: Some(true),
                        ..Patch::default()
                    },
                    at(2),
                )
                .map(|_| ()),
        ),
        (
            "empty message",
            cache
                .append(&a, &id(), Role::User, " \n", at(2))
                .map(|_| ()),
        ),
        (
            "huge message",
            cache
                .append(&a, &id(), Role::User, &huge, at(2))
                .map(|_| ()),
        ),
        (
            "append to unknown",
            cache
                .append(&id(), &id(), Role::User, "hi", at(2))
                .map(|_| ()),
        ),
        ("restore unknown", cache.restore(&id(), at(2)).map(|_| ())),
    ];
    for (what, result) in results {
        assert!(
            matches!(
                result,
                Err(CacheError::Invalid { .. } | CacheError::NotFound(_))
            ),
            "{what}: {result:?}"
        );
    }
    // A message id used twice is refused, the first kept.
    let m = id();
    cache.append(&a, &m, Role::User, "first", at(3)).unwrap();
    assert!(cache.append(&a, &m, Role::User, "second", at(4)).is_err());
    assert_eq!(
        cache.get(&a).unwrap().unwrap().messages[0].message.content,
        "first"
    );
    // Creating an existing id answers it, queuing nothing more.
    cache.create(&a, Some("Other"), at(5)).unwrap();
    assert_eq!(cache.outbox().unwrap().len(), before + 1);
    // Updates on a deleted conversation are refused.
    cache.delete(&a, at(6)).unwrap();
    assert!(matches!(
        cache.update(
            &a,
            Patch {
                pinned: Some(true),
                ..Patch::default()
            },
            at(7)
        ),
        Err(CacheError::NotFound(_))
    ));
}

#[test]
fn server_changes_never_hide_pending_writes() {
    let (_dir, cache) = open();
    let a = id();
    cache
        .apply_changes(&[updated(server(&a, 1, "Server", 0, 1))])
        .unwrap();
    assert_eq!(titles(&cache, ListFilter::Active), ["Server"]);

    cache
        .update(
            &a,
            Patch {
                title: Some("Mine".into()),
                ..Patch::default()
            },
            at(2),
        )
        .unwrap();
    // Another device renamed it meanwhile: the server's state is stored, the
    // pending rename is still what shows.
    cache
        .apply_changes(&[updated(server(&a, 2, "Theirs", 0, 3))])
        .unwrap();
    assert_eq!(titles(&cache, ListFilter::Active), ["Mine"]);
    let entry = cache.next_outbox().unwrap().unwrap();
    assert_eq!(
        entry.server_version, 2,
        "the update is sent against the latest version"
    );

    // An older version arriving late changes nothing.
    cache
        .apply_changes(&[updated(server(&a, 1, "Stale", 0, 1))])
        .unwrap();
    assert_eq!(cache.item(&a).unwrap().unwrap().conversation.version, 2);

    // Refused and discarded: the server's title shows again, offline.
    cache.reject(entry.seq, "title: too long").unwrap();
    assert_eq!(cache.outbox_counts().unwrap(), (0, 1));
    let item = cache.item(&a).unwrap().unwrap();
    assert_eq!(item.failed.as_deref(), Some("title: too long"));
    assert_eq!(cache.next_outbox().unwrap(), None, "a refused entry waits");
    cache.discard(entry.seq).unwrap();
    assert_eq!(titles(&cache, ListFilter::Active), ["Theirs"]);
    assert_eq!(cache.outbox_counts().unwrap(), (0, 0));
}

#[test]
fn acknowledged_writes_take_the_servers_answer() {
    let (_dir, cache) = open();
    let a = id();
    cache.create(&a, Some("Alpha"), at(1)).unwrap();
    let m = id();
    cache.append(&a, &m, Role::User, "hi", at(2)).unwrap();
    let create = cache.next_outbox().unwrap().unwrap();
    assert_eq!(create.server_version, 0);
    cache.note_attempt(create.seq).unwrap();
    cache
        .acknowledge(create.seq, Some(&server(&a, 1, "Alpha", 0, 1)), None)
        .unwrap();
    // A replayed acknowledgement (after a crash) is harmless.
    cache
        .acknowledge(create.seq, Some(&server(&a, 1, "Alpha", 0, 1)), None)
        .unwrap();
    let item = cache.item(&a).unwrap().unwrap();
    assert_eq!(
        (
            item.conversation.version,
            item.conversation.message_count,
            item.pending
        ),
        (1, 1, 1)
    );

    // The server got the append but the answer was lost: the full conversation
    // arrives with it; the count is not doubled while the entry waits.
    let mut with_message = server(&a, 2, "Alpha", 1, 2);
    with_message.last_message_preview = Some("hi".into());
    cache
        .apply_detail(&ConversationDetail {
            conversation: with_message.clone(),
            messages: vec![message(&m, "hi", 2)],
            next_cursor: None,
        })
        .unwrap();
    assert_eq!(
        cache.item(&a).unwrap().unwrap().conversation.message_count,
        1
    );
    let append = cache.next_outbox().unwrap().unwrap();
    cache
        .acknowledge(append.seq, Some(&with_message), Some(&message(&m, "hi", 2)))
        .unwrap();
    let view = cache.get(&a).unwrap().unwrap();
    assert_eq!(view.pending, 0);
    assert_eq!(view.messages.len(), 1);
    assert!(!view.messages[0].pending);
    assert_eq!(view.conversation.message_count, 1);
    assert!(cache.stale_conversations().unwrap().is_empty());
}

#[test]
fn deletions_and_messages_from_the_server() {
    let (_dir, cache) = open();
    let (a, b) = (id(), id());
    let applied = cache
        .apply_changes(&[
            updated(server(&a, 3, "Alpha", 2, 1)),
            updated(server(&b, 1, "Beta", 0, 2)),
        ])
        .unwrap();
    assert_eq!(applied.touched, vec![a.clone(), b.clone()]);
    assert_eq!(
        applied.stale,
        vec![a.clone()],
        "only conversations with messages to fetch"
    );
    // The same versions again (an echo) change nothing and name nothing.
    let again = cache
        .apply_changes(&[updated(server(&a, 3, "Alpha", 2, 1))])
        .unwrap();
    assert!(again.touched.is_empty(), "{again:?}");
    cache
        .apply_detail(&ConversationDetail {
            conversation: server(&a, 3, "Alpha", 2, 1),
            messages: vec![message(&id(), "one", 1), message(&id(), "two", 1)],
            next_cursor: None,
        })
        .unwrap();
    assert_eq!(cache.get(&a).unwrap().unwrap().messages.len(), 2);
    assert!(cache.stale_conversations().unwrap().is_empty());

    cache
        .apply_changes(&[Change::Deleted(Deletion {
            id: b.clone(),
            deleted: true,
            version: 2,
            updated_at: at(5),
        })])
        .unwrap();
    assert_eq!(titles(&cache, ListFilter::Active), ["Alpha"]);
    assert!(cache.get(&b).unwrap().unwrap().deleted);
    // Undo here wins until the server says otherwise.
    cache.restore(&b, at(6)).unwrap();
    assert_eq!(titles(&cache, ListFilter::Active), ["Beta", "Alpha"]);

    // A conversation the server no longer lists (full resync) goes, unless a
    // write for it is pending.
    let listed: HashSet<String> = HashSet::new();
    assert_eq!(
        cache.keep_only(&listed).unwrap(),
        1,
        "Beta's restore is pending"
    );
    assert_eq!(titles(&cache, ListFilter::Active), ["Beta"]);
}

#[test]
fn message_deltas_from_the_server() {
    let (_dir, cache) = open();
    let a = id();
    // In id order, as the server orders messages.
    let mut ids = ulid::Generator::new();
    let mut next = || ids.generate().unwrap().to_string();
    let (m1, m2, m3, m4, mine) = (next(), next(), next(), next(), next());
    cache
        .apply_changes(&[updated(server(&a, 1, "Alpha", 2, 1))])
        .unwrap();
    // The first page, then the last one: the conversation is complete.
    assert!(
        cache
            .apply_messages(&a, None, &[message(&m1, "one", 1)], false)
            .unwrap()
    );
    assert_eq!(cache.stale_conversations().unwrap(), vec![a.clone()]);
    assert!(cache.lacks_messages(&a).unwrap());
    assert!(
        cache
            .apply_messages(&a, Some(&m1), &[message(&m2, "two", 1)], true)
            .unwrap()
    );
    assert!(cache.stale_conversations().unwrap().is_empty());
    // The same page again changes nothing.
    assert!(
        !cache
            .apply_messages(&a, Some(&m1), &[message(&m2, "two", 1)], true)
            .unwrap()
    );

    // A delta: two appended elsewhere, fetched after the last one held.
    cache
        .apply_changes(&[updated(server(&a, 3, "Alpha", 4, 2))])
        .unwrap();
    assert_eq!(
        cache.last_message_before(&a, &m3).unwrap(),
        Some(m2.clone())
    );
    cache
        .apply_messages(
            &a,
            Some(&m2),
            &[message(&m3, "three", 2), message(&m4, "four", 2)],
            true,
        )
        .unwrap();
    let contents = shown(&cache, &a);
    assert_eq!(contents, ["one", "two", "three", "four"]);
    assert!(cache.stale_conversations().unwrap().is_empty());

    // A page is the truth for its span: a message gone there goes here, one
    // outside it stays; a pending message is never dropped.
    cache
        .append(&a, &mine, Role::User, "not sent yet", at(3))
        .unwrap();
    cache
        .apply_changes(&[updated(server(&a, 4, "Alpha", 3, 3))])
        .unwrap();
    cache
        .apply_messages(&a, Some(&m2), &[message(&m4, "four", 2)], true)
        .unwrap();
    let contents = shown(&cache, &a);
    assert_eq!(contents, ["one", "two", "four", "not sent yet"]);
    // A conversation the cache does not know from the server is left alone.
    assert!(
        !cache
            .apply_messages(&id(), None, &[message(&id(), "stray", 1)], true)
            .unwrap()
    );
}

#[test]
fn windows_of_messages_and_rows_that_changed() {
    let (_dir, cache) = open();
    let a = id();
    let mut ids = ulid::Generator::new();
    let mut next = || ids.generate().unwrap().to_string();
    let messages: Vec<Message> = (0..7)
        .map(|i| message(&next(), &format!("m{i}"), 1))
        .collect();
    cache
        .apply_detail(&ConversationDetail {
            conversation: server(&a, 1, "Alpha", 7, 1),
            messages: messages.clone(),
            next_cursor: None,
        })
        .unwrap();
    let texts = |views: &[confab_wire::library::MessageView]| -> Vec<String> {
        views.iter().map(|m| m.message.content.clone()).collect()
    };

    // The newest three, and how many come before them.
    let window = cache.get_window(&a, Some(3)).unwrap().unwrap();
    assert_eq!(texts(&window.messages), ["m4", "m5", "m6"]);
    assert_eq!(window.earlier, 4);
    // Its state alone: no messages, all of them earlier.
    let state = cache.get_window(&a, Some(0)).unwrap().unwrap();
    assert!(state.messages.is_empty());
    assert_eq!(state.earlier, 7);
    assert_eq!(cache.get(&a).unwrap().unwrap().earlier, 0);

    // After a message (what is new), and before one (paging back).
    let after = cache
        .messages_window(&a, Some(&messages[4].id), None, 10)
        .unwrap();
    assert_eq!(
        (texts(&after.messages), after.more),
        (vec!["m5".into(), "m6".into()], false)
    );
    let first = cache.messages_window(&a, None, None, 2).unwrap();
    assert_eq!(
        (texts(&first.messages), first.more),
        (vec!["m0".into(), "m1".into()], true)
    );
    let back = cache
        .messages_window(&a, None, Some(&messages[4].id), 3)
        .unwrap();
    assert_eq!(
        (texts(&back.messages), back.more),
        (vec!["m1".into(), "m2".into(), "m3".into()], true)
    );
    let start = cache
        .messages_window(&a, None, Some(&messages[1].id), 3)
        .unwrap();
    assert_eq!(
        (texts(&start.messages), start.more),
        (vec!["m0".into()], false)
    );

    // Rows by id, in the list's order; ids the list would not show are left out.
    let b = id();
    cache
        .apply_changes(&[updated(server(&b, 1, "Beta", 0, 5))])
        .unwrap();
    let rows = cache
        .list_items(ListFilter::Active, &[a.clone(), b.clone(), id()])
        .unwrap();
    let titles: Vec<_> = rows.iter().map(|r| r.conversation.title.as_str()).collect();
    assert_eq!(titles, ["Beta", "Alpha"]);
    assert!(
        cache
            .list_items(ListFilter::Archived, std::slice::from_ref(&a))
            .unwrap()
            .is_empty()
    );
    assert!(
        cache
            .list_items(ListFilter::Active, &[])
            .unwrap()
            .is_empty()
    );
    // Hostile ids are data, not SQL.
    assert!(
        cache
            .list_items(ListFilter::Active, &["') OR 1=1 --".into()])
            .unwrap()
            .is_empty()
    );
}

#[test]
fn refused_writes_hold_their_conversation_and_restoring_sends_them_again() {
    let (_dir, cache) = open();
    let a = id();
    cache
        .apply_changes(&[updated(server(&a, 1, "Alpha", 0, 1))])
        .unwrap();

    // Deleted here and acknowledged: it stays deleted, and Undo still works.
    cache.delete(&a, at(2)).unwrap();
    let delete = cache.next_outbox().unwrap().unwrap();
    cache.acknowledge(delete.seq, None, None).unwrap();
    assert!(cache.get(&a).unwrap().unwrap().deleted);
    cache.restore(&a, at(3)).unwrap();
    assert!(!cache.get(&a).unwrap().unwrap().deleted);
    let restore = cache.next_outbox().unwrap().unwrap();
    assert_eq!(restore.op, Op::Restore);
    cache
        .acknowledge(restore.seq, Some(&server(&a, 3, "Alpha", 0, 3)), None)
        .unwrap();

    // An append refused (deleted on another device) blocks the writes after
    // it for that conversation, and the conversation stays in the list.
    let m = id();
    cache.append(&a, &m, Role::User, "keep me", at(4)).unwrap();
    cache
        .update(
            &a,
            Patch {
                title: Some("Later".into()),
                ..Patch::default()
            },
            at(5),
        )
        .unwrap();
    cache
        .apply_changes(&[Change::Deleted(Deletion {
            id: a.clone(),
            deleted: true,
            version: 4,
            updated_at: at(4),
        })])
        .unwrap();
    let append = cache.next_outbox().unwrap().unwrap();
    cache
        .reject(append.seq, "deleted on another device")
        .unwrap();
    assert_eq!(
        cache.next_outbox().unwrap(),
        None,
        "nothing is sent past a refusal"
    );
    assert_eq!(
        titles(&cache, ListFilter::Active),
        ["Later"],
        "still listed"
    );

    // Restoring queues the restore first, then the refused message again.
    cache.restore(&a, at(6)).unwrap();
    let queued: Vec<Op> = cache.outbox().unwrap().into_iter().map(|e| e.op).collect();
    assert!(
        matches!(
            queued.as_slice(),
            [Op::Update { .. }, Op::Restore, Op::Append { .. }]
        ),
        "{queued:?}"
    );
    assert_eq!(cache.outbox_counts().unwrap(), (3, 0));
    assert_eq!(
        cache.get(&a).unwrap().unwrap().messages[0].message.content,
        "keep me"
    );
}

#[test]
fn search_finds_titles_and_messages_and_takes_queries_literally() {
    let (_dir, cache) = open();
    let (a, b) = (id(), id());
    cache.create(&a, Some("Café plans"), at(1)).unwrap();
    cache.create(&b, Some("Work"), at(2)).unwrap();
    cache
        .append(
            &b,
            &id(),
            Role::User,
            "The quarterly report is due Friday",
            at(3),
        )
        .unwrap();

    let hits = cache.search("cafe", 10).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].conversation_id, a);
    assert_eq!(hits[0].message_id, None);
    let hits = cache.search("quart fri", 10).unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(hits[0].message_id.is_some());
    let (s, e) = hits[0].highlights[0];
    let marked: String = hits[0]
        .snippet
        .chars()
        .skip(s as usize)
        .take((e - s) as usize)
        .collect();
    assert_eq!(marked, "quarterly");

    for hostile in [
        "\"",
        "*",
        "NEAR(a b)",
        "title:x",
        "-",
        "a OR",
        "\u{0}",
        ")(",
        "' OR 1=1 --",
    ] {
        // Taken as words to find, not as syntax: nothing here has them
        // (an operator would have matched everything, or failed).
        let hits = cache.search(hostile, 10).unwrap();
        assert!(hits.is_empty(), "{hostile:?}: {hits:?}");
    }
    // And as words they are found where they are written.
    cache
        .append(
            &a,
            &id(),
            Role::User,
            "Meet NEAR the station at 1=1 o'clock",
            at(3),
        )
        .unwrap();
    let hits = cache.search("NEAR(", 10).unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].conversation_id, a);
    assert!(cache.search("", 10).unwrap().is_empty());
    cache.delete(&b, at(4)).unwrap();
    assert!(
        cache.search("quarterly", 10).unwrap().is_empty(),
        "deleted conversations are not found"
    );
}

#[test]
fn writes_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let a = id();
    {
        let cache = Cache::open(&path).unwrap();
        cache.create(&a, Some("Kept"), at(1)).unwrap();
        cache
            .append(&a, &id(), Role::User, "every word", at(2))
            .unwrap();
        cache.set_sync_value("cursor", "17").unwrap();
    }
    let cache = Cache::open(&path).unwrap();
    assert_eq!(titles(&cache, ListFilter::Active), ["Kept"]);
    assert_eq!(cache.outbox().unwrap().len(), 2);
    assert_eq!(
        cache.get(&a).unwrap().unwrap().messages[0].message.content,
        "every word"
    );
    assert_eq!(cache.sync_value("cursor").unwrap().as_deref(), Some("17"));
}

/// A reply as the server sends it.
fn reply(
    id: &str,
    after: &str,
    content: &str,
    status: confab_wire::assistant::ReplyStatus,
) -> Message {
    Message {
        id: id.into(),
        role: Role::Assistant,
        content: content.into(),
        timestamp: at(2),
        reply: Some(confab_wire::assistant::Reply {
            status,
            model: "claude-test".into(),
            after: after.into(),
            updated_at: at(2),
            usage: None,
            stop_reason: None,
            error: None,
        }),
    }
}

#[test]
fn replies_keep_their_status_as_they_grow() {
    use confab_wire::assistant::ReplyStatus;
    let (_dir, cache) = open();
    let a = id();
    let mut ids = ulid::Generator::new();
    let (question, answer) = (
        ids.generate().unwrap().to_string(),
        ids.generate().unwrap().to_string(),
    );
    cache
        .apply_changes(&[updated(server(&a, 2, "Alpha", 2, 1))])
        .unwrap();
    cache
        .apply_messages(
            &a,
            None,
            &[
                message(&question, "why?", 1),
                reply(&answer, &question, "Because", ReplyStatus::Streaming),
            ],
            true,
        )
        .unwrap();
    let view = cache.get(&a).unwrap().unwrap();
    assert_eq!(
        view.messages[1].message.reply.as_ref().unwrap().status,
        ReplyStatus::Streaming
    );
    // The final text, and then only the status changing, both land.
    for (content, status) in [
        ("Because it is", ReplyStatus::Streaming),
        ("Because it is", ReplyStatus::Complete),
    ] {
        assert!(
            cache
                .apply_messages(
                    &a,
                    Some(&question),
                    &[reply(&answer, &question, content, status)],
                    true
                )
                .unwrap()
        );
        let view = cache.get(&a).unwrap().unwrap();
        assert_eq!(view.messages[1].message.content, content);
        assert_eq!(
            view.messages[1].message.reply.as_ref().unwrap().status,
            status
        );
    }
    assert_eq!(cache.search("because", 5).unwrap().len(), 1);
}

#[test]
fn asking_for_a_reply_queues_once_and_never_holds_up_other_writes() {
    let (_dir, cache) = open();
    let a = id();
    cache.create(&a, Some("Ask"), at(0)).unwrap();
    let question = id();
    cache
        .append(&a, &question, Role::User, "why?", at(1))
        .unwrap();
    cache.ask(&a, &question, None, false, at(1)).unwrap();
    // Asking again while the request waits adds nothing.
    cache
        .ask(&a, &question, Some("claude-other"), false, at(1))
        .unwrap();
    let asks: Vec<_> = ops(&cache)
        .into_iter()
        .filter(|op| matches!(op, Op::Ask { .. }))
        .collect();
    assert_eq!(
        asks,
        [Op::Ask {
            after: question.clone(),
            model: None,
            regenerate: false
        }]
    );
    let view = cache.get(&a).unwrap().unwrap();
    assert!(view.messages[0].asking, "will ask when back online");
    let window = cache.messages_window(&a, None, None, 10).unwrap();
    assert!(window.messages[0].asking);
    // What the ask changes shows only once the server answers.
    assert_eq!(view.conversation.message_count, 1);

    // Only the user's own messages, in a conversation shown here.
    assert!(matches!(
        cache.ask(&a, &id(), None, false, at(1)),
        Err(CacheError::Invalid { field: "after", .. })
    ));
    assert!(matches!(
        cache.ask(&id(), &question, None, false, at(1)),
        Err(CacheError::NotFound(_))
    ));
    assert!(matches!(
        cache.ask(&a, "x'; DROP TABLE outbox;--", None, false, at(1)),
        Err(CacheError::Invalid { .. })
    ));
    assert!(matches!(
        cache.ask(&a, &question, Some(&"m".repeat(200)), false, at(1)),
        Err(CacheError::Invalid { field: "model", .. })
    ));

    // A refused ask (the budget is spent) does not hold up what follows.
    let entries = cache.outbox().unwrap();
    for e in &entries[..2] {
        cache
            .acknowledge(e.seq, Some(&server(&a, 2, "Ask", 1, 1)), None)
            .unwrap();
    }
    let ask = cache.next_outbox().unwrap().unwrap();
    assert!(matches!(ask.op, Op::Ask { .. }));
    cache
        .reject(ask.seq, "your daily assistant budget is spent")
        .unwrap();
    let later = id();
    cache
        .append(&a, &later, Role::User, "still syncs", at(2))
        .unwrap();
    let next = cache.next_outbox().unwrap().unwrap();
    assert!(
        matches!(next.op, Op::Append { ref message } if message.id == later),
        "{next:?}"
    );
    assert!(
        !cache.get(&a).unwrap().unwrap().messages[0].asking,
        "refused: not waiting"
    );
}

#[test]
fn untitled_conversations_show_their_first_message() {
    let (_dir, cache) = open();
    let a = id();
    cache.create(&a, None, at(0)).unwrap();
    assert_eq!(
        cache.item(&a).unwrap().unwrap().opening,
        None,
        "no message yet"
    );
    let long = format!("Plan the trip\n\nto Lisbon {}", "and more ".repeat(20));
    cache.append(&a, &id(), Role::User, &long, at(1)).unwrap();
    cache
        .append(&a, &id(), Role::User, "second", at(2))
        .unwrap();
    let item = cache.item(&a).unwrap().unwrap();
    let opening = item.opening.clone().unwrap();
    assert!(
        opening.starts_with("Plan the trip to Lisbon and more"),
        "{opening}"
    );
    assert!(
        opening.ends_with('…') && opening.chars().count() <= 61,
        "{opening}"
    );
    assert_eq!(item.shown_title(), opening);
    assert_eq!(
        cache.list(ListFilter::Active, 0, 10).unwrap()[0].opening,
        Some(opening.clone())
    );
    assert_eq!(cache.get(&a).unwrap().unwrap().opening, Some(opening));
    // Named: the name shows.
    cache
        .update(
            &a,
            Patch {
                title: Some("Lisbon".into()),
                ..Patch::default()
            },
            at(3),
        )
        .unwrap();
    let item = cache.item(&a).unwrap().unwrap();
    assert_eq!(
        (item.opening, item.conversation.title.as_str()),
        (None, "Lisbon")
    );
}

#[test]
fn assistant_settings_show_at_once_and_survive_server_changes() {
    use confab_wire::conversations::AssistantSettings;
    let (_dir, cache) = open();
    let a = id();
    cache
        .apply_changes(&[updated(server(&a, 1, "Alpha", 0, 1))])
        .unwrap();
    let chosen = AssistantSettings {
        off: true,
        model: Some("m".into()),
        instructions: Some("Be brief.".into()),
    };
    let item = cache
        .update(
            &a,
            Patch {
                assistant: Some(chosen.clone()),
                ..Patch::default()
            },
            at(2),
        )
        .unwrap();
    assert_eq!(item.conversation.assistant, chosen, "shown at once");
    assert!(matches!(&ops(&cache)[..], [Op::Update { assistant: Some(a), .. }] if *a == chosen));
    // A server change (a rename elsewhere) does not hide the pending one.
    cache
        .apply_changes(&[updated(server(&a, 2, "Beta", 0, 3))])
        .unwrap();
    let view = cache.get(&a).unwrap().unwrap();
    assert_eq!(view.conversation.assistant, chosen);
    assert_eq!(view.conversation.title, "Beta");
    // Acknowledged: the server's copy is what shows.
    let mut stored = server(&a, 3, "Beta", 0, 4);
    stored.assistant = chosen.clone();
    let seq = cache.outbox().unwrap()[0].seq;
    cache.acknowledge(seq, Some(&stored), None).unwrap();
    assert_eq!(
        cache.get(&a).unwrap().unwrap().conversation.assistant,
        chosen
    );
    // Bad settings are refused before they are queued.
    let bad = cache.update(
        &a,
        Patch {
            assistant: Some(AssistantSettings {
                instructions: Some("x".repeat(8_001)),
                ..AssistantSettings::default()
            }),
            ..Patch::default()
        },
        at(5),
    );
    assert!(
        matches!(
            bad,
            Err(CacheError::Invalid {
                field: "assistant.instructions",
                ..
            })
        ),
        "{bad:?}"
    );
    assert!(cache.outbox().unwrap().is_empty());
}

#[test]
fn every_earlier_schema_upgrades_without_losing_data() {
    for version in 1..=schema::CURRENT {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.db");
        {
            // The old schema comes from the frozen fixture, not from today's
            // migrations: an edited migration cannot pass unnoticed.
            let conn = rusqlite::Connection::open(&path).unwrap();
            let fixture = format!(
                "{}/tests/fixtures/v{version}.sql",
                env!("CARGO_MANIFEST_DIR")
            );
            conn.execute_batch(&std::fs::read_to_string(&fixture).unwrap())
                .unwrap();
        }
        let cache = Cache::open(&path).unwrap();
        assert_eq!(
            titles(&cache, ListFilter::Active),
            ["Trip to Lisbon", "Draft"],
            "v{version} (pinned first)"
        );
        let trip = cache.get("01JD0000000000000000000001").unwrap().unwrap();
        assert_eq!(trip.messages.len(), 2);
        assert!(trip.conversation.pinned);
        assert_eq!(cache.outbox().unwrap().len(), 2);
        let draft = cache.get("01JD0000000000000000000002").unwrap().unwrap();
        assert_eq!(draft.pending, 2, "v{version}: the pending writes");
        assert!(draft.messages[0].pending, "v{version}: still to be sent");
        assert_eq!(
            cache.next_outbox().unwrap().map(|e| e.op),
            Some(Op::Create {
                title: "Draft".into()
            })
        );
        assert_eq!(cache.sync_value("cursor").unwrap().as_deref(), Some("42"));
        assert_eq!(cache.search("lisbon", 5).unwrap().len(), 1);
        // Replies keep their status from schema 2 on.
        let reply = trip.messages[1].message.reply.as_ref().map(|r| r.status);
        let expected = (version >= 2).then_some(confab_wire::assistant::ReplyStatus::Complete);
        assert_eq!(reply, expected, "v{version}");
        let settings = trip.conversation.assistant.instructions.as_deref();
        assert_eq!(
            settings,
            (version >= 2).then_some("Be brief."),
            "v{version}"
        );
    }
}

#[test]
fn a_cache_from_a_newer_app_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", schema::CURRENT + 1)
            .unwrap();
    }
    assert!(matches!(Cache::open(&path), Err(CacheError::TooNew { .. })));
}
