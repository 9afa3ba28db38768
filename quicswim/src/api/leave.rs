//! `POST /v1/leave` and `POST /v1/force-leave/{name}`.
//!
//! ```text
//!   POST /v1/leave                -> 200 {"name","left":true}   the others see this node Left
//!   POST /v1/force-leave/{name}   -> 200 {"name","removed":true}
//!                                    404 not known here, 409 alive or suspect, 400 this node
//! ```
//!
//! A leave is the graceful stop a Kubernetes preStop hook wants: the node tells the others,
//! waits (a few seconds at most) for that news to reach some of them, then stops; an agent
//! sees its node stop and exits. A force-leave only drops the member's tombstone from this
//! node's table (see [`Swim::force_leave`](crate::protocol::Swim::force_leave)).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::node;
use crate::protocol::{CommandError, NodeName};

/// The answer of `POST /v1/leave`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Left {
    /// The node that left: the one that answered.
    pub name: String,
    /// Always true: an answer comes only once the leave is done.
    pub left: bool,
}

/// The answer of `POST /v1/force-leave/{name}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForceLeft {
    /// The member whose tombstone was dropped.
    pub name: String,
    /// Always true.
    pub removed: bool,
}

/// `POST /v1/leave`.
pub(super) async fn leave(State(api): State<ApiState>) -> Result<Json<Left>, ApiError> {
    let node = api.node.clone();
    // In a task of its own: a client that hangs up must not cancel a leave half done
    // (the Left sent, the transport not yet closed).
    let left = tokio::spawn(async move { node.leave().await })
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("leave failed: {e}"),
            )
        })?;
    left?;
    Ok(Json(Left {
        name: api.node.name().to_string(),
        left: true,
    }))
}

/// `POST /v1/force-leave/{name}`.
pub(super) async fn force_leave(
    State(api): State<ApiState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<ForceLeft>, ApiError> {
    let Path(name) = name?;
    let member = NodeName::new(&name).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{name:?} is not a member name: {e}"),
        )
    })?;
    api.node.force_leave(&member).await.map_err(|e| {
        let status = match &e {
            node::Error::Command(CommandError::UnknownMember(_)) => StatusCode::NOT_FOUND,
            node::Error::Command(CommandError::MemberActive { .. }) => StatusCode::CONFLICT,
            _ => return ApiError::from(e),
        };
        ApiError::new(status, e.to_string())
    })?;
    Ok(Json(ForceLeft {
        name: member.to_string(),
        removed: true,
    }))
}
