//! A small HTTP/1 client for the agent's control API, shared by every subcommand that talks
//! to a running agent (`members`, `ring`, `kv`, `event`, `events`).
//!
//! One TCP connection per call, a deadline on the whole exchange, and errors that name the
//! API address and carry the server's own `{"error": ...}` message.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use quicswim::api::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpStream;

/// Where `quicswim agent` serves its API unless told otherwise.
pub const DEFAULT_API: &str = "127.0.0.1:7947";

/// Longest answer read; a control API answer is far smaller.
const ANSWER_LEN_MAX: usize = 64 << 20;
/// Longest server error text quoted in a message when it is not the usual JSON.
const QUOTE_LEN_MAX: usize = 200;

/// Why a call to the API failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiCallError {
    /// No TCP connection could be made.
    #[error("cannot reach the agent API at {addr}: {cause} (is `quicswim agent` running there?)")]
    Connect {
        /// The API address.
        addr: String,
        /// What the OS said (part of the message, so not also a `source`).
        cause: io::Error,
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
pub fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// A client for one agent's API.
#[derive(Clone, Debug)]
pub struct ApiClient {
    /// `host:port`, used to connect, for the `Host` header and in messages.
    addr: String,
    timeout: Duration,
}

/// A request body and its content type.
struct Body {
    bytes: Bytes,
    content_type: &'static str,
}

impl ApiClient {
    /// A client for the API at `addr` (`host:port`, optionally written `http://host:port/`),
    /// with a 10 s deadline per call.
    pub fn new(addr: &str) -> Self {
        let addr = addr.strip_prefix("http://").unwrap_or(addr);
        let addr = addr.trim_end_matches('/');
        Self {
            addr: addr.to_string(),
            timeout: Duration::from_secs(10),
        }
    }

    /// `GET path`, decoding a JSON answer.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiCallError> {
        let answer = self.call(Method::GET, path, None).await?;
        self.decode(Method::GET, path, &answer)
    }

    /// `GET path`, returning the answer's body as it is.
    pub async fn get_bytes(&self, path: &str) -> Result<Bytes, ApiCallError> {
        self.call(Method::GET, path, None).await
    }

    /// `PUT path` with raw bytes, decoding a JSON answer.
    pub async fn put_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<T, ApiCallError> {
        let body = Body {
            bytes: Bytes::from(body),
            content_type: "application/octet-stream",
        };
        let answer = self.call(Method::PUT, path, Some(body)).await?;
        self.decode(Method::PUT, path, &answer)
    }

    /// `DELETE path`, decoding a JSON answer.
    pub async fn delete_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiCallError> {
        let answer = self.call(Method::DELETE, path, None).await?;
        self.decode(Method::DELETE, path, &answer)
    }

    /// `POST path` with a JSON body, decoding a JSON answer.
    pub async fn post_json<B, T>(&self, path: &str, body: &B) -> Result<T, ApiCallError>
    where
        B: Serialize,
        T: DeserializeOwned,
    {
        let bytes = serde_json::to_vec(body).expect("request bodies serialize to JSON");
        let body = Body {
            bytes: Bytes::from(bytes),
            content_type: "application/json",
        };
        let answer = self.call(Method::POST, path, Some(body)).await?;
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

    /// One exchange on a fresh connection; the body of a 2xx answer, or an error.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<Bytes, ApiCallError> {
        let exchange = self.exchange(method.clone(), path, body);
        let (status, answer) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ApiCallError::Timeout {
                addr: self.addr.clone(),
                method: method.clone(),
                path: path.to_string(),
                after: self.timeout,
            })??;
        if status.is_success() {
            return Ok(answer);
        }
        Err(ApiCallError::Status {
            addr: self.addr.clone(),
            method,
            path: path.to_string(),
            status,
            message: error_message(&answer),
        })
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<(StatusCode, Bytes), ApiCallError> {
        let protocol = |reason: String| ApiCallError::Protocol {
            addr: self.addr.clone(),
            method: method.clone(),
            path: path.to_string(),
            reason,
        };
        let stream =
            TcpStream::connect(&self.addr)
                .await
                .map_err(|cause| ApiCallError::Connect {
                    addr: self.addr.clone(),
                    cause,
                })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| protocol(e.to_string()))?;
        // The connection future does the I/O; it ends when `sender` is dropped.
        let driver = tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(HOST, &self.addr);
        let bytes = match body {
            Some(body) => {
                request = request.header(CONTENT_TYPE, body.content_type);
                body.bytes
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(bytes))
            .map_err(|e| protocol(format!("cannot build the request: {e}")))?;
        let answer = sender
            .send_request(request)
            .await
            .map_err(|e| protocol(e.to_string()))?;
        let status = answer.status();
        let body = Limited::new(answer.into_body(), ANSWER_LEN_MAX)
            .collect()
            .await
            .map_err(|e| protocol(format!("reading the answer: {e}")))?
            .to_bytes();
        drop(sender);
        driver.abort();
        Ok((status, body))
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
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
