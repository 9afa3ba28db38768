//! Helpers shared by the integration tests that talk to the control API.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// `GET path` on the API at `addr`: the status and the body as text. Panics if the exchange
/// fails or takes over 10 s.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let exchange = async {
        let stream = TcpStream::connect(addr).await.expect("connect to the API");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1 handshake");
        let driver = tokio::spawn(connection);
        let request = Request::get(path)
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())
            .expect("valid request");
        let answer = sender.send_request(request).await.expect("an answer");
        let status = answer.status().as_u16();
        let body = answer
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        driver.abort();
        (
            status,
            String::from_utf8(body.to_vec()).expect("UTF-8 body"),
        )
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| panic!("GET {path} on {addr} took over 10 s"))
}

/// The value of the first sample of `name` whose labels include `label` (`key="value"`), in
/// a Prometheus text exposition.
pub fn metric(text: &str, name: &str, label: Option<&str>) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            let series = line.rsplit_once(' ').map_or(*line, |(s, _)| s);
            let (metric_name, labels) = series.split_once('{').unwrap_or((series, ""));
            metric_name == name && label.is_none_or(|l| labels.contains(l))
        })
        .and_then(|line| line.rsplit_once(' '))
        .and_then(|(_, value)| value.parse().ok())
}
