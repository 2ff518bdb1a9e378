//! Micro-benchmarks of the hub's hot path: selector matching and fan-out of one update to
//! many in-process subscribers. Run with `cargo bench -p herald-hub`; CI only builds them.
#![expect(
    missing_docs,
    reason = "criterion_group! generates undocumented functions"
)]

use std::{hint::black_box, sync::Arc, time::Duration};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures::StreamExt;
use herald_hub::{Hub, HubConfig, Matcher, SubscribeRequest, Update, selector::Selector};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

#[path = "../tests/common/null_log.rs"]
mod null_log;
use null_log::NullLog;

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
    let pattern = Matcher::url_pattern("https://example.com/books/:id")
        .compile()
        .unwrap();
    group.bench_function("urlpattern", |b| {
        b.iter(|| pattern.matches(black_box(topic)))
    });
    let patterns: Vec<Selector> = (0..2000)
        .map(|i| {
            Matcher::url_pattern(format!("https://example.com/t{i}/:id"))
                .compile()
                .unwrap()
        })
        .collect();
    group.bench_function("2000_urlpatterns_one_topic", |b| {
        b.iter(|| {
            patterns
                .iter()
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
                    topics: vec![Matcher::exact("bench")],
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
