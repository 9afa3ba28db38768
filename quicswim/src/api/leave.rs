//! `POST /v1/leave` and `POST /v1/force-leave/{name}`.
//!
//! ```text
//!   POST /v1/leave                -> 200 {"name","left":true,"outcome","by"}
//!                                    outcome: confirmed (by names the member), alone, timed_out
//!   POST /v1/force-leave/{name}   -> 200 {"name","removed":true}
//!                                    404 not known here, 409 alive or suspect, 400 this node
//! ```
//!
//! A leave is the graceful stop a Kubernetes preStop hook wants: the node tells the others,
//! waits (the server's leave timeout at most) for a member to confirm, then stops; an agent
//! sees its node stop and exits. A force-leave only drops the member's tombstone from this
//! node's table (see [`Swim::force_leave`](crate::protocol::Swim::force_leave)).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::node::{self, LeaveOutcome};
use crate::protocol::{CommandError, NodeName};

/// The answer of `POST /v1/leave`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Left {
    /// The node that left: the one that answered.
    pub name: String,
    /// Always true: an answer comes only once the leave is done (confirmed or not).
    pub left: bool,
    /// How it ended: `confirmed`, `alone` (no member to tell) or `timed_out` (no member
    /// confirmed in time; the others may see this node dead rather than left). Empty from
    /// an agent too old to say.
    #[serde(default)]
    pub outcome: String,
    /// The member that confirmed, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
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
    let timeout = api.leave_timeout;
    // In a task of its own: a client that hangs up must not cancel a leave half done
    // (the Left sent, the transport not yet closed).
    let left = tokio::spawn(async move { node.leave_with_timeout(timeout).await })
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("leave failed: {e}"),
            )
        })?;
    let (outcome, by) = match left? {
        LeaveOutcome::Confirmed { by } => ("confirmed", Some(by.to_string())),
        LeaveOutcome::Alone => ("alone", None),
        LeaveOutcome::TimedOut => ("timed_out", None),
    };
    Ok(Json(Left {
        name: api.node.name().to_string(),
        left: true,
        outcome: outcome.to_string(),
        by,
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
