//! `GET /v1/ring` and `GET /v1/ring/owner`: the node's consistent-hash ring.
//!
//! Both read [`Node::ring`](crate::Node::ring), a snapshot shared with the node, so they never
//! wait on the node's driver task. They read it on a blocking thread: the node's first
//! `ring()` builds the ring (tens of milliseconds at a thousand members), which must not hold
//! up the runtime's workers.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::ring::Ring;

/// Most keys one `/v1/ring/owner` request may ask about.
pub const OWNER_KEYS_MAX: usize = 1000;

/// The answer of `GET /v1/ring`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RingJson {
    /// [`Ring::checksum`] as 16 lowercase hex digits: equal on two nodes exactly when they
    /// route every key alike.
    pub checksum: String,
    /// Virtual-node points on the ring, over all members.
    pub vnodes: usize,
    /// Virtual nodes per unit of weight.
    pub vnodes_per_member: u32,
    /// The members on the ring, sorted by name.
    pub members: Vec<RingMemberJson>,
}

/// One member of the ring.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RingMemberJson {
    /// The member's name.
    pub name: String,
    /// Its weight (from `weight=N` in its metadata; 1 by default).
    pub weight: u32,
    /// Its virtual nodes: weight × vnodes per member.
    pub vnodes: u64,
    /// The fraction of the hash space it owns, in `0.0..=1.0`; the shares sum to 1.
    pub share: f64,
}

impl From<&Ring> for RingJson {
    fn from(ring: &Ring) -> Self {
        let members = ring
            .shares()
            .into_iter()
            .map(|(name, share)| {
                let weight = ring
                    .weight(&name)
                    .expect("shares lists members of the ring");
                RingMemberJson {
                    name: name.to_string(),
                    weight,
                    vnodes: u64::from(weight) * u64::from(ring.vnodes_per_member()),
                    share,
                }
            })
            .collect();
        RingJson {
            checksum: format!("{:016x}", ring.checksum()),
            vnodes: ring.vnodes(),
            vnodes_per_member: ring.vnodes_per_member(),
            members,
        }
    }
}

/// Where one key lives, as `/v1/ring/owner` answers: the owner's name (`null` on an empty
/// ring), or with `replicas=N` the list of up to N members, owner first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Placement {
    /// Without `replicas`: the owner.
    Owner(Option<String>),
    /// With `replicas=N`: up to N distinct members, the owner first.
    Replicas(Vec<String>),
}

/// The node's ring, read on a blocking thread (see the module notes).
async fn ring_of(api: &ApiState) -> Result<Arc<Ring>, ApiError> {
    let node = api.node.clone();
    tokio::task::spawn_blocking(move || node.ring())
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `GET /v1/ring`: the ring's members, weights, virtual nodes and shares, and its checksum.
pub(super) async fn summary(State(api): State<ApiState>) -> Result<Json<RingJson>, ApiError> {
    Ok(Json(RingJson::from(&*ring_of(&api).await?)))
}

/// `GET /v1/ring/owner?key=K[&key=K2...][&replicas=N]`: an object mapping each key asked
/// about to its [`Placement`]. Keys are hashed as their UTF-8 bytes.
pub(super) async fn owner(
    State(api): State<ApiState>,
    RawQuery(query): RawQuery,
) -> Result<Json<BTreeMap<String, Placement>>, ApiError> {
    let query = OwnerQuery::parse(query.as_deref().unwrap_or(""))?;
    let ring = ring_of(&api).await?;
    let placements = query
        .keys
        .into_iter()
        .map(|key| {
            let placement = match query.replicas {
                None => Placement::Owner(ring.owner(key.as_bytes()).map(|n| n.to_string())),
                Some(n) => Placement::Replicas(
                    ring.replicas(key.as_bytes(), n)
                        .into_iter()
                        .map(|n| n.to_string())
                        .collect(),
                ),
            };
            (key, placement)
        })
        .collect();
    Ok(Json(placements))
}

/// The parameters of `/v1/ring/owner`.
#[derive(Debug, PartialEq)]
struct OwnerQuery {
    keys: Vec<String>,
    replicas: Option<usize>,
}

impl OwnerQuery {
    /// Reads `key` (repeatable, at least once, at most [`OWNER_KEYS_MAX`]) and an optional
    /// `replicas` (a whole number from 1). Anything else is refused, so a misspelt parameter
    /// is not silently ignored.
    fn parse(query: &str) -> Result<OwnerQuery, ApiError> {
        let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|e| bad(format!("malformed query string: {e}")))?;
        let mut keys = Vec::new();
        let mut replicas = None;
        for (name, value) in pairs {
            match name.as_str() {
                "key" => keys.push(value),
                "replicas" if replicas.is_some() => {
                    return Err(bad("replicas is given more than once".into()));
                }
                "replicas" => {
                    let n: usize = value.parse().map_err(|_| {
                        bad(format!("replicas must be a whole number, not {value:?}"))
                    })?;
                    if n == 0 {
                        return Err(bad("replicas must be at least 1".into()));
                    }
                    replicas = Some(n);
                }
                other => {
                    return Err(bad(format!(
                        "unknown query parameter {other:?}; expected key or replicas"
                    )));
                }
            }
        }
        if keys.is_empty() {
            return Err(bad("no key given; ask with ?key=K (repeatable)".into()));
        }
        if keys.len() > OWNER_KEYS_MAX {
            return Err(bad(format!(
                "{} keys asked at once; the limit is {OWNER_KEYS_MAX}",
                keys.len()
            )));
        }
        Ok(OwnerQuery { keys, replicas })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_name as name;

    #[test]
    fn query_takes_repeated_keys_and_replicas() {
        let q = OwnerQuery::parse("key=a&key=b%20c&replicas=3&key=").unwrap();
        assert_eq!(q.keys, ["a", "b c", ""]);
        assert_eq!(q.replicas, Some(3));
        let q = OwnerQuery::parse("key=user%3A1").unwrap();
        assert_eq!(q.keys, ["user:1"]);
        assert_eq!(q.replicas, None);
    }

    #[test]
    fn query_mistakes_are_refused_with_a_reason() {
        for (query, expect) in [
            ("", "no key"),
            ("replicas=2", "no key"),
            ("key=a&replicas=0", "at least 1"),
            ("key=a&replicas=two", "whole number"),
            ("key=a&replicas=-1", "whole number"),
            ("key=a&replicas=1&replicas=2", "more than once"),
            ("key=a&keys=b", "unknown query parameter \"keys\""),
        ] {
            let err = OwnerQuery::parse(query).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{query}");
            assert!(err.message.contains(expect), "{query}: {}", err.message);
        }
        let many = vec!["key=k"; OWNER_KEYS_MAX + 1].join("&");
        let err = OwnerQuery::parse(&many).unwrap_err();
        assert!(err.message.contains("limit"), "{}", err.message);
        let most = vec!["key=k"; OWNER_KEYS_MAX].join("&");
        assert!(OwnerQuery::parse(&most).is_ok());
    }

    #[test]
    fn summary_lists_weights_vnodes_and_shares() {
        let ring = Ring::new(8).with_members([(name("b"), 3), (name("a"), 1)]);
        let json = RingJson::from(&ring);
        assert_eq!(json.checksum, format!("{:016x}", ring.checksum()));
        assert_eq!(json.checksum.len(), 16);
        assert_eq!(json.vnodes, 32);
        assert_eq!(json.vnodes_per_member, 8);
        let rows: Vec<(&str, u32, u64)> = json
            .members
            .iter()
            .map(|m| (m.name.as_str(), m.weight, m.vnodes))
            .collect();
        assert_eq!(rows, [("a", 1, 8), ("b", 3, 24)]);
        let total: f64 = json.members.iter().map(|m| m.share).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
    }

    #[test]
    fn placements_serialize_as_a_name_or_a_list() {
        let owner = serde_json::to_string(&Placement::Owner(Some("a".into()))).unwrap();
        assert_eq!(owner, "\"a\"");
        let none = serde_json::to_string(&Placement::Owner(None)).unwrap();
        assert_eq!(none, "null");
        let list = serde_json::to_string(&Placement::Replicas(vec!["a".into(), "b".into()]));
        assert_eq!(list.unwrap(), "[\"a\",\"b\"]");
        for text in ["\"a\"", "null", "[\"a\",\"b\"]", "[]"] {
            let back: Placement = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), text);
        }
    }
}
