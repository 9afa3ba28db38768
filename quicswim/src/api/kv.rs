//! `/v1/kv`: this node's own keys (set, delete) and every member's keys as known here.
//!
//! ```text
//!   PUT    /v1/kv/{key}           body = the raw value  -> 200 {"owner","key","version"}
//!   DELETE /v1/kv/{key}                                 -> 200 {"owner","key","version"} | 404
//!   GET    /v1/kv/{owner}/{key}   -> 200 the raw value (application/octet-stream) | 404
//!   GET    /v1/kv[?after=OWNER/KEY][&limit=N]
//!                                 -> 200 [{"owner","key","value","value_base64","version"}]
//!                                    at most N (default 1000, at most 10,000), ending once its
//!                                    keys and values reach 4 MiB (always one entry); a full page has
//!                                    `x-quicswim-next-page: /v1/kv?after=..&limit=N`
//! ```
//!
//! A key is one path segment: percent-encode anything else (`a/b` is `a%2Fb`). Values are bytes;
//! the list shows each as text when it is valid UTF-8 (`value`, else `null`) and always as
//! standard base64 with padding (`value_base64`, RFC 4648 section 4).

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::node::KvItem;
use crate::protocol::kv::{page_is_full, VALUE_LEN_MAX_CAP};
use crate::protocol::NodeName;

/// The answer of a write or a delete: whose key, and the version the change took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvWritten {
    /// The owning node: the node that answered.
    pub owner: String,
    /// The key.
    pub key: String,
    /// The version the write (or the delete's tombstone) took.
    pub version: u64,
}

/// One entry of `GET /v1/kv`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvItemJson {
    /// The owning node.
    pub owner: String,
    /// The key.
    pub key: String,
    /// The value as text when it is valid UTF-8; `null` otherwise.
    pub value: Option<String>,
    /// The value in standard base64 with padding, always present.
    pub value_base64: String,
    /// The owner's version of it.
    pub version: u64,
}

impl From<KvItem> for KvItemJson {
    fn from(item: KvItem) -> Self {
        let (value, value_base64) = super::text_and_base64(item.value);
        Self {
            owner: item.owner.to_string(),
            key: item.key,
            value,
            value_base64,
            version: item.version,
        }
    }
}

impl KvItemJson {
    /// The value's bytes, from `value_base64`; `None` if that is not valid base64.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        BASE64.decode(&self.value_base64).ok()
    }
}

/// Headroom of the API's request body limit (for JSON bodies) over the value limit.
pub(super) const BODY_HEADROOM: usize = 64 * 1024;

/// Most bytes of an oversized value read and thrown away before the 413 goes out. Reading
/// the rest lets the client finish sending and then read the answer; closing on unread data
/// would reset the connection under it. Twice the highest value limit a node may have.
const DRAIN_LEN_MAX: u64 = 2 * VALUE_LEN_MAX_CAP as u64;

/// `PUT /v1/kv/{key}`. The body is read here rather than by an extractor, so that an
/// oversized one is answered with the limit (and the size, when known) in our own words.
pub(super) async fn set(
    State(api): State<ApiState>,
    key: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<KvWritten>, ApiError> {
    let Path(key) = key?;
    let max = api.node.config().kv.value_len_max;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let value = match declared {
        Some(len) if len > DRAIN_LEN_MAX => Err(Oversize::CutOff),
        _ => read_value(body, max).await?,
    };
    let value = value.map_err(|oversize| {
        let message = match (oversize, declared) {
            (Oversize::Read(len), _) | (_, Some(len)) => {
                format!("value is {len} bytes; the limit is {max}")
            }
            (_, None) => format!("value is over {DRAIN_LEN_MAX} bytes; the limit is {max}"),
        };
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    })?;
    let version = api.node.set(&key, value).await?;
    Ok(Json(KvWritten {
        owner: api.node.name().to_string(),
        key,
        version,
    }))
}

/// Why a value was not read whole.
enum Oversize {
    /// Read to its end, this many bytes, over the limit.
    Read(u64),
    /// Given up on after [`DRAIN_LEN_MAX`] bytes, or not read at all because its declared
    /// length was over that.
    CutOff,
}

/// The body, if at most `max` bytes; otherwise it is read on and dropped, up to
/// [`DRAIN_LEN_MAX`] in all.
async fn read_value(mut body: Body, max: usize) -> Result<Result<Vec<u8>, Oversize>, ApiError> {
    let mut value = Vec::new();
    let mut len: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("cannot read the value: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        len += data.len() as u64;
        if len <= max as u64 {
            value.extend_from_slice(&data);
        } else if len > DRAIN_LEN_MAX {
            return Ok(Err(Oversize::CutOff));
        } else {
            value = Vec::new();
        }
    }
    if len > max as u64 {
        return Ok(Err(Oversize::Read(len)));
    }
    Ok(Ok(value))
}

/// `DELETE /v1/kv/{key}`.
pub(super) async fn delete(
    State(api): State<ApiState>,
    key: Result<Path<String>, PathRejection>,
) -> Result<Json<KvWritten>, ApiError> {
    let Path(key) = key?;
    match api.node.delete(&key).await? {
        Some(version) => Ok(Json(KvWritten {
            owner: api.node.name().to_string(),
            key,
            version,
        })),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{} has no key {key:?}", api.node.name()),
        )),
    }
}

/// `GET /v1/kv/{owner}/{key}`.
pub(super) async fn get(
    State(api): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path((owner, key)) = path?;
    let owner = NodeName::new(&owner).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{owner:?} is not a node name: {e}"),
        )
    })?;
    match api.node.get(&owner, &key).await? {
        Some(value) => Ok(([(CONTENT_TYPE, "application/octet-stream")], value)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no key {key:?} of {owner} is known to {}", api.node.name()),
        )),
    }
}

/// Entries in one page of `GET /v1/kv` unless `limit` says otherwise.
pub const KV_PAGE_DEFAULT: usize = 1000;
/// Most entries one page may ask for.
pub const KV_PAGE_MAX: usize = 10_000;
/// Header of a full page: the path and query of the next one.
pub const NEXT_PAGE_HEADER: &str = "x-quicswim-next-page";

/// The query of `GET /v1/kv`.
#[derive(Debug, Deserialize)]
pub(super) struct PageQuery {
    /// Entries after this cursor, `owner/key` (the key may contain `/`).
    after: Option<String>,
    /// Entries in the page, 1 ..= [`KV_PAGE_MAX`]; default [`KV_PAGE_DEFAULT`].
    limit: Option<usize>,
}

/// `GET /v1/kv[?after=OWNER/KEY][&limit=N]`: live entries known here, sorted by owner then
/// key, a page at a time. A full page carries [`NEXT_PAGE_HEADER`] with the path of the
/// next; the driver copies only the page, so listing a large store never stalls it.
pub(super) async fn list(
    State(api): State<ApiState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = query.limit.unwrap_or(KV_PAGE_DEFAULT);
    if !(1..=KV_PAGE_MAX).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit {limit} is outside 1..={KV_PAGE_MAX}"),
        ));
    }
    let after = match query.after {
        None => None,
        Some(cursor) => {
            let (owner, key) = cursor.split_once('/').ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("after {cursor:?} is not OWNER/KEY"),
                )
            })?;
            let owner = NodeName::new(owner).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("after {cursor:?}: {owner:?} is not a node name: {e}"),
                )
            })?;
            Some((owner, key.to_string()))
        }
    };
    let items = api.node.kv_page(after, limit).await?;
    let mut headers = HeaderMap::new();
    let bytes = items
        .iter()
        .fold(0usize, |n, i| n.saturating_add(i.key.len() + i.value.len()));
    if page_is_full(items.len(), bytes, limit) {
        if let Some(last) = items.last() {
            let cursor = format!("{}/{}", last.owner, last.key);
            let query =
                serde_urlencoded::to_string([("after", cursor), ("limit", limit.to_string())])
                    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            if let Ok(value) = HeaderValue::from_str(&format!("/v1/kv?{query}")) {
                headers.insert(NEXT_PAGE_HEADER, value);
            }
        }
    }
    let items: Vec<KvItemJson> = items.into_iter().map(KvItemJson::from).collect();
    Ok((headers, Json(items)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(value: &[u8]) -> KvItem {
        KvItem {
            owner: NodeName::new("alice").unwrap(),
            key: "k".into(),
            value: value.to_vec(),
            version: 7,
        }
    }

    #[test]
    fn text_values_show_as_text_and_base64() {
        let json = KvItemJson::from(item(b"blue"));
        assert_eq!(json.value.as_deref(), Some("blue"));
        assert_eq!(json.value_base64, "Ymx1ZQ==");
        assert_eq!(json.bytes().unwrap(), b"blue");
    }

    #[test]
    fn binary_values_show_as_base64_only() {
        let json = KvItemJson::from(item(&[0xff, 0x00, 0x80]));
        assert_eq!(json.value, None);
        assert_eq!(json.value_base64, "/wCA");
        let text = serde_json::to_string(&json).unwrap();
        assert!(text.contains("\"value\":null"), "{text}");
        assert_eq!(json.bytes().unwrap(), [0xff, 0x00, 0x80]);
    }
}
