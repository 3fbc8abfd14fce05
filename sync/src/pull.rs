//! Pulling the change feed, and the messages of conversations that changed.

use std::collections::HashSet;

use confab_wire::conversations::{Change, Changes, Conversation, ConversationDetail, Page};
use reqwest::StatusCode;

use crate::{Engine, SyncError, error_message, retry_after};

pub(crate) const CURSOR: &str = "cursor";
pub(crate) const LAST_SYNCED: &str = "last_synced_at";
const PAGE: u32 = 500;

pub(crate) async fn pull(engine: &Engine) -> Result<(), SyncError> {
    // Messages a crash kept us from fetching last time.
    for id in engine.cache.stale_conversations()? {
        fetch_detail(engine, &id).await?;
    }
    loop {
        let cursor = engine.cache.sync_value(CURSOR)?.unwrap_or_default();
        let config = engine.session.config().ok_or(SyncError::SignedOut)?.clone();
        let mut url = config.proxy_endpoint("api/changes");
        url.query_pairs_mut()
            .append_pair("limit", &PAGE.to_string());
        if !cursor.is_empty() {
            url.query_pairs_mut().append_pair("since", &cursor);
        }
        let response = engine
            .session
            .send(|http, token| http.get(url.clone()).bearer_auth(token))
            .await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::GONE => {
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                let current = body["current"]["cursor"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                full_listing(engine, &current).await?;
                continue;
            }
            status => return Err(failure(status, response).await),
        }
        let changes: Changes = response.json().await.map_err(|e| SyncError::Retry {
            message: format!("the change feed could not be read: {e}"),
            after: None,
        })?;
        let stale = engine.cache.apply_changes(&changes.items)?;
        engine.announce(changes.items.iter().map(|c| c.id().to_owned()).collect());
        for id in stale {
            fetch_detail(engine, &id).await?;
        }
        // Stored only once everything it covers is in the cache: a crash
        // before this line pulls the same page again, harmlessly.
        engine.cache.set_sync_value(CURSOR, &changes.cursor)?;
        if !changes.has_more {
            return Ok(());
        }
    }
}

/// The change history is older than the cursor: list everything, keep only
/// what the server lists, continue from `current`.
async fn full_listing(engine: &Engine, current: &str) -> Result<(), SyncError> {
    log::info!("the change history was pruned past our cursor: listing everything");
    let config = engine.session.config().ok_or(SyncError::SignedOut)?.clone();
    let mut listed = HashSet::new();
    let mut next: Option<String> = None;
    loop {
        let mut url = config.proxy_endpoint("api/conversations");
        url.query_pairs_mut().append_pair("limit", "200");
        if let Some(cursor) = &next {
            url.query_pairs_mut().append_pair("cursor", cursor);
        }
        let response = engine
            .session
            .send(|http, token| http.get(url.clone()).bearer_auth(token))
            .await?;
        if response.status() != StatusCode::OK {
            return Err(failure(response.status(), response).await);
        }
        let page: Page<Conversation> = response.json().await.map_err(|e| SyncError::Retry {
            message: format!("the conversation list could not be read: {e}"),
            after: None,
        })?;
        listed.extend(page.items.iter().map(|c| c.id.clone()));
        let changes: Vec<Change> = page.items.into_iter().map(Change::Updated).collect();
        for id in engine.cache.apply_changes(&changes)? {
            fetch_detail(engine, &id).await?;
        }
        match page.next_cursor {
            Some(cursor) => next = Some(cursor),
            None => break,
        }
    }
    engine.cache.keep_only(&listed)?;
    engine.cache.set_sync_value(CURSOR, current)?;
    engine.announce(listed.into_iter().collect());
    Ok(())
}

async fn fetch_detail(engine: &Engine, id: &str) -> Result<(), SyncError> {
    let config = engine.session.config().ok_or(SyncError::SignedOut)?.clone();
    let url = config.proxy_endpoint(&format!("api/conversations/{id}"));
    let response = engine
        .session
        .send(|http, token| http.get(url.clone()).bearer_auth(token))
        .await?;
    match response.status() {
        StatusCode::OK => {
            let detail: ConversationDetail =
                response.json().await.map_err(|e| SyncError::Retry {
                    message: format!("a conversation could not be read: {e}"),
                    after: None,
                })?;
            engine.cache.apply_detail(&detail)?;
        }
        // Deleted meanwhile: the feed will say so; nothing to fetch.
        StatusCode::NOT_FOUND => {}
        StatusCode::UNAUTHORIZED => return Err(SyncError::SignedOut),
        // One conversation the server cannot answer for must not stop the
        // feed: it stays marked stale and is fetched again next round.
        status => {
            let reason = error_message(response).await;
            log::warn!("conversation {id} not fetched ({status}): {reason}");
            return Ok(());
        }
    }
    engine.announce(vec![id.to_owned()]);
    Ok(())
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
