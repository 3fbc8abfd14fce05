//! Change notices for `GET /api/events`: each write of a user's data is
//! announced to that user's open event streams (their other devices).
//!
//! Every instance notifies the streams it holds at once; with a relay
//! (`relay.rs`, Redis pub/sub) it also tells the other instances, which
//! notify theirs.
//! Streams are capped per user ([`MAX_STREAMS_PER_USER`]); a stream that falls
//! behind gets a `resync` event instead of the notices it missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use confab_wire::assistant::{ReplyDelta, ReplyDone};
use confab_wire::conversations::ChangeNotice;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::ids::UserId;

pub const MAX_STREAMS_PER_USER: usize = 8;
/// Events a stream may fall behind by before it gets `resync`: a reply
/// streams tens of deltas a second.
const BUFFER: usize = 512;

/// What an event stream carries, named as its SSE event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Live {
    /// `change`: pull the feed.
    Change(ChangeNotice),
    /// `reply`: text appended to a streaming reply.
    Reply(ReplyDelta),
    /// `reply-done`: a reply ended.
    ReplyDone(ReplyDone),
    /// `resync`: events were lost on the way (the relay's queue overflowed):
    /// pull.
    Resync,
    /// The account was deleted: its streams end, on every instance. Never
    /// sent to a stream as an event.
    Disconnect,
}

impl Live {
    pub fn event_name(&self) -> &'static str {
        match self {
            Live::Change(_) => "change",
            Live::Reply(_) => "reply",
            Live::ReplyDone(_) => "reply-done",
            Live::Resync | Live::Disconnect => "resync",
        }
    }
}

impl From<ChangeNotice> for Live {
    fn from(notice: ChangeNotice) -> Self {
        Live::Change(notice)
    }
}

impl From<ReplyDelta> for Live {
    fn from(delta: ReplyDelta) -> Self {
        Live::Reply(delta)
    }
}

impl From<ReplyDone> for Live {
    fn from(done: ReplyDone) -> Self {
        Live::ReplyDone(done)
    }
}

#[derive(Default)]
struct Channel {
    sender: Option<broadcast::Sender<Live>>,
    streams: usize,
}

#[derive(Default, Clone)]
pub struct Hub {
    channels: Arc<Mutex<HashMap<UserId, Channel>>>,
    /// Events for the other instances, when there are any: a bounded
    /// queue that drops its oldest events while Redis is away (the relay
    /// then has every other instance's streams resync).
    relay: Option<broadcast::Sender<(UserId, Live)>>,
}

/// Events waiting for the relay (Redis down or slow) before the oldest go.
pub const RELAY_QUEUE: usize = 4096;

/// One open stream: receives the user's events; dropping it frees its slot.
pub struct Subscription {
    pub receiver: broadcast::Receiver<Live>,
    user: UserId,
    hub: Hub,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut channels) = self.hub.channels.lock() {
            let empty = channels.get_mut(&self.user).is_some_and(|c| {
                c.streams = c.streams.saturating_sub(1);
                c.streams == 0
            });
            if empty {
                channels.remove(&self.user);
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("too many open event streams")]
pub struct TooManyStreams;

impl Hub {
    pub fn subscribe(&self, user: &UserId) -> Result<Subscription, TooManyStreams> {
        let mut channels = self.channels.lock().map_err(|_| TooManyStreams)?;
        let channel = channels.entry(user.clone()).or_default();
        if channel.streams >= MAX_STREAMS_PER_USER {
            return Err(TooManyStreams);
        }
        channel.streams += 1;
        let receiver = channel
            .sender
            .get_or_insert_with(|| broadcast::channel(BUFFER).0)
            .subscribe();
        Ok(Subscription {
            receiver,
            user: user.clone(),
            hub: self.clone(),
        })
    }

    /// A hub that also queues every event for the other instances, at most
    /// `capacity` of them; the receiver is the relay's.
    pub fn with_relay(capacity: usize) -> (Self, broadcast::Receiver<(UserId, Live)>) {
        let (sender, receiver) = broadcast::channel(capacity.max(1));
        let hub = Self {
            channels: Arc::default(),
            relay: Some(sender),
        };
        (hub, receiver)
    }

    /// Tells every stream on this instance to pull (events for them were
    /// lost between instances).
    pub fn resync_all(&self) {
        let Ok(channels) = self.channels.lock() else {
            return;
        };
        for sender in channels.values().filter_map(|c| c.sender.as_ref()) {
            let _ = sender.send(Live::Resync);
        }
    }

    /// Announces a change to the user's open streams here and, through the
    /// relay, on every other instance.
    pub fn publish(&self, user: &UserId, event: impl Into<Live>) {
        let notice = event.into();
        if let Some(relay) = &self.relay {
            let _ = relay.send((user.clone(), notice.clone()));
        }
        self.deliver(user, notice);
    }

    /// Announces a change to the user's open streams on this instance only
    /// (none open: nothing to do).
    pub fn deliver(&self, user: &UserId, notice: Live) {
        if notice == Live::Disconnect {
            self.disconnect(user);
            return;
        }
        let Ok(channels) = self.channels.lock() else {
            return;
        };
        if let Some(sender) = channels.get(user).and_then(|c| c.sender.as_ref()) {
            let _ = sender.send(notice);
        }
    }

    /// Ends every stream of `user` on this instance (the account was
    /// deleted): their receivers see the channel closed.
    pub fn disconnect(&self, user: &UserId) {
        if let Ok(mut channels) = self.channels.lock()
            && let Some(channel) = channels.get_mut(user)
        {
            channel.sender = None;
        }
    }

    pub fn open_streams(&self, user: &UserId) -> usize {
        self.channels
            .lock()
            .ok()
            .and_then(|c| c.get(user).map(|c| c.streams))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(id: &str) -> ChangeNotice {
        ChangeNotice {
            conversation_id: Some(id.into()),
            version: Some(1),
            device: None,
        }
    }

    #[tokio::test]
    async fn notices_reach_only_their_user() {
        let hub = Hub::default();
        let ada = UserId::parse("user_ada").unwrap();
        let bob = UserId::parse("user_bob").unwrap();
        let mut a = hub.subscribe(&ada).unwrap();
        let mut b = hub.subscribe(&bob).unwrap();
        hub.publish(&ada, notice("x"));
        assert_eq!(a.receiver.recv().await.unwrap(), Live::Change(notice("x")));
        assert!(b.receiver.try_recv().is_err());
    }

    #[test]
    fn streams_are_capped_and_freed() {
        let hub = Hub::default();
        let ada = UserId::parse("user_ada").unwrap();
        let streams: Vec<_> = (0..MAX_STREAMS_PER_USER)
            .map(|_| hub.subscribe(&ada).unwrap())
            .collect();
        assert!(hub.subscribe(&ada).is_err());
        drop(streams);
        assert_eq!(hub.open_streams(&ada), 0);
        assert!(hub.subscribe(&ada).is_ok());
    }
}
