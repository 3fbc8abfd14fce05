//! What the model is sent: the conversation up to the message being
//! answered, newest kept, within the context budget, as alternating turns.

use confab_wire::conversations::{Message, Role};

use super::provider::Turn;

/// Turns for the model from `history` (oldest first, ending with the user
/// message to answer), keeping the newest messages whose text fits in
/// `budget_bytes`. Messages with no text (a reply that failed at once) and
/// system messages are left out; neighbours of one role are joined, and
/// leading assistant turns dropped, because the Messages API wants turns
/// that alternate and start with the user.
pub fn turns(history: &[Message], budget_bytes: usize) -> Vec<Turn> {
    let mut kept: Vec<&Message> = Vec::new();
    let mut used = 0usize;
    for m in history.iter().rev() {
        if m.content.trim().is_empty() || m.role == Role::System {
            continue;
        }
        used = used.saturating_add(m.content.len());
        // The message being answered always goes, whatever its size.
        if used > budget_bytes && !kept.is_empty() {
            break;
        }
        kept.push(m);
    }
    kept.reverse();
    let mut turns: Vec<Turn> = Vec::with_capacity(kept.len());
    for m in kept {
        let role = match m.role {
            Role::Assistant => "assistant",
            _ => "user",
        };
        match turns.last_mut() {
            Some(last) if last.role == role => {
                last.content.push_str("\n\n");
                last.content.push_str(&m.content);
            }
            None if role == "assistant" => {}
            _ => turns.push(Turn {
                role,
                content: m.content.clone(),
            }),
        }
    }
    turns
}

/// Tokens are about four bytes of English text; a budget in tokens becomes
/// one in bytes with room for the reply and the system prompt.
pub fn budget_bytes(context_tokens: u64, max_tokens: u32) -> usize {
    let room = context_tokens.saturating_sub(u64::from(max_tokens) + 1_000);
    usize::try_from(room.saturating_mul(3)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: Role, content: &str) -> Message {
        Message {
            id: String::new(),
            role,
            content: content.into(),
            timestamp: chrono::Utc::now(),
            reply: None,
        }
    }

    fn shape(turns: &[Turn]) -> Vec<(&str, &str)> {
        turns.iter().map(|t| (t.role, t.content.as_str())).collect()
    }

    #[test]
    fn turns_alternate_and_start_with_the_user() {
        let history = [
            m(Role::Assistant, "Hello, how can I help?"),
            m(Role::User, "a"),
            m(Role::User, "b"),
            m(Role::Assistant, ""),
            m(Role::System, "ignored"),
            m(Role::Assistant, "c"),
            m(Role::User, "d"),
        ];
        assert_eq!(
            shape(&turns(&history, 1000)),
            [("user", "a\n\nb"), ("assistant", "c"), ("user", "d")]
        );
    }

    #[test]
    fn the_newest_messages_fit_the_budget() {
        let history = [
            m(Role::User, &"x".repeat(100)),
            m(Role::Assistant, &"y".repeat(100)),
            m(Role::User, "question"),
        ];
        // Room for the question and the answer before it, not the first
        // message; the answer then leads and is dropped.
        assert_eq!(shape(&turns(&history, 150)), [("user", "question")]);
        assert_eq!(turns(&history, 1000).len(), 3);
        // The message answered goes even when it alone is over budget.
        assert_eq!(shape(&turns(&history, 3)), [("user", "question")]);
    }
}
