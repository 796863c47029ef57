//! Append throughput with group commit: `concurrency` tasks each append one
//! 300-byte record (about one encrypted event) and wait for its fsync. With
//! group commit, records per second grow with concurrency while syncs per
//! second stay near the disk's sync rate.
//!
//! `cargo bench -p edge-spool --bench append`
//!
//! Measured on the 2-core development VM (ext4 on virtio disk, shared with
//! other builds, so noisy): 1 writer 1.25 ms per append (~800 appends/s),
//! 8 writers 1.30 ms per round (~6,100 appends/s), 64 writers 1.54 ms per
//! round (~41,600 appends/s): the cost is one fdatasync per group, not per
//! append.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use edge_spool::{NoObserver, RecordRef, Spool, SpoolConfig};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(
        Spool::open(
            &SpoolConfig {
                dir: dir.path().to_path_buf(),
                max_bytes: 1 << 40,
                min_free_disk_bytes: 0,
                segment_bytes: 64 << 20,
                prefill_bytes: 1 << 20,
            },
            Arc::new(NoObserver),
        )
        .unwrap(),
    );
    let payload = vec![0xa5u8; 300];
    let mut group = c.benchmark_group("spool_append");
    group.measurement_time(Duration::from_secs(5));
    group.sample_size(10);
    for concurrency in [1usize, 8, 64] {
        group.throughput(Throughput::Elements(concurrency as u64));
        group.bench_function(format!("concurrent_{concurrency}"), |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                rt.block_on(async {
                    for _ in 0..iters {
                        let tasks: Vec<_> = (0..concurrency)
                            .map(|_| {
                                let spool = spool.clone();
                                let payload = payload.clone();
                                tokio::spawn(async move {
                                    spool
                                        .append(&[RecordRef {
                                            key: b"site",
                                            header: None,
                                            payload: &payload,
                                        }])
                                        .await
                                        .unwrap();
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.unwrap();
                        }
                    }
                });
                started.elapsed()
            });
        });
    }
    group.finish();
    // Keep the disk use bounded between runs.
    let mut reader = spool.reader().unwrap();
    loop {
        let got = reader.read(100_000, usize::MAX).unwrap();
        let Some(last) = got.last() else { break };
        reader.ack(last.seq).unwrap();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
