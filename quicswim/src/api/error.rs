//! Errors as the API answers them: a status code and `{"error": "..."}`.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::node;
use crate::protocol::{CommandError, KvError};

/// The body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, in one lowercase line.
    pub error: String,
}

/// An error answer: a status and a message for [`ErrorBody`].
#[derive(Clone, Debug)]
pub struct ApiError {
    /// HTTP status to answer with.
    pub status: StatusCode,
    /// One-line message.
    pub message: String,
}

impl ApiError {
    /// An error answer with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<node::Error> for ApiError {
    fn from(e: node::Error) -> Self {
        let status = match &e {
            node::Error::Stopped | node::Error::Command(CommandError::Left) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            node::Error::Command(
                CommandError::Kv(KvError::ValueTooLarge { .. })
                | CommandError::EventTooLarge { .. },
            ) => StatusCode::PAYLOAD_TOO_LARGE,
            // The write is fine on its own; this node's share of the cluster's store is full.
            node::Error::Command(CommandError::Kv(
                KvError::TooManyKeys { .. }
                | KvError::TooManyBytes { .. }
                | KvError::TooManyOwners(_),
            )) => StatusCode::INSUFFICIENT_STORAGE,
            // Pushback: fine to send again once the cluster has caught up.
            node::Error::Command(CommandError::Backlogged { .. }) => StatusCode::TOO_MANY_REQUESTS,
            node::Error::Command(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        Self::new(e.status(), lowercase_first(&e.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        Self::new(e.status(), lowercase_first(&e.body_text()))
    }
}

/// axum's rejection texts start with a capital; ours are lowercase throughout.
fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

/// Fallback for paths no route knows.
pub(super) async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}

/// Fallback for a known path asked with the wrong method.
pub(super) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not accept {method}", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pushback_is_too_many_requests_and_says_how_far_behind() {
        let e = ApiError::from(node::Error::Command(CommandError::Backlogged {
            behind: Duration::from_millis(2500),
            max: Duration::from_secs(2),
        }));
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(e.message.contains("2.5s behind"), "{}", e.message);
        assert!(e.message.contains("kv_backlog_max"), "{}", e.message);
    }
}
