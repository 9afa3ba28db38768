//! The control API: HTTP/1 + JSON over TCP, for operators and the `quicswim` subcommands
//! that talk to a running agent.
//!
//! ```text
//!   GET    /v1/members[?state=S[,S..]][&name=GLOB]
//!                               every member this node knows, sorted by name (JSON array);
//!                               `state` keeps alive|suspect|dead|left|banned, `name` a glob
//!   POST   /v1/leave            leave the cluster gracefully; answers once the others were told
//!   POST   /v1/force-leave/{name}
//!                               drop a dead or left member's tombstone here now (local)
//!   POST   /v1/revocations      {"pem": CRLs}: honour CA-signed revocation lists and pass them
//!                               to the cluster; members they name are banned everywhere
//!   GET    /v1/monitor          membership, key/value and user events as they happen:
//!                               newline-delimited JSON, chunked, until the node or API stops
//!   PUT    /v1/kv/{key}         set this node's key to the raw body
//!   DELETE /v1/kv/{key}         delete this node's key
//!   GET    /v1/kv/{owner}/{key} one value, raw bytes
//!   GET    /v1/kv[?after=O/K][&limit=N]
//!                               entries known here, a page at a time (JSON array; a full page
//!                               names the next in the header `x-quicswim-next-page`)
//!   POST   /v1/events           publish a user event
//!   GET    /v1/events           the most recent user events received here (JSON array)
//!   GET    /v1/ring             the consistent-hash ring: checksum, members with weight, vnodes, share
//!   GET    /v1/ring/owner?key=K[&key=K2..][&replicas=N]
//!                               {"K": owner} or, with replicas, {"K": [owner, next, ..]}
//!   GET    /health              liveness: 200 with this node's name, state and alive count
//!                               while its driver answers; 503 once stopped
//!   GET    /ready               readiness: 200 {"ready":true} once joined (or --bootstrap) with
//!                               full state and a live peer; else 503 {"ready":false,"reason"}
//!   GET    /metrics             Prometheus text exposition: the node's families, prefixed
//!                               `quicswim_`, and the standard `process_*` ones (Linux)
//!   anything else               404 (or 405) with {"error": "..."}
//! ```
//!
//! Errors are `{"error": "..."}` with a status that says whose fault: 400 for a bad request,
//! 404 for a key or member that is not there, 409 for a force-leave of a live member, 413 for
//! a value or event payload over its limit (the message names the limit), 507 when this
//! node's key quota is full, 503 once the node has left or stopped.
//!
//! The API holds a [`Node`] handle and asks the node's driver task for each answer, so it
//! never sees a half-applied protocol step; the ring routes read the node's ring snapshot
//! instead, without a round trip through the driver.
//!
//! Access: with [`ServeOptions::token`] every route but `/health` and `/ready` needs
//! `Authorization: Bearer <token>`; without one, anyone who reaches the port may call it, so
//! bind it to loopback (the agent's default) or set a token. Every request's `Host` must be an
//! IP address, a name without a dot (`localhost`) or a name in [`ServeOptions::hosts`] (see
//! `guard.rs`: DNS rebinding).

mod error;
mod events;
mod guard;
mod health;
mod kv;
mod leave;
mod members;
mod metrics;
mod monitor;
#[cfg(target_os = "linux")]
mod process;
mod revoke;
mod ring;
mod rtt;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::node::{Node, LEAVE_TIMEOUT_DEFAULT};

pub use error::{ApiError, ErrorBody};
pub use events::{EventJson, PublishRequest, Published};
pub use health::{Health, ReadyJson};
pub use kv::{KvItemJson, KvWritten, KV_PAGE_DEFAULT, KV_PAGE_MAX, NEXT_PAGE_HEADER};
pub use leave::{ForceLeft, Left};
pub use members::{glob_match, MemberJson};
pub use monitor::{MonitorEvent, MonitorLine};
pub use revoke::{RevokeRequest, Revoked, RevokedList};
pub use ring::{Placement, RingJson, RingMemberJson, OWNER_KEYS_MAX};

/// What every handler is given: the node it answers for.
#[derive(Clone)]
struct ApiState {
    node: Node,
    /// How long `POST /v1/leave` waits for a member to confirm the leave.
    leave_timeout: Duration,
    /// Becomes true when the server is stopping, so that streams end and the graceful
    /// shutdown, which waits for every answer in progress, can finish.
    stopping: Arc<watch::Sender<bool>>,
    /// The token and host checks every request passes first.
    guard: guard::Guard,
}

impl ApiState {
    fn new(node: Node, options: ServeOptions) -> Self {
        Self {
            node,
            leave_timeout: options.leave_timeout,
            stopping: Arc::new(watch::channel(false).0),
            guard: guard::Guard::new(options.token.as_deref(), &options.hosts),
        }
    }
}

/// Bytes as the API shows them in JSON: as text when they are valid UTF-8 (else `None`), and
/// always in standard base64 with padding. Event payloads and key/value values alike.
fn text_and_base64(bytes: Vec<u8>) -> (Option<String>, String) {
    let base64 = BASE64.encode(&bytes);
    (String::from_utf8(bytes).ok(), base64)
}

/// Every route of the API, answering for `node`. Routes for key/value data, events and the
/// ring go here too, so that the whole surface is listed in one place.
///
/// `/v1/monitor` streams end when the node stops or the client goes away; [`serve`] also
/// ends them when it is told to stop.
pub fn router(node: Node) -> Router {
    routes(ApiState::new(node, ServeOptions::default()))
}

fn routes(state: ApiState) -> Router {
    // For extractors (the JSON of events): room for the largest payload, escaped or in
    // base64. `PUT /v1/kv/{key}` reads its body itself, to answer an oversized value with
    // the value limit.
    let body_limit = state.node.config().kv.value_len_max + kv::BODY_HEADROOM;
    Router::new()
        .route("/v1/members", get(members::list))
        .route("/v1/leave", post(leave::leave))
        .route("/v1/force-leave/{name}", post(leave::force_leave))
        .route(
            "/v1/revocations",
            post(revoke::revoke).layer(DefaultBodyLimit::max(revoke::BODY_MAX)),
        )
        .route("/v1/monitor", get(monitor::stream))
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
        .route("/ready", get(health::ready))
        .route("/metrics", get(metrics::scrape))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.guard.clone(),
            guard::check,
        ))
        .with_state(state)
}

/// Serves the API for `node` on `listener` until `shutdown` completes, then lets requests in
/// progress finish and returns.
///
/// Errors only if the server itself fails; a failed connection is logged and dropped.
pub async fn serve<F>(node: Node, listener: TcpListener, shutdown: F) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    serve_with(node, listener, shutdown, ServeOptions::default()).await
}

/// Settings of the API server that are not the node's.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// How long `POST /v1/leave` waits for a member to confirm the leave (an agent's
    /// `--leave-timeout`); default [`LEAVE_TIMEOUT_DEFAULT`].
    pub leave_timeout: Duration,
    /// When set, every request but `/health` and `/ready` must carry
    /// `Authorization: Bearer <token>` (401 otherwise). Default none.
    pub token: Option<String>,
    /// Host names (with dots) the API answers to besides IP addresses and names without a
    /// dot such as `localhost`: a request whose `Host` names anything else is refused (421),
    /// which stops DNS rebinding from a browser. Default none.
    pub hosts: Vec<String>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            leave_timeout: LEAVE_TIMEOUT_DEFAULT,
            token: None,
            hosts: Vec::new(),
        }
    }
}

/// [`serve`] with `options`.
pub async fn serve_with<F>(
    node: Node,
    listener: TcpListener,
    shutdown: F,
    options: ServeOptions,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let state = ApiState::new(node, options);
    let stopping = Arc::clone(&state.stopping);
    let shutdown = async move {
        shutdown.await;
        stopping.send_replace(true);
    };
    axum::serve(listener, routes(state))
        .with_graceful_shutdown(shutdown)
        .await
}
