//! `GET /v1/members`.

use std::net::SocketAddr;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::protocol::Member;

/// One member as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberJson {
    /// The member's name (its certificate's DNS SAN).
    pub name: String,
    /// The address it advertises.
    pub addr: SocketAddr,
    /// `alive`, `suspect`, `dead` or `left`, as this node sees it.
    pub state: String,
    /// Its incarnation as last heard.
    pub incarnation: u64,
    /// Its metadata, decoded as UTF-8 (invalid sequences become U+FFFD).
    pub meta: String,
}

impl From<&Member> for MemberJson {
    fn from(m: &Member) -> Self {
        Self {
            name: m.name.to_string(),
            addr: m.addr,
            state: m.state.as_str().to_string(),
            incarnation: m.incarnation.0,
            meta: String::from_utf8_lossy(&m.meta).into_owned(),
        }
    }
}

/// Every member known to this node, itself and tombstones included, sorted by name.
pub(super) async fn list(State(api): State<ApiState>) -> Result<Json<Vec<MemberJson>>, ApiError> {
    let members = api.node.members().await?;
    Ok(Json(members.iter().map(MemberJson::from).collect()))
}
