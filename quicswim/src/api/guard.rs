//! Who may call the API: an optional bearer token, and a `Host` header check against DNS
//! rebinding.
//!
//! ```text
//!   request ──> Host an IP, a name without a dot, or one allowed? ──── no ──> 421
//!           ──> token set and path not /health or /ready:
//!                 Authorization: Bearer <token>? ─────────────────── no ──> 401
//!           ──> the route
//! ```
//!
//! DNS rebinding: a web page from `evil.example` re-points its own name at 127.0.0.1 and,
//! being same-origin with it, calls the API from the operator's browser. Its requests carry
//! `Host: evil.example`; asking for an address, a name without a dot (`localhost`, a
//! container's short name: local names a public page cannot own) or a name given with
//! `--api-host` stops them whether or not a token is set. `/health` and `/ready` answer without the token so that probes
//! (Kubernetes, load balancers) need no secret; they tell the node's name, state and
//! alive count, nothing more.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, HOST, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// What the guard checks, from [`ServeOptions`](super::ServeOptions).
#[derive(Clone, Debug, Default)]
pub(super) struct Guard {
    /// The bearer token, when one is required.
    token: Option<Arc<str>>,
    /// Host names accepted besides IP literals and `localhost`, lowercase.
    hosts: Arc<[String]>,
}

impl Guard {
    pub(super) fn new(token: Option<&str>, hosts: &[String]) -> Self {
        Guard {
            token: token.map(Arc::from),
            hosts: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }
}

/// The middleware: every request passes here before its route.
pub(super) async fn check(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    if let Err(refusal) = admit(&guard, request.uri().path(), request.headers()) {
        return *refusal;
    }
    next.run(request).await
}

/// `Ok` to pass on, or the refusal to answer with (boxed: a response is large).
fn admit(guard: &Guard, path: &str, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !host_allowed(host, &guard.hosts) {
        return Err(Box::new(
            ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "host {host:?} is not this API's: use its address, localhost, or a name \
                     given to the agent with --api-host"
                ),
            )
            .into_response(),
        ));
    }
    let Some(token) = &guard.token else {
        return Ok(());
    };
    if matches!(path, "/health" | "/ready") {
        return Ok(());
    }
    let offered = headers
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    match offered {
        Some(offered) if same(offered.trim().as_bytes(), token.as_bytes()) => Ok(()),
        _ => {
            let mut answer = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this API needs its bearer token (Authorization: Bearer ...; the CLI reads it \
                 from the file named by --api-token-file or QUICSWIM_API_TOKEN_FILE)",
            )
            .into_response();
            answer
                .headers_mut()
                .insert(WWW_AUTHENTICATE, "Bearer".parse().expect("static header"));
            Err(Box::new(answer))
        }
    }
}

/// Whether `host` (a `Host` header: name or address, with an optional port) is one this
/// API answers to: an IP address, a name without a dot, or one of `allowed`. An empty `Host` (HTTP/1.0, or a raw client) is allowed: a browser always
/// sends one.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    if host.is_empty() {
        return true;
    }
    let name = match host.strip_prefix('[') {
        // [v6]:port or [v6]
        Some(rest) => {
            return rest
                .split(']')
                .next()
                .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    // A name without a dot (a container's or a service's short name) is resolved from local
    // configuration only; a rebinding page needs a public domain of its own, which has one.
    !name.contains('.') || allowed.contains(&name)
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: &str, auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOST, host.parse().unwrap());
        if let Some(auth) = auth {
            h.insert(AUTHORIZATION, auth.parse().unwrap());
        }
        h
    }

    #[test]
    fn addresses_and_localhost_pass_the_host_check_and_other_names_do_not() {
        let allowed = vec!["api.internal".to_string()];
        for host in [
            "127.0.0.1:7947",
            "10.1.2.3",
            "[::1]:7947",
            "localhost:7947",
            "LOCALHOST",
            "node1:7947",
            "api.internal:80",
        ] {
            assert!(host_allowed(host, &allowed), "{host}");
        }
        for host in [
            "evil.example:7947",
            "evil.example",
            "localhost.evil.example",
            "[nope]",
        ] {
            assert!(!host_allowed(host, &allowed), "{host}");
        }
    }

    #[test]
    fn a_token_is_required_except_for_probes() {
        let guard = Guard::new(Some("s3cret"), &[]);
        let no_token = headers("127.0.0.1", None);
        assert!(admit(&guard, "/v1/members", &no_token).is_err());
        assert!(admit(&guard, "/metrics", &no_token).is_err());
        assert!(admit(&guard, "/health", &no_token).is_ok());
        assert!(admit(&guard, "/ready", &no_token).is_ok());
        let wrong = headers("127.0.0.1", Some("Bearer s3cre7"));
        assert!(admit(&guard, "/v1/members", &wrong).is_err());
        let right = headers("127.0.0.1", Some("Bearer s3cret"));
        assert!(admit(&guard, "/v1/members", &right).is_ok());
    }

    #[test]
    fn without_a_token_only_the_host_is_checked() {
        let guard = Guard::default();
        assert!(admit(&guard, "/v1/kv", &headers("localhost", None)).is_ok());
        let refused = admit(&guard, "/v1/kv", &headers("rebound.example", None)).unwrap_err();
        assert_eq!(refused.status(), StatusCode::MISDIRECTED_REQUEST);
    }
}
