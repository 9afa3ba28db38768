//! `POST /v1/revocations`: hands this node certificate revocation lists to honour and pass
//! to the cluster.
//!
//! ```text
//!   POST /v1/revocations  {"pem": "-----BEGIN X509 CRL-----..."}
//!       -> 200 {"lists": [{"id", "outcome": "taken"|"known", "banned": [names]}]}
//!          400 no list in the text, or a list refused (not signed by a CA this node trusts,
//!              malformed), naming it and why; lists before it in the text were taken
//! ```
//!
//! See [`Node::revoke`](crate::node::Node::revoke) for what a list taken does.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::protocol::{Revocation, RevocationList, REVOCATION_LEN_MAX};

/// Most lists one request may hand in, and the body that holds them (PEM is 4/3 of the
/// DER, plus its lines and the JSON around it).
const LISTS_PER_REQUEST_MAX: usize = 16;
pub(super) const BODY_MAX: usize = LISTS_PER_REQUEST_MAX * REVOCATION_LEN_MAX * 3 / 2;

/// The body of `POST /v1/revocations`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeRequest {
    /// One or more certificate revocation lists, PEM (`-----BEGIN X509 CRL-----`).
    pub pem: String,
}

/// The answer of `POST /v1/revocations`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    /// One per list handed in, in order.
    pub lists: Vec<RevokedList>,
}

/// What became of one list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedList {
    /// Its id (hex), as members name it to each other.
    pub id: String,
    /// `taken` (newer than the list held from its CA: honoured and passed on) or `known`
    /// (held already, or older than the one held: nothing changed).
    pub outcome: String,
    /// The members it banned here (their certificates were held and it names them).
    pub banned: Vec<String>,
}

/// `POST /v1/revocations`.
pub(super) async fn revoke(
    State(api): State<ApiState>,
    body: Result<Json<RevokeRequest>, JsonRejection>,
) -> Result<Json<Revoked>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    let ders = crate::tls::crls_from_pem(&body.pem, "pem").map_err(|e| bad(e.to_string()))?;
    if ders.len() > LISTS_PER_REQUEST_MAX {
        return Err(bad(format!(
            "pem: {} lists, more than the {LISTS_PER_REQUEST_MAX} one request may hand in",
            ders.len()
        )));
    }
    let count = ders.len();
    let mut lists = Vec::with_capacity(count);
    for (i, der) in ders.into_iter().enumerate() {
        let der = der.to_vec();
        let id = format!("{:016x}", RevocationList::id(&der));
        let (outcome, banned) = match api.node.revoke(der).await? {
            Revocation::Taken { banned } => ("taken", banned),
            Revocation::Known => ("known", Vec::new()),
            Revocation::Refused(reason) => {
                return Err(bad(format!(
                    "revocation list {} of {count} ({id}) refused: {reason}{}",
                    i + 1,
                    if i > 0 {
                        "; the lists before it were taken"
                    } else {
                        ""
                    }
                )))
            }
        };
        lists.push(RevokedList {
            id,
            outcome: outcome.into(),
            banned: banned.iter().map(ToString::to_string).collect(),
        });
    }
    Ok(Json(Revoked { lists }))
}
