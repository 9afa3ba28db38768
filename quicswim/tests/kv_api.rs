//! The key/value and event routes of the control API, over real nodes on 127.0.0.1: round
//! trips between nodes, JSON shapes and the status of every refusal. Every wait is for a
//! condition under a deadline.

use quicswim_testkit as common;

use std::net::SocketAddr;

use common::*;
use quicswim::tls::CertAuthority;
use quicswim::Node;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OCTETS: Option<&str> = Some("application/octet-stream");
const JSON: Option<&str> = Some("application/json");

/// Two nodes, node-0 and node-1, alive to each other, each with its API.
async fn pair() -> (Vec<Node>, Vec<ApiServer>) {
    let ca = CertAuthority::generate("kv api test").unwrap();
    let nodes = start_alive_cluster(&ca, 2).await;
    let mut apis = Vec::new();
    for node in &nodes {
        apis.push(ApiServer::start(node).await);
    }
    (nodes, apis)
}

/// `PUT path` with a chunked body of `chunks`, written by hand so that no length is
/// declared; the answer's status line and body.
async fn put_chunked(api: SocketAddr, path: &str, chunks: &[&[u8]]) -> String {
    let mut request = format!(
        "PUT {path} HTTP/1.1\r\nhost: {api}\r\ntransfer-encoding: chunked\r\n\
         connection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in chunks {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let exchange = async {
        let mut stream = TcpStream::connect(api).await.unwrap();
        stream.write_all(&request).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        String::from_utf8(answer).unwrap()
    };
    let answer = tokio::time::timeout(DEADLINE, exchange)
        .await
        .expect("an answer");
    let status = answer.lines().next().unwrap_or_default();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    format!("{status}\n{body}")
}

async fn list(api: &ApiServer, path: &str) -> Vec<Value> {
    let answer = request(api.addr, "GET", path, None, vec![]).await;
    assert_eq!(answer.status, 200, "{}", answer.error());
    answer.json().as_array().expect("an array").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_set_over_the_api_are_read_listed_and_deleted_on_another_node() {
    let (nodes, apis) = pair().await;
    let (writer, reader) = (&apis[0], &apis[1]);

    let set = request(
        writer.addr,
        "PUT",
        "/v1/kv/colour",
        OCTETS,
        b"blue".to_vec(),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.error());
    let written = set.json();
    assert_eq!(written["owner"], "node-0");
    assert_eq!(written["key"], "colour");
    let first_version = written["version"].as_u64().expect("a version");
    assert_eq!(written.as_object().unwrap().len(), 3, "{written}");

    eventually("node-1 to serve node-0's colour", || async {
        let answer = request(reader.addr, "GET", "/v1/kv/node-0/colour", None, vec![]).await;
        answer.status == 200 && answer.body == b"blue"
    })
    .await;
    let answer = request(reader.addr, "GET", "/v1/kv/node-0/colour", None, vec![]).await;
    assert_eq!(answer.content_type.as_deref(), OCTETS);

    // A key with a slash (one encoded path segment) and a value that is not UTF-8.
    let set = request(writer.addr, "PUT", "/v1/kv/a%2Fb", None, vec![0xff, 0, 1]).await;
    assert_eq!(set.status, 200, "{}", set.error());
    assert_eq!(set.json()["key"], "a/b");
    eventually("node-1 to list both of node-0's keys", || async {
        list(reader, "/v1/kv").await.len() == 2
    })
    .await;
    let items = list(reader, "/v1/kv").await;
    assert_eq!(
        items[0],
        json!({"owner": "node-0", "key": "a/b", "value": null, "value_base64": "/wAB",
               "version": items[0]["version"]}),
        "sorted by owner then key; binary values only in base64"
    );
    assert_eq!(
        items[1],
        json!({"owner": "node-0", "key": "colour", "value": "blue", "value_base64": "Ymx1ZQ==",
               "version": first_version})
    );
    let answer = request(reader.addr, "GET", "/v1/kv/node-0/a%2Fb", None, vec![]).await;
    assert_eq!(answer.body, [0xff, 0, 1]);

    // Delete: a newer version, then gone everywhere; a second delete finds nothing.
    let deleted = request(writer.addr, "DELETE", "/v1/kv/colour", None, vec![]).await;
    assert_eq!(deleted.status, 200, "{}", deleted.error());
    assert_eq!(deleted.json()["owner"], "node-0");
    assert!(deleted.json()["version"].as_u64().unwrap() > first_version);
    eventually("the delete to reach node-1", || async {
        let answer = request(reader.addr, "GET", "/v1/kv/node-0/colour", None, vec![]).await;
        answer.status == 404
    })
    .await;
    let answer = request(reader.addr, "GET", "/v1/kv/node-0/colour", None, vec![]).await;
    assert!(answer.error().contains("colour"), "{}", answer.error());
    let again = request(writer.addr, "DELETE", "/v1/kv/colour", None, vec![]).await;
    assert_eq!(again.status, 404);
    assert!(again.error().contains("colour"), "{}", again.error());
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_writes_are_refused_with_a_status_and_a_message_naming_the_limit() {
    let (nodes, apis) = pair().await;
    let api = apis[0].addr;

    // Just over the limit: read whole, refused by the node with its exact size.
    let answer = request(api, "PUT", "/v1/kv/big", OCTETS, vec![b'x'; 70_000]).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.error(), "value is 70000 bytes; the limit is 65536");
    // Far over: cut off by the body limit, still our message with the declared size.
    let answer = request(api, "PUT", "/v1/kv/big", OCTETS, vec![b'x'; 1 << 20]).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.error(), "value is 1048576 bytes; the limit is 65536");
    // Sent in chunks with no declared length: read to the end and counted.
    assert_eq!(
        put_chunked(api, "/v1/kv/big", &[&[b'y'; 40_000], &[b'y'; 40_000]]).await,
        "HTTP/1.1 413 Payload Too Large\n{\"error\":\"value is 80000 bytes; the limit is 65536\"}"
    );
    // Exactly at the limit is fine.
    let answer = request(api, "PUT", "/v1/kv/big", OCTETS, vec![b'x'; 65_536]).await;
    assert_eq!(answer.status, 200, "{}", answer.error());

    let long_key = format!("/v1/kv/{}", "k".repeat(300));
    let answer = request(api, "PUT", &long_key, OCTETS, b"v".to_vec()).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.error(), "key is 300 bytes; the limit is 256");

    let answer = request(api, "PUT", "/v1/kv/%FF", OCTETS, b"v".to_vec()).await;
    assert_eq!(answer.status, 400, "a key that is not UTF-8");
    let answer = request(api, "GET", "/v1/kv/Not_A_Name/k", None, vec![]).await;
    assert_eq!(answer.status, 400);
    assert!(answer.error().contains("Not_A_Name"), "{}", answer.error());
    let answer = request(api, "GET", "/v1/kv/node-1/nothing", None, vec![]).await;
    assert_eq!(answer.status, 404);
    assert!(answer.error().contains("nothing"), "{}", answer.error());
    let answer = request(api, "GET", "/v1/kv/colour", None, vec![]).await;
    assert_eq!(answer.status, 405, "reading takes an owner");
    assert!(answer.error().contains("GET"), "{}", answer.error());

    // Nothing refused was stored.
    let items = list(&apis[0], "/v1/kv").await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["key"], "big");
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_over_the_api_are_listed_once_on_every_node() {
    let (nodes, apis) = pair().await;
    let body = |v: Value| serde_json::to_vec(&v).unwrap();

    let sent = request(
        apis[0].addr,
        "POST",
        "/v1/events",
        JSON,
        body(json!({"name": "deploy", "payload": "v1.2.3"})),
    )
    .await;
    assert_eq!(sent.status, 200, "{}", sent.error());
    let sent = sent.json();
    assert_eq!(sent["origin"], "node-0");
    let seq = sent["seq"].as_u64().expect("a sequence number");
    let raw = request(
        apis[1].addr,
        "POST",
        "/v1/events",
        JSON,
        body(json!({"name": "raw", "payload_base64": "/wE="})),
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.error());
    assert_eq!(raw.json()["origin"], "node-1");

    for api in &apis {
        eventually("both events on every node", || async {
            list(api, "/v1/events").await.len() == 2
        })
        .await;
    }
    for api in &apis {
        let events = list(api, "/v1/events").await;
        let deploy: Vec<&Value> = events.iter().filter(|e| e["name"] == "deploy").collect();
        assert_eq!(
            deploy,
            [
                &json!({"origin": "node-0", "seq": seq, "name": "deploy", "payload": "v1.2.3",
                     "payload_base64": "djEuMi4z"})
            ],
            "delivered once"
        );
        let raw: Vec<&Value> = events.iter().filter(|e| e["name"] == "raw").collect();
        assert_eq!(raw.len(), 1);
        assert_eq!(raw[0]["payload"], Value::Null);
        assert_eq!(raw[0]["payload_base64"], "/wE=");
    }

    // Refusals.
    let api = apis[0].addr;
    let big = "p".repeat(600);
    let answer = request(
        api,
        "POST",
        "/v1/events",
        JSON,
        body(json!({"name": "big", "payload": big})),
    )
    .await;
    assert_eq!(answer.status, 413);
    assert_eq!(
        answer.error(),
        "event payload is 600 bytes; the limit is 512"
    );
    let answer = request(api, "POST", "/v1/events", JSON, body(json!({"name": ""}))).await;
    assert_eq!(answer.status, 400);
    assert!(answer.error().contains("event name"), "{}", answer.error());
    let both = json!({"name": "x", "payload": "a", "payload_base64": "YQ=="});
    let answer = request(api, "POST", "/v1/events", JSON, body(both)).await;
    assert_eq!(answer.status, 400);
    let answer = request(api, "POST", "/v1/events", JSON, b"{not json".to_vec()).await;
    assert_eq!(answer.status, 400);
    assert!(!answer.error().is_empty());
    let answer = request(api, "POST", "/v1/events", None, body(json!({"name": "x"}))).await;
    assert_eq!(answer.status, 415, "a JSON body must say so");
    assert_eq!(list(&apis[0], "/v1/events").await.len(), 2, "none was sent");
    shutdown_all(&nodes).await;
}
