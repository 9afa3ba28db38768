//! The client for the agent's control API, shared by every subcommand that talks to a running
//! agent (`members`, `ring`, `kv`, `event`, `events`, `monitor`, `leave`, `force-leave`): reqwest over plain HTTP/1 (the API
//! listens on loopback, so no TLS).
//!
//! A deadline on each whole exchange, a bound on the answer read, and errors that name the API
//! address and carry the server's own `{"error": ...}` message.

use std::error::Error as _;
use std::time::Duration;

use bytes::Bytes;
use quicswim::api::ErrorBody;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Where `quicswim agent` serves its API unless told otherwise.
pub const DEFAULT_API: &str = "127.0.0.1:7947";

/// Longest answer read; a control API answer is far smaller.
const ANSWER_LEN_MAX: usize = 64 << 20;
/// Longest server error text quoted in a message when it is not the usual JSON.
const QUOTE_LEN_MAX: usize = 200;
/// Most pages one listing follows (of up to 10,000 entries each).
const PAGES_MAX: usize = 10_000;
/// Deadline on each exchange, connecting included.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to the API failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiCallError {
    /// The API address and the path do not make a URL.
    #[error("agent API at {addr}: {path}: not a valid address and path: {cause}")]
    Address {
        /// The API address.
        addr: String,
        /// Request path.
        path: String,
        /// Why it does not parse.
        cause: String,
    },
    /// No TCP connection could be made.
    #[error("cannot reach the agent API at {addr}: {cause} (is `quicswim agent` running there?)")]
    Connect {
        /// The API address.
        addr: String,
        /// What the OS said (part of the message, so not also a `source`).
        cause: String,
    },
    /// The exchange did not finish within the deadline.
    #[error("the agent API at {addr} did not answer {method} {path} within {after:?}")]
    Timeout {
        /// The API address.
        addr: String,
        /// Request method.
        method: Method,
        /// Request path.
        path: String,
        /// The deadline.
        after: Duration,
    },
    /// HTTP failed below the application: connection reset, malformed answer.
    #[error("agent API at {addr}: {method} {path}: {reason}")]
    Protocol {
        /// The API address.
        addr: String,
        /// Request method.
        method: Method,
        /// Request path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("agent API at {addr}: {method} {path}: {status}: {message}")]
    Status {
        /// The API address.
        addr: String,
        /// Request method.
        method: Method,
        /// Request path.
        path: String,
        /// The status answered.
        status: StatusCode,
        /// The server's error message.
        message: String,
    },
    /// A success answer whose body is not the JSON expected.
    #[error("agent API at {addr}: {method} {path}: unexpected answer: {cause}")]
    Decode {
        /// The API address.
        addr: String,
        /// Request method.
        method: Method,
        /// Request path.
        path: String,
        /// Why it did not decode.
        cause: serde_json::Error,
    },
}

impl ApiCallError {
    /// The agent's own message when it refused the request for something the user can fix
    /// (a 4xx status, or 507 for a full key quota): that message alone is the clearest line.
    pub fn refusal(&self) -> Option<&str> {
        match self {
            ApiCallError::Status {
                status, message, ..
            } if status.is_client_error() || *status == StatusCode::INSUFFICIENT_STORAGE => {
                Some(message)
            }
            _ => None,
        }
    }
}

/// An error for the user: the agent's refusal message alone, or the whole error otherwise.
pub fn user_error(e: ApiCallError) -> anyhow::Error {
    match e.refusal() {
        Some(message) => anyhow::anyhow!("{message}"),
        None => e.into(),
    }
}

/// The single-threaded runtime a subcommand drives its API calls on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// A client for one agent's API.
#[derive(Clone, Debug)]
pub struct ApiClient {
    /// `host:port`, as the user wrote it, for URLs and messages.
    addr: String,
    timeout: Duration,
    http: reqwest::Client,
    /// Sent as `Authorization: Bearer ...` when the agent wants one.
    token: Option<String>,
}

/// A request body: raw bytes or JSON.
enum Body<'a, B> {
    None,
    Bytes(Vec<u8>),
    Json(&'a B),
}

impl ApiClient {
    /// A client for the API at `addr` (`host:port`, optionally written `http://host:port/`),
    /// with a 10 s deadline per call.
    pub fn new(addr: &str) -> Self {
        let addr = addr.strip_prefix("http://").unwrap_or(addr);
        let addr = addr.trim_end_matches('/');
        let http = reqwest::Client::builder()
            // The API is on this host or one named outright: a proxy from the environment
            // would only stand in the way, and the API never redirects.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(CALL_TIMEOUT)
            .build()
            .expect("a client without TLS, proxies or a custom resolver always builds");
        Self {
            addr: addr.to_string(),
            timeout: CALL_TIMEOUT,
            http,
            token: None,
        }
    }

    /// A client for the agent at `addr` that sends the token from the file named by
    /// `QUICSWIM_API_TOKEN_FILE`, when that is set (errors name the file).
    pub fn for_agent(addr: &str) -> anyhow::Result<Self> {
        Ok(Self::new(addr).with_token(super::token::client_token()?))
    }

    /// This client, sending `token` as a bearer token with every call.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// `GET path`, decoding a JSON answer.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiCallError> {
        let answer = self.call(Method::GET, path, Body::<()>::None).await?;
        self.decode(Method::GET, path, &answer)
    }

    /// `GET path`, returning the answer's body as it is.
    pub async fn get_bytes(&self, path: &str) -> Result<Bytes, ApiCallError> {
        self.call(Method::GET, path, Body::<()>::None).await
    }

    /// `PUT path` with raw bytes, decoding a JSON answer.
    pub async fn put_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<T, ApiCallError> {
        let answer = self
            .call(Method::PUT, path, Body::<()>::Bytes(body))
            .await?;
        self.decode(Method::PUT, path, &answer)
    }

    /// `DELETE path`, decoding a JSON answer.
    pub async fn delete_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiCallError> {
        let answer = self.call(Method::DELETE, path, Body::<()>::None).await?;
        self.decode(Method::DELETE, path, &answer)
    }

    /// `POST path` with a JSON body, decoding a JSON answer.
    pub async fn post_json<B, T>(&self, path: &str, body: &B) -> Result<T, ApiCallError>
    where
        B: Serialize,
        T: DeserializeOwned,
    {
        let answer = self.call(Method::POST, path, Body::Json(body)).await?;
        self.decode(Method::POST, path, &answer)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        answer: &[u8],
    ) -> Result<T, ApiCallError> {
        serde_json::from_slice(answer).map_err(|cause| ApiCallError::Decode {
            addr: self.addr.clone(),
            method,
            path: path.to_string(),
            cause,
        })
    }

    /// `GET path` for an answer that streams for as long as the agent wants (`/v1/monitor`):
    /// the deadline covers connecting and the answer's headers only. An error status is an
    /// error, as for every other call.
    pub async fn get_stream(&self, path: &str) -> Result<reqwest::Response, ApiCallError> {
        let url = self.url(path)?;
        let fail = |e: reqwest::Error| self.failure(Method::GET, path, e);
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.timeout)
            // A host that vanishes without closing the connection is noticed, not waited on.
            .tcp_keepalive(Duration::from_secs(15))
            .build()
            .expect("a client without TLS, proxies or a custom resolver always builds");
        let answer = tokio::time::timeout(self.timeout, self.authorized(http.get(url)).send())
            .await
            .map_err(|_| ApiCallError::Timeout {
                addr: self.addr.clone(),
                method: Method::GET,
                path: path.to_string(),
                after: self.timeout,
            })?
            .map_err(fail)?;
        let status = answer.status();
        if status.is_success() {
            return Ok(answer);
        }
        let body = tokio::time::timeout(self.timeout, answer.bytes())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        Err(ApiCallError::Status {
            addr: self.addr.clone(),
            method: Method::GET,
            path: path.to_string(),
            status,
            message: error_message(&body),
        })
    }

    fn url(&self, path: &str) -> Result<Url, ApiCallError> {
        Url::parse(&format!("http://{}{path}", self.addr)).map_err(|cause| ApiCallError::Address {
            addr: self.addr.clone(),
            path: path.to_string(),
            cause: cause.to_string(),
        })
    }

    /// One exchange; the body of a 2xx answer, or an error.
    async fn call<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Body<'_, B>,
    ) -> Result<Bytes, ApiCallError> {
        self.call_with_headers(method, path, body)
            .await
            .map(|(_, body)| body)
    }

    /// `GET path` for a listing served a page at a time (`/v1/kv`): every page, following
    /// the next-page header the agent sets on a full page, decoded and joined. Bounded by
    /// [`PAGES_MAX`] pages.
    pub async fn get_json_pages<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Vec<T>, ApiCallError> {
        let mut all = Vec::new();
        let mut next = Some(path.to_string());
        let mut pages = 0;
        while let Some(path) = next.take() {
            let (headers, body) = self
                .call_with_headers(Method::GET, &path, Body::<()>::None)
                .await?;
            let page: Vec<T> = self.decode(Method::GET, &path, &body)?;
            all.extend(page);
            pages += 1;
            next = headers
                .get(quicswim::api::NEXT_PAGE_HEADER)
                .and_then(|v| v.to_str().ok())
                .filter(|p| p.starts_with("/v1/") && pages < PAGES_MAX)
                .map(str::to_string);
        }
        Ok(all)
    }

    /// One exchange; the headers and body of a 2xx answer, or an error.
    async fn call_with_headers<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Body<'_, B>,
    ) -> Result<(reqwest::header::HeaderMap, Bytes), ApiCallError> {
        let url = self.url(path)?;
        let fail = |e: reqwest::Error| self.failure(method.clone(), path, e);
        let request = self.authorized(self.http.request(method.clone(), url));
        let request = match body {
            Body::None => request,
            Body::Bytes(bytes) => request
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(bytes),
            Body::Json(value) => request.json(value),
        };
        let mut answer = request.send().await.map_err(fail)?;
        let status = answer.status();
        let headers = answer.headers().clone();
        let too_long = || ApiCallError::Protocol {
            addr: self.addr.clone(),
            method: method.clone(),
            path: path.to_string(),
            reason: format!("the answer is longer than {ANSWER_LEN_MAX} bytes"),
        };
        if answer
            .content_length()
            .is_some_and(|len| len > ANSWER_LEN_MAX as u64)
        {
            return Err(too_long());
        }
        let mut body = Vec::new();
        while let Some(chunk) = answer.chunk().await.map_err(fail)? {
            if body.len() + chunk.len() > ANSWER_LEN_MAX {
                return Err(too_long());
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok((headers, Bytes::from(body)));
        }
        Err(ApiCallError::Status {
            addr: self.addr.clone(),
            method,
            path: path.to_string(),
            status,
            message: error_message(&body),
        })
    }

    /// The error for a failed exchange, by what reqwest says went wrong.
    fn failure(&self, method: Method, path: &str, e: reqwest::Error) -> ApiCallError {
        let addr = self.addr.clone();
        let path = path.to_string();
        // Timeout first: a connection attempt that outlives the deadline is a timeout.
        if e.is_timeout() {
            return ApiCallError::Timeout {
                addr,
                method,
                path,
                after: self.timeout,
            };
        }
        if e.is_connect() {
            // The innermost cause is the OS's own word ("Connection refused"); the layers
            // above it only say that connecting failed.
            let mut cause: &dyn std::error::Error = &e;
            while let Some(inner) = cause.source() {
                cause = inner;
            }
            return ApiCallError::Connect {
                addr,
                cause: cause.to_string(),
            };
        }
        // Every layer's text, without the URL that the message already names.
        let e = e.without_url();
        let mut reason = e.to_string();
        let mut source = e.source();
        while let Some(inner) = source {
            reason.push_str(": ");
            reason.push_str(&inner.to_string());
            source = inner.source();
        }
        ApiCallError::Protocol {
            addr,
            method,
            path,
            reason,
        }
    }
}

/// The server's message from an error answer: its `{"error": ...}` text, or the start of the
/// body as text.
fn error_message(answer: &[u8]) -> String {
    if let Ok(body) = serde_json::from_slice::<ErrorBody>(answer) {
        return body.error;
    }
    let text = String::from_utf8_lossy(answer);
    let text = text.trim();
    if text.is_empty() {
        return "(no message)".to_string();
    }
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(QUOTE_LEN_MAX) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use axum::extract::Path;
    use axum::http::StatusCode;
    use axum::routing::{delete, get, post, put};
    use axum::{Json, Router};
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Echo {
        text: String,
    }

    async fn test_server() -> SocketAddr {
        let app = Router::new()
            .route("/json", get(|| async { Json(Echo { text: "hi".into() }) }))
            .route("/bytes/{key}", put(|body: Bytes| async move { body }))
            .route(
                "/bytes/{key}",
                delete(|Path(key): Path<String>| async move {
                    if key == "missing" {
                        Err((
                            StatusCode::NOT_FOUND,
                            Json(ErrorBody {
                                error: "no key missing".into(),
                            }),
                        ))
                    } else {
                        Ok(Json(Echo { text: key }))
                    }
                }),
            )
            .route("/echo", post(|Json(e): Json<Echo>| async move { Json(e) }))
            .route(
                "/plain-error",
                get(|| async { (StatusCode::BAD_GATEWAY, "upstream broke\nmore") }),
            );
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn every_method_round_trips() {
        let addr = test_server().await;
        let client = ApiClient::new(&format!("http://{addr}/"));
        let echo: Echo = client.get_json("/json").await.unwrap();
        assert_eq!(echo.text, "hi");
        let body: Echo = client
            .put_bytes("/bytes/k", br#"{"text":"value"}"#.to_vec())
            .await
            .unwrap();
        assert_eq!(body.text, "value");
        assert_eq!(
            &client.get_bytes("/json").await.unwrap()[..],
            br#"{"text":"hi"}"#
        );
        let gone: Echo = client.delete_json("/bytes/k").await.unwrap();
        assert_eq!(gone.text, "k");
        let back: Echo = client
            .post_json("/echo", &Echo { text: "yo".into() })
            .await
            .unwrap();
        assert_eq!(back.text, "yo");
    }

    #[tokio::test]
    async fn errors_carry_the_address_and_the_server_message() {
        let addr = test_server().await;
        let client = ApiClient::new(&addr.to_string());
        let err = client
            .delete_json::<Echo>("/bytes/missing")
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&addr.to_string()), "{text}");
        assert!(
            text.contains("404") && text.contains("no key missing"),
            "{text}"
        );
        assert_eq!(
            err.refusal(),
            Some("no key missing"),
            "a 4xx is the user's to fix"
        );
        assert_eq!(user_error(err).to_string(), "no key missing");
        let err = client.get_json::<Echo>("/plain-error").await.unwrap_err();
        assert_eq!(err.refusal(), None, "a 5xx is not the user's to fix");
        let text = err.to_string();
        assert!(
            text.contains("502") && text.ends_with("upstream broke"),
            "{text}"
        );
        let err = client.get_json::<Vec<u32>>("/json").await.unwrap_err();
        assert!(matches!(err, ApiCallError::Decode { .. }), "{err}");
    }

    #[tokio::test]
    async fn unreachable_api_is_named() {
        // Bind then drop a listener: nothing listens on that port afterwards.
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = ApiClient::new(&addr.to_string())
            .get_json::<Echo>("/json")
            .await
            .unwrap_err();
        assert!(matches!(err, ApiCallError::Connect { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(&addr.to_string()), "{text}");
        // The OS's word for it, not only "error sending request".
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }

    #[tokio::test]
    async fn an_address_that_makes_no_url_is_named() {
        let err = ApiClient::new("no such host:7947")
            .get_json::<Echo>("/json")
            .await
            .unwrap_err();
        assert!(matches!(err, ApiCallError::Address { .. }), "{err}");
        assert!(err.to_string().contains("no such host:7947"), "{err}");
    }
}
