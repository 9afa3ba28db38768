//! `/v1/events`: publish a user event to every member, and list the ones received here.
//!
//! ```text
//!   POST /v1/events  {"name", "payload"?, "payload_base64"?}  -> 200 {"origin","seq"}
//!   GET  /v1/events  -> 200 [{"origin","seq","name","payload","payload_base64"}], oldest first
//! ```
//!
//! A payload is bytes. A request gives it as text (`payload`) or as standard base64
//! (`payload_base64`), not both; neither means empty. The list shows it as text when it is
//! valid UTF-8 (`payload`, else `null`) and always as base64 (`payload_base64`), the same way
//! `/v1/kv` shows values.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::protocol::UserEvent;

/// The body of `POST /v1/events`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The event's name (1 to 128 bytes).
    pub name: String,
    /// The payload as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The payload in standard base64 with padding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
}

impl PublishRequest {
    /// A request carrying `payload` as text when it is valid UTF-8, else as base64.
    pub fn new(name: &str, payload: Vec<u8>) -> Self {
        let (payload, payload_base64) = match String::from_utf8(payload) {
            Ok(text) => (Some(text), None),
            Err(e) => (None, Some(BASE64.encode(e.as_bytes()))),
        };
        Self {
            name: name.to_string(),
            payload,
            payload_base64,
        }
    }

    /// The payload's bytes.
    fn bytes(self) -> Result<Vec<u8>, ApiError> {
        match (self.payload, self.payload_base64) {
            (Some(_), Some(_)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "give payload or payload_base64, not both",
            )),
            (Some(text), None) => Ok(text.into_bytes()),
            (None, Some(encoded)) => BASE64.decode(encoded.trim()).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("payload_base64 is not standard base64: {e}"),
                )
            }),
            (None, None) => Ok(Vec::new()),
        }
    }
}

/// The answer of `POST /v1/events`: the event's identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The node that published it: the node that answered.
    pub origin: String,
    /// Its sequence number at that node.
    pub seq: u64,
}

/// One event of `GET /v1/events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventJson {
    /// The node that published it.
    pub origin: String,
    /// The origin's sequence number; `(origin, seq)` identifies the event.
    pub seq: u64,
    /// Its name.
    pub name: String,
    /// The payload as text when it is valid UTF-8; `null` otherwise.
    pub payload: Option<String>,
    /// The payload in standard base64 with padding, always present.
    pub payload_base64: String,
}

impl From<UserEvent> for EventJson {
    fn from(e: UserEvent) -> Self {
        let (payload, payload_base64) = super::text_and_base64(e.payload);
        Self {
            origin: e.origin.to_string(),
            seq: e.seq,
            name: e.name,
            payload,
            payload_base64,
        }
    }
}

/// `POST /v1/events`.
pub(super) async fn publish(
    State(api): State<ApiState>,
    request: Result<Json<PublishRequest>, JsonRejection>,
) -> Result<Json<Published>, ApiError> {
    let Json(request) = request?;
    let name = request.name.clone();
    let payload = request.bytes()?;
    let seq = api.node.publish(&name, payload).await?;
    Ok(Json(Published {
        origin: api.node.name().to_string(),
        seq,
    }))
}

/// `GET /v1/events`: the most recent events received here (at most 256), oldest first.
pub(super) async fn list(State(api): State<ApiState>) -> Result<Json<Vec<EventJson>>, ApiError> {
    let events = api.node.recent_events().await?;
    Ok(Json(events.into_iter().map(EventJson::from).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_text_as_text_and_bytes_as_base64() {
        let text = PublishRequest::new("deploy", b"v1".to_vec());
        assert_eq!(text.payload.as_deref(), Some("v1"));
        assert_eq!(text.payload_base64, None);
        assert_eq!(text.bytes().unwrap(), b"v1");
        let binary = PublishRequest::new("deploy", vec![0xff, 1]);
        assert_eq!(binary.payload, None);
        assert_eq!(binary.payload_base64.as_deref(), Some("/wE="));
        assert_eq!(binary.bytes().unwrap(), [0xff, 1]);
    }

    #[test]
    fn a_request_with_both_payloads_or_bad_base64_is_refused() {
        let both = PublishRequest {
            name: "x".into(),
            payload: Some("a".into()),
            payload_base64: Some("YQ==".into()),
        };
        assert_eq!(both.bytes().unwrap_err().status, StatusCode::BAD_REQUEST);
        let bad = PublishRequest {
            name: "x".into(),
            payload: None,
            payload_base64: Some("not base64!".into()),
        };
        let err = bad.bytes().unwrap_err();
        assert!(err.message.contains("payload_base64"), "{}", err.message);
    }
}
