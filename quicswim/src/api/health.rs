//! `GET /health` (liveness) and `GET /ready` (readiness).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::ApiState;
use crate::protocol;

/// The answer of `/health`: `status` is `ok` (HTTP 200) while the node runs, `stopped`
/// (HTTP 503) once it has left or shut down; the other fields are set only while it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// This node's name.
    pub name: String,
    /// `ok` or `stopped`.
    pub status: String,
    /// This node's own state: `alive`, or `left` while leaving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// This node's incarnation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<u64>,
    /// Members this node holds Alive, itself included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members_alive: Option<usize>,
    /// Why the node is not running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub(super) async fn check(State(api): State<ApiState>) -> (StatusCode, Json<Health>) {
    let name = api.node.name().to_string();
    match api.node.members().await {
        Ok(members) => {
            let me = members.iter().find(|m| m.name == *api.node.name());
            let alive = members
                .iter()
                .filter(|m| m.state == protocol::State::Alive)
                .count();
            let health = Health {
                name,
                status: "ok".into(),
                state: me.map(|m| m.state.as_str().to_string()),
                incarnation: me.map(|m| m.incarnation.0),
                members_alive: Some(alive),
                error: None,
            };
            (StatusCode::OK, Json(health))
        }
        Err(e) => {
            let health = Health {
                name,
                status: "stopped".into(),
                state: None,
                incarnation: None,
                members_alive: None,
                error: Some(e.to_string()),
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(health))
        }
    }
}

/// The answer of `/ready`: HTTP 200 with `ready: true`, or 503 with `ready: false` and the
/// reason (see [`Node::readiness`](crate::Node::readiness)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyJson {
    /// Whether the node is ready.
    pub ready: bool,
    /// This node's name.
    pub name: String,
    /// Why it is not ready, e.g. `not joined: no seed has answered yet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

pub(super) async fn ready(State(api): State<ApiState>) -> (StatusCode, Json<ReadyJson>) {
    let name = api.node.name().to_string();
    match api.node.readiness().await {
        Ok(()) => (
            StatusCode::OK,
            Json(ReadyJson {
                ready: true,
                name,
                reason: None,
            }),
        ),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(ReadyJson {
                ready: false,
                name,
                reason: Some(why.to_string()),
            }),
        ),
    }
}
