//! Heartbeats: an idle stream gets a comment frame every `--heartbeat`.

use std::time::Duration;

use herald_sse::Item;

use crate::support::{TestServer, token};

#[tokio::test]
async fn idle_streams_get_comment_heartbeats() {
    let server = TestServer::with_args(&["--heartbeat", "200ms"]).await;
    let mut sse = server
        .subscribe()
        .topic("https://example.com/quiet")
        .bearer(&token(&[], &[]))
        .open()
        .await;
    assert_eq!(sse.next_item().await, Some(Item::Retry(3000)));
    for _ in 0..3 {
        let item = sse
            .next_item_within(Duration::from_secs(2))
            .await
            .expect("a heartbeat within 2 s");
        assert_eq!(item, Some(Item::Comment(String::new())));
    }
    assert!(sse.raw.starts_with(b"retry: 3000\n\n:\n\n:\n\n:\n\n"));
}
