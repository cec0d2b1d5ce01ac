//! Times each stage of ingest on a folder of CloudTrail files, single-threaded, in memory:
//! `cargo run --release -p granttrail-ingest --example stages -- FOLDER`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::io::Read;
use std::time::Instant;

use granttrail_cloudtrail::{Limits, for_each_record, may_be_relevant};

fn main() {
    let dir = std::env::args().nth(1).expect("a folder");
    let mut files = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(dir)];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            files.push(std::fs::read(&p).unwrap());
        }
    }
    let limits = Limits::default();
    let t = Instant::now();
    let mut bytes = 0;
    for f in &files {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(f.as_slice()).read_to_end(&mut out).unwrap();
        bytes += out.len();
    }
    println!("decode only      {:6.3} s  ({} MB)", t.elapsed().as_secs_f64(), bytes / 1_000_000);
    for stage in ["split", "prefilter", "normalise"] {
        let t = Instant::now();
        let mut n = 0u64;
        for f in &files {
            for_each_record(f.as_slice(), &limits, |r| {
                n += 1;
                if stage != "split" && may_be_relevant(r) && stage == "normalise" {
                    let _ = granttrail_grants::normalise(r);
                }
                Ok::<(), Infallible>(())
            })
            .unwrap();
        }
        println!("decode + {stage:9}{:6.3} s  ({n} records)", t.elapsed().as_secs_f64());
    }
}
