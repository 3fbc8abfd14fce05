//! One reply, from the request to the model to its stored final text.
//!
//! The text grows in memory; each piece goes to the user's event streams at
//! once (`reply` events) and the text so far to the store at most every
//! [`Settings::checkpoint_every`]. The end (complete, stopped, failed) is
//! written once, then announced (`reply-done` and a `change`). A checkpoint
//! that finds the reply stopped elsewhere (another instance took the Stop)
//! ends the run as stopped; one that finds it replaced ends it silently.

use std::sync::Arc;
use std::time::Duration;

use confab_wire::assistant::{Reply, ReplyDelta, ReplyStatus, Usage};
use confab_wire::conversations::{ChangeNotice, Message};
use confab_wire::limits::DEFAULT_TITLE;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::provider::{Chunk, ProviderError, Request, Turn};
use super::{Deps, Settings, context};
use crate::ids::{Id, UserId};
use crate::store::{MessageRange, Patch, ReplyWrite, StoreError, now};

/// The most messages read back for the context (the budget cuts further).
const MAX_CONTEXT_MESSAGES: usize = 1000;

pub(super) struct Run {
    pub settings: Arc<Settings>,
    pub http: reqwest::Client,
    pub deps: Deps,
    pub user: UserId,
    pub conversation: Id,
    /// As started: empty and streaming; its timestamp names this run.
    pub message: Message,
    /// The conversation's instructions: the system prompt.
    pub instructions: Option<String>,
    pub stop: watch::Receiver<bool>,
    /// The UTC day usage is counted in (the day the run started).
    pub day: String,
}

enum End {
    Complete,
    Stopped,
    Failed(String),
    /// Replaced or deleted meanwhile: nothing more to write.
    Gone,
}

/// What the run has so far.
#[derive(Default)]
struct Progress {
    text: String,
    seq: u64,
    input: Option<u64>,
    output: Option<u64>,
    stop_reason: Option<String>,
}

impl Progress {
    fn usage(&self) -> Option<Usage> {
        if self.input.is_none() && self.output.is_none() {
            return None;
        }
        Some(Usage {
            input_tokens: self.input.unwrap_or(0),
            // A stopped or broken stream may not report its output: about
            // four bytes a token.
            output_tokens: self.output.unwrap_or(self.text.len().div_ceil(4) as u64),
        })
    }
}

/// Resolves when the stop switch is on; never when it is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|on| *on).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Run {
    /// Writes the reply; `slot` is given back once it ended (before the
    /// title, which must not hold up the user's next question).
    pub async fn execute(mut self, done: watch::Sender<Option<Message>>, slot: super::Slot) {
        let mut progress = Progress::default();
        let end = self.generate(&mut progress).await;
        // Counted before the end is announced: a device that sees the end
        // sees the budget that includes it.
        if let Some(usage) = progress.usage() {
            self.charge(usage.total()).await;
        }
        let finished = self.finish(end, &progress).await;
        let complete = finished
            .as_ref()
            .and_then(|m| m.reply.as_ref())
            .is_some_and(|r| r.status == ReplyStatus::Complete);
        let _ = done.send(Some(finished.unwrap_or_else(|| self.message.clone())));
        drop(slot);
        if complete {
            self.title(&progress.text).await;
        }
    }

    async fn generate(&mut self, progress: &mut Progress) -> End {
        let reply_id = match Id::parse(&self.message.id) {
            Ok(id) => id,
            Err(_) => return End::Gone,
        };
        let history = match self
            .deps
            .store
            .messages(
                &self.user,
                self.conversation,
                MessageRange::Before(Some(reply_id)),
                MAX_CONTEXT_MESSAGES,
            )
            .await
        {
            Ok(page) => page.items,
            Err(StoreError::NotFound) => return End::Gone,
            Err(err) => {
                tracing::warn!(error = %err, "reply: the conversation could not be read");
                return End::Failed("The conversation could not be read. Retry shortly.".into());
            }
        };
        let budget = context::budget_bytes(self.settings.context_tokens, self.settings.max_tokens);
        let turns = context::turns(&history, budget);
        if turns.last().map(|t: &Turn| t.role) != Some("user") {
            return End::Failed("There is no message of yours to answer.".into());
        }
        let request = Request {
            model: self
                .message
                .reply
                .as_ref()
                .map(|r| r.model.clone())
                .unwrap_or_default(),
            system: self.instructions.clone(),
            turns,
            max_tokens: self.settings.max_tokens,
        };

        let mut attempt = 0;
        let mut stream = loop {
            let result = tokio::select! {
                r = self.settings.provider.stream(&self.http, &request) => r,
                () = stopped(&mut self.stop) => return End::Stopped,
            };
            match result {
                Ok(stream) => break stream,
                Err(ProviderError::Busy {
                    status,
                    retry_after,
                }) if attempt < self.settings.retries => {
                    let wait =
                        retry_after.unwrap_or(self.settings.first_backoff * 2u32.pow(attempt));
                    attempt += 1;
                    tracing::info!(
                        status,
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        "model provider busy; retrying"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = stopped(&mut self.stop) => return End::Stopped,
                    }
                }
                Err(err) => {
                    match &err {
                        ProviderError::KeyRefused => tracing::error!(
                            "the model provider refused the API key (ANTHROPIC_API_KEY or OPENAI_API_KEY): replies fail until it is replaced"
                        ),
                        other => {
                            tracing::warn!(error = %other, "reply failed before its first token")
                        }
                    }
                    return End::Failed(err.for_users());
                }
            }
        };

        let mut last_checkpoint = Instant::now();
        loop {
            let wait = if progress.seq == 0 {
                self.settings.first_token_timeout
            } else {
                self.settings.idle_timeout
            };
            let next = tokio::select! {
                next = tokio::time::timeout(wait, stream.next()) => next,
                () = stopped(&mut self.stop) => return End::Stopped,
            };
            match next {
                Err(_) if progress.seq == 0 => {
                    return End::Failed(format!(
                        "The model did not start answering within {} s. Retry in a moment.",
                        wait.as_secs()
                    ));
                }
                Err(_) => {
                    return End::Failed(format!(
                        "The model went silent for {} s mid-reply. The text so far is kept; retry for a whole reply.",
                        wait.as_secs()
                    ));
                }
                // A stream that ends without saying why the model stopped
                // was cut off.
                Ok(None) if progress.stop_reason.is_some() => return End::Complete,
                Ok(None) => {
                    return End::Failed(ProviderError::Broken("no end".into()).for_users());
                }
                Ok(Some(Err(err))) => {
                    tracing::warn!(error = %err, "reply stream failed");
                    return End::Failed(err.for_users());
                }
                Ok(Some(Ok(Chunk::Text(text)))) => {
                    progress.seq += 1;
                    let offset = progress.text.len() as u64;
                    progress.text.push_str(&text);
                    self.deps.hub.publish(
                        &self.user,
                        ReplyDelta {
                            conversation_id: self.conversation.to_string(),
                            message_id: self.message.id.clone(),
                            seq: progress.seq,
                            offset,
                            delta: text,
                        },
                    );
                    if last_checkpoint.elapsed() >= self.settings.checkpoint_every {
                        last_checkpoint = Instant::now();
                        if let Some(end) = self.checkpoint(progress).await {
                            return end;
                        }
                    }
                }
                Ok(Some(Ok(Chunk::Usage { input, output }))) => {
                    progress.input = input.or(progress.input);
                    progress.output = output.or(progress.output);
                }
                Ok(Some(Ok(Chunk::Stop(reason)))) => progress.stop_reason = Some(reason),
            }
        }
    }

    fn with(&self, progress: &Progress, status: ReplyStatus, error: Option<String>) -> Message {
        let mut message = self.message.clone();
        message.content = progress.text.clone();
        if let Some(reply) = message.reply.as_mut() {
            reply.status = status;
            reply.updated_at = now();
            reply.usage = progress.usage();
            reply.stop_reason = progress.stop_reason.clone();
            reply.error = error;
        }
        message
    }

    /// Stores the text so far. `Some` ends the run: stopped elsewhere,
    /// replaced, or the conversation is full.
    async fn checkpoint(&self, progress: &Progress) -> Option<End> {
        let message = self.with(progress, ReplyStatus::Streaming, None);
        match self
            .deps
            .store
            .write_reply(
                &self.user,
                self.conversation,
                ReplyWrite::Progress { message },
                None,
            )
            .await
        {
            Ok(written) => {
                let stored = written.value.0.reply.map(|r| r.status);
                (stored == Some(ReplyStatus::Stopped)).then_some(End::Stopped)
            }
            Err(StoreError::ReplyEnded | StoreError::NotFound) => Some(End::Gone),
            Err(StoreError::CapReached(why)) => {
                Some(End::Failed(format!("The conversation is full: {why}")))
            }
            Err(err) => {
                // The next checkpoint or the end tries again.
                tracing::warn!(error = %err, "reply checkpoint failed");
                None
            }
        }
    }

    /// Writes the end and announces it; answers what was stored.
    async fn finish(&self, end: End, progress: &Progress) -> Option<Message> {
        let (status, error) = match end {
            End::Gone => return None,
            End::Complete => (ReplyStatus::Complete, None),
            End::Stopped => (ReplyStatus::Stopped, None),
            End::Failed(why) => (ReplyStatus::Failed, Some(why)),
        };
        let mut message = self.with(progress, status, error);
        if status == ReplyStatus::Stopped
            && let Some(reply) = message.reply.as_mut()
        {
            reply.stop_reason = Some("stopped".into());
        }
        // The end must be stored: a few tries through a store hiccup.
        let mut delay = Duration::from_millis(200);
        for attempt in 0..5 {
            match self
                .deps
                .store
                .write_reply(
                    &self.user,
                    self.conversation,
                    ReplyWrite::Progress {
                        message: message.clone(),
                    },
                    None,
                )
                .await
            {
                Ok(written) => {
                    let (stored, conversation) = written.value;
                    super::announce_end(
                        &self.deps.hub,
                        &self.user,
                        &stored,
                        &conversation,
                        status,
                        None,
                    );
                    return Some(stored);
                }
                Err(StoreError::ReplyEnded | StoreError::NotFound) => return None,
                Err(err) => {
                    tracing::warn!(error = %err, attempt, "storing a reply's end failed");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        tracing::error!(message = %self.message.id, "a reply's end could not be stored; it shows as interrupted");
        None
    }

    async fn charge(&self, tokens: u64) {
        let tokens = i64::try_from(tokens).unwrap_or(i64::MAX);
        if let Err(err) = self
            .deps
            .store
            .charge_usage(&self.user, &self.day, tokens, None)
            .await
        {
            tracing::warn!(error = %err, "a reply's usage could not be counted");
        }
    }

    /// After the first reply, a conversation still titled by default gets a
    /// short title from the model.
    async fn title(&self, reply: &str) {
        let Ok(detail) = self
            .deps
            .store
            .get_conversation_newest(&self.user, self.conversation, 1)
            .await
        else {
            return;
        };
        let c = detail.conversation;
        if c.title != DEFAULT_TITLE {
            return;
        }
        let Ok(first) = self
            .deps
            .store
            .messages(&self.user, self.conversation, MessageRange::After(None), 1)
            .await
        else {
            return;
        };
        let Some(question) = first.items.first().map(|m| m.content.clone()) else {
            return;
        };
        let request = Request {
            model: self
                .message
                .reply
                .as_ref()
                .map(|r| r.model.clone())
                .unwrap_or_default(),
            system: Some(
                "You name conversations. Answer with a title of at most six words, nothing else: no quotes, no final period.".into(),
            ),
            turns: vec![Turn {
                role: "user",
                content: format!(
                    "Write a title for the conversation that begins:\n\n{}\n\n{}",
                    cut(&question, 2000),
                    cut(reply, 1000)
                ),
            }],
            max_tokens: 30,
        };
        let Some((title, usage)) = self.ask(&request).await else {
            return;
        };
        self.charge(usage).await;
        let Some(title) = clean_title(&title) else {
            return;
        };
        let patch = Patch {
            title: Some(title),
            expected_version: Some(c.version),
            ..Patch::default()
        };
        // A rename by the user meanwhile wins (version conflict).
        if let Ok(updated) = self
            .deps
            .store
            .update_conversation(&self.user, self.conversation, patch, None)
            .await
        {
            self.deps.hub.publish(
                &self.user,
                ChangeNotice {
                    conversation_id: Some(updated.id),
                    version: Some(updated.version),
                    device: None,
                },
            );
        }
    }

    /// A short answer, whole: its text and tokens.
    async fn ask(&self, request: &Request) -> Option<(String, u64)> {
        let mut stream = self
            .settings
            .provider
            .stream(&self.http, request)
            .await
            .ok()?;
        let mut text = String::new();
        let mut tokens = Progress::default();
        let read = async {
            while let Some(chunk) = stream.next().await {
                match chunk.ok()? {
                    Chunk::Text(t) => text.push_str(&t),
                    Chunk::Usage { input, output } => {
                        tokens.input = input.or(tokens.input);
                        tokens.output = output.or(tokens.output);
                    }
                    Chunk::Stop(_) => {}
                }
            }
            Some(())
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .ok()??;
        let used = tokens.usage().map_or(0, |u| u.total());
        Some((text, used))
    }
}

fn cut(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// The model's title, tidied: its first line, without quotes, Markdown
/// marks or a final period, at most the title limit. `None` when nothing
/// is left.
pub(crate) fn clean_title(raw: &str) -> Option<String> {
    let line = raw.lines().map(str::trim).find(|l| !l.is_empty())?;
    const MARKS: [char; 8] = ['#', '*', '_', '"', '\'', '“', '‘', ' '];
    let line = line.trim_start_matches(MARKS);
    let line = line.strip_prefix("Title:").unwrap_or(line);
    let line = line
        .trim_start_matches(MARKS)
        .trim_end_matches(['*', '_', '"', '\'', '”', '’', '.', ' ']);
    let title: String = line
        .chars()
        .filter(|c| !c.is_control())
        .take(confab_wire::limits::MAX_TITLE_CHARS)
        .collect();
    let title = title.trim().to_owned();
    (!title.is_empty()).then_some(title)
}

/// A new reply to `after`, as the start writes it: empty, streaming.
pub(crate) fn new_reply(id: Id, after: Id, model: String) -> Message {
    let at = now();
    Message {
        id: id.to_string(),
        role: confab_wire::conversations::Role::Assistant,
        content: String::new(),
        timestamp: at,
        reply: Some(Reply {
            status: ReplyStatus::Streaming,
            model,
            after: after.to_string(),
            updated_at: at,
            usage: None,
            stop_reason: None,
            error: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_tidied() {
        assert_eq!(
            clean_title("\n\"Hiring plan for Q3.\"\nmore").as_deref(),
            Some("Hiring plan for Q3")
        );
        assert_eq!(
            clean_title("**Title:** Budget review").as_deref(),
            Some("Budget review")
        );
        assert_eq!(clean_title("  \n \"\" "), None);
        let long = "word ".repeat(100);
        assert!(
            clean_title(&long).unwrap().chars().count() <= confab_wire::limits::MAX_TITLE_CHARS
        );
    }
}
