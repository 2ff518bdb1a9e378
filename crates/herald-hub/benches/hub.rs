//! Micro-benchmarks of the hub's hot path: selector matching and fan-out of one update to
//! many in-process subscribers. Run with `cargo bench -p herald-hub`; CI only builds them.
#![expect(
    missing_docs,
    reason = "criterion_group! generates undocumented functions"
)]

use std::{
    hint::black_box,
    sync::{Arc, Mutex},
    time::Duration,
};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures::{FutureExt, StreamExt, future::BoxFuture};
use herald_hub::{
    Entry, EventLog, Hub, HubConfig, LogError, Record, SubscribeRequest, Update, selector::Selector,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// A log that keeps nothing: the fan-out benchmark measures fan-out, not fsync.
#[derive(Debug, Default)]
struct NullLog {
    head: Mutex<u64>,
}

impl EventLog for NullLog {
    fn append<'a>(&'a self, entries: &'a [Entry]) -> BoxFuture<'a, Result<Vec<u64>, LogError>> {
        if let Some(last) = entries.last() {
            *self.head.lock().unwrap() = last.seq;
        }
        let seqs = entries.iter().map(|e| e.seq).collect();
        async { Ok(seqs) }.boxed()
    }
    fn read(
        &self,
        _: u64,
        _: u64,
        _: usize,
        _: usize,
    ) -> BoxFuture<'_, Result<Vec<Record>, LogError>> {
        async { Ok(Vec::new()) }.boxed()
    }
    fn latest_seq_of<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<u64>, LogError>> {
        async { Ok(None) }.boxed()
    }
    fn head(&self) -> BoxFuture<'_, Result<u64, LogError>> {
        let head = *self.head.lock().unwrap();
        async move { Ok(head) }.boxed()
    }
    fn prune(&self, _: u64, _: Option<i64>) -> BoxFuture<'_, Result<u64, LogError>> {
        async { Ok(0) }.boxed()
    }
}

fn selectors(c: &mut Criterion) {
    let mut group = c.benchmark_group("selector");
    let exact = Selector::parse("https://example.com/books/1").unwrap();
    let template = Selector::parse("https://example.com/books/{id}").unwrap();
    let topic = "https://example.com/books/12345";
    group.bench_function("exact", |b| b.iter(|| exact.matches(black_box(topic))));
    group.bench_function("template", |b| {
        b.iter(|| template.matches(black_box(topic)))
    });
    let many: Vec<Selector> = (0..2000)
        .map(|i| Selector::parse(&format!("https://example.com/t{i}/{{id}}")).unwrap())
        .collect();
    group.bench_function("2000_templates_one_topic", |b| {
        b.iter(|| {
            many.iter()
                .filter(|s| s.matches(black_box("https://example.com/t1999/7")))
                .count()
        })
    });
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("fan_out");
    for subscribers in [100usize, 1_000, 10_000] {
        let (hub, mut streams) = runtime.block_on(async {
            let config = HubConfig {
                heartbeat: None,
                ..HubConfig::default()
            };
            let hub = Hub::start(
                config,
                Arc::new(NullLog::default()),
                &TaskTracker::new(),
                CancellationToken::new(),
            )
            .await
            .unwrap();
            let mut streams = Vec::new();
            for _ in 0..subscribers {
                let request = SubscribeRequest {
                    topics: vec!["bench".into()],
                    ..SubscribeRequest::default()
                };
                let mut stream = hub.subscribe(request).await.unwrap();
                stream.next().await; // The retry: prelude.
                streams.push(stream);
            }
            (hub, streams)
        });
        let update = Update {
            topics: vec!["bench".into()],
            data: "x".repeat(200),
            ..Update::default()
        };
        group.bench_function(format!("publish_and_drain_{subscribers}"), |b| {
            b.iter_batched(
                || update.clone(),
                |update| {
                    runtime.block_on(async {
                        hub.publish(update).await.unwrap();
                        for stream in &mut streams {
                            black_box(stream.next().await);
                        }
                    })
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = selectors, fan_out
}
criterion_main!(benches);
