//! A tiny SSE hub for tests, shaped like the small reference servers the
//! bench is compared with: `GET /sse?topic=T` streams with an identity body
//! (no chunking, `Connection: close`) and opens with a `connected` event;
//! `POST /publish` takes `{"topic":..,"data":..}` on a keep-alive
//! connection. [`Server::start_swapping`] starts one with an ordering bug.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinHandle,
};

type Topics = Arc<Mutex<HashMap<String, Vec<mpsc::UnboundedSender<String>>>>>;

/// With [`Server::start_swapping`]: per topic, the event held back until the next one.
type Held = Option<Arc<Mutex<HashMap<String, String>>>>;

/// The running server; stops when dropped.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub(crate) async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A server that acknowledges every publish at once but delivers every other event
    /// only after the next one: events 0, 2, 4, ... come after 1, 3, 5, ...
    pub(crate) async fn start_swapping() -> Self {
        Self::start_with(Some(Arc::default())).await
    }

    async fn start_with(held: Held) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let topics = Topics::default();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, topics.clone(), held.clone()));
            }
        });
        Self { addr, task }
    }
}

async fn serve(mut conn: TcpStream, topics: Topics, held: Held) {
    let mut buf = Vec::new();
    loop {
        // Read one request head.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let mut words = head.split_whitespace();
        let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        match (method, target.split_once('?')) {
            ("GET", Some(("/sse", query))) => {
                let topic = query.strip_prefix("topic=").unwrap_or("").to_owned();
                let (tx, rx) = mpsc::unbounded_channel();
                topics.lock().unwrap().entry(topic).or_default().push(tx);
                stream(conn, rx).await;
                return;
            }
            _ if method == "POST" => {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < length {
                    let mut chunk = [0; 4096];
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body: Vec<u8> = buf.drain(..length).collect();
                let publish: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let (topic, data) = (
                    publish["topic"].as_str().unwrap(),
                    publish["data"].as_str().unwrap(),
                );
                let mut deliver = vec![data.to_owned()];
                if let Some(held) = &held {
                    let mut held = held.lock().unwrap();
                    match held.remove(topic) {
                        Some(earlier) => deliver.push(earlier),
                        None => {
                            held.insert(topic.to_owned(), deliver.pop().unwrap());
                        }
                    }
                }
                if let Some(subs) = topics.lock().unwrap().get(topic) {
                    for sub in subs {
                        for data in &deliver {
                            let _ = sub.send(data.clone());
                        }
                    }
                }
                let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                if conn.write_all(ok).await.is_err() {
                    return;
                }
            }
            _ => {
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
                return;
            }
        }
    }
}

async fn stream(mut conn: TcpStream, mut rx: mpsc::UnboundedReceiver<String>) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\nevent: connected\ndata: hello\n\n";
    if conn.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    while let Some(data) = rx.recv().await {
        if conn
            .write_all(format!("data: {data}\n\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}
