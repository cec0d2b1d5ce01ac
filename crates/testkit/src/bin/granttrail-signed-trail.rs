//! Writes a signed trail for `bench/run`: one account and region, DAYS days of FILES log files
//! an hour (RECORDS records each), a digest an hour chained and signed with a key of its own,
//! laid out as `aws s3 sync` copies a bucket, and the key as `aws cloudtrail list-public-keys`
//! prints it (`public-keys.json` beside the copy).
//!
//!     granttrail-signed-trail OUT DAYS FILES RECORDS

use std::path::PathBuf;
use std::process::ExitCode;

use granttrail_grants::timestamp::format as time;
use granttrail_testkit::trail::SignedTrail;
use serde_json::json;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, days, files, records] = args.as_slice() else {
        eprintln!("usage: granttrail-signed-trail OUT DAYS FILES-PER-HOUR RECORDS-PER-FILE");
        return ExitCode::FAILURE;
    };
    let (Ok(days), Ok(files), Ok(records)) =
        (days.parse::<u32>(), files.parse::<u32>(), records.parse::<u32>())
    else {
        eprintln!("granttrail-signed-trail: DAYS, FILES-PER-HOUR and RECORDS-PER-FILE are whole numbers");
        return ExitCode::FAILURE;
    };
    let out = PathBuf::from(out);
    let mut trail = SignedTrail::new("111122223333", "us-east-1");
    for day in 0..days {
        let date = 1_704_067_200 + i64::from(day) * 86_400; // from 2024-01-01
        for hour in 0..24 {
            let start = date + hour * 3600;
            for file in 0..files {
                let at = start + i64::from(file) * 3600 / i64::from(files.max(1));
                let when = time(at - at % 60);
                let batch: Vec<serde_json::Value> = (0..records)
                    .map(|r| {
                        json!({"eventVersion": "1.09", "eventSource": "kms.amazonaws.com", "eventName": "Decrypt",
                               "eventTime": when, "eventID": format!("{at}-{file}-{r}"), "awsRegion": "us-east-1",
                               "recipientAccountId": "111122223333",
                               "userIdentity": {"type": "AWSService", "invokedBy": "s3.amazonaws.com"}})
                    })
                    .collect();
                trail.log_file(&when, &batch);
            }
            trail.digest(&time(start), &time(start + 3600));
        }
        // A day at a time, so that the generator's memory stays small too.
        if let Err(e) = trail.write_to(&out) {
            eprintln!("granttrail-signed-trail: {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
        trail.objects.clear();
    }
    let keys = out.with_file_name(format!(
        "{}-public-keys.json",
        out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    if let Err(e) = std::fs::write(&keys, trail.public_keys_json()) {
        eprintln!("granttrail-signed-trail: {}: {e}", keys.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
