//! The write transaction every change goes through: the conversation under
//! a condition on its version, the change entry, and the sequence bump.

use super::*;

/// Who made a write and what it did to the messages: what its change entry
/// records.
pub(super) struct Origin {
    device: Option<DeviceId>,
    mark: MessageMark,
}

impl Origin {
    pub(super) fn new(device: Option<&DeviceId>, mark: MessageMark) -> Self {
        Self {
            device: device.cloned(),
            mark,
        }
    }
}

impl DynamoStore {
    /// The change-recording half of every write transaction.
    fn change_items(
        &self,
        user: &UserId,
        seq_before: u64,
        conversation: &str,
        origin: &Origin,
    ) -> Result<[TransactWriteItem; 2]> {
        let next = seq_before + 1;
        let bump = if seq_before == 0 {
            build(
                Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(user, "SEQ".into())))
                    .update_expression("SET seq = :next")
                    .condition_expression("attribute_not_exists(seq)")
                    .expression_attribute_values(":next", n(next))
                    .build(),
            )?
        } else {
            build(
                Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(user, "SEQ".into())))
                    .update_expression("SET seq = :next")
                    .condition_expression("seq = :prev")
                    .expression_attribute_values(":next", n(next))
                    .expression_attribute_values(":prev", n(seq_before))
                    .build(),
            )?
        };
        let mut entry = key(user, chg_sk(next));
        entry.insert("conversationId".into(), s(conversation));
        if let Some(device) = &origin.device {
            entry.insert("device".into(), s(device.as_str()));
        }
        if let Some(mark) = origin.mark.to_stored() {
            entry.insert("messages".into(), s(mark));
        }
        let expires = Utc::now() + chrono::Duration::days(TOMBSTONE_TTL_DAYS);
        entry.insert("expiresAt".into(), n(expires.timestamp()));
        let put = build(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(entry))
                .build(),
        )?;
        // The entry before the bump: DynamoDB commits both at once, but moto
        // applies items in order, and a reader that sees the new sequence must
        // find its entry.
        Ok([
            TransactWriteItem::builder().put(put).build(),
            TransactWriteItem::builder().update(bump).build(),
        ])
    }

    /// Puts the conversation (conditioned on the version read, or on absence)
    /// plus `extra` items and the change record, as one transaction.
    pub(super) async fn commit(
        &self,
        user: &UserId,
        seq_before: u64,
        item: Item,
        previous_version: Option<u64>,
        extra: Vec<TransactWriteItem>,
        origin: &Origin,
    ) -> Result<std::result::Result<(), ()>> {
        let id = get_s(&item, "sk")
            .and_then(|sk| sk.strip_prefix("CONV#").map(str::to_owned))
            .unwrap_or_default();
        let put = match previous_version {
            Some(v) => Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("version = :v")
                .expression_attribute_values(":v", n(v)),
            None => Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)"),
        };
        let mut items = vec![
            TransactWriteItem::builder()
                .put(build(put.build())?)
                .build(),
        ];
        items.extend(extra);
        items.extend(self.change_items(user, seq_before, &id, origin)?);
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(Ok(())),
            Err(err) if lost_race(&err) => Ok(Err(())),
            Err(err) => Err(classify(err)),
        }
    }

    /// Read-modify-write of a live conversation, retried when it loses a race.
    /// `bytes`: the new content count when the write replaces the messages;
    /// otherwise the stored one is kept.
    pub(super) async fn modify(
        &self,
        user: &UserId,
        id: &str,
        origin: &Origin,
        bytes: Option<u64>,
        f: impl Fn(Conversation) -> Result<(Conversation, Option<DateTime<Utc>>)> + Send,
    ) -> Result<Conversation> {
        for attempt in 0..MAX_ATTEMPTS {
            let seq = self.seq(user).await?;
            let stored = self.load_live_stored(user, id).await?;
            let version = stored.conversation.version;
            let kept = bytes.or(stored.content_bytes);
            let (next, deleted_at) = f(stored.conversation)?;
            let item = conversation_item(user, &next, deleted_at, kept);
            if self
                .commit(user, seq, item, Some(version), vec![], origin)
                .await?
                .is_ok()
            {
                return Ok(next);
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable(
            "too much contention on this conversation".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> DynamoStore {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
            .build();
        DynamoStore::new(Client::from_conf(config), "confab")
    }

    fn ada() -> UserId {
        UserId::parse("user_ada").unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn the_first_change_creates_the_sequence_and_later_ones_follow_it() {
        let origin = Origin::new(None, MessageMark::Untouched);
        let [entry, bump] = store()
            .change_items(&ada(), 0, "01JAAAAAAAAAAAAAAAAAAAAAAA", &origin)
            .unwrap_or_else(|e| panic!("{e}"));
        let put = entry.put().map(|p| p.item().clone()).unwrap_or_default();
        assert_eq!(get_s(&put, "sk"), Some(chg_sk(1)));
        assert_eq!(
            get_s(&put, "conversationId").as_deref(),
            Some("01JAAAAAAAAAAAAAAAAAAAAAAA")
        );
        assert!(!put.contains_key("messages"), "no message changed");
        let update = bump.update().and_then(|u| u.condition_expression());
        assert_eq!(update, Some("attribute_not_exists(seq)"));

        let device = DeviceId::parse("dev_01JCCCCCCCCCCCCCCCCCCCCCCC").ok();
        let origin = Origin::new(device.as_ref(), MessageMark::All);
        let [entry, bump] = store()
            .change_items(&ada(), 41, "01JAAAAAAAAAAAAAAAAAAAAAAA", &origin)
            .unwrap_or_else(|e| panic!("{e}"));
        let put = entry.put().map(|p| p.item().clone()).unwrap_or_default();
        assert_eq!(get_s(&put, "sk"), Some(chg_sk(42)));
        assert_eq!(put.contains_key("device"), device.is_some());
        assert_eq!(get_s(&put, "messages").as_deref(), Some("*"));
        let update = bump.update().cloned();
        assert_eq!(
            update.as_ref().and_then(|u| u.condition_expression()),
            Some("seq = :prev")
        );
        assert_eq!(
            update.and_then(|u| u
                .expression_attribute_values()
                .and_then(|v| v.get(":prev").cloned())),
            Some(n(41))
        );
    }
}
