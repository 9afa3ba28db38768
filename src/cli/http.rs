//! A small HTTP/1 client for the agent's control API, shared by every subcommand that talks
//! to a running agent (`members`, `ring`, and later `kv`, `event`).
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

    /// `PUT path` with raw bytes; returns the answer's body.
    #[allow(dead_code)] // for `quicswim kv set`
    pub async fn put_bytes(&self, path: &str, body: Vec<u8>) -> Result<Bytes, ApiCallError> {
        let body = Body {
            bytes: Bytes::from(body),
            content_type: "application/octet-stream",
        };
        self.call(Method::PUT, path, Some(body)).await
    }

    /// `DELETE path`.
    #[allow(dead_code)] // for `quicswim kv delete`
    pub async fn delete(&self, path: &str) -> Result<(), ApiCallError> {
        self.call(Method::DELETE, path, None).await.map(drop)
    }

    /// `POST path` with a JSON body, decoding a JSON answer.
    #[allow(dead_code)] // for `quicswim event`
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
                        Ok(StatusCode::NO_CONTENT)
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
        let body = client
            .put_bytes("/bytes/k", b"value".to_vec())
            .await
            .unwrap();
        assert_eq!(&body[..], b"value");
        client.delete("/bytes/k").await.unwrap();
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
        let err = client.delete("/bytes/missing").await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&addr.to_string()), "{text}");
        assert!(
            text.contains("404") && text.contains("no key missing"),
            "{text}"
        );
        let err = client.get_json::<Echo>("/plain-error").await.unwrap_err();
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
