//! The DynamoDB store: one table (design section 2).
//!
//! | item | pk | sk |
//! |---|---|---|
//! | profile | `USER#{user}` | `PROFILE#{user}` |
//! | conversation | `USER#{user}` | `CONV#{id}` |
//! | message | `USER#{user}` | `MSG#{conversation}#{id}` |
//! | change sequence | `USER#{user}` | `SEQ` |
//! | change entry | `USER#{user}` | `CHG#{seq, 20 digits}` |
//! | processed webhook delivery | `WEBHOOK#{sha256 of svix-id}` | `DELIVERY` |
//! | assistant usage of a day | `USER#{user}` | `USAGE#{YYYY-MM-DD}` |
//! | erased account (user.deleted), kept 60 days | `ERASED#{user}` | `ERASED` |
//!
//! A message item written by the assistant also holds `reply`: its status,
//! model and usage as JSON (`confab_wire::assistant::Reply`); a conversation
//! with assistant settings other than the defaults holds `assistant` (JSON).
//!
//! A change entry holds `conversationId`, the writing `device` (when it named
//! itself) and `messages`: absent when no message changed, `*` when all were
//! replaced, else the oldest message id the write stored.
//!
//! Live conversations carry `gsi1pk`/`gsi1sk` (`USER#{user}` /
//! `{updatedAt millis, 15 digits}#{id}`): the sparse index `gsi1` lists them
//! most recently changed first; a tombstone drops those attributes and gets an
//! `expiresAt` TTL. Every change writes the conversation, bumps `SEQ` under a
//! condition on its previous value and puts the `CHG#` entry, in one transaction:
//! sequence numbers therefore commit in order, and a strongly consistent query of
//! `CHG#` entries never skips one that commits later (the change feed's
//! guarantee). Conflicting transactions are retried with jittered backoff.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, Put, PutRequest,
    ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem, Update, WriteRequest,
};
use chrono::{DateTime, Utc};
use confab_wire::conversations::{
    Changes, Conversation, ConversationDetail, Deletion, Message, Page, Profile, Role,
};

use super::{
    Caps, Created, DELIVERY_MEMORY_SECS, DeviceId, FeedWalk, LogEntry, MessageMark, MessageRange,
    NewConversation, NewMessage, Patch, ProfileFields, ReplyPlan, ReplyWrite, Result, Store,
    StoreError, TOMBSTONE_TTL_DAYS, check_cursor, check_version, content_bytes, count_reply,
    list_cursor, materialise, message_page, now, parse_list_cursor, plan_reply, preview,
};
use crate::ids::{Id, UserId};

mod commit;
mod item;
mod retry;
mod setup;

use commit::Origin;
use item::*;
use retry::*;

pub const GSI: &str = "gsi1";

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// Writes of one user from this process take turns (striped by user id).
    /// Correctness never depends on it (the conditions do, across instances),
    /// but it spares conflicting transactions their retry rounds, and moto,
    /// whose failed-transaction rollback can undo a concurrent commit.
    stripes: std::sync::Arc<Vec<tokio::sync::Mutex<()>>>,
    caps: Caps,
}

const STRIPES: usize = 256;
/// Messages a create writes in its own transaction (100 items minus the
/// conversation, the sequence and the change entry, minus one to spare).
const TRANSACTION_MESSAGES: usize = 96;

impl DynamoStore {
    /// A store on `table`, configured from the standard AWS chain (and
    /// `AWS_ENDPOINT_URL_DYNAMODB`).
    pub async fn from_env(table: &str) -> Self {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            // Fail fast into a 503 rather than hold a request for minutes.
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(15))
                    .build(),
            )
            // Throttling and transient errors are retried with backoff by the SDK.
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(4))
            .load()
            .await;
        Self::new(Client::new(&config), table)
    }

    pub fn new(client: Client, table: &str) -> Self {
        Self {
            client,
            table: table.to_owned(),
            stripes: std::sync::Arc::new(
                (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            ),
            caps: Caps::default(),
        }
    }

    /// The per-conversation caps this store enforces.
    pub fn with_caps(mut self, caps: Caps) -> Self {
        self.caps = caps;
        self
    }

    /// The content bytes of a stored conversation: its counter, or (an item
    /// from before the counter) the sum over its messages.
    async fn bytes_of(&self, user: &UserId, stored: &Stored) -> Result<u64> {
        match stored.content_bytes {
            Some(bytes) => Ok(bytes),
            None => Ok(content_bytes(
                &self.all_messages(user, &stored.conversation.id).await?,
            )),
        }
    }

    async fn turn(&self, user: &UserId) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        user.hash(&mut hasher);
        let index = usize::try_from(hasher.finish() % STRIPES as u64).unwrap_or(0);
        match self.stripes.get(index) {
            Some(stripe) => Some(stripe.lock().await),
            None => None,
        }
    }

    async fn get(&self, key: Item) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        Ok(out.item)
    }

    async fn load(&self, user: &UserId, id: &str) -> Result<Option<Stored>> {
        self.get(key(user, conv_sk(id)))
            .await?
            .map(|item| conversation_from(&item))
            .transpose()
    }

    async fn load_live_stored(&self, user: &UserId, id: &str) -> Result<Stored> {
        match self.load(user, id).await? {
            Some(stored) if stored.deleted_at.is_none() => Ok(stored),
            _ => Err(StoreError::NotFound),
        }
    }

    async fn load_live(&self, user: &UserId, id: &str) -> Result<Conversation> {
        match self.load(user, id).await? {
            Some(Stored {
                conversation,
                deleted_at: None,
                ..
            }) => Ok(conversation),
            _ => Err(StoreError::NotFound),
        }
    }

    async fn seq(&self, user: &UserId) -> Result<u64> {
        Ok(self
            .get(key(user, "SEQ".into()))
            .await?
            .and_then(|item| get_n(&item, "seq"))
            .unwrap_or(0))
    }

    /// Every item under `pk` whose sort key starts with `prefix`, all pages.
    /// An empty prefix means every item of the user. For what is bounded (a
    /// conversation's messages, within its caps); bulk work goes page by page
    /// ([`DynamoStore::next_page`]).
    async fn query_prefix(&self, user: &UserId, prefix: &str) -> Result<Vec<Item>> {
        let mut pages = Pages::default();
        let mut items = Vec::new();
        while let Some(page) = self.next_page(user, prefix, &mut pages).await? {
            items.extend(page);
        }
        Ok(items)
    }

    /// The next page (DynamoDB's, at most 1 MB) of the items under `prefix`;
    /// `None` after the last.
    async fn next_page(
        &self,
        user: &UserId,
        prefix: &str,
        pages: &mut Pages,
    ) -> Result<Option<Vec<Item>>> {
        if pages.done {
            return Ok(None);
        }
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_values(":pk", pk(user));
        query = if prefix.is_empty() {
            query.key_condition_expression("pk = :pk")
        } else {
            query
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", s(prefix))
        };
        let out = query
            .consistent_read(true)
            .set_exclusive_start_key(pages.start.take())
            .send()
            .await
            .map_err(classify)?;
        match out.last_evaluated_key {
            Some(key) if !key.is_empty() => pages.start = Some(key),
            _ => pages.done = true,
        }
        Ok(Some(out.items.unwrap_or_default()))
    }

    /// Deletes `items` (by their keys) in batches.
    async fn delete_items(&self, items: Vec<Item>) -> Result<()> {
        let requests = items
            .into_iter()
            .filter_map(|item| {
                let key = HashMap::from([
                    ("pk".to_owned(), item.get("pk")?.clone()),
                    ("sk".to_owned(), item.get("sk")?.clone()),
                ]);
                Some(key)
            })
            .map(|key| {
                build(DeleteRequest::builder().set_key(Some(key)).build())
                    .map(|delete| WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<Result<Vec<_>>>()?;
        self.batch_write(requests).await
    }

    /// Sets (or clears) the TTL of every message of a conversation.
    async fn set_message_expiry(
        &self,
        user: &UserId,
        id: &str,
        expires: Option<i64>,
    ) -> Result<()> {
        // Page by page: a conversation's messages are never all in memory.
        let prefix = format!("MSG#{id}#");
        let mut pages = Pages::default();
        while let Some(mut items) = self.next_page(user, &prefix, &mut pages).await? {
            for item in &mut items {
                match expires {
                    Some(at) => item.insert("expiresAt".into(), n(at)),
                    None => item.remove("expiresAt"),
                };
            }
            self.put_items(items).await?;
        }
        Ok(())
    }

    /// Puts `messages` of a conversation in batches.
    async fn put_messages(
        &self,
        user: &UserId,
        conversation: &str,
        messages: &[Message],
    ) -> Result<()> {
        self.put_items(
            messages
                .iter()
                .map(|m| message_item(user, conversation, m))
                .collect(),
        )
        .await
    }

    /// Puts whole items in batches.
    async fn put_items(&self, items: Vec<Item>) -> Result<()> {
        let requests = items
            .into_iter()
            .map(|item| {
                build(PutRequest::builder().set_item(Some(item)).build())
                    .map(|put| WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>>>()?;
        self.batch_write(requests).await
    }

    /// Batch writes in chunks of 25, resending what DynamoDB left unprocessed.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<()> {
        for chunk in requests.chunks(25) {
            let mut pending = chunk.to_vec();
            let mut attempt = 0;
            while !pending.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(classify)?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
                if !pending.is_empty() {
                    attempt += 1;
                    if attempt > MAX_ATTEMPTS {
                        return Err(StoreError::Unavailable(
                            "DynamoDB keeps throttling writes".into(),
                        ));
                    }
                    backoff(attempt).await;
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn ping(&self) -> Result<()> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn get_profile(&self, user: &UserId) -> Result<Option<Profile>> {
        let Some(item) = self.get(key(user, format!("PROFILE#{user}"))).await? else {
            return Ok(None);
        };
        Ok(Some(Profile {
            id: user.to_string(),
            clerk_id: user.to_string(),
            email: get_s(&item, "email"),
            first_name: get_s(&item, "firstName"),
            last_name: get_s(&item, "lastName"),
            image_url: get_s(&item, "imageUrl"),
            created_at: get_time(&item, "createdAt")?,
            updated_at: get_time(&item, "updatedAt")?,
        }))
    }

    async fn put_profile(&self, user: &UserId, fields: ProfileFields) -> Result<Profile> {
        self.refuse_erased(user).await?;
        let at = rfc3339(now());
        // SET the provider's fields, REMOVE the ones it no longer has, and keep
        // createdAt from the first write.
        let mut sets = vec![
            "clerkId = :id".to_owned(),
            "#type = :type".to_owned(),
            "updatedAt = :at".to_owned(),
            "createdAt = if_not_exists(createdAt, :at)".to_owned(),
        ];
        let mut removes = Vec::new();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(user, format!("PROFILE#{user}"))))
            .expression_attribute_names("#type", "type")
            .expression_attribute_values(":id", s(user.to_string()))
            .expression_attribute_values(":type", s("profile"))
            .expression_attribute_values(":at", s(at));
        for (name, value) in [
            ("email", fields.email),
            ("firstName", fields.first_name),
            ("lastName", fields.last_name),
            ("imageUrl", fields.image_url),
        ] {
            match value {
                Some(v) => {
                    sets.push(format!("{name} = :{name}"));
                    update = update.expression_attribute_values(format!(":{name}"), s(v));
                }
                None => removes.push(name),
            }
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        update
            .update_expression(expression)
            .send()
            .await
            .map_err(classify)?;
        self.get_profile(user).await?.ok_or(StoreError::NotFound)
    }

    async fn list_conversations(
        &self,
        user: &UserId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Conversation>> {
        let limit = limit.max(1);
        let mut start = match cursor {
            Some(raw) => {
                let (at, id) = parse_list_cursor(raw)?;
                let id = id.to_string();
                let updated =
                    DateTime::from_timestamp_millis(at).ok_or(StoreError::InvalidCursor)?;
                let mut k = key(user, conv_sk(&id));
                k.insert("gsi1pk".into(), pk(user));
                k.insert("gsi1sk".into(), s(gsi_sk(updated, &id)));
                Some(k)
            }
            None => None,
        };
        // Ask for one more than the page: whether it exists decides nextCursor,
        // without trusting LastEvaluatedKey at the end of the data.
        let mut items = Vec::new();
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI)
                .key_condition_expression("gsi1pk = :pk")
                .expression_attribute_values(":pk", pk(user))
                .scan_index_forward(false)
                .limit(i32::try_from(limit + 1 - items.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(classify)?;
            for item in out.items.unwrap_or_default() {
                let stored = conversation_from(&item)?;
                if stored.deleted_at.is_none() {
                    items.push(stored.conversation);
                }
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() && items.len() <= limit => start = Some(key),
                _ => break,
            }
        }
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(list_cursor)
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn create_conversation(
        &self,
        user: &UserId,
        new: NewConversation,
        device: Option<&DeviceId>,
    ) -> Result<Created<ConversationDetail>> {
        self.refuse_erased(user).await?;
        let _turn = self.turn(user).await;
        let id = new.id.to_string();
        for attempt in 0..MAX_ATTEMPTS {
            if let Some(existing) = self.load(user, &id).await? {
                if existing.deleted_at.is_some() {
                    return Err(StoreError::IdTaken(
                        "a deleted conversation has this id: restore it instead",
                    ));
                }
                let messages = self.all_messages(user, &id).await?;
                return Ok(Created {
                    value: ConversationDetail {
                        conversation: existing.conversation,
                        messages,
                        next_cursor: None,
                    },
                    created: false,
                });
            }
            let at = now();
            let messages = materialise(new.messages.clone(), at);
            let bytes = content_bytes(&messages);
            self.caps.check(0, 0, messages.len() as u64, bytes)?;
            // Up to 96 messages fit in the transaction with the conversation and
            // the change record (100 items): all or nothing. More are written
            // first, in batches (invisible until the conversation exists).
            let mut extra = Vec::new();
            if messages.len() <= TRANSACTION_MESSAGES {
                for m in &messages {
                    let put = build(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(message_item(user, &id, m)))
                            .condition_expression("attribute_not_exists(pk)")
                            .build(),
                    )?;
                    extra.push(TransactWriteItem::builder().put(put).build());
                }
            } else {
                self.put_messages(user, &id, &messages).await?;
            }
            let conversation = Conversation {
                id: id.clone(),
                title: new.title.clone(),
                created_at: at,
                updated_at: at,
                version: 1,
                message_count: messages.len() as u64,
                last_message_preview: messages.last().map(|m| preview(&m.content)),
                pinned: false,
                archived: false,
                assistant: Default::default(),
            };
            let seq = self.seq(user).await?;
            let item = conversation_item(user, &conversation, None, Some(bytes));
            let origin = Origin::new(device, MessageMark::from_first(&messages));
            if self
                .commit(user, seq, item, None, extra, &origin)
                .await?
                .is_ok()
            {
                return Ok(Created {
                    value: ConversationDetail {
                        conversation,
                        messages,
                        next_cursor: None,
                    },
                    created: true,
                });
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable(
            "too much contention creating this conversation".into(),
        ))
    }

    async fn get_conversation(&self, user: &UserId, id: Id) -> Result<ConversationDetail> {
        let id = id.to_string();
        // The conversation and its messages are separate reads: read the
        // conversation again after the messages and retry if a write slipped in
        // between, so the version, the counters and the messages agree.
        for attempt in 0..MAX_ATTEMPTS {
            let conversation = self.load_live(user, &id).await?;
            let messages = self.all_messages(user, &id).await?;
            let again = self.load_live(user, &id).await?;
            if again.version == conversation.version {
                return Ok(ConversationDetail {
                    conversation,
                    messages,
                    next_cursor: None,
                });
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable(
            "the conversation keeps changing; retry shortly".into(),
        ))
    }

    async fn get_conversation_newest(
        &self,
        user: &UserId,
        id: Id,
        limit: usize,
    ) -> Result<ConversationDetail> {
        let key = id.to_string();
        let limit = limit.max(1);
        let range = MessageRange::Before(None);
        // As in get_conversation: the version read before and after the
        // messages must agree.
        for attempt in 0..MAX_ATTEMPTS {
            let conversation = self.load_live(user, &key).await?;
            let rows = self.message_rows(user, &key, range, limit + 1).await?;
            let again = self.load_live(user, &key).await?;
            if again.version == conversation.version {
                let page = message_page(rows, range, limit);
                return Ok(ConversationDetail {
                    conversation,
                    messages: page.items,
                    next_cursor: page.next_cursor,
                });
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable(
            "the conversation keeps changing; retry shortly".into(),
        ))
    }

    async fn messages(
        &self,
        user: &UserId,
        conversation: Id,
        range: MessageRange,
        limit: usize,
    ) -> Result<Page<Message>> {
        let key = conversation.to_string();
        let limit = limit.max(1);
        self.load_live(user, &key).await?;
        let rows = self.message_rows(user, &key, range, limit + 1).await?;
        Ok(message_page(rows, range, limit))
    }

    async fn update_conversation(
        &self,
        user: &UserId,
        id: Id,
        patch: Patch,
        device: Option<&DeviceId>,
    ) -> Result<Conversation> {
        let _turn = self.turn(user).await;
        let id = id.to_string();
        if let Some(messages) = &patch.messages {
            // Template compatibility: replace every message. Too many items for
            // one transaction, so: commit the conversation first (conditioned on
            // its version: a conflict changes nothing), then write the new
            // messages, then delete the old ones the new set lacks. A failure
            // midway never leaves the conversation empty, and repeating the
            // request finishes the job.
            let at = now();
            let fresh = materialise(messages.clone(), at);
            let bytes = content_bytes(&fresh);
            self.caps.check(0, 0, fresh.len() as u64, bytes)?;
            let count = fresh.len() as u64;
            let last = fresh.last().map(|m| preview(&m.content));
            let patch = Patch {
                messages: None,
                ..patch
            };
            let origin = Origin::new(device, MessageMark::All);
            let updated = self
                .modify(user, &id, &origin, Some(bytes), move |mut c| {
                    patch.apply(&mut c, now())?;
                    c.message_count = count;
                    c.last_message_preview = last.clone();
                    Ok((c, None))
                })
                .await?;
            self.put_messages(user, &id, &fresh).await?;
            let keep: std::collections::HashSet<String> =
                fresh.iter().map(|m| msg_sk(&id, &m.id)).collect();
            // The old messages go page by page, never read all first.
            let prefix = format!("MSG#{id}#");
            let mut pages = Pages::default();
            while let Some(page) = self.next_page(user, &prefix, &mut pages).await? {
                let stale = page
                    .into_iter()
                    .filter(|item| get_s(item, "sk").is_none_or(|sk| !keep.contains(&sk)))
                    .collect();
                self.delete_items(stale).await?;
            }
            return Ok(updated);
        }
        let origin = Origin::new(device, MessageMark::Untouched);
        self.modify(user, &id, &origin, None, move |mut c| {
            patch.apply(&mut c, now())?;
            Ok((c, None))
        })
        .await
    }

    async fn delete_conversation(
        &self,
        user: &UserId,
        id: Id,
        expected_version: Option<u64>,
        device: Option<&DeviceId>,
    ) -> Result<Deletion> {
        let _turn = self.turn(user).await;
        let id = id.to_string();
        let origin = Origin::new(device, MessageMark::Untouched);
        let deleted = self
            .modify(user, &id, &origin, None, move |mut c| {
                check_version(&c, expected_version)?;
                c.version += 1;
                c.updated_at = now();
                let at = c.updated_at;
                Ok((c, Some(at)))
            })
            .await?;
        // The messages expire with the tombstone (TTL), not never.
        let expires = deleted.updated_at + chrono::Duration::days(TOMBSTONE_TTL_DAYS);
        self.set_message_expiry(user, &id, Some(expires.timestamp()))
            .await?;
        Ok(Deletion {
            id,
            deleted: true,
            version: deleted.version,
            updated_at: deleted.updated_at,
        })
    }

    async fn restore_conversation(
        &self,
        user: &UserId,
        id: Id,
        device: Option<&DeviceId>,
    ) -> Result<Conversation> {
        let _turn = self.turn(user).await;
        let id = id.to_string();
        let origin = Origin::new(device, MessageMark::Untouched);
        for attempt in 0..MAX_ATTEMPTS {
            let seq = self.seq(user).await?;
            let Some(Stored {
                conversation: mut c,
                deleted_at,
                content_bytes: bytes,
            }) = self.load(user, &id).await?
            else {
                return Err(StoreError::NotFound);
            };
            let Some(deleted_at) = deleted_at else {
                return Ok(c);
            };
            if expired(deleted_at) {
                // Past the tombstone's life: TTL may already have taken parts.
                return Err(StoreError::NotFound);
            }
            let version = c.version;
            c.version += 1;
            c.updated_at = now();
            let item = conversation_item(user, &c, None, bytes);
            if self
                .commit(user, seq, item, Some(version), vec![], &origin)
                .await?
                .is_ok()
            {
                self.set_message_expiry(user, &id, None).await?;
                return Ok(c);
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable(
            "too much contention on this conversation".into(),
        ))
    }

    async fn append_message(
        &self,
        user: &UserId,
        conversation: Id,
        message: NewMessage,
        device: Option<&DeviceId>,
    ) -> Result<Created<(Message, Conversation)>> {
        let _turn = self.turn(user).await;
        let id = conversation.to_string();
        let message_id = message.id.to_string();
        for attempt in 0..MAX_ATTEMPTS {
            let seq = self.seq(user).await?;
            let stored = self.load_live_stored(user, &id).await?;
            let bytes = self.bytes_of(user, &stored).await?;
            let mut c = stored.conversation;
            if let Some(existing) = self.get(key(user, msg_sk(&id, &message_id))).await? {
                let stored = message_from(&existing)?;
                if stored.role != message.role || stored.content != message.content {
                    return Err(StoreError::IdTaken(
                        "this message id is already used for a different message",
                    ));
                }
                return Ok(Created {
                    value: (stored, c),
                    created: false,
                });
            }
            let more = message.content.len() as u64;
            self.caps.check(c.message_count, bytes, 1, more)?;
            let at = now();
            let stored = Message {
                id: message_id.clone(),
                role: message.role,
                content: message.content.clone(),
                timestamp: at,
                reply: None,
            };
            let version = c.version;
            c.message_count += 1;
            c.last_message_preview = Some(preview(&stored.content));
            c.version += 1;
            c.updated_at = at;
            let put_message = build(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(message_item(user, &id, &stored)))
                    .condition_expression("attribute_not_exists(pk)")
                    .build(),
            )?;
            let item = conversation_item(user, &c, None, Some(bytes + more));
            let extra = vec![TransactWriteItem::builder().put(put_message).build()];
            let origin = Origin::new(device, MessageMark::From(message_id.clone()));
            if self
                .commit(user, seq, item, Some(version), extra, &origin)
                .await?
                .is_ok()
            {
                return Ok(Created {
                    value: (stored, c),
                    created: true,
                });
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable(
            "too much contention on this conversation".into(),
        ))
    }

    async fn changes(&self, user: &UserId, since: u64, limit: usize) -> Result<Changes> {
        let limit = limit.max(1);
        // Walk the change log in order; stop at the first entry of the
        // (limit+1)-th distinct conversation: everything before it is answered
        // (in current state), everything from it on is left for the next call.
        // Read before the log: every entry up to this sequence is in the log by
        // then, so finding none after `since` below means they were pruned.
        let current = self.seq(user).await?;
        let mut walk = FeedWalk::new(since, limit);
        let mut first_after: Option<u64> = None;
        let mut start = None;
        'pages: loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", pk(user))
                .expression_attribute_values(":lo", s(chg_sk(since.saturating_add(1))))
                .expression_attribute_values(":hi", s("CHG#~"))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(classify)?;
            for item in out.items.unwrap_or_default() {
                let seq = get_s(&item, "sk")
                    .and_then(|sk| sk.strip_prefix("CHG#").and_then(|n| n.parse::<u64>().ok()))
                    .ok_or_else(|| StoreError::Internal("malformed change entry".into()))?;
                first_after.get_or_insert(seq);
                let entry = LogEntry {
                    seq,
                    conversation: get_s(&item, "conversationId").unwrap_or_default(),
                    device: get_s(&item, "device").and_then(|d| DeviceId::parse(&d).ok()),
                    mark: MessageMark::from_stored(get_s(&item, "messages").as_deref()),
                };
                match walk.push(entry) {
                    Ok(true) => {}
                    Ok(false) => break 'pages,
                    // TTL removes expired entries in no order: any hole in the
                    // run means history is missing, not only one right after
                    // `since`.
                    Err(seq) => {
                        return Err(StoreError::CursorExpired {
                            current: self.seq(user).await?.max(seq),
                        });
                    }
                }
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        let cursor = walk.cursor();
        let order = walk.conversations().to_vec();
        let has_more = walk.has_more;
        // Sequence numbers are contiguous: a gap right after `since` means TTL
        // pruned that history.
        // (Entries read may be newer than `current`, written since.)
        let latest = if first_after.is_some() {
            current.max(cursor)
        } else {
            current
        };
        check_cursor(since, first_after, latest)?;
        let mut items = Vec::with_capacity(order.len());
        let mut found: HashMap<String, Stored> = HashMap::new();
        for chunk in order.chunks(100) {
            let mut keys: Vec<Item> = chunk.iter().map(|id| key(user, conv_sk(id))).collect();
            let mut attempt = 0;
            while !keys.is_empty() {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(
                        &self.table,
                        build(
                            KeysAndAttributes::builder()
                                .set_keys(Some(keys))
                                .consistent_read(true)
                                .build(),
                        )?,
                    )
                    .send()
                    .await
                    .map_err(classify)?;
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    let stored = conversation_from(&item)?;
                    found.insert(stored.conversation.id.clone(), stored);
                }
                keys = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                if !keys.is_empty() {
                    attempt += 1;
                    if attempt > MAX_ATTEMPTS {
                        return Err(StoreError::Unavailable(
                            "DynamoDB keeps throttling reads".into(),
                        ));
                    }
                    backoff(attempt).await;
                }
            }
        }
        for id in &order {
            // A purged conversation has nothing left to report.
            if let Some(stored) = found.remove(id) {
                items.push(walk.change(stored.conversation, stored.deleted_at));
            }
        }
        Ok(Changes {
            items,
            cursor: cursor.to_string(),
            has_more,
        })
    }

    async fn delivery_seen(&self, delivery: &str) -> Result<bool> {
        let item = self.get(delivery_key(delivery)).await?;
        // TTL deletes late: an expired record is as good as gone.
        let now = Utc::now().timestamp();
        Ok(item
            .and_then(|item| get_n(&item, "expiresAt"))
            .is_some_and(|expires| expires >= now as u64))
    }

    async fn record_delivery(&self, delivery: &str) -> Result<()> {
        let mut item = delivery_key(delivery);
        let expires = Utc::now().timestamp() + DELIVERY_MEMORY_SECS;
        item.insert("expiresAt".into(), n(expires));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn write_reply(
        &self,
        user: &UserId,
        conversation: Id,
        write: ReplyWrite,
        device: Option<&DeviceId>,
    ) -> Result<Created<(Message, Conversation)>> {
        let _turn = self.turn(user).await;
        let id = conversation.to_string();
        let reply_id = write.id();
        for attempt in 0..MAX_ATTEMPTS {
            let seq = self.seq(user).await?;
            let stored = self.load_live_stored(user, &id).await?;
            let bytes = self.bytes_of(user, &stored).await?;
            let mut c = stored.conversation;
            let existing = match self.get(key(user, msg_sk(&id, &reply_id))).await? {
                Some(item) => Some(message_from(&item)?),
                None => None,
            };
            let after = match write.after() {
                Some(after) => match self.get(key(user, msg_sk(&id, after))).await? {
                    Some(item) => Some(message_from(&item)?),
                    None => None,
                },
                None => None,
            };
            let at = now();
            let old_len = existing.as_ref().map(|m| m.content.len() as u64);
            let message = match plan_reply(write.clone(), existing, after.as_ref(), at)? {
                ReplyPlan::Keep(message) => {
                    return Ok(Created {
                        value: (message, c),
                        created: false,
                    });
                }
                ReplyPlan::Write(message) => message,
            };
            let new_len = message.content.len() as u64;
            let kept = bytes.saturating_sub(old_len.unwrap_or(0));
            self.caps
                .check(c.message_count, kept, u64::from(old_len.is_none()), new_len)?;
            let newest = self
                .message_rows(user, &id, MessageRange::Before(None), 1)
                .await?;
            let is_newest = newest.first().is_none_or(|m| m.id <= reply_id);
            let version = c.version;
            count_reply(&mut c, &message, old_len, is_newest, at);
            // The conversation's version condition guards the message too:
            // every write of a message bumps it in the same transaction.
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(message_item(user, &id, &message)));
            let put = match old_len {
                None => put.condition_expression("attribute_not_exists(pk)"),
                Some(_) => put,
            };
            let extra = vec![
                TransactWriteItem::builder()
                    .put(build(put.build())?)
                    .build(),
            ];
            let item = conversation_item(user, &c, None, Some(kept + new_len));
            let origin = Origin::new(device, MessageMark::From(reply_id.clone()));
            if self
                .commit(user, seq, item, Some(version), extra, &origin)
                .await?
                .is_ok()
            {
                return Ok(Created {
                    value: (message, c),
                    created: true,
                });
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable(
            "too much contention on this conversation".into(),
        ))
    }

    async fn charge_usage(
        &self,
        user: &UserId,
        day: &str,
        tokens: i64,
        budget: Option<u64>,
    ) -> Result<u64> {
        use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
        use aws_sdk_dynamodb::types::ReturnValue;
        // DynamoDB's ADD is atomic across instances; moto's is not, so a
        // user's charges from this process take turns as well.
        let _turn = self.turn(user).await;
        let usage_key = key(user, format!("USAGE#{day}"));
        // Kept a month past its day, then DynamoDB's TTL removes it.
        let expires = Utc::now() + chrono::Duration::days(32);
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(usage_key.clone()))
            .update_expression("ADD tokens :n SET expiresAt = :exp")
            .expression_attribute_values(":n", n(tokens))
            .expression_attribute_values(":exp", n(expires.timestamp()))
            .return_values(ReturnValue::AllNew);
        if let Some(budget) = budget {
            update = update
                .condition_expression("attribute_not_exists(tokens) OR tokens < :budget")
                .expression_attribute_values(":budget", n(budget));
        }
        match update.send().await {
            Ok(out) => {
                let used = out
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get("tokens"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(0);
                Ok(u64::try_from(used).unwrap_or(0))
            }
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                let used = self
                    .get(usage_key)
                    .await?
                    .and_then(|item| get_n(&item, "tokens"))
                    .unwrap_or(0);
                Err(StoreError::OverBudget { used })
            }
            Err(err) => Err(classify(err)),
        }
    }

    async fn erase_user(&self, user: &UserId) -> Result<()> {
        let _turn = self.turn(user).await;
        // Page by page, each page deleted before the next is read: an account
        // of any size is erased in bounded memory. Each round reads from the
        // start again (what it deleted is gone), so no page key has to
        // survive the deletions.
        loop {
            let mut first = Pages::default();
            match self.next_page(user, "", &mut first).await? {
                Some(page) if !page.is_empty() => self.delete_items(page).await?,
                _ => break,
            }
        }
        let mut marker = erased_key(user);
        marker.insert("at".into(), s(rfc3339(now())));
        let expires = Utc::now() + chrono::Duration::days(super::ERASURE_MEMORY_DAYS);
        marker.insert("expiresAt".into(), n(expires.timestamp()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(marker))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }
}

/// Where a paged walk of a prefix stands.
#[derive(Default)]
struct Pages {
    start: Option<Item>,
    done: bool,
}

impl DynamoStore {
    /// [`StoreError::Erased`] when `user`'s account was erased lately
    /// (DynamoDB's TTL removes the marker, maybe days late: the time is
    /// checked too).
    async fn refuse_erased(&self, user: &UserId) -> Result<()> {
        let Some(item) = self.get(erased_key(user)).await? else {
            return Ok(());
        };
        let at = get_time(&item, "at")?;
        if Utc::now() - at < chrono::Duration::days(super::ERASURE_MEMORY_DAYS) {
            return Err(StoreError::Erased);
        }
        Ok(())
    }

    /// Up to `fetch` messages of a conversation in the direction `range` asks
    /// (ascending after a message, descending before one), following
    /// `LastEvaluatedKey` rather than trusting a page's length.
    async fn message_rows(
        &self,
        user: &UserId,
        id: &str,
        range: MessageRange,
        fetch: usize,
    ) -> Result<Vec<Message>> {
        // BETWEEN is inclusive: the bound message itself is skipped below.
        let (lo, hi, forward, skip) = match range {
            MessageRange::After(after) => (
                after.map_or_else(|| format!("MSG#{id}#"), |a| msg_sk(id, &a.to_string())),
                format!("MSG#{id}#~"),
                true,
                after.map(|a| a.to_string()),
            ),
            MessageRange::Before(before) => (
                format!("MSG#{id}#"),
                before.map_or_else(|| format!("MSG#{id}#~"), |b| msg_sk(id, &b.to_string())),
                false,
                before.map(|b| b.to_string()),
            ),
        };
        let mut rows = Vec::new();
        let mut start = None;
        loop {
            let want = fetch + 1 - rows.len();
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", pk(user))
                .expression_attribute_values(":lo", s(lo.clone()))
                .expression_attribute_values(":hi", s(hi.clone()))
                .scan_index_forward(forward)
                .limit(i32::try_from(want).unwrap_or(i32::MAX))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(classify)?;
            for item in out.items.unwrap_or_default() {
                let message = message_from(&item)?;
                if skip.as_deref() != Some(message.id.as_str()) {
                    rows.push(message);
                }
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() && rows.len() < fetch => start = Some(key),
                _ => break,
            }
        }
        rows.truncate(fetch);
        Ok(rows)
    }

    async fn all_messages(&self, user: &UserId, id: &str) -> Result<Vec<Message>> {
        self.query_prefix(user, &format!("MSG#{id}#"))
            .await?
            .iter()
            .map(message_from)
            .collect()
    }
}

/// Whether a tombstone has outlived its retention.
fn expired(deleted_at: DateTime<Utc>) -> bool {
    deleted_at + chrono::Duration::days(TOMBSTONE_TTL_DAYS) < Utc::now()
}
