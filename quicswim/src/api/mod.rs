//! The control API: HTTP/1 + JSON over TCP, for operators and the `quicswim` subcommands
//! that talk to a running agent.
//!
//! ```text
//!   GET    /v1/members          every member this node knows, sorted by name (JSON array)
//!   PUT    /v1/kv/{key}         set this node's key to the raw body
//!   DELETE /v1/kv/{key}         delete this node's key
//!   GET    /v1/kv/{owner}/{key} one value, raw bytes
//!   GET    /v1/kv               every entry known here (JSON array)
//!   POST   /v1/events           publish a user event
//!   GET    /v1/events           the most recent user events received here (JSON array)
//!   GET    /v1/ring             the consistent-hash ring: checksum, members with weight, vnodes, share
//!   GET    /v1/ring/owner?key=K[&key=K2..][&replicas=N]
//!                               {"K": owner} or, with replicas, {"K": [owner, next, ..]}
//!   GET    /health              200 with this node's name, state and alive count; 503 once stopped
//!   GET    /metrics             Prometheus text exposition: the node's families, prefixed
//!                               `quicswim_`, and the standard `process_*` ones (Linux)
//!   anything else               404 (or 405) with {"error": "..."}
//! ```
//!
//! Errors are `{"error": "..."}` with a status that says whose fault: 400 for a bad request,
//! 404 for a key that is not there, 413 for a value or event payload over its limit (the
//! message names the limit), 507 when this node's key quota is full, 503 once the node has
//! left or stopped.
//!
//! The API holds a [`Node`] handle and asks the node's driver task for each answer, so it
//! never sees a half-applied protocol step; the ring routes read the node's ring snapshot
//! instead, without a round trip through the driver. It has no authentication of its own: bind it to
//! loopback (the agent's default) or a trusted interface.

mod error;
mod events;
mod health;
mod kv;
mod members;
mod metrics;
#[cfg(target_os = "linux")]
mod process;
mod ring;
mod rtt;

use std::future::Future;
use std::io;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use tokio::net::TcpListener;

use crate::node::Node;

pub use error::{ApiError, ErrorBody};
pub use events::{EventJson, PublishRequest, Published};
pub use health::Health;
pub use kv::{KvItemJson, KvWritten};
pub use members::MemberJson;
pub use ring::{Placement, RingJson, RingMemberJson, OWNER_KEYS_MAX};

/// What every handler is given: the node it answers for.
#[derive(Clone)]
struct ApiState {
    node: Node,
}

/// Bytes as the API shows them in JSON: as text when they are valid UTF-8 (else `None`), and
/// always in standard base64 with padding. Event payloads and key/value values alike.
fn text_and_base64(bytes: Vec<u8>) -> (Option<String>, String) {
    let base64 = BASE64.encode(&bytes);
    (String::from_utf8(bytes).ok(), base64)
}

/// Every route of the API, answering for `node`. Routes for key/value data, events and the
/// ring go here too, so that the whole surface is listed in one place.
pub fn router(node: Node) -> Router {
    // For extractors (the JSON of events): room for the largest payload, escaped or in
    // base64. `PUT /v1/kv/{key}` reads its body itself, to answer an oversized value with
    // the value limit.
    let body_limit = node.config().kv.value_len_max + kv::BODY_HEADROOM;
    Router::new()
        .route("/v1/members", get(members::list))
        .route("/v1/ring", get(ring::summary))
        .route("/v1/ring/owner", get(ring::owner))
        .route("/v1/kv", get(kv::list))
        .route(
            "/v1/kv/{key}",
            axum::routing::put(kv::set).delete(kv::delete),
        )
        .route("/v1/kv/{owner}/{key}", get(kv::get))
        .route("/v1/events", get(events::list).post(events::publish))
        .route("/health", get(health::check))
        .route("/metrics", get(metrics::scrape))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
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
