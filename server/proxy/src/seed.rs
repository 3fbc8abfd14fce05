//! Sample conversations for a new user of the local stack (`confab-proxy
//! seed`): enough to see the list, pinned items, Markdown and search at once.

use confab_wire::conversations::Role;

use crate::ids::{Id, UserId};
use crate::store::{NewConversation, NewMessage, Patch, Result, Store};

/// Title, pinned, and the messages (role, Markdown).
type Sample = (&'static str, bool, &'static [(Role, &'static str)]);

const SAMPLES: &[Sample] = &[
    (
        "Welcome to Confab",
        true,
        &[
            (
                Role::Assistant,
                "**Welcome!** Everything here is saved on this computer first and synced to your other devices.\n\n- Press **Ctrl+N** for a new conversation\n- **Ctrl+K** searches every message\n- Works offline: changes sync when you are back",
            ),
            (
                Role::User,
                "Nice. Does it keep my drafts if the network drops?",
            ),
            (
                Role::Assistant,
                "Yes: a message is stored locally before anything is sent, and waits in the outbox until the server has it.",
            ),
        ],
    ),
    (
        "Trip to Lisbon",
        false,
        &[
            (
                Role::User,
                "Flights are booked for the 14th. Hotel near Alfama?",
            ),
            (
                Role::Assistant,
                "Alfama is lovely but hilly. Baixa is flatter and close to the river. Try `pastéis de nata` at Manteigaria.",
            ),
        ],
    ),
    (
        "Quarterly report",
        false,
        &[
            (Role::User, "Draft the outline for the Q3 report."),
            (
                Role::Assistant,
                "1. Highlights\n2. Revenue and costs\n3. Risks\n4. Next quarter\n\n> Keep it to two pages.",
            ),
        ],
    ),
];

/// Gives `user` the sample conversations unless they already have any.
/// Returns how many were created.
pub async fn seed(store: &dyn Store, user: &UserId) -> Result<usize> {
    if !store
        .list_conversations(user, 1, None)
        .await?
        .items
        .is_empty()
    {
        return Ok(0);
    }
    for (title, pinned, messages) in SAMPLES {
        let new = NewConversation {
            id: Id::new(),
            title: (*title).to_owned(),
            messages: messages
                .iter()
                .map(|(role, content)| NewMessage {
                    id: Id::new(),
                    role: *role,
                    content: (*content).to_owned(),
                })
                .collect(),
        };
        let id = new.id;
        store.create_conversation(user, new, None).await?;
        if *pinned {
            let patch = Patch {
                pinned: Some(true),
                ..Patch::default()
            };
            store.update_conversation(user, id, patch, None).await?;
        }
    }
    Ok(SAMPLES.len())
}
