//! `granttrail-decode-only FILE...`: decompresses every file with the same gzip backend as
//! granttrail (flate2 + zlib-rs) and discards the bytes. The physical bound for ingest.
#![forbid(unsafe_code)]

use std::io::Read;

use flate2::read::MultiGzDecoder;

fn main() -> anyhow::Result<()> {
    let mut total = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    for path in std::env::args().skip(1) {
        let file = std::io::BufReader::with_capacity(256 * 1024, std::fs::File::open(&path)?);
        let mut decoder = MultiGzDecoder::new(file);
        loop {
            let n = decoder.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    println!("{total} bytes decompressed");
    Ok(())
}
