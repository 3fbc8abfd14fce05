//! Change notices across proxy instances through Redis pub/sub, so a user's
//! devices connected to different instances still hear of each other's
//! writes. The proxy stays stateless: Redis carries only these small notices.
//!
//! Every instance publishes its notices to one channel and subscribes to it;
//! each message names the instance it came from, so an instance skips its own
//! (it delivered them locally already). A Redis outage never fails a write:
//! notices published meanwhile are lost and devices catch up with their
//! periodic pull; both sides reconnect with backoff.

use std::time::Duration;

use confab_wire::conversations::ChangeNotice;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

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
}

impl Envelope {
    fn new(origin: String, user: String, event: Live) -> Self {
        let mut envelope = Self {
            origin,
            user,
            notice: None,
            reply: None,
            reply_done: None,
        };
        match event {
            Live::Change(n) => envelope.notice = Some(n),
            Live::Reply(r) => envelope.reply = Some(r),
            Live::ReplyDone(d) => envelope.reply_done = Some(d),
        }
        envelope
    }

    fn event(self) -> Option<Live> {
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
    outgoing: mpsc::UnboundedReceiver<(UserId, Live)>,
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
    mut outgoing: mpsc::UnboundedReceiver<(UserId, Live)>,
) {
    let mut connection = None;
    let mut backoff = FIRST_BACKOFF;
    while let Some((user, notice)) = outgoing.recv().await {
        let envelope = Envelope::new(origin.clone(), user.as_str().to_owned(), notice);
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
                        if let Ok(user) = UserId::parse(&envelope.user)
                            && let Some(event) = envelope.event()
                        {
                            hub.deliver(&user, event);
                        }
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
