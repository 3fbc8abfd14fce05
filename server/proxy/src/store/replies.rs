//! Assistant replies as both stores write them: what a write of a reply
//! does ([`plan_reply`]) and how it changes the conversation.

use super::*;

/// A write of an assistant reply; [`plan_reply`] decides what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyWrite {
    /// A new reply (empty, `streaming`) to the user message `reply.after`.
    /// A reply with its id that exists is answered as it is (`created:
    /// false`), unless `regenerate`: then one that is not live is replaced.
    Start { message: Message, regenerate: bool },
    /// The run that started the reply (its `timestamp`) writes its text and
    /// status. Refused with [`StoreError::ReplyEnded`] when another run
    /// replaced it or it ended; a reply stopped meanwhile stays `stopped`.
    Progress { message: Message },
    /// A streaming reply becomes `stopped`, its text kept; one that ended
    /// is answered as it is.
    Stop { id: Id },
}

impl ReplyWrite {
    pub fn id(&self) -> String {
        match self {
            ReplyWrite::Start { message, .. } | ReplyWrite::Progress { message } => {
                message.id.clone()
            }
            ReplyWrite::Stop { id } => id.to_string(),
        }
    }

    /// The user message a start answers.
    pub fn after(&self) -> Option<&str> {
        match self {
            ReplyWrite::Start { message, .. } => message.reply.as_ref().map(|r| r.after.as_str()),
            _ => None,
        }
    }
}

/// What a [`ReplyWrite`] does, given the stored reply and (for a start) the
/// message it answers: the same rule in both stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyPlan {
    /// Write nothing; answer this.
    Keep(Message),
    /// Store this message (new when nothing was stored).
    Write(Message),
}

pub fn plan_reply(
    write: ReplyWrite,
    existing: Option<Message>,
    after: Option<&Message>,
    at: DateTime<Utc>,
) -> Result<ReplyPlan> {
    use confab_wire::assistant::ReplyStatus;
    let stored_reply = |m: &Message| m.reply.clone().filter(|_| m.role == Role::Assistant);
    match write {
        ReplyWrite::Start {
            message,
            regenerate,
        } => {
            let Some(existing) = existing else {
                return match after {
                    Some(a) if a.role == Role::User => Ok(ReplyPlan::Write(message)),
                    _ => Err(StoreError::NotAUserMessage),
                };
            };
            let same_question = stored_reply(&existing)
                .zip(message.reply.as_ref())
                .is_some_and(|(old, new)| old.after == new.after);
            if !same_question {
                return Err(StoreError::IdTaken(
                    "this message id is already used for a different message",
                ));
            }
            match (regenerate, stored_reply(&existing)) {
                (false, _) => Ok(ReplyPlan::Keep(existing)),
                (true, Some(old)) if old.is_live(at) => Err(StoreError::ReplyBusy),
                (true, _) => Ok(ReplyPlan::Write(message)),
            }
        }
        ReplyWrite::Progress { mut message } => {
            let existing = existing.ok_or(StoreError::NotFound)?;
            let old = stored_reply(&existing).ok_or(StoreError::NotFound)?;
            if existing.timestamp != message.timestamp {
                return Err(StoreError::ReplyEnded);
            }
            match old.status {
                ReplyStatus::Streaming => Ok(ReplyPlan::Write(message)),
                ReplyStatus::Stopped => {
                    // The run learns of a stop made elsewhere: its text is
                    // kept, the status stays.
                    if let Some(r) = message.reply.as_mut() {
                        r.status = ReplyStatus::Stopped;
                        r.error = None;
                        r.stop_reason = old.stop_reason;
                    }
                    if message.content.len() < existing.content.len() {
                        return Ok(ReplyPlan::Keep(existing));
                    }
                    Ok(ReplyPlan::Write(message))
                }
                _ => Err(StoreError::ReplyEnded),
            }
        }
        ReplyWrite::Stop { .. } => {
            let existing = existing.ok_or(StoreError::NotFound)?;
            let mut old = stored_reply(&existing).ok_or(StoreError::NotFound)?;
            if old.status != ReplyStatus::Streaming {
                return Ok(ReplyPlan::Keep(existing));
            }
            old.status = ReplyStatus::Stopped;
            old.stop_reason = Some("stopped".into());
            old.updated_at = at;
            Ok(ReplyPlan::Write(Message {
                reply: Some(old),
                ..existing
            }))
        }
    }
}

/// The conversation after a reply write: counters, preview, version.
/// `old_len` is the stored text's length (`None`: the reply is new);
/// `newest` whether no message sorts after the reply.
pub fn count_reply(
    c: &mut Conversation,
    message: &Message,
    old_len: Option<u64>,
    newest: bool,
    at: DateTime<Utc>,
) {
    if old_len.is_none() {
        c.message_count += 1;
    }
    if newest && !message.content.is_empty() {
        c.last_message_preview = Some(preview(&message.content));
    }
    c.version += 1;
    c.updated_at = at;
}

/// The UTC day a usage count belongs to, as both stores key it.
pub fn usage_day(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}
