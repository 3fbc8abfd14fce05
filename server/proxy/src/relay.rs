//! Change notices across proxy instances through Redis pub/sub, so a user's
//! devices connected to different instances still hear of each other's
//! writes. The proxy stays stateless: Redis carries only these small notices.
//!
//! Every instance publishes its notices to one channel and subscribes to it;
//! each message names the instance it came from, so an instance skips its own
//! (it delivered them locally already). A Redis outage never fails a write:
//! events wait in a bounded queue ([`crate::events::RELAY_QUEUE`]); past it
//! the oldest go, and once Redis answers again every other instance has its
//! streams resync (pull), so nothing is missed for good. Both sides
//! reconnect with backoff.

use std::time::Duration;

use confab_wire::conversations::ChangeNotice;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::events::{Hub, Live};
use crate::ids::UserId;
use confab_wire::assistant::{ReplyDelta, ReplyDone};

/// The one channel all instances share.
pub const CHANNEL: &str = "confab:changes";
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// One relayed event. A change keeps the `notice` field of the first
/// format, so instances of the previous release (which require it) still
/// read changes during a rolling deploy and skip reply events.
#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The instance that published it.
    origin: String,
    user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notice: Option<ChangeNotice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply: Option<ReplyDelta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply_done: Option<ReplyDone>,
    /// Events were dropped here: every stream elsewhere should pull.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    resync: bool,
    /// The user's account was deleted: end their streams.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    disconnect: bool,
}

impl Envelope {
    fn new(origin: String, user: String, event: Live) -> Self {
        let mut envelope = Self {
            origin,
            user,
            notice: None,
            reply: None,
            reply_done: None,
            resync: false,
            disconnect: false,
        };
        match event {
            Live::Change(n) => envelope.notice = Some(n),
            Live::Reply(r) => envelope.reply = Some(r),
            Live::ReplyDone(d) => envelope.reply_done = Some(d),
            Live::Resync => envelope.resync = true,
            Live::Disconnect => envelope.disconnect = true,
        }
        envelope
    }

    /// What to do with an envelope from another instance.
    fn apply(self, hub: &Hub) {
        if self.resync {
            hub.resync_all();
            return;
        }
        let Ok(user) = UserId::parse(&self.user) else {
            return;
        };
        if let Some(event) = self.event() {
            hub.deliver(&user, event);
        }
    }

    fn event(self) -> Option<Live> {
        if self.disconnect {
            return Some(Live::Disconnect);
        }
        self.notice
            .map(Live::Change)
            .or(self.reply.map(Live::Reply))
            .or(self.reply_done.map(Live::ReplyDone))
    }
}

/// Starts publishing `outgoing` and delivering other instances' notices to
/// `hub`. Fails only on a malformed URL; an unreachable Redis is retried.
pub fn spawn(
    url: &str,
    hub: Hub,
    outgoing: broadcast::Receiver<(UserId, Live)>,
) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| format!("CONFAB_REDIS_URL: {e}"))?;
    let origin = ulid::Ulid::new().to_string();
    tokio::spawn(publish(client.clone(), origin.clone(), outgoing));
    tokio::spawn(subscribe(client, origin, hub));
    Ok(())
}

async fn publish(
    client: redis::Client,
    origin: String,
    mut outgoing: broadcast::Receiver<(UserId, Live)>,
) {
    let mut connection = None;
    let mut backoff = FIRST_BACKOFF;
    while let Some(envelope) = next_outgoing(&mut outgoing, &origin).await {
        let Ok(payload) = serde_json::to_string(&envelope) else {
            continue;
        };
        // One try per notice: a notice that cannot go now is not worth
        // queueing (devices pull periodically anyway).
        if connection.is_none() {
            match client.get_multiplexed_async_connection().await {
                Ok(c) => {
                    connection = Some(c);
                    backoff = FIRST_BACKOFF;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "redis unreachable: change notice not relayed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
        }
        if let Some(conn) = connection.as_mut() {
            let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(CHANNEL)
                .arg(&payload)
                .query_async(conn)
                .await;
            if let Err(err) = sent {
                tracing::warn!(error = %err, "redis publish failed: change notice not relayed");
                connection = None;
            }
        }
    }
}

/// The next envelope to publish: the next queued event, or, when the queue
/// overflowed (Redis away too long), a resync for every other instance.
async fn next_outgoing(
    outgoing: &mut broadcast::Receiver<(UserId, Live)>,
    origin: &str,
) -> Option<Envelope> {
    match outgoing.recv().await {
        Ok((user, event)) => Some(Envelope::new(
            origin.to_owned(),
            user.as_str().to_owned(),
            event,
        )),
        Err(RecvError::Lagged(dropped)) => {
            tracing::warn!(
                dropped,
                "the relay queue overflowed: other instances' streams will resync"
            );
            Some(Envelope::new(
                origin.to_owned(),
                String::new(),
                Live::Resync,
            ))
        }
        Err(RecvError::Closed) => None,
    }
}

async fn subscribe(client: redis::Client, origin: String, hub: Hub) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(CHANNEL).await {
                Ok(()) => {
                    tracing::info!("subscribed to change notices from other instances");
                    backoff = FIRST_BACKOFF;
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let Ok(envelope) =
                            serde_json::from_slice::<Envelope>(message.get_payload_bytes())
                        else {
                            tracing::warn!("ignored a malformed message on {CHANNEL}");
                            continue;
                        };
                        if envelope.origin == origin {
                            continue;
                        }
                        envelope.apply(&hub);
                    }
                    tracing::warn!("lost the redis subscription; reconnecting");
                }
                Err(err) => tracing::warn!(error = %err, "redis subscribe failed"),
            },
            Err(err) => tracing::warn!(error = %err, "redis unreachable for change notices"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_wire::conversations::ChangeNotice;

    fn notice(id: &str) -> Live {
        Live::Change(ChangeNotice {
            conversation_id: Some(id.into()),
            version: Some(1),
            device: None,
        })
    }

    #[tokio::test]
    async fn an_overflowing_queue_keeps_the_newest_and_asks_for_a_resync() {
        let (hub, mut outgoing) = Hub::with_relay(4);
        let ada = UserId::parse("user_ada").unwrap_or_else(|_| unreachable!());
        for i in 0..10 {
            hub.publish(&ada, notice(&format!("c{i}")));
        }
        let first = next_outgoing(&mut outgoing, "me").await.map(|e| e.resync);
        assert_eq!(first, Some(true), "the loss is announced first");
        let kept = next_outgoing(&mut outgoing, "me")
            .await
            .and_then(|e| e.notice)
            .and_then(|n| n.conversation_id);
        assert_eq!(kept.as_deref(), Some("c6"), "then the newest four");
    }

    #[tokio::test]
    async fn a_resync_reaches_every_stream_elsewhere() {
        let elsewhere = Hub::default();
        let ada = UserId::parse("user_ada").unwrap_or_else(|_| unreachable!());
        let bob = UserId::parse("user_bob").unwrap_or_else(|_| unreachable!());
        let (mut a, mut b) = (
            elsewhere.subscribe(&ada).unwrap_or_else(|_| unreachable!()),
            elsewhere.subscribe(&bob).unwrap_or_else(|_| unreachable!()),
        );
        let resync = Envelope::new("other".into(), String::new(), Live::Resync);
        // Through JSON, as Redis carries it.
        let wire = serde_json::to_string(&resync).unwrap_or_default();
        let back: Envelope = serde_json::from_str(&wire).unwrap_or_else(|_| unreachable!());
        back.apply(&elsewhere);
        assert_eq!(a.receiver.recv().await.ok(), Some(Live::Resync));
        assert_eq!(b.receiver.recv().await.ok(), Some(Live::Resync));
        // A deleted account's streams end everywhere.
        let gone = Envelope::new("other".into(), "user_bob".into(), Live::Disconnect);
        let wire = serde_json::to_string(&gone).unwrap_or_default();
        let back: Envelope = serde_json::from_str(&wire).unwrap_or_else(|_| unreachable!());
        back.apply(&elsewhere);
        assert!(matches!(
            b.receiver.recv().await,
            Err(tokio::sync::broadcast::error::RecvError::Closed)
        ));
        // An old instance's change envelope still reads.
        let old = r#"{"origin":"x","user":"user_ada","notice":{"conversationId":"c","version":2}}"#;
        let old: Envelope = serde_json::from_str(old).unwrap_or_else(|_| unreachable!());
        old.apply(&elsewhere);
        assert!(matches!(a.receiver.recv().await, Ok(Live::Change(_))));
    }
}
