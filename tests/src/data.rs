//! Conversations as the server would have sent them, to fill a cache
//! directly (much faster than thousands of requests): for the desktop
//! benchmark and the long-list test.

use anyhow::Context;
use chrono::DateTime;
use confab_wire::conversations::{Conversation, ConversationDetail, Message, Role};

/// The id of conversation `c`; ids sort as their `c` does.
pub fn conversation_id(c: usize) -> String {
    ulid::Ulid::from_parts(1_700_000_000_000 + c as u64, c as u128).to_string()
}

/// Conversation `c` with `count` messages, changed `c` seconds after a fixed
/// time (so the list shows the highest `c` first), not pinned.
pub fn synced_conversation(
    c: usize,
    count: usize,
    title: String,
) -> anyhow::Result<ConversationDetail> {
    let base = DateTime::from_timestamp(1_800_000_000, 0).context("a time")?;
    let messages: Vec<Message> = (0..count)
        .map(|m| Message {
            id: ulid::Ulid::from_parts(1_700_000_000_000 + m as u64, (c * count + m) as u128)
                .to_string(),
            role: if m % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            },
            content: format!(
                "Message {m} of conversation {c}: notes about the plan and the next steps."
            ),
            timestamp: base + chrono::Duration::seconds(m as i64),
            reply: None,
        })
        .collect();
    Ok(ConversationDetail {
        conversation: Conversation {
            id: conversation_id(c),
            title,
            created_at: base,
            updated_at: base + chrono::Duration::seconds(c as i64),
            version: 1,
            message_count: count as u64,
            last_message_preview: messages.last().map(|m| m.content.clone()),
            pinned: false,
            archived: false,
            assistant: Default::default(),
        },
        messages,
        next_cursor: None,
    })
}
