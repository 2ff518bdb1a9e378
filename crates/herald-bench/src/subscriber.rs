//! One SSE subscriber on a raw socket: connect (from a chosen loopback
//! source address), write the `GET`, read the response head, then decode
//! body → SSE → payload and account for every delivery until cancelled.

use std::{
    collections::BTreeMap,
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use herald_sse::{Decoder, Item};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    sync::Semaphore,
};
use tokio_util::sync::CancellationToken;

use crate::{
    http::{self, Body, HeadError},
    tally::{Payload, Recorder, Tally, Verdict},
    target::{self, Target},
    wall_ns,
};

/// Bytes read from the socket at a time. Small, because a bench process
/// holds up to ~20,000 of them; an SSE frame of the bench is ~100 bytes.
pub const READ_BUF: usize = 4 * 1024;

/// Failure messages kept as samples for the report.
const MAX_SAMPLES: usize = 5;

/// What every subscriber of a run shares.
#[derive(Debug)]
pub struct Shared {
    /// Latency histograms.
    pub recorder: Recorder,
    /// Bounds the connection attempts in flight.
    pub connect_permits: Semaphore,
    /// Ends every subscriber's stream.
    pub cancel: CancellationToken,
    /// Subscribers whose stream is open (got a 200 head).
    pub connected: AtomicU64,
    /// Subscribers that could not connect.
    pub failed: AtomicU64,
    /// Distinct deliveries so far, over all subscribers.
    pub delivered: AtomicU64,
    /// Subscribers connected on each topic.
    pub connected_per_topic: Mutex<Vec<u64>>,
    /// Why connections failed.
    pub failures: Mutex<Failures>,
}

impl Shared {
    /// State for subscribers over `topics` topics, with `concurrency`
    /// connection attempts at once.
    pub fn new(topics: u64, concurrency: usize) -> Self {
        Self {
            recorder: Recorder::default(),
            connect_permits: Semaphore::new(concurrency),
            cancel: CancellationToken::new(),
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            connected_per_topic: Mutex::new(vec![0; usize::try_from(topics).unwrap_or(0)]),
            failures: Mutex::default(),
        }
    }
}

/// Connection failures by kind.
#[derive(Clone, Debug, Default)]
pub struct Failures {
    /// `ECONNREFUSED`.
    pub refused: u64,
    /// No response head within the connect timeout.
    pub timed_out: u64,
    /// No local port or address left (`EADDRNOTAVAIL`, `EADDRINUSE`).
    pub no_local_port: u64,
    /// Out of file descriptors (`EMFILE`, `ENFILE`).
    pub no_fd: u64,
    /// Answered with another status than 200, by status.
    pub status: BTreeMap<u16, u64>,
    /// Anything else (reset, malformed head, ...).
    pub other: u64,
    /// The first few messages.
    pub samples: Vec<String>,
}

/// What one subscriber needs to know, shared by all.
#[derive(Debug)]
pub struct Spec {
    /// URL template.
    pub sub_url: String,
    /// Topic count.
    pub topics: u64,
    /// Events in the run (0 for `idle`).
    pub events: u64,
    /// Bearer token.
    pub token: Option<String>,
    /// `Last-Event-ID` to send.
    pub last_event_id: Option<String>,
    /// Source addresses 127.0.0.1 ..= 127.0.0.`source_ips`.
    pub source_ips: u8,
    /// Time allowed to connect and read the head.
    pub connect_timeout: Duration,
}

/// How a subscriber ended.
#[derive(Debug)]
pub enum Outcome {
    /// It never got a stream.
    Failed,
    /// It streamed; `ended` says why the stream ended before it was
    /// cancelled, if it did.
    Streamed {
        /// The subscriber's accounting.
        tally: Tally,
        /// Why the stream ended early (`None`: it was open until the end).
        ended: Option<String>,
    },
}

/// Runs subscriber `index` (global, after any `--index-offset`) until the
/// stream ends or `shared.cancel` fires.
pub async fn subscribe(shared: Arc<Shared>, spec: Arc<Spec>, index: u64) -> Outcome {
    let topic = index % spec.topics;
    let opened = {
        let Ok(_permit) = shared.connect_permits.acquire().await else {
            return Outcome::Failed;
        };
        tokio::select! {
            biased;
            () = shared.cancel.cancelled() => return Outcome::Failed,
            r = tokio::time::timeout(spec.connect_timeout, open(&spec, index, topic)) => r,
        }
    };
    let (mut stream, head, rest) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(failure)) => {
            fail(&shared, failure);
            return Outcome::Failed;
        }
        Err(_) => {
            fail(&shared, Failure::TimedOut);
            return Outcome::Failed;
        }
    };
    {
        let mut per_topic = shared
            .connected_per_topic
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_topic.get_mut(topic as usize) {
            *n += 1;
        }
    }
    shared.connected.fetch_add(1, Ordering::Relaxed);

    let mut reader = StreamReader {
        body: Body::new(head.framing),
        sse: Decoder::new(),
        tally: Tally::new(topic, spec.topics, spec.events),
        batch: Vec::new(),
    };
    if let Err(why) = reader.process(&shared, index, &rest) {
        return reader.finish(Some(why));
    }
    let mut buf = vec![0; READ_BUF];
    let cancelled = shared.cancel.cancelled();
    tokio::pin!(cancelled);
    let ended = loop {
        let n = tokio::select! {
            biased;
            () = &mut cancelled => break None,
            r = stream.read(&mut buf) => r,
        };
        match n {
            Ok(0) => break Some("closed by the server".to_owned()),
            Ok(n) => {
                if let Err(why) = reader.process(&shared, index, &buf[..n]) {
                    break Some(why);
                }
            }
            Err(e) => break Some(format!("read: {e}")),
        }
    };
    reader.finish(ended)
}

/// Per-stream decoding state.
struct StreamReader {
    body: Body,
    sse: Decoder,
    tally: Tally,
    /// Payloads delivered in the current read, for the latency recorder.
    batch: Vec<Payload>,
}

impl StreamReader {
    /// Handles bytes read from the socket; `Err` says why the stream is
    /// over.
    fn process(&mut self, shared: &Shared, index: u64, bytes: &[u8]) -> Result<(), String> {
        if bytes.is_empty() {
            return Ok(());
        }
        let now_ns = wall_ns();
        let sse = &mut self.sse;
        self.body
            .decode(bytes, |chunk| sse.push(chunk))
            .map_err(|e| e.to_string())?;
        self.batch.clear();
        loop {
            match self.sse.next_item() {
                Ok(Some(Item::Message(message))) => match Payload::parse(&message.data) {
                    Some(payload) => match self.tally.record(&payload) {
                        Verdict::New | Verdict::OutOfOrder => self.batch.push(payload),
                        Verdict::Duplicate | Verdict::Unexpected => {}
                    },
                    None => self.tally.ignored += 1,
                },
                Ok(Some(Item::Retry(_) | Item::Comment(_))) => {}
                Ok(None) => break,
                Err(e) => return Err(format!("SSE: {e}")),
            }
        }
        if !self.batch.is_empty() {
            shared.recorder.record(index, now_ns, &self.batch);
            shared
                .delivered
                .fetch_add(self.batch.len() as u64, Ordering::Relaxed);
            self.tally.last_delivery_ns = now_ns;
        }
        if self.body.is_done() {
            return Err("the response body ended".to_owned());
        }
        Ok(())
    }

    fn finish(self, ended: Option<String>) -> Outcome {
        Outcome::Streamed {
            tally: self.tally,
            ended,
        }
    }
}

/// Why a connection attempt failed.
#[derive(Debug)]
enum Failure {
    Io(io::Error),
    TimedOut,
    Status(u16),
    Protocol(String),
}

fn fail(shared: &Shared, failure: Failure) {
    shared.failed.fetch_add(1, Ordering::Relaxed);
    let mut failures = shared.failures.lock().unwrap_or_else(|e| e.into_inner());
    let message = match &failure {
        Failure::Io(e) => {
            match e.kind() {
                io::ErrorKind::ConnectionRefused => failures.refused += 1,
                io::ErrorKind::AddrNotAvailable | io::ErrorKind::AddrInUse => {
                    failures.no_local_port += 1;
                }
                _ if matches!(e.raw_os_error(), Some(23 | 24)) => failures.no_fd += 1,
                _ => failures.other += 1,
            }
            e.to_string()
        }
        Failure::TimedOut => {
            failures.timed_out += 1;
            "timed out".to_owned()
        }
        Failure::Status(status) => {
            *failures.status.entry(*status).or_default() += 1;
            format!("status {status}")
        }
        Failure::Protocol(why) => {
            failures.other += 1;
            why.clone()
        }
    };
    if failures.samples.len() < MAX_SAMPLES && !failures.samples.contains(&message) {
        failures.samples.push(message);
    }
}

/// Connects, sends the request and reads the head. Returns the stream,
/// the head and the body bytes read with it.
async fn open(
    spec: &Spec,
    index: u64,
    topic: u64,
) -> Result<(TcpStream, http::Head, Vec<u8>), Failure> {
    let url = target::expand(&spec.sub_url, topic, index);
    let target = Target::parse(&url).map_err(|e| Failure::Protocol(format!("{e:#}")))?;
    let mut stream = connect(target.addr, source_ip(index, spec.source_ips, target.addr))
        .await
        .map_err(Failure::Io)?;
    let request = http::request(
        &target.authority,
        &target.path_and_query,
        spec.token.as_deref(),
        spec.last_event_id.as_deref(),
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(Failure::Io)?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(Failure::Io)?;
        if n == 0 {
            return Err(Failure::Protocol(
                "connection closed before the response head".to_owned(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        match http::parse_head(&buf) {
            Ok((head, len)) if head.status == 200 => {
                let rest = buf.split_off(len);
                return Ok((stream, head, rest));
            }
            Ok((head, _)) => return Err(Failure::Status(head.status)),
            Err(HeadError::Incomplete) => {}
            Err(e) => return Err(Failure::Protocol(e.to_string())),
        }
    }
}

/// The source address of subscriber `index`: 127.0.0.(1 + index % n) when
/// spreading over `n > 1` addresses to an IPv4 target; otherwise the
/// kernel's choice.
pub fn source_ip(index: u64, n: u8, target: SocketAddr) -> Option<IpAddr> {
    if n <= 1 || !target.is_ipv4() {
        return None;
    }
    let last = 1 + (index % u64::from(n)) as u8;
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
}

async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses() {
        let v4: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let v6: SocketAddr = "[::1]:8080".parse().unwrap();
        assert_eq!(source_ip(5, 1, v4), None);
        assert_eq!(source_ip(0, 4, v4), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(source_ip(5, 4, v4), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(
            source_ip(253, 254, v4),
            Some("127.0.0.254".parse().unwrap())
        );
        assert_eq!(source_ip(254, 254, v4), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(source_ip(5, 4, v6), None);
    }

    /// A stream's bytes, fed in arbitrary pieces, are accounted exactly.
    #[test]
    fn stream_accounting() {
        let chunk = |sse: &str| format!("{:x}\r\n{sse}\r\n", sse.len());
        let frame = |seq: u64| {
            let data = Payload {
                seq,
                sent_ns: 1,
                sched_ns: 1,
                topic: 0,
            }
            .to_json(0);
            chunk(&format!("id: {seq}\ndata: {data}\n\n"))
        };
        let mut wire = chunk("retry: 3000\n\n");
        wire.push_str(&chunk("event: connected\ndata: hi\n\n"));
        for seq in [0, 1, 1, 3, 2, 5] {
            wire.push_str(&frame(seq));
        }
        for piece in [1, 7, 100, wire.len()] {
            let shared = Shared::new(1, 1);
            let mut reader = StreamReader {
                body: Body::new(http::Framing::Chunked),
                sse: Decoder::new(),
                tally: Tally::new(0, 1, 6),
                batch: Vec::new(),
            };
            for chunk in wire.as_bytes().chunks(piece) {
                reader.process(&shared, 0, chunk).unwrap();
            }
            let t = &reader.tally;
            let (expected, lost) = t.expected_and_lost(&[0, 1, 2, 3, 4, 5]);
            assert_eq!(
                (
                    t.delivered,
                    t.duplicates,
                    t.out_of_order,
                    t.ignored,
                    expected,
                    lost
                ),
                (5, 1, 1, 1, 6, 1),
                "pieces of {piece}"
            );
            assert_eq!(shared.delivered.load(Ordering::Relaxed), 5);
            assert_eq!(shared.recorder.merged().from_send.len(), 5);
        }
    }
}
