//! Micro benchmarks of each ingest stage on a generated corpus (`cargo bench -p
//! granttrail-ingest`). Whole-process comparisons are in bench/run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::io::Read;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use granttrail_cloudtrail::{Limits, for_each_record, may_be_relevant};
use granttrail_grants::{KmsEvent, normalise};
use granttrail_ingest::{Outcome, ingest_object};
use granttrail_store::Store;

/// 20,000 records in 4 gzip files, 15 % KMS.
fn corpus() -> Vec<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("granttrail-bench-{}", std::process::id()));
    granttrail_corpus::write_corpus(&granttrail_corpus::Options {
        out: dir.clone(),
        records: 20_000,
        kms_share: 0.15,
        grant_share: 0.01,
        files: 4,
        accounts: 2,
        regions: 2,
        seed: 3,
        gzip: true,
    })
    .unwrap();
    let mut files = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            files.push(std::fs::read(&p).unwrap());
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    files
}

fn stages(c: &mut Criterion) {
    let files = corpus();
    let raw: u64 = files
        .iter()
        .map(|f| {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(f.as_slice()).read_to_end(&mut out).unwrap();
            out.len() as u64
        })
        .sum();
    let limits = Limits::default();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Bytes(raw));
    group.sample_size(10);
    group.bench_function("decode", |b| {
        b.iter(|| {
            for f in &files {
                std::io::copy(&mut flate2::read::MultiGzDecoder::new(f.as_slice()), &mut std::io::sink())
                    .unwrap();
            }
        })
    });
    group.bench_function("decode+split+prefilter", |b| {
        b.iter(|| {
            for f in &files {
                for_each_record(f.as_slice(), &limits, |r| {
                    std::hint::black_box(may_be_relevant(r));
                    Ok::<(), Infallible>(())
                })
                .unwrap();
            }
        })
    });
    group.bench_function("decode+split+normalise", |b| {
        b.iter(|| {
            for f in &files {
                for_each_record(f.as_slice(), &limits, |r| {
                    if may_be_relevant(r) {
                        std::hint::black_box(normalise(r).ok());
                    }
                    Ok::<(), Infallible>(())
                })
                .unwrap();
            }
        })
    });
    group.bench_function("ingest into SQLite (memory)", |b| {
        b.iter(|| {
            let mut store = Store::open_in_memory().unwrap();
            for (i, f) in files.iter().enumerate() {
                let outcome = ingest_object(&mut store, &format!("f{i}"), f.as_slice(), &limits, 0).unwrap();
                assert!(matches!(outcome, Outcome::Ingested { .. }));
            }
            store.refresh_labels().unwrap();
        })
    });
    group.finish();

    let records: Vec<Vec<u8>> = {
        let mut out = Vec::new();
        for f in &files {
            for_each_record(f.as_slice(), &limits, |r| {
                if may_be_relevant(r) {
                    out.push(r.to_vec());
                }
                Ok::<(), Infallible>(())
            })
            .unwrap();
        }
        out
    };
    let mut group = c.benchmark_group("records");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("normalise KMS record", |b| {
        b.iter(|| records.iter().filter_map(|r| normalise(r).ok().flatten()).collect::<Vec<KmsEvent>>())
    });
    group.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
