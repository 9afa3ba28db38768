//! `GET /v1/monitor`: the node's events as they happen, one JSON object per line, like
//! `serf monitor`.
//!
//! ```text
//!   {"time":"..","type":"member","event":"suspect","name":"bob","addr":"..","state":"suspect","incarnation":3,"meta":""}
//!   {"time":"..","type":"kv","owner":"alice","key":"color"}
//!   {"time":"..","type":"user","origin":"alice","seq":7,"name":"deploy","payload":"v2","payload_base64":"djI="}
//!   {"time":"..","type":"dropped","count":12}
//! ```
//!
//! Member events are `joined`, `recovered`, `updated`, `suspect`, `dead` and `left`; `time`
//! is when this node published the line (RFC 3339, UTC, milliseconds). The response is
//! chunked and never ends on its own while the node runs; it ends, cleanly, when the node
//! stops or leaves, when the API server is stopping, or when the client hangs up.
//!
//! Each stream is a subscriber of the node's event channel, which never waits for it: a
//! client that falls more than the channel's capacity behind loses the oldest events and is
//! told how many with a `dropped` line, and the driver goes on unhindered.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use super::events::EventJson;
use super::ApiState;
use crate::node::Node;
use crate::protocol::{Event, Member};

/// One line of `/v1/monitor`: when, and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorLine {
    /// When the node published it: RFC 3339, UTC, milliseconds.
    pub time: String,
    /// What happened.
    #[serde(flatten)]
    pub event: MonitorEvent,
}

/// What a `/v1/monitor` line reports, told apart by its `type` field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MonitorEvent {
    /// A member's state or details changed.
    Member {
        /// `joined`, `recovered`, `updated`, `suspect`, `dead` or `left`.
        event: String,
        /// The member's name.
        name: String,
        /// The address it advertises.
        addr: SocketAddr,
        /// Its state now.
        state: String,
        /// Its incarnation.
        incarnation: u64,
        /// Its metadata, decoded as UTF-8 (invalid sequences become U+FFFD).
        meta: String,
    },
    /// A key/value entry was written or deleted (its value: `GET /v1/kv/{owner}/{key}`).
    Kv {
        /// The owning node.
        owner: String,
        /// The key.
        key: String,
    },
    /// A user event arrived.
    User(EventJson),
    /// This stream fell behind and lost `count` events.
    Dropped {
        /// How many.
        count: u64,
    },
}

impl MonitorEvent {
    fn member(event: &str, m: &Member) -> Self {
        MonitorEvent::Member {
            event: event.to_string(),
            name: m.name.to_string(),
            addr: m.addr,
            state: m.state.as_str().to_string(),
            incarnation: m.incarnation.0,
            meta: String::from_utf8_lossy(&m.meta).into_owned(),
        }
    }
}

impl From<Event> for MonitorEvent {
    fn from(event: Event) -> Self {
        match event {
            Event::Joined(m) => Self::member("joined", &m),
            Event::Recovered(m) => Self::member("recovered", &m),
            Event::Updated(m) => Self::member("updated", &m),
            Event::Suspect(m) => Self::member("suspect", &m),
            Event::Dead(m) => Self::member("dead", &m),
            Event::Left(m) => Self::member("left", &m),
            Event::KvChanged { owner, key } => MonitorEvent::Kv {
                owner: owner.to_string(),
                key,
            },
            Event::User(e) => MonitorEvent::User(EventJson::from(e)),
        }
    }
}

/// One stream's subscription and what ends it.
struct Subscription {
    events: broadcast::Receiver<Event>,
    stopping: watch::Receiver<bool>,
    node: Node,
}

impl Subscription {
    /// The next line, or `None` once the stream should end.
    async fn next_line(&mut self) -> Option<Bytes> {
        let event = tokio::select! {
            // Events already published go out before an end is noticed.
            biased;
            received = self.events.recv() => match received {
                Ok(event) => MonitorEvent::from(event),
                Err(RecvError::Lagged(count)) => MonitorEvent::Dropped { count },
                Err(RecvError::Closed) => return None,
            },
            _ = self.stopping.wait_for(|stopping| *stopping) => return None,
            _ = self.node.stopped() => return None,
        };
        let line = MonitorLine {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            event,
        };
        let mut bytes = serde_json::to_vec(&line).expect("a monitor line always serializes");
        bytes.push(b'\n');
        Some(Bytes::from(bytes))
    }
}

/// `GET /v1/monitor`.
pub(super) async fn stream(State(api): State<ApiState>) -> Response {
    // Subscribed before answering: whatever happens after the client has the headers is
    // in the stream.
    let subscription = Subscription {
        events: api.node.events(),
        stopping: api.stopping.subscribe(),
        node: api.node.clone(),
    };
    let lines = futures_util::stream::unfold(subscription, |mut s| async move {
        let line = s.next_line().await?;
        Some((Ok::<_, Infallible>(line), s))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Incarnation, NodeName, State};

    #[test]
    fn lines_are_flat_json_with_a_type() {
        let bob = Member {
            name: NodeName::new("bob").unwrap(),
            addr: "127.0.0.1:7946".parse().unwrap(),
            incarnation: Incarnation(3),
            state: State::Suspect,
            meta: Vec::new(),
        };
        let line = MonitorLine {
            time: "2025-01-01T00:00:00.000Z".into(),
            event: MonitorEvent::from(Event::Suspect(bob)),
        };
        let json = serde_json::to_value(&line).unwrap();
        assert_eq!(json["type"], "member");
        assert_eq!(json["event"], "suspect");
        assert_eq!(json["name"], "bob");
        assert_eq!(json["state"], "suspect");
        assert_eq!(json["incarnation"], 3);
        let back: MonitorLine = serde_json::from_value(json).unwrap();
        assert_eq!(back, line);

        let dropped = serde_json::to_value(MonitorEvent::Dropped { count: 5 }).unwrap();
        assert_eq!(dropped, serde_json::json!({"type": "dropped", "count": 5}));
    }
}
