//! The sidebar: search, new conversation, the pinned and recent sections, the
//! archive. Long lists render only the rows in view.

use std::rc::Rc;

use confab_wire::ipc::{
    GetListItems, ListArgs, ListConversations, ListItemsArgs, MAX_LIST_PAGE, SearchArgs,
    SearchConversations,
};
use confab_wire::library::{ListFilter, ListItem, ListPage, SearchHit};
use confab_wire::{ErrorBody, ErrorCode};
use yew::prelude::*;

use super::Ctx;
use crate::ipc;

/// Every row is this tall (CSS `.row`), so the window is computed, not measured.
const ROW: f64 = 56.0;
const PAGE: u32 = 200;
/// More changed rows than this at once: reading the list again is simpler.
const PATCH_MAX: usize = 100;

/// The list order: pinned first, then the most recently changed (the cache's
/// order, so a patched list reads as a fresh one would).
fn list_order(a: &ListItem, b: &ListItem) -> std::cmp::Ordering {
    let (a, b) = (&a.conversation, &b.conversation);
    b.pinned
        .cmp(&a.pinned)
        .then(b.updated_at.cmp(&a.updated_at))
        .then(b.id.cmp(&a.id))
}

/// `held` (the first rows of a list of `total`) with the rows of `ids`
/// replaced by `fresh`; `None` when that cannot be right without reading
/// the list again (rows left the window and others must come in).
fn patched(
    held: &[ListItem],
    total: u64,
    ids: &[String],
    fresh: ListPage,
    limit: u32,
) -> Option<(Vec<ListItem>, u64)> {
    let mut rows: Vec<ListItem> = held
        .iter()
        .filter(|i| !ids.contains(&i.conversation.id))
        .cloned()
        .collect();
    rows.extend(fresh.items);
    rows.sort_by(list_order);
    let held_everything = total <= held.len() as u64;
    if !held_everything && rows.len() < limit as usize && fresh.total > rows.len() as u64 {
        return None;
    }
    rows.truncate(limit as usize);
    Some((rows, fresh.total))
}

/// The first `limit` rows of the list, read in pages of at most
/// `MAX_LIST_PAGE` (the shell answers no more in one call). A row that moved
/// between two pages is kept once; the next change reads the list again.
async fn read_list(filter: ListFilter, limit: u32) -> Result<ListPage, ErrorBody> {
    let mut items: Vec<ListItem> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    while (items.len() as u32) < limit {
        let page = ipc::invoke::<ListConversations>(&ListArgs {
            filter,
            offset: items.len() as u32,
            limit: (limit - items.len() as u32).min(MAX_LIST_PAGE),
        })
        .await?;
        total = page.total;
        let got = page.items.len();
        for item in page.items {
            if seen.insert(item.conversation.id.clone()) {
                items.push(item);
            }
        }
        if got == 0 || items.len() as u64 >= total {
            break;
        }
    }
    Ok(ListPage { items, total })
}

#[derive(Properties, PartialEq)]
pub struct Props {
    pub ctx: Ctx,
}

#[derive(Clone, PartialEq)]
enum Row {
    Header(&'static str),
    Item(Box<ListItem>),
}

#[function_component(Sidebar)]
pub fn sidebar(props: &Props) -> Html {
    let ctx = &props.ctx;
    let filter = use_state(ListFilter::default);
    let items = use_state(Vec::<ListItem>::new);
    let total = use_state(|| 0u64);
    let limit = use_state(|| PAGE);
    let query = use_state(String::new);
    let hits = use_state(|| None::<Vec<SearchHit>>);
    let scroll = use_state(|| (0.0f64, 600.0f64));
    let list_ref = use_node_ref();
    let order = use_mut_ref(Vec::<String>::new);
    // The spacers that stand for the rows out of view. Their heights are
    // set through the CSSOM after each render: the CSP (`style-src 'self'`)
    // ignores inline `style` attributes, and without the spacers the list
    // could not scroll past the rows it renders. Every child of the list is
    // keyed, so a spacer's node (and its height) never becomes a row's.
    let spacer_before = use_node_ref();
    let spacer_after = use_node_ref();
    let spacer_heights = use_mut_ref(|| (0.0f64, 0.0f64));
    {
        let (before, after) = (spacer_before.clone(), spacer_after.clone());
        let heights = spacer_heights.clone();
        use_effect(move || {
            let (above, below) = *heights.borrow();
            for (node, px) in [(before, above), (after, below)] {
                if let Some(el) = node.cast::<web_sys::HtmlElement>() {
                    let _ = el.style().set_property("height", &format!("{px}px"));
                }
            }
        });
    }

    // The list: read whole when opened or filtered; on a change, only the
    // rows that changed are read and patched in. One read at a time: a change
    // during a read is handled right after it, so an older answer never
    // lands over a newer one and no change is lost.
    let shown_for = use_mut_ref(|| None::<(ListFilter, u32)>);
    // What the list shows now, for answers that patch it.
    let held_now = use_mut_ref(|| (Vec::<ListItem>::new(), 0u64));
    let wanted = use_mut_ref(|| (ListFilter::default(), PAGE));
    let reading = use_mut_ref(super::OneAtATime::default);
    *wanted.borrow_mut() = (*filter, *limit);
    {
        let held_now = held_now.clone();
        let items = items.clone();
        let total = total.clone();
        let error = ctx.error.clone();
        let changes = ctx.changes.clone();
        let shown_for = shown_for.clone();
        let wanted = wanted.clone();
        let reading = reading.clone();
        use_effect_with((ctx.tick, *filter, *limit), move |_| {
            if !reading.borrow().start() {
                return;
            }
            wasm_bindgen_futures::spawn_local(async move {
                loop {
                    let (filter, limit) = *wanted.borrow();
                    let changed = changes.take();
                    let same_list = *shown_for.borrow() == Some((filter, limit));
                    let patch = same_list && !changed.all && changed.ids.len() <= PATCH_MAX;
                    let answer = if patch && changed.ids.is_empty() {
                        None
                    } else if patch {
                        let fresh = ipc::invoke::<GetListItems>(&ListItemsArgs {
                            filter,
                            ids: changed.ids.clone(),
                        })
                        .await;
                        let (held, held_total) = held_now.borrow().clone();
                        Some(
                            match fresh.map(|f| patched(&held, held_total, &changed.ids, f, limit))
                            {
                                Ok(Some(rows)) => Ok(rows),
                                Ok(None) => {
                                    read_list(filter, limit).await.map(|p| (p.items, p.total))
                                }
                                Err(e) => Err(e),
                            },
                        )
                    } else {
                        Some(read_list(filter, limit).await.map(|p| (p.items, p.total)))
                    };
                    match answer {
                        None => {}
                        Some(Ok((rows, count))) => {
                            *shown_for.borrow_mut() = Some((filter, limit));
                            *held_now.borrow_mut() = (rows.clone(), count);
                            items.set(rows);
                            total.set(count);
                        }
                        // Not signed in yet (the library opens a moment after).
                        Some(Err(e)) if e.code == ErrorCode::Unauthenticated => {}
                        Some(Err(e)) => error.emit(e),
                    }
                    if !reading.borrow().again() {
                        break;
                    }
                }
            });
        });
    }
    // Search as the user types; an answer for an older query is dropped.
    let latest_query = use_mut_ref(String::new);
    *latest_query.borrow_mut() = (*query).clone();
    {
        let hits = hits.clone();
        let latest_query = latest_query.clone();
        use_effect_with(((*query).clone(), ctx.tick), move |(query, _)| {
            let query = query.clone();
            if query.trim().is_empty() {
                hits.set(None);
            } else {
                wasm_bindgen_futures::spawn_local(async move {
                    let found = ipc::invoke::<SearchConversations>(&SearchArgs {
                        query: query.clone(),
                        limit: Some(50),
                    })
                    .await;
                    if *latest_query.borrow() != query {
                        return;
                    }
                    if let Ok(found) = found {
                        hits.set(Some(found));
                    }
                });
            }
        });
    }

    let rows: Vec<Row> = {
        let (pinned, recent): (Vec<_>, Vec<_>) =
            items.iter().cloned().partition(|i| i.conversation.pinned);
        let mut rows = Vec::new();
        if !pinned.is_empty() {
            rows.push(Row::Header("Pinned"));
            rows.extend(pinned.into_iter().map(|i| Row::Item(Box::new(i))));
            if !recent.is_empty() {
                rows.push(Row::Header("Recent"));
            }
        }
        rows.extend(recent.into_iter().map(|i| Row::Item(Box::new(i))));
        rows
    };
    *order.borrow_mut() = rows
        .iter()
        .filter_map(|r| match r {
            Row::Item(i) => Some(i.conversation.id.clone()),
            Row::Header(_) => None,
        })
        .collect();

    // Alt+Up / Alt+Down: the previous or next conversation.
    {
        let order = order.clone();
        let select = ctx.select.clone();
        let selected = ctx.selected.clone();
        use_effect_with(selected, move |selected| {
            let selected = selected.clone();
            super::listen_keys(move |e: KeyboardEvent| {
                if !e.alt_key() || !(e.key() == "ArrowDown" || e.key() == "ArrowUp") {
                    return;
                }
                e.prevent_default();
                let order = order.borrow();
                let at = selected
                    .as_ref()
                    .and_then(|s| order.iter().position(|id| id == s));
                let next = match (at, e.key() == "ArrowDown") {
                    (None, _) => order.first(),
                    (Some(i), true) => order.get(i + 1).or(order.get(i)),
                    (Some(i), false) => order.get(i.saturating_sub(1)),
                };
                if let Some(id) = next {
                    select.emit(Some(id.clone()));
                }
            })
        });
    }

    let on_new = {
        let select = ctx.select.clone();
        let error = ctx.error.clone();
        let filter = filter.clone();
        Callback::from(move |_: MouseEvent| {
            filter.set(ListFilter::Active);
            super::new_conversation(select.clone(), error.clone());
        })
    };
    let on_query = {
        let query = query.clone();
        Callback::from(move |e: InputEvent| {
            if let Some(input) = e.target_dyn_into::<web_sys::HtmlInputElement>() {
                query.set(input.value());
            }
        })
    };
    let on_search_key = {
        let query = query.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Escape" {
                query.set(String::new());
                if let Some(input) = e.target_dyn_into::<web_sys::HtmlInputElement>() {
                    input.set_value("");
                }
            }
        })
    };
    let toggle_archive = {
        let filter = filter.clone();
        Callback::from(move |_: MouseEvent| {
            filter.set(match *filter {
                ListFilter::Active => ListFilter::Archived,
                ListFilter::Archived => ListFilter::Active,
            })
        })
    };
    let on_scroll = {
        let scroll = scroll.clone();
        let limit = limit.clone();
        let loaded = items.len();
        let total = *total;
        let list_ref = list_ref.clone();
        Callback::from(move |_: Event| {
            if let Some(el) = list_ref.cast::<web_sys::Element>() {
                let top = f64::from(el.scroll_top());
                let height = f64::from(el.client_height());
                scroll.set((top, height));
                // Near the end of what is loaded: load the next page.
                if (top + height) / ROW > loaded as f64 - 50.0 && (loaded as u64) < total {
                    limit.set(*limit + PAGE);
                }
            }
        })
    };

    let list = if let Some(hits) = &*hits {
        let rows = hits.iter().map(|hit| {
            let select = ctx.select.clone();
            let id = hit.conversation_id.clone();
            let onclick = Callback::from(move |_: MouseEvent| select.emit(Some(id.clone())));
            html! {
                <li>
                    <button class="row hit" type="button" {onclick}>
                        <span class="title">{ &hit.title }</span>
                        <span class="preview">{ highlighted(&hit.snippet, &hit.highlights) }</span>
                    </button>
                </li>
            }
        });
        html! {
            <ul id="search-results" class="rows" aria-label="Search results">
                if hits.is_empty() {
                    <li class="empty-list">{ "Nothing matches." }</li>
                }
                { for rows }
            </ul>
        }
    } else if rows.is_empty() {
        html! {
            <p id="empty-list" class="empty-list">
                { match *filter {
                    ListFilter::Active => "No conversations yet. Start one with New conversation (Ctrl+N).",
                    ListFilter::Archived => "Nothing archived.",
                } }
            </p>
        }
    } else {
        // Only the rows in view (plus a margin) exist in the page.
        let (top, height) = *scroll;
        let first = ((top / ROW) as usize).saturating_sub(10);
        let last = (((top + height) / ROW) as usize + 10).min(rows.len());
        *spacer_heights.borrow_mut() = (first as f64 * ROW, (rows.len() - last) as f64 * ROW);
        let visible = rows[first.min(last)..last].iter().map(|row| match row {
            Row::Header(name) => html! {
                <li key={format!("section-{name}")} class="row section" role="presentation">{ *name }</li>
            },
            Row::Item(item) => {
                let c = &item.conversation;
                let select = ctx.select.clone();
                let id = c.id.clone();
                let onclick = Callback::from(move |_: MouseEvent| select.emit(Some(id.clone())));
                let current = ctx.selected.as_deref() == Some(c.id.as_str());
                html! {
                    <li key={c.id.clone()}>
                        <button
                            class={classes!("row", current.then_some("current"))}
                            type="button"
                            data-id={c.id.clone()}
                            aria-current={current.then_some("true")}
                            {onclick}
                        >
                            <span class="title">
                                if c.pinned { <span class="pin" role="img" aria-label="Pinned" title="Pinned">{ pin_icon() }</span> }
                                <span class={classes!(item.opening.is_some().then_some("untitled"))}>{ item.shown_title() }</span>
                            </span>
                            <span class="preview">
                                if item.failed.is_some() {
                                    <span class="badge failed">{ "not synced" }</span>
                                } else if item.pending > 0 {
                                    <span class="badge pending" title="Waiting to sync">{ "•" }</span>
                                }
                                { c.last_message_preview.clone().unwrap_or_default() }
                            </span>
                        </button>
                    </li>
                }
            }
        });
        html! {
            <ul id="conversation-list" class="rows" aria-label="Conversations">
                { for std::iter::once(html! {
                    <li key="spacer-before" class="spacer" ref={spacer_before.clone()} aria-hidden="true"></li>
                })
                .chain(visible)
                .chain(std::iter::once(html! {
                    <li key="spacer-after" class="spacer" ref={spacer_after.clone()} aria-hidden="true"></li>
                })) }
            </ul>
        }
    };

    html! {
        <nav class="sidebar" aria-label="Conversations">
            <div class="sidebar-top">
                <input
                    id="search"
                    type="search"
                    placeholder="Search (Ctrl+K)"
                    aria-label="Search conversations"
                    maxlength="1024"
                    oninput={on_query}
                    onkeydown={on_search_key}
                />
                <button id="new-conversation" class="primary small" type="button" onclick={on_new}
                    title="New conversation (Ctrl+N)">
                    { "New" }
                </button>
            </div>
            <div class="list" ref={list_ref} onscroll={on_scroll}>
                { list }
            </div>
            <button id="show-archived" class="link archive-toggle" type="button" onclick={toggle_archive}>
                { match *filter {
                    ListFilter::Active => "Show archived",
                    ListFilter::Archived => "Back to conversations",
                } }
            </button>
        </nav>
    }
}

/// `text` with `ranges` (character offsets) in `<mark>`.
fn highlighted(text: &str, ranges: &[(u32, u32)]) -> Html {
    let chars: Rc<Vec<char>> = Rc::new(text.chars().collect());
    let mut parts = Vec::new();
    let mut at = 0usize;
    for &(start, end) in ranges {
        let (start, end) = (start as usize, (end as usize).min(chars.len()));
        if start < at || start > end {
            continue;
        }
        parts.push(html! { { chars[at..start].iter().collect::<String>() } });
        parts.push(html! { <mark>{ chars[start..end].iter().collect::<String>() }</mark> });
        at = end;
    }
    parts.push(html! { { chars[at..].iter().collect::<String>() } });
    html! { <>{ for parts }</> }
}

/// A pushpin drawn as SVG: emoji fonts are missing on minimal Linux
/// desktops, where an emoji shows as an empty box.
fn pin_icon() -> Html {
    html! {
        <svg class="pin-icon" width="12" height="12" viewBox="0 0 24 24" aria-hidden="true">
            <path fill="currentColor"
                d="M15.3 2.3a1 1 0 0 1 1.4 0l5 5a1 1 0 0 1 0 1.4l-2 2a1 1 0 0 1-1 .25l-3.2 3.2.8 4.1a1 1 0 0 1-.3.9l-1.5 1.5a1 1 0 0 1-1.4 0L9.5 17 4.7 21.7a1 1 0 0 1-1.4-1.4L8 15.5 4.4 11.9a1 1 0 0 1 0-1.4L5.9 9a1 1 0 0 1 .9-.3l4.1.8 3.2-3.2a1 1 0 0 1 .25-1z" />
        </svg>
    }
}
