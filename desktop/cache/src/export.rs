//! A conversation as a file the user keeps: Markdown for people, JSON (the
//! API's shape) for programs.

use confab_wire::conversations::{Conversation, ConversationDetail, Role};
use confab_wire::library::ConversationView;

/// Markdown: the title, then each message under its role and time. Message
/// content is Markdown already and is kept as written.
pub fn markdown(view: &ConversationView) -> String {
    let c = &view.conversation;
    let mut out = format!(
        "# {}\n\n_Created {} · {} messages_\n",
        c.title.replace('\n', " "),
        c.created_at.format("%Y-%m-%d %H:%M UTC"),
        view.messages.len()
    );
    for m in &view.messages {
        let role = match m.message.role {
            Role::User => "You",
            Role::Assistant => "Assistant",
            Role::System => "System",
        };
        out.push_str(&format!(
            "\n## {role} · {}\n\n{}\n",
            m.message.timestamp.format("%Y-%m-%d %H:%M UTC"),
            m.message.content.trim_end()
        ));
    }
    out
}

/// JSON in the shape `GET /api/conversations/{id}` answers.
pub fn json(view: &ConversationView) -> Result<String, serde_json::Error> {
    let detail = ConversationDetail {
        conversation: Conversation {
            ..view.conversation.clone()
        },
        messages: view.messages.iter().map(|m| m.message.clone()).collect(),
        next_cursor: None,
    };
    serde_json::to_string_pretty(&detail)
}

/// A file name from the title: letters, digits, spaces and dashes only.
pub fn file_name(view: &ConversationView, extension: &str) -> String {
    let stem: String = view
        .conversation
        .title
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == ' ' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect::<String>()
        .trim()
        .chars()
        .take(80)
        .collect();
    let stem = if stem.is_empty() {
        "conversation".to_owned()
    } else {
        stem
    };
    format!("{stem}.{extension}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use confab_wire::conversations::Message;
    use confab_wire::library::MessageView;

    fn view() -> ConversationView {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        ConversationView {
            conversation: Conversation {
                id: "01JD0000000000000000000001".into(),
                title: "Plans: ../../etc/passwd".into(),
                created_at: at,
                updated_at: at,
                version: 2,
                message_count: 1,
                last_message_preview: Some("hi".into()),
                pinned: false,
                archived: false,
                assistant: Default::default(),
            },
            earlier: 0,
            messages: vec![MessageView {
                message: Message {
                    id: "01JD00000000000000000000A1".into(),
                    role: Role::User,
                    content: "**hi** <script>".into(),
                    timestamp: at,
                    reply: None,
                },
                pending: false,
                asking: false,
            }],
            pending: 0,
            failed: None,
            deleted: false,
            opening: None,
        }
    }

    #[test]
    fn markdown_has_the_title_and_every_message() {
        let text = markdown(&view());
        assert!(text.starts_with("# Plans: ../../etc/passwd\n"));
        assert!(
            text.contains("## You · 2027-01-15 08:00 UTC\n\n**hi** <script>\n"),
            "{text}"
        );
    }

    #[test]
    fn json_is_the_apis_shape() {
        let value: serde_json::Value =
            serde_json::from_str(&json(&view()).unwrap_or_default()).unwrap_or_default();
        assert_eq!(value["title"], "Plans: ../../etc/passwd");
        assert_eq!(value["messages"][0]["content"], "**hi** <script>");
        assert!(value.get("pending").is_none());
    }

    #[test]
    fn file_names_cannot_escape_the_folder() {
        assert_eq!(file_name(&view(), "md"), "Plans- ------etc-passwd.md");
    }
}
