//! The control API: HTTP/1 + JSON over TCP, for operators and the `quicswim` subcommands
//! that talk to a running agent.
//!
//! ```text
//!   GET /v1/members   every member this node knows, sorted by name (JSON array)
//!   GET /v1/ring      the consistent-hash ring: checksum, members with weight, vnodes, share
//!   GET /v1/ring/owner?key=K[&key=K2..][&replicas=N]
//!                     {"K": owner} or, with replicas, {"K": [owner, next, ..]}
//!   GET /health       200 with this node's name, state and alive count; 503 once stopped
//!   GET /metrics      Prometheus text exposition, every name prefixed `quicswim_`
//!   anything else     404 (or 405) with {"error": "..."}
//! ```
//!
//! The API holds a [`Node`] handle and asks the node's driver task for each answer, so it
//! never sees a half-applied protocol step; the ring routes read the node's ring snapshot
//! instead, without a round trip through the driver. It has no authentication of its own: bind it to
//! loopback (the agent's default) or a trusted interface.

mod error;
mod health;
mod members;
mod metrics;
pub mod prometheus;
mod ring;

use std::future::Future;
use std::io;

use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::node::Node;

pub use error::{ApiError, ErrorBody};
pub use health::Health;
pub use members::MemberJson;
pub use ring::{Placement, RingJson, RingMemberJson, OWNER_KEYS_MAX};

/// What every handler is given: the node it answers for.
#[derive(Clone)]
struct ApiState {
    node: Node,
}

/// Every route of the API, answering for `node`. Routes for key/value data, events and the
/// ring go here too, so that the whole surface is listed in one place.
pub fn router(node: Node) -> Router {
    Router::new()
        .route("/v1/members", get(members::list))
        .route("/v1/ring", get(ring::summary))
        .route("/v1/ring/owner", get(ring::owner))
        .route("/health", get(health::check))
        .route("/metrics", get(metrics::scrape))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(ApiState { node })
}

/// Serves the API for `node` on `listener` until `shutdown` completes, then lets requests in
/// progress finish and returns.
///
/// Errors only if the server itself fails; a failed connection is logged and dropped.
pub async fn serve<F>(node: Node, listener: TcpListener, shutdown: F) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(listener, router(node))
        .with_graceful_shutdown(shutdown)
        .await
}
