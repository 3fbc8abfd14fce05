//! `GET /api/events`: server-sent events, one `change` per change of the caller's
//! data, `reply` and `reply-done` as assistant replies stream, a `ready`
//! event first, `resync` when events were missed, and a
//! heartbeat comment every [`HEARTBEAT`]. A stream ends when the token it was
//! opened with expires (the client reconnects with a fresh one), when the
//! account is deleted, and at shutdown.

use confab_wire::HttpError;
use confab_wire::conversations::ChangeNotice;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::events::{Live, MAX_STREAMS_PER_USER};

pub const HEARTBEAT: Duration = Duration::from_secs(15);

#[utoipa::path(get, path = "/api/events", tag = "changes", responses((status = 200, description = "text/event-stream: `ready`, then `change` events (data: ChangeNotice), `reply` (data: ReplyDelta) and `reply-done` (data: ReplyDone) while assistant replies stream, `resync` (pull: events were missed), heartbeats", content_type = "text/event-stream", body = ChangeNotice), (status = 400, description = "Invalid input, naming the field", body = HttpError), (status = 401, description = "Missing or invalid token", body = HttpError), (status = 429, description = "Rate limited (Retry-After)", body = HttpError), (status = 503, description = "Store unavailable (Retry-After)", body = HttpError)), security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let subscription = state.events.subscribe(user.id()).map_err(|_| {
        let mut err = ApiError::rate_limited(30);
        err.message = format!(
            "at most {MAX_STREAMS_PER_USER} event streams per user: close another device's stream or retry later"
        );
        err
    })?;
    let ready = stream::once(async { Ok(Event::default().event("ready").data("{}")) });
    let changes = stream::unfold(subscription, |mut subscription| async move {
        let event = match subscription.receiver.recv().await {
            Ok(live) => {
                let event = Event::default().event(live.event_name());
                match &live {
                    Live::Change(notice) => event.json_data(notice),
                    Live::Reply(delta) => event.json_data(delta),
                    Live::ReplyDone(done) => event.json_data(done),
                    Live::Resync | Live::Disconnect => Ok(event.data("{}")),
                }
                .unwrap_or_else(|_| Event::default().event("resync").data("{}"))
            }
            Err(RecvError::Lagged(_)) => Event::default().event("resync").data("{}"),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), subscription))
    });
    // End the stream when the server shuts down, so draining can finish, or
    // when its token expires: a stream must not outlive its credentials.
    let mut shutdown = state.shutdown.clone();
    let left = user.valid_until() - chrono::Utc::now().timestamp();
    let expired = tokio::time::sleep(Duration::from_secs(u64::try_from(left).unwrap_or(0)));
    let stopped = async move {
        let down = async {
            if shutdown.wait_for(|down| *down).await.is_err() {
                // No shutdown signal exists (its sender is gone): never stop.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = down => {}
            () = expired => {}
        }
    };
    Ok(Sse::new(ready.chain(changes).take_until(stopped))
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat")))
}
