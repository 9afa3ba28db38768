//! The control API's access checks (bearer token, Host header) and its paginated key/value
//! listing, on a real node and a real HTTP server on 127.0.0.1.

use quicswim_testkit as common;

use std::collections::BTreeSet;

use common::*;
use quicswim::api::{ServeOptions, NEXT_PAGE_HEADER};
use quicswim::tls::CertAuthority;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_only_probes_answer_without_it() {
    let ca = CertAuthority::generate("guard").unwrap();
    let node = start(identity(&ca, "alice"), vec![]).await;
    let options = ServeOptions {
        token: Some("s3cret".into()),
        ..ServeOptions::default()
    };
    let api = ApiServer::start_with(&node, options).await;
    for path in ["/v1/members", "/v1/kv", "/metrics"] {
        let answer = request_with(api.addr, "GET", path, &[], vec![]).await;
        assert_eq!(answer.status, 401, "{path}");
        assert!(
            answer.error().contains("bearer token"),
            "{}",
            answer.error()
        );
        let wrong = [("authorization", "Bearer s3cre7")];
        assert_eq!(
            request_with(api.addr, "GET", path, &wrong, vec![])
                .await
                .status,
            401
        );
        let right = [("authorization", "Bearer s3cret")];
        assert_eq!(
            request_with(api.addr, "GET", path, &right, vec![])
                .await
                .status,
            200
        );
    }
    let put = request_with(api.addr, "PUT", "/v1/kv/k", &[], b"v".to_vec()).await;
    assert_eq!(put.status, 401);
    assert_eq!(
        node.kv_entries().await.unwrap().len(),
        0,
        "refused, so not written"
    );
    for path in ["/health", "/ready"] {
        let answer = request_with(api.addr, "GET", path, &[], vec![]).await;
        assert_ne!(answer.status, 401, "{path}");
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_host_name_is_refused_and_addresses_are_not() {
    let ca = CertAuthority::generate("guard").unwrap();
    let node = start(identity(&ca, "alice"), vec![]).await;
    let options = ServeOptions {
        hosts: vec!["api.internal".into()],
        ..ServeOptions::default()
    };
    let api = ApiServer::start_with(&node, options).await;
    let rebound = [("host", "evil.example:7947")];
    let answer = request_with(api.addr, "GET", "/v1/members", &rebound, vec![]).await;
    assert_eq!(answer.status, 421);
    assert!(
        answer.error().contains("evil.example"),
        "{}",
        answer.error()
    );
    for host in ["localhost:7947", "api.internal", "127.0.0.1:7947"] {
        let answer = request_with(api.addr, "GET", "/v1/members", &[("host", host)], vec![]).await;
        assert_eq!(answer.status, 200, "{host}");
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_value_listing_comes_a_page_at_a_time_and_whole() {
    let ca = CertAuthority::generate("pages").unwrap();
    let node = start(identity(&ca, "alice"), vec![]).await;
    for i in 0..25 {
        node.set(&format!("key/{i:02}"), vec![b'v'; i])
            .await
            .unwrap();
    }
    let api = ApiServer::start(&node).await;
    let mut seen = Vec::new();
    let mut next = Some("/v1/kv?limit=10".to_string());
    let mut pages = 0;
    while let Some(path) = next.take() {
        let answer = request_with(api.addr, "GET", &path, &[], vec![]).await;
        assert_eq!(answer.status, 200, "{path}");
        let page = answer.json();
        let page = page.as_array().unwrap();
        assert!(page.len() <= 10);
        seen.extend(page.iter().map(|e| e["key"].as_str().unwrap().to_string()));
        next = answer
            .headers
            .get(NEXT_PAGE_HEADER)
            .map(|v| v.to_str().unwrap().to_string());
        pages += 1;
        assert!(pages <= 4, "more pages than entries allow");
    }
    let expected: Vec<String> = (0..25).map(|i| format!("key/{i:02}")).collect();
    assert_eq!(seen, expected, "every entry once, in order");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 25);

    let bad = request_with(api.addr, "GET", "/v1/kv?limit=0", &[], vec![]).await;
    assert_eq!(bad.status, 400);
    let bad = request_with(api.addr, "GET", "/v1/kv?after=nocursor", &[], vec![]).await;
    assert_eq!(bad.status, 400);
    node.shutdown().await;
}
