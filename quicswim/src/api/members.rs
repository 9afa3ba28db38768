//! `GET /v1/members`, optionally filtered:
//!
//! ```text
//!   GET /v1/members?state=alive,suspect   only members in one of these states
//!   GET /v1/members?name=web-*            only names matching the glob (`*` any run, `?` one)
//! ```
//!
//! Filtering is here, not in the client, so that a script with curl gets the same filters
//! and a large cluster's table is not sent whole to be cut down.

use std::net::SocketAddr;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::protocol::{Member, State as MemberState};
use crate::tls::CertificateInfo;

/// One member as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberJson {
    /// The member's name (its certificate's DNS SAN).
    pub name: String,
    /// The address it advertises.
    pub addr: SocketAddr,
    /// `alive`, `suspect`, `dead` or `left`, as this node sees it.
    pub state: String,
    /// Its incarnation as last heard.
    pub incarnation: u64,
    /// Its metadata, decoded as UTF-8 (invalid sequences become U+FFFD).
    pub meta: String,
    /// The serial number of its certificate as this node holds it, lowercase hex; `null`
    /// when none is held (a member forgotten). Changes on every node as a rotation rolls out.
    #[serde(default)]
    pub cert_serial: Option<String>,
    /// When that certificate expires, RFC 3339 (UTC, seconds).
    #[serde(default)]
    pub cert_not_after: Option<String>,
}

impl MemberJson {
    /// `m` as the API shows it, with `certificate` (what this node holds for it), if any.
    pub fn new(m: &Member, certificate: Option<CertificateInfo>) -> Self {
        Self {
            cert_serial: certificate.as_ref().map(|c| c.serial.clone()),
            cert_not_after: certificate
                .map(|c| humantime::format_rfc3339_seconds(c.not_after).to_string()),
            ..Self::from(m)
        }
    }
}

impl From<&Member> for MemberJson {
    fn from(m: &Member) -> Self {
        Self {
            name: m.name.to_string(),
            addr: m.addr,
            state: m.state.as_str().to_string(),
            incarnation: m.incarnation.0,
            meta: String::from_utf8_lossy(&m.meta).into_owned(),
            cert_serial: None,
            cert_not_after: None,
        }
    }
}

/// The query of `GET /v1/members`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Filter {
    /// States to keep, comma-separated.
    state: Option<String>,
    /// A glob over names.
    name: Option<String>,
}

impl Filter {
    /// The states to keep (all when none are given), or a 400 naming the stranger.
    fn states(&self) -> Result<Vec<&'static str>, ApiError> {
        let Some(list) = &self.state else {
            return Ok(STATES.to_vec());
        };
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                STATES.into_iter().find(|state| *state == s).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "unknown state {s:?}: expected alive, suspect, dead, left or banned"
                        ),
                    )
                })
            })
            .collect()
    }
}

/// Every state a member is shown in: the protocol's four, and `banned` for a member whose
/// certificate a revocation list names (cut off, whatever the protocol last heard of it).
const STATES: [&str; 5] = [
    MemberState::Alive.as_str(),
    MemberState::Suspect.as_str(),
    MemberState::Dead.as_str(),
    MemberState::Left.as_str(),
    BANNED,
];

/// The state shown for a banned member.
pub const BANNED: &str = "banned";

/// Every member known to this node, itself and tombstones included, sorted by name; only
/// those the query's filters keep.
pub(super) async fn list(
    State(api): State<ApiState>,
    filter: Result<Query<Filter>, QueryRejection>,
) -> Result<Json<Vec<MemberJson>>, ApiError> {
    let Query(filter) =
        filter.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let states = filter.states()?;
    let members = api.node.members().await?;
    Ok(Json(
        members
            .iter()
            .filter(|m| {
                filter
                    .name
                    .as_deref()
                    .is_none_or(|glob| glob_match(glob, m.name.as_str()))
            })
            .map(|m| match api.node.banned(&m.name) {
                Some(revoked) => MemberJson {
                    state: BANNED.into(),
                    ..MemberJson::new(m, Some(revoked))
                },
                None => MemberJson::new(m, api.node.certificate_info(&m.name)),
            })
            .filter(|m| states.contains(&m.state.as_str()))
            .collect(),
    ))
}

/// Whether `text` matches `glob`, where `*` stands for any run of characters (none
/// included) and `?` for exactly one; every other character stands for itself.
///
/// Hand-written rather than a crate: member names are short DNS labels, and these two
/// wildcards are all a filter over them needs (globset brings a regex engine for character
/// classes and `**` paths that names have no use for). The classic greedy matcher with one
/// backtrack point: linear in practice, `O(glob * text)` at worst.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let glob: Vec<char> = glob.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut g, mut t) = (0, 0);
    // Where the last `*` was, and the text position it is matched up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match glob.get(g) {
            Some('*') => {
                star = Some((g, t));
                g += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                g += 1;
                t += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more character and try again from there.
                Some((sg, st)) => {
                    star = Some((sg, st + 1));
                    g = sg + 1;
                    t = st + 1;
                }
                None => return false,
            },
        }
    }
    glob[g..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_literals_stars_and_question_marks() {
        assert!(glob_match("alice", "alice"));
        assert!(!glob_match("alice", "alice2"));
        assert!(!glob_match("alice2", "alice"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("web-*", "web-1"));
        assert!(glob_match("web-*", "web-"));
        assert!(!glob_match("web-*", "db-1"));
        assert!(glob_match("*-1", "web-1"));
        assert!(glob_match("w?b-*", "wab-17"));
        assert!(!glob_match("w?b", "wb"));
        assert!(glob_match("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!glob_match("*a*b*c*", "xxaxxcxxbxx"));
        assert!(glob_match("a*b*", "aXbYbZ"));
        assert!(glob_match("*ab", "aab"));
        assert!(glob_match("???", "abc"));
        assert!(!glob_match("???", "ab"));
        assert!(!glob_match("", "a"));
        assert!(glob_match("", ""));
    }

    #[test]
    fn glob_worst_case_stays_fast() {
        let text = "a".repeat(253);
        let glob = format!("{}b", "*a".repeat(60));
        assert!(!glob_match(&glob, &text));
    }

    #[test]
    fn state_filter_parses_lists_and_names_strangers() {
        let f = Filter {
            state: Some("alive, dead,banned".into()),
            name: None,
        };
        assert_eq!(f.states().unwrap(), ["alive", "dead", "banned"]);
        let bad = Filter {
            state: Some("alive,zombie".into()),
            name: None,
        };
        let err = bad.states().unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("\"zombie\""), "{}", err.message);
        assert_eq!(Filter::default().states().unwrap().len(), 5);
    }
}
