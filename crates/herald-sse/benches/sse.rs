//! Encoder and decoder benchmarks, guarding the fan-out and load-generator
//! hot paths. Short by default: `cargo bench -p herald-sse`.
#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use herald_sse::{Decoder, Event, Item};

/// A typical hub update of about 200 bytes on the wire: a URN id, a type,
/// and two lines of JSON.
fn sample_event() -> Event {
    Event::new(concat!(
        r#"{"topic":"https://example.com/books/1","status":"available","#,
        "\n",
        r#""price":12.5,"stock":42,"updated":"2024-05-01T12:00:00Z"}"#,
    ))
    .with_id("urn:uuid:5b7c2e0a-8f1d-4c1e-9a3b-2d6f0e4a7c91")
    .with_event("update")
}

fn encode(c: &mut Criterion) {
    let event = sample_event();
    let len = event.encode().len();
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Bytes(len as u64));
    group.bench_function("encode_into", |b| {
        let mut buf = BytesMut::with_capacity(len);
        b.iter(|| {
            buf.clear();
            black_box(&event).encode_into(&mut buf);
            black_box(&buf);
        });
    });
    group.bench_function("encode", |b| b.iter(|| black_box(&event).encode()));
    group.finish();
}

fn decode(c: &mut Criterion) {
    const EVENTS: usize = 1_000;
    let mut stream = BytesMut::new();
    for i in 0..EVENTS {
        let mut event = sample_event();
        event.id = Some(format!("urn:uuid:{i:036}"));
        event.encode_into(&mut stream);
    }
    let mut group = c.benchmark_group("decode_1000_events");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    // The whole buffer in one push, and in 4 KiB reads as off a socket.
    for (name, chunk) in [("one_push", stream.len()), ("4k_chunks", 4096)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut decoder = Decoder::new();
                let mut messages = 0;
                for piece in black_box(&stream[..]).chunks(chunk) {
                    decoder.push(piece);
                    while let Some(item) = decoder.next_item().unwrap() {
                        messages += usize::from(matches!(item, Item::Message(_)));
                    }
                }
                assert_eq!(messages, EVENTS);
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = encode, decode
}
criterion_main!(benches);
