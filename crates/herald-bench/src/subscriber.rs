//! One SSE subscriber on a raw socket: connect (from a chosen loopback
//! source address), write the `GET`, read the response head, then decode
//! body → SSE → payload and account for every delivery until cancelled.
//!
//! With `--http2` the subscriber is a stream on a connection it shares
//! (`h2c.rs`); its DATA frames go through the same SSE decoding and
//! accounting.

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

use bytes::Bytes;
use herald_sse::{Decoder, Item};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    sync::Semaphore,
};
use tokio_util::sync::CancellationToken;

use crate::{
    h2c,
    http::{self, Body, Framing, HeadError},
    reversal::Reversals,
    tally::{Payload, Recorder, Tally, Verdict, events_on_topic},
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
    /// Events delivered after a later one, classified at the end of the run.
    pub reversals: Reversals,
    /// Bounds the connection attempts in flight.
    pub connect_permits: Semaphore,
    /// Ends every subscriber's stream.
    pub cancel: CancellationToken,
    /// Subscribers whose stream is open (got a 200 head).
    pub connected: AtomicU64,
    /// Subscribers that could not connect.
    pub failed: AtomicU64,
    /// HTTP/1 connections opened (TCP connected), reconnects included.
    pub h1_connections: AtomicU64,
    /// Distinct deliveries so far, over all subscribers.
    pub delivered: AtomicU64,
    /// Subscribers connected on each topic.
    pub connected_per_topic: Mutex<Vec<u64>>,
    /// Why connections failed.
    pub failures: Mutex<Failures>,
    /// The reconnect storm, when the run has one.
    pub storm: Storm,
}

/// The reconnect storm's shared state: the run fires `drop` (every subscriber closes its
/// stream), sets `boundary`, then fires `reconnect`.
#[derive(Debug, Default)]
pub struct Storm {
    /// Closes every stream (each subscriber then waits for `reconnect`).
    pub drop: CancellationToken,
    /// Reopens every dropped stream with `Last-Event-ID`.
    pub reconnect: CancellationToken,
    /// When `reconnect` fired (set just before): catch-up times count from here, not from
    /// when each subscriber's task first ran after it.
    pub reconnect_at: std::sync::OnceLock<tokio::time::Instant>,
    /// Events `0..boundary` were published before the reconnects started: a subscriber
    /// is caught up once it has all of them (of its topic).
    pub boundary: AtomicU64,
    /// Streams closed by `drop`.
    pub dropped: AtomicU64,
    /// Dropped subscribers that sent no `Last-Event-ID` (no event with an `id` before).
    pub without_id: AtomicU64,
    /// Streams reopened (status 200).
    pub reconnected: AtomicU64,
    /// Reconnects that failed.
    pub failed: AtomicU64,
    /// Reconnected subscribers that have every event before `boundary`.
    pub caught_up: AtomicU64,
    /// Per caught-up subscriber: µs from the reconnect signal to catching up.
    pub catch_up_us: Mutex<Vec<u64>>,
    /// The first few reconnect failures.
    pub failure_samples: Mutex<Vec<String>>,
}

impl Shared {
    /// State for subscribers over `topics` topics, with `concurrency`
    /// connection attempts at once.
    pub fn new(topics: u64, concurrency: usize) -> Self {
        Self {
            recorder: Recorder::default(),
            reversals: Reversals::default(),
            connect_permits: Semaphore::new(concurrency),
            cancel: CancellationToken::new(),
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            h1_connections: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            connected_per_topic: Mutex::new(vec![0; usize::try_from(topics).unwrap_or(0)]),
            failures: Mutex::default(),
            storm: Storm::default(),
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
    /// Drop and reconnect on the [`Storm`] signals.
    pub reconnect: bool,
    /// With `--http2`: the shared connections, each subscriber a stream on one.
    pub http2: Option<h2c::Connections>,
    /// `app` mode: each subscriber is a member's app stream, with its own URL and cookie,
    /// and its payloads are the titles of created todos.
    pub app: Option<Arc<crate::app::World>>,
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
            r = tokio::time::timeout(spec.connect_timeout, open(&shared, &spec, index, topic, None)) => r,
        }
    };
    let (mut wire, framing, rest) = match opened {
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
        body: Body::new(framing),
        sse: Decoder::new(),
        tally: Tally::new(topic, spec.topics, spec.events),
        batch: Vec::new(),
        reversed: Vec::new(),
        last_id: String::new(),
        catch_up: None,
        app: spec.app.is_some(),
    };
    let mut buf = vec![0; READ_BUF];
    let drop_signal = spec.reconnect.then_some(&shared.storm.drop);
    match reader
        .stream(&shared, index, &mut wire, &rest, &mut buf, drop_signal)
        .await
    {
        Ended::Dropped => {}
        Ended::Cancelled => return reader.finish(None),
        Ended::Early(why) => return reader.finish(Some(why)),
    }
    drop(wire);
    let storm = &shared.storm;
    storm.dropped.fetch_add(1, Ordering::Relaxed);
    tokio::select! {
        biased;
        () = shared.cancel.cancelled() => return reader.finish(None),
        () = storm.reconnect.cancelled() => {}
    }
    let started = *storm.reconnect_at.get_or_init(tokio::time::Instant::now);
    let last_id = (!reader.last_id.is_empty()).then(|| reader.last_id.clone());
    if last_id.is_none() {
        storm.without_id.fetch_add(1, Ordering::Relaxed);
    }
    let reopened = {
        let Ok(_permit) = shared.connect_permits.acquire().await else {
            return reader.finish(Some("reconnect: no permit".to_owned()));
        };
        tokio::select! {
            biased;
            () = shared.cancel.cancelled() => Err(Failure::TimedOut),
            r = tokio::time::timeout(
                spec.connect_timeout,
                open(&shared, &spec, index, topic, last_id.as_deref()),
            ) => r.unwrap_or(Err(Failure::TimedOut)),
        }
    };
    let (mut wire, framing, rest) = match reopened {
        Ok(opened) => opened,
        Err(failure) => {
            storm.failed.fetch_add(1, Ordering::Relaxed);
            let why = format!("reconnect: {}", failure.message());
            let mut samples = storm
                .failure_samples
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if samples.len() < MAX_SAMPLES && !samples.contains(&why) {
                samples.push(why.clone());
            }
            drop(samples);
            return reader.finish(Some(why));
        }
    };
    storm.reconnected.fetch_add(1, Ordering::Relaxed);
    let boundary = storm.boundary.load(Ordering::Relaxed);
    reader.body = Body::new(framing);
    reader.sse = Decoder::new();
    reader.catch_up = Some(CatchUp {
        boundary,
        expected: events_on_topic(topic, spec.topics, boundary.min(spec.events)),
        started,
    });
    reader.check_caught_up(&shared);
    match reader
        .stream(&shared, index, &mut wire, &rest, &mut buf, None)
        .await
    {
        Ended::Dropped | Ended::Cancelled => reader.finish(None),
        Ended::Early(why) => reader.finish(Some(why)),
    }
}

/// Why [`StreamReader::stream`] returned.
enum Ended {
    /// `shared.cancel`: the run is over.
    Cancelled,
    /// The storm's `drop` signal.
    Dropped,
    /// The stream ended on its own, for this reason.
    Early(String),
}

/// A reconnected subscriber's progress towards every event published before the
/// reconnects.
struct CatchUp {
    boundary: u64,
    expected: u64,
    started: tokio::time::Instant,
}

/// Per-stream decoding state.
struct StreamReader {
    body: Body,
    sse: Decoder,
    tally: Tally,
    /// Payloads delivered in the current read, for the latency recorder.
    batch: Vec<Payload>,
    /// Reversals `(a, b)` in the current read, for `shared.reversals`.
    reversed: Vec<(u64, u64)>,
    /// The `Last-Event-ID` of the last message, to resume with.
    last_id: String,
    /// Set once reconnected, until caught up.
    catch_up: Option<CatchUp>,
    /// Payloads are the titles of `todos:created` events (`app` mode).
    app: bool,
}

impl StreamReader {
    /// Processes `rest` then the stream until it ends, `shared.cancel` fires, or `drop`
    /// (when given) fires.
    async fn stream(
        &mut self,
        shared: &Shared,
        index: u64,
        wire: &mut Wire,
        rest: &[u8],
        buf: &mut [u8],
        drop: Option<&CancellationToken>,
    ) -> Ended {
        if let Err(why) = self.process(shared, index, rest) {
            return Ended::Early(why);
        }
        let never = CancellationToken::new();
        let drop = drop.unwrap_or(&never);
        loop {
            let read = tokio::select! {
                biased;
                () = shared.cancel.cancelled() => return Ended::Cancelled,
                () = drop.cancelled() => return Ended::Dropped,
                r = wire.read(buf) => r,
            };
            let processed = match read {
                Ok(Read::Buf(0) | Read::End) => {
                    return Ended::Early("closed by the server".to_owned());
                }
                Ok(Read::Buf(n)) => self.process(shared, index, &buf[..n]),
                Ok(Read::Frame(data)) => self.process(shared, index, &data),
                Err(why) => return Ended::Early(format!("read: {why}")),
            };
            if let Err(why) = processed {
                return Ended::Early(why);
            }
        }
    }

    /// Counts this subscriber as caught up once it has every event before the boundary.
    fn check_caught_up(&mut self, shared: &Shared) {
        let Some(catch_up) = &self.catch_up else {
            return;
        };
        if self.tally.seen_before(catch_up.boundary) >= catch_up.expected {
            let us = catch_up.started.elapsed().as_micros() as u64;
            self.catch_up = None;
            let storm = &shared.storm;
            storm
                .catch_up_us
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(us);
            storm.caught_up.fetch_add(1, Ordering::Relaxed);
        }
    }

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
        self.reversed.clear();
        loop {
            match self.sse.next_item() {
                Ok(Some(Item::Message(message))) => {
                    if message.last_event_id != self.last_id {
                        self.last_id.clone_from(&message.last_event_id);
                    }
                    let payload = if self.app {
                        crate::app::payload_of(&message.event, &message.data)
                    } else {
                        Payload::parse(&message.data)
                    };
                    match payload {
                        Some(payload) => match self.tally.record(&payload) {
                            Verdict::New => self.batch.push(payload),
                            Verdict::Reversal { after } => {
                                self.batch.push(payload);
                                self.reversed.push((payload.seq, after));
                            }
                            Verdict::Duplicate | Verdict::Unexpected => {}
                        },
                        None => self.tally.ignored += 1,
                    }
                }
                Ok(Some(Item::Retry(_) | Item::Comment(_))) => {}
                Ok(None) => break,
                Err(e) => return Err(format!("SSE: {e}")),
            }
        }
        shared.reversals.record(index, &self.reversed);
        if !self.batch.is_empty() {
            shared.recorder.record(index, now_ns, &self.batch);
            shared
                .delivered
                .fetch_add(self.batch.len() as u64, Ordering::Relaxed);
            self.tally.last_delivery_ns = now_ns;
            self.check_caught_up(shared);
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

impl Failure {
    fn message(&self) -> String {
        match self {
            Failure::Io(e) => e.to_string(),
            Failure::TimedOut => "timed out".to_owned(),
            Failure::Status(status) => format!("status {status}"),
            Failure::Protocol(why) => why.clone(),
        }
    }
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

/// Where a subscriber's body comes from.
enum Wire {
    /// Its own HTTP/1 connection.
    Tcp(TcpStream),
    /// A stream on a shared HTTP/2 connection.
    H2(h2::RecvStream),
}

/// What one read from a [`Wire`] gave.
enum Read {
    /// Bytes read into the caller's buffer (0: the connection closed).
    Buf(usize),
    /// One HTTP/2 DATA frame's payload.
    Frame(Bytes),
    /// The HTTP/2 stream ended.
    End,
}

impl Wire {
    async fn read(&mut self, buf: &mut [u8]) -> Result<Read, String> {
        match self {
            Wire::Tcp(stream) => stream
                .read(buf)
                .await
                .map(Read::Buf)
                .map_err(|e| e.to_string()),
            Wire::H2(body) => match body.data().await {
                None => Ok(Read::End),
                Some(Ok(data)) => {
                    // Decoded before the next read: the window can be given back now.
                    let _ = body.flow_control().release_capacity(data.len());
                    Ok(Read::Frame(data))
                }
                Some(Err(e)) => Err(e.to_string()),
            },
        }
    }
}

/// Connects (or opens a stream on the shared HTTP/2 connection), sends the request and
/// reads the head. Returns the wire, the body's framing and the body bytes read with the
/// head.
async fn open(
    shared: &Shared,
    spec: &Spec,
    index: u64,
    topic: u64,
    last_event_id: Option<&str>,
) -> Result<(Wire, Framing, Vec<u8>), Failure> {
    let (url, cookie) = match &spec.app {
        Some(world) => {
            let (url, cookie) = world.stream(index);
            (url, Some(cookie))
        }
        None => (target::expand(&spec.sub_url, topic, index), None),
    };
    let target = Target::parse(&url).map_err(|e| Failure::Protocol(format!("{e:#}")))?;
    let last_event_id = last_event_id.or(spec.last_event_id.as_deref());
    if let Some(connections) = &spec.http2 {
        return open_h2(connections, spec, index, &target, last_event_id).await;
    }
    let mut stream = connect(target.addr, source_ip(index, spec.source_ips, target.addr))
        .await
        .map_err(Failure::Io)?;
    shared.h1_connections.fetch_add(1, Ordering::Relaxed);
    let request = http::request(
        &target.authority,
        &target.path_and_query,
        spec.token.as_deref(),
        last_event_id,
        cookie,
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
                return Ok((Wire::Tcp(stream), head.framing, rest));
            }
            Ok((head, _)) => return Err(Failure::Status(head.status)),
            Err(HeadError::Incomplete) => {}
            Err(e) => return Err(Failure::Protocol(e.to_string())),
        }
    }
}

/// Opens subscriber `index`'s stream on its HTTP/2 connection (connecting first if it is
/// the first of its group to get there).
async fn open_h2(
    connections: &h2c::Connections,
    spec: &Spec,
    index: u64,
    target: &Target,
    last_event_id: Option<&str>,
) -> Result<(Wire, Framing, Vec<u8>), Failure> {
    let source = |group| source_ip(group, spec.source_ips, target.addr);
    let send = connections
        .get(index, target, source)
        .await
        .map_err(|e| Failure::Io(e.to_io()))?;
    let h2 = |e: h2::Error| Failure::Protocol(h2c::h2_error(&e).to_io().to_string());
    // Waits while the server's limit of concurrent streams is reached.
    let mut send = send.ready().await.map_err(h2)?;
    let request = h2c::request(target, spec.token.as_deref(), last_event_id)
        .map_err(|e| Failure::Protocol(format!("request: {e}")))?;
    let (response, _) = send.send_request(request, true).map_err(h2)?;
    let response = response.await.map_err(h2)?;
    if response.status() != ::http::StatusCode::OK {
        return Err(Failure::Status(response.status().as_u16()));
    }
    // HTTP/2 frames the body itself: its bytes are the SSE stream, until END_STREAM.
    Ok((
        Wire::H2(response.into_body()),
        Framing::UntilClose,
        Vec::new(),
    ))
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

/// Connects to `addr` from `source` (the kernel's choice if `None`), without Nagle's delay.
pub(crate) async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        bind_source(&socket, ip)?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Binds `socket` to source address `ip`, leaving the port to `connect()`.
///
/// With port 0, `bind()` picks an ephemeral port before the destination is known, so the
/// port must be free for any destination: one source address gets only its ~28,000
/// ephemeral ports, and after runs that churned through tens of thousands of loopback
/// ports the search for one took connects to 7-12 s. `IP_BIND_ADDRESS_NO_PORT` defers the
/// choice to `connect()`, where only the whole 4-tuple must be unique. A kernel without it
/// (before Linux 4.2) refuses the option and binds as before.
fn bind_source(socket: &TcpSocket, ip: IpAddr) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    let _ = nix::sys::socket::setsockopt(
        socket,
        nix::sys::socket::sockopt::IpBindAddressNoPort,
        &true,
    );
    socket.bind(SocketAddr::new(ip, 0))
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

    /// The source address is bound at once, the port only at `connect()`.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn source_port_is_chosen_at_connect() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        let source: IpAddr = "127.0.0.2".parse().unwrap();
        let socket = TcpSocket::new_v4().unwrap();
        bind_source(&socket, source).unwrap();
        let bound = socket.local_addr().unwrap();
        assert_eq!((bound.ip(), bound.port()), (source, 0));
        let stream = socket.connect(target).await.unwrap();
        let local = stream.local_addr().unwrap();
        assert_eq!(local.ip(), source);
        assert_ne!(local.port(), 0);
        let (accepted, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, local);
        drop(accepted);
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
                reversed: Vec::new(),
                last_id: String::new(),
                catch_up: None,
                app: false,
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
                    t.reversals,
                    t.ignored,
                    expected,
                    lost
                ),
                (5, 1, 1, 1, 6, 1),
                "pieces of {piece}"
            );
            assert_eq!(shared.delivered.load(Ordering::Relaxed), 5);
            assert_eq!(shared.recorder.merged().from_send.len(), 5);
            let reversals = shared.reversals.merged();
            assert_eq!(reversals.into_iter().collect::<Vec<_>>(), [((2, 3), 1)]);
            assert_eq!(reader.last_id, "5");
        }
    }
}
