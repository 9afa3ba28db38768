//! The agents' control APIs, reached from the host at each container's own address (the host
//! routes to its bridge networks; nothing is published). Every call has a short timeout and
//! returns an error rather than panicking: nodes are killed and cut off on purpose here.

use std::time::Duration;

use serde_json::Value;
use tokio::runtime::Runtime;

/// One member as a node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub name: String,
    pub state: String,
    pub incarnation: u64,
}

const OCTETS: &str = "application/octet-stream";
const NONE: (&str, Vec<u8>) = (OCTETS, Vec::new());

pub type Result<T> = std::result::Result<T, String>;

/// A runtime for the HTTP calls and the monitor streams, and one client.
pub struct Api {
    pub rt: Runtime,
    client: reqwest::Client,
}

impl Api {
    pub fn new() -> Api {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        Api {
            rt,
            client: client(),
        }
    }

    /// `METHOD path` with `body` of `content_type`: the status and the body.
    fn call(
        &self,
        method: reqwest::Method,
        api: &str,
        path: &str,
        (content_type, body): (&str, Vec<u8>),
    ) -> Result<(u16, Vec<u8>)> {
        let request = self
            .client
            .request(method, format!("http://{api}{path}"))
            .timeout(Duration::from_secs(5))
            .header("content-type", content_type)
            .body(body);
        self.rt.block_on(async {
            let answer = request
                .send()
                .await
                .map_err(|e| format!("{api}{path}: {e}"))?;
            let status = answer.status().as_u16();
            let body = answer
                .bytes()
                .await
                .map_err(|e| format!("{api}{path}: {e}"))?;
            Ok((status, body.to_vec()))
        })
    }

    fn json(&self, api: &str, path: &str) -> Result<Value> {
        let (status, body) = self.call(reqwest::Method::GET, api, path, NONE)?;
        if status != 200 {
            return Err(format!("{api}{path}: status {status}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{api}{path}: not JSON: {e}"))
    }

    /// `GET /v1/members`.
    pub fn members(&self, api: &str) -> Result<Vec<View>> {
        let list = self.json(api, "/v1/members")?;
        let list = list.as_array().ok_or("members: not an array")?;
        Ok(list
            .iter()
            .map(|m| View {
                name: m["name"].as_str().unwrap_or_default().to_string(),
                state: m["state"].as_str().unwrap_or_default().to_string(),
                incarnation: m["incarnation"].as_u64().unwrap_or_default(),
            })
            .collect())
    }

    /// `GET /metrics`: the Prometheus text.
    pub fn metrics(&self, api: &str) -> Result<String> {
        let (status, body) = self.call(reqwest::Method::GET, api, "/metrics", NONE)?;
        if status != 200 {
            return Err(format!("{api}/metrics: status {status}"));
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// The status of `GET /ready`.
    pub fn ready(&self, api: &str) -> Result<u16> {
        Ok(self.call(reqwest::Method::GET, api, "/ready", NONE)?.0)
    }

    /// `PUT /v1/kv/{key}`: a key of that node's own.
    pub fn kv_set(&self, api: &str, key: &str, value: &str) -> Result<()> {
        let path = format!("/v1/kv/{key}");
        let (status, body) = self.call(
            reqwest::Method::PUT,
            api,
            &path,
            (OCTETS, value.as_bytes().to_vec()),
        )?;
        if status == 200 {
            Ok(())
        } else {
            Err(format!(
                "{api}{path}: status {status}: {}",
                String::from_utf8_lossy(&body)
            ))
        }
    }

    /// `GET /v1/kv`: every (owner, key, value) the node holds; deletes are left out.
    pub fn kv_list(&self, api: &str) -> Result<Vec<(String, String, String)>> {
        let list = self.json(api, "/v1/kv")?;
        let list = list.as_array().ok_or("kv: not an array")?;
        Ok(list
            .iter()
            .filter(|e| !e["value_base64"].is_null())
            .map(|e| {
                let text = |f: &str| e[f].as_str().unwrap_or_default().to_string();
                (text("owner"), text("key"), text("value"))
            })
            .collect())
    }

    /// `POST /v1/events`: returns the event's sequence number.
    pub fn publish(&self, api: &str, name: &str, payload: &str) -> Result<u64> {
        let body = serde_json::json!({"name": name, "payload": payload}).to_string();
        let (status, answer) = self.call(
            reqwest::Method::POST,
            api,
            "/v1/events",
            ("application/json", body.into_bytes()),
        )?;
        if status != 200 {
            return Err(format!("publish on {api}: status {status}"));
        }
        let answer: Value =
            serde_json::from_slice(&answer).map_err(|e| format!("publish on {api}: {e}"))?;
        answer["seq"]
            .as_u64()
            .ok_or_else(|| format!("publish on {api}: no seq in {answer}"))
    }
}

/// A client for plain HTTP to container addresses: no proxy (a proxy set in the environment
/// could not reach them), no redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("an HTTP client")
}
