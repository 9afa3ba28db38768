//! A small DNS server on 127.0.0.1 for tests of seeds by name: A, AAAA and SRV records that
//! the test sets and changes while nodes resolve them. Answers carry a TTL of zero; a name
//! with no record at all is NXDOMAIN.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

type Records = HashMap<String, Vec<RData>>;

/// The server; it stops when dropped.
pub struct TestDns {
    addr: SocketAddr,
    records: Arc<Mutex<Records>>,
    queries: Arc<Mutex<HashMap<String, usize>>>,
    task: JoinHandle<()>,
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Names compare lowercased and fully qualified.
fn key(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    if name.ends_with('.') {
        name
    } else {
        format!("{name}.")
    }
}

impl TestDns {
    pub async fn start() -> TestDns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind test dns");
        let addr = socket.local_addr().expect("test dns address");
        let records = Arc::new(Mutex::new(Records::new()));
        let queries = Arc::new(Mutex::new(HashMap::new()));
        let task = tokio::spawn(serve(socket, records.clone(), queries.clone()));
        TestDns {
            addr,
            records,
            queries,
            task,
        }
    }

    /// Where to send queries (the node's nameserver, the agent's `--dns-server`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `name`'s A and AAAA records become `ips` (none: NXDOMAIN).
    pub fn set_ips(&self, name: &str, ips: &[IpAddr]) {
        let rdata = ips
            .iter()
            .map(|ip| match ip {
                IpAddr::V4(v4) => RData::A(A(*v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
            })
            .collect();
        self.set(name, rdata);
    }

    /// `name`'s SRV records become `targets` (target name, port).
    pub fn set_srv(&self, name: &str, targets: &[(&str, u16)]) {
        let rdata = targets
            .iter()
            .map(|(target, port)| {
                let target = Name::from_ascii(key(target)).expect("valid target name");
                RData::SRV(SRV::new(0, 0, *port, target))
            })
            .collect();
        self.set(name, rdata);
    }

    /// Queries received for `name`, of any type.
    pub fn queries(&self, name: &str) -> usize {
        let queries = self.queries.lock().expect("queries lock");
        queries.get(&key(name)).copied().unwrap_or(0)
    }

    fn set(&self, name: &str, rdata: Vec<RData>) {
        let mut records = self.records.lock().expect("records lock");
        if rdata.is_empty() {
            records.remove(&key(name));
        } else {
            records.insert(key(name), rdata);
        }
    }
}

async fn serve(
    socket: UdpSocket,
    records: Arc<Mutex<Records>>,
    queries: Arc<Mutex<HashMap<String, usize>>>,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let Ok(request) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        let Some(query) = request.queries().first().cloned() else {
            continue;
        };
        let name = key(&query.name().to_ascii());
        *queries
            .lock()
            .expect("queries lock")
            .entry(name.clone())
            .or_default() += 1;
        let mut reply = Message::new();
        reply
            .set_id(request.id())
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(request.recursion_desired())
            .set_recursion_available(true)
            .set_authoritative(true)
            .add_query(query.clone());
        let found = records.lock().expect("records lock").get(&name).cloned();
        match found {
            None => {
                reply.set_response_code(ResponseCode::NXDomain);
            }
            Some(rdata) => {
                let wanted = query.query_type();
                for r in rdata {
                    let matches = matches!(
                        (&r, wanted),
                        (RData::A(_), RecordType::A)
                            | (RData::AAAA(_), RecordType::AAAA)
                            | (RData::SRV(_), RecordType::SRV)
                    );
                    if matches {
                        reply.add_answer(Record::from_rdata(query.name().clone(), 0, r));
                    }
                }
            }
        }
        if let Ok(bytes) = reply.to_vec() {
            let _ = socket.send_to(&bytes, from).await;
        }
    }
}
