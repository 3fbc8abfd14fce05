//! Pulling the change feed, then only the messages that changed.
//!
//! A feed entry says which messages changed (`messageChanges`): the engine
//! asks for the messages after the last one it holds before the oldest
//! change, so one new message costs one small request. Messages replaced
//! wholesale, a conversation new to this device, or a cache that still
//! disagrees with the server's count after a delta are fetched whole, page
//! by page. Every round is bounded (pages and bytes); a conversation that
//! cannot be fetched stays stale and is tried again next round, without
//! holding up the others.

use std::collections::{HashMap, HashSet};

use confab_wire::conversations::{
    Change, Changes, Conversation, ConversationChange, MessageChanges, MessagePage, Page,
};
use confab_wire::{HttpErrorWith, ResumeAt};
use reqwest::StatusCode;

use crate::{Engine, SyncError, error_message, read_json, retry_after};

pub(crate) const CURSOR: &str = "cursor";
pub(crate) const LAST_SYNCED: &str = "last_synced_at";
/// Conversations per page of the change feed.
const FEED_PAGE: u32 = 500;
/// Messages per page (the server's maximum).
const MESSAGE_PAGE: u32 = 1000;
/// Pages of any kind one round reads before it yields to the next round: a
/// huge backlog is caught up over several rounds, never in one unbounded one.
pub(crate) const MAX_PAGES_PER_ROUND: usize = 200;

/// How many pages this round has read so far.
struct Budget(usize);

impl Budget {
    fn take(&mut self) -> bool {
        self.0 += 1;
        self.0 <= MAX_PAGES_PER_ROUND
    }
}

pub(crate) async fn pull(engine: &Engine) -> Result<(), SyncError> {
    let mut budget = Budget(0);
    let mut cursor_refused = false;
    let mut relisted = false;
    loop {
        if !budget.take() {
            log::info!("the change feed has more; continuing next round");
            engine.sync_now();
            return Ok(());
        }
        let cursor = engine.cache.sync_value(CURSOR)?.unwrap_or_default();
        let config = engine.session.config().ok_or(SyncError::SignedOut)?.clone();
        let mut url = config.proxy_endpoint("api/changes");
        url.query_pairs_mut()
            .append_pair("limit", &FEED_PAGE.to_string());
        if !cursor.is_empty() {
            url.query_pairs_mut().append_pair("since", &cursor);
        }
        let response = engine
            .send(|http, token| http.get(url.clone()).bearer_auth(token))
            .await?;
        match response.status() {
            StatusCode::OK => {}
            // Once per round: a server that expires the cursor it just gave
            // would otherwise have us list everything in a loop. The round
            // fails instead, and the engine backs off before the next.
            StatusCode::GONE if relisted => {
                return Err(SyncError::Retry {
                    message: "the server expired the change cursor it had just given".into(),
                    after: None,
                });
            }
            StatusCode::GONE => {
                relisted = true;
                let gone: HttpErrorWith<ResumeAt> =
                    read_json(engine, response, "the expired cursor's answer").await?;
                full_listing(engine, &gone.current.cursor, &mut budget).await?;
                continue;
            }
            // A cursor the server cannot read (a damaged cache): start the
            // feed over once; a second refusal is the server's problem, retried
            // later with backoff.
            StatusCode::BAD_REQUEST if !cursor.is_empty() && !cursor_refused => {
                let reason = error_message(response).await;
                log::warn!(
                    "the server refused our change cursor ({reason}); reading the feed from the start"
                );
                cursor_refused = true;
                engine.cache.set_sync_value(CURSOR, "")?;
                continue;
            }
            status => return Err(failure(status, response).await),
        }
        let mut changes: Changes = read_json(engine, response, "the change feed").await?;
        changes.items.retain(|c| well_formed(c.id()));
        let applied = engine.cache.apply_changes(&changes.items)?;
        engine.announce(applied.touched.clone());
        let hints: HashMap<&str, (Option<&MessageChanges>, bool)> = changes
            .items
            .iter()
            .filter_map(|c| match c {
                Change::Updated(u) => Some((
                    u.conversation.id.as_str(),
                    (
                        u.message_changes.as_ref(),
                        u.device.as_ref() == Some(engine.device()),
                    ),
                )),
                Change::Deleted(_) => None,
            })
            .collect();
        // Lacking messages (by count), or messages changed in place (a
        // reply's text growing, its status) by someone else: a device's own
        // writes are in its cache already.
        let mut fetch = applied.stale.clone();
        for id in &applied.touched {
            let changed_elsewhere = hints
                .get(id.as_str())
                .is_some_and(|(hint, own)| hint.is_some() && !own);
            if changed_elsewhere && !fetch.contains(id) {
                fetch.push(id.clone());
            }
        }
        for id in fetch {
            let hint = hints.get(id.as_str()).and_then(|(hint, _)| *hint);
            fetch_messages(engine, &id, hint, &mut budget).await?;
        }
        // Stored only once everything it covers is in the cache (or marked
        // stale): a crash before this line pulls the same page again,
        // harmlessly.
        engine.cache.set_sync_value(CURSOR, &changes.cursor)?;
        if !changes.has_more {
            break;
        }
    }
    // Conversations an earlier round could not finish (a crash, an error, the
    // page budget): after the feed, so they never hold it up.
    for id in engine.cache.stale_conversations()? {
        fetch_messages(engine, &id, None, &mut budget).await?;
    }
    Ok(())
}

/// The change history is older than the cursor: list everything, keep only
/// what the server lists, continue from `current`.
async fn full_listing(
    engine: &Engine,
    current: &str,
    budget: &mut Budget,
) -> Result<(), SyncError> {
    log::info!("the change history was pruned past our cursor: listing everything");
    let config = engine.session.config().ok_or(SyncError::SignedOut)?.clone();
    let mut listed = HashSet::new();
    let mut next: Option<String> = None;
    loop {
        // A listing is not cut short by the budget: keep_only needs all of it.
        budget.take();
        let mut url = config.proxy_endpoint("api/conversations");
        url.query_pairs_mut().append_pair("limit", "200");
        if let Some(cursor) = &next {
            url.query_pairs_mut().append_pair("cursor", cursor);
        }
        let response = engine
            .send(|http, token| http.get(url.clone()).bearer_auth(token))
            .await?;
        if response.status() != StatusCode::OK {
            return Err(failure(response.status(), response).await);
        }
        let page: Page<Conversation> = read_json(engine, response, "the conversation list").await?;
        listed.extend(page.items.iter().map(|c| c.id.clone()));
        let changes: Vec<Change> = page
            .items
            .into_iter()
            .filter(|c| well_formed(&c.id))
            .map(|c| Change::Updated(ConversationChange::whole(c)))
            .collect();
        let applied = engine.cache.apply_changes(&changes)?;
        engine.announce(applied.touched.clone());
        match page.next_cursor {
            Some(cursor) => next = Some(cursor),
            None => break,
        }
    }
    let dropped = engine.cache.keep_only(&listed)?;
    if dropped > 0 {
        engine.announce_all();
    }
    engine.cache.set_sync_value(CURSOR, current)?;
    // The messages of what the listing changed follow as stale conversations.
    Ok(())
}

/// Fetches what the cache lacks of one conversation's messages: the delta
/// the feed announced, or everything. Failures other than the network leave
/// it stale for the next round.
async fn fetch_messages(
    engine: &Engine,
    id: &str,
    hint: Option<&MessageChanges>,
    budget: &mut Budget,
) -> Result<(), SyncError> {
    let after = match hint {
        Some(MessageChanges {
            from: Some(from),
            all: false,
        }) => engine.cache.last_message_before(id, from)?,
        _ => None,
    };
    let delta = after.is_some();
    if !fetch_after(engine, id, after, budget).await? {
        return Ok(());
    }
    // A delta that did not make the cache agree with the server's count (a
    // message missed earlier): fetch everything, once.
    if delta && engine.cache.lacks_messages(id)? {
        log::info!("conversation {id}: the delta left gaps; fetching it whole");
        fetch_after(engine, id, None, budget).await?;
    }
    Ok(())
}

/// Pages through the messages after `after` into the cache. `Ok(false)` when
/// it stopped early (budget, an error logged, the conversation gone).
async fn fetch_after(
    engine: &Engine,
    id: &str,
    mut after: Option<String>,
    budget: &mut Budget,
) -> Result<bool, SyncError> {
    if !well_formed(id) {
        return Ok(false);
    }
    let config = engine.session.config().ok_or(SyncError::SignedOut)?.clone();
    let mut changed = false;
    let complete = loop {
        if !budget.take() {
            engine.sync_now();
            break false;
        }
        let mut url = config.proxy_endpoint("api/conversations");
        // Pushed as a segment: percent-encoded, never read as a path.
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(id).push("messages");
        }
        url.query_pairs_mut()
            .append_pair("limit", &MESSAGE_PAGE.to_string());
        if let Some(after) = &after {
            url.query_pairs_mut().append_pair("after", after);
        }
        let response = engine
            .send(|http, token| http.get(url.clone()).bearer_auth(token))
            .await?;
        match response.status() {
            StatusCode::OK => {}
            // Deleted meanwhile: the feed will say so; nothing to fetch.
            StatusCode::NOT_FOUND => break false,
            StatusCode::UNAUTHORIZED => return Err(SyncError::SignedOut),
            status if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() => {
                return Err(failure(status, response).await);
            }
            // One conversation the server refuses must not stop the others:
            // it stays stale and is tried again next round.
            status => {
                let reason = error_message(response).await;
                log::warn!("conversation {id} not fetched ({status}): {reason}");
                break false;
            }
        }
        let page: MessagePage = match read_json(engine, response, "a page of messages").await {
            Ok(page) => page,
            Err(err) => {
                log::warn!("conversation {id} not fetched: {err}");
                break false;
            }
        };
        if page.next_cursor.is_some() && page.next_cursor == after {
            log::warn!("conversation {id}: the server's cursor does not advance");
            break false;
        }
        let last = page.next_cursor.is_none();
        changed |= engine
            .cache
            .apply_messages(id, after.as_deref(), &page.items, last)?;
        if last {
            break true;
        }
        after = page.next_cursor;
    };
    if changed {
        engine.announce(vec![id.to_owned()]);
    }
    Ok(complete)
}

/// Whether a conversation id from the server is one (a ULID) before it goes
/// into the cache or a URL; anything else is skipped, logged once here.
fn well_formed(id: &str) -> bool {
    let ok = confab_wire::limits::is_ulid(id);
    if !ok {
        log::warn!(
            "the server sent a conversation id that is not one ({} bytes); skipped",
            id.len()
        );
    }
    ok
}

async fn failure(status: StatusCode, response: reqwest::Response) -> SyncError {
    if status == StatusCode::UNAUTHORIZED {
        return SyncError::SignedOut;
    }
    let after = retry_after(&response);
    SyncError::Retry {
        message: error_message(response).await,
        after,
    }
}
