//! The raw limit: `cargo xtask bench raw-server --port N`, a std-only server that only
//! writes each published frame to every subscriber's socket.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    sync::Arc,
    thread,
};

use anyhow::{Context, Result};
use serde::Deserialize;

/// The ceiling no SSE server here can pass: accepts subscribers (`GET /events?topic=T`,
/// answered with SSE headers) and JSON publishes (`POST /publish {topic, data}`, the `json`
/// publish kind), and writes each frame to every socket of its topic with one blocking
/// `write_all` each, from one thread; nothing else. Loopback only; stops on SIGTERM.
pub(super) fn raw_server(port: u16) -> Result<()> {
    use std::{collections::HashMap, io::BufRead as _, io::BufReader, sync::Mutex};

    type Topics = Arc<Mutex<HashMap<String, Vec<TcpStream>>>>;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    let topics: Topics = Arc::default();

    /// Reads one request head and body; `None` at end of stream.
    fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let request_line = line.trim_end().to_owned();
        let mut length = 0;
        loop {
            line.clear();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().ok()?;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        Some((request_line, body))
    }

    fn publish(topics: &Topics, body: &[u8]) -> usize {
        /// The `json` publish kind's body.
        #[derive(Deserialize)]
        struct Publish {
            topic: String,
            data: String,
        }
        let Ok(Publish { topic, data }) = serde_json::from_slice(body) else {
            return 0;
        };
        let frame = format!("data: {data}\n\n");
        let mut topics = topics.lock().unwrap_or_else(|e| e.into_inner());
        let Some(subs) = topics.get_mut(&topic) else {
            return 0;
        };
        subs.retain_mut(|s| s.write_all(frame.as_bytes()).is_ok());
        subs.len()
    }

    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        let Ok(read_half) = stream.try_clone() else {
            continue;
        };
        let mut reader = BufReader::new(read_half);
        let Some((request_line, body)) = read_request(&mut reader) else {
            continue;
        };
        let mut stream = stream;
        if let Some(target) = request_line.strip_prefix("GET /events?") {
            let query = target.split(' ').next().unwrap_or("");
            let topic = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("topic="))
                .unwrap_or("")
                .to_owned();
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n";
            if stream.write_all(head.as_bytes()).is_ok() {
                let mut map = topics.lock().unwrap_or_else(|e| e.into_inner());
                map.entry(topic).or_default().push(stream);
            }
        } else if request_line.starts_with("POST /publish") {
            // A publisher keeps its connection: serve it on its own thread.
            let topics = Arc::clone(&topics);
            thread::spawn(move || {
                let mut next = Some((request_line, body));
                while let Some((_, body)) = next {
                    let n = publish(&topics, &body);
                    let reply = format!("{{\"delivered\":{n}}}");
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
                        reply.len()
                    );
                    if stream.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    next = read_request(&mut reader);
                }
            });
        } else {
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
            );
        }
    }
    Ok(())
}
