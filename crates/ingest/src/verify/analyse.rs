//! Judging log files and digests that have been read: no I/O here.

use std::collections::{BTreeMap, HashMap, HashSet};

use granttrail_cloudtrail::ObjectKey;
use granttrail_cloudtrail::digest::{Digest, PublicKeys, Sha256, signature_is_valid};
use granttrail_grants::timestamp;

use super::read::{delivered_at, file_name};
use super::{
    DigestObject, Filter, Input, LogObject, LogVerdict, MissingLogFile, Period, Problem, ProblemKind,
    Summary, Verification,
};

/// CloudTrail delivers a log file within minutes of the time in its name (usually under 15) and
/// lists it in the digest of the hour it was delivered. A file no digest lists is only called
/// unlisted when digests cover this long after the time in its name.
pub const DELIVERY_WINDOW_SECONDS: i64 = 3600;

/// Consecutive digests share an end and a start time; this much apart still counts as one
/// covered stretch.
const CONTIGUOUS_SECONDS: i64 = 60;

/// A digest that could be read, with what the checks found.
struct Read<'a> {
    object: &'a DigestObject,
    digest: &'a Digest,
    sha256: Sha256,
    period: Period,
    account: String,
    region: String,
    /// Backfill digests list late files; they are not links of the hourly chain.
    backfill: bool,
    trusted: bool,
    /// The signature the next digest of the chain records for this one.
    signature_from_next: Option<&'a str>,
}

/// Judges what [`super::read`] produced. `keys`: the public keys to check signatures with.
pub fn analyse(inputs: &[Input], keys: Option<&PublicKeys>, filter: &Filter) -> Verification {
    let mut out = Verification { signatures_checked: keys.is_some(), ..Verification::default() };
    let mut digests = Vec::new();
    let mut logs = Vec::new();
    for input in inputs {
        match input {
            Input::Log(log) if filter.wants_log(log) => logs.push(log),
            Input::Log(_) => {}
            Input::Digest(object) => match read(object) {
                Ok(read) if filter.wants_digest(&read) => digests.push(read),
                Ok(_) => {}
                Err(reason) => {
                    let key = ObjectKey::parse(&object.key);
                    if filter.wants_place(key.account.as_deref(), key.region.as_deref())
                        && filter.owns(&object.name)
                    {
                        out.problems.push(Problem {
                            object: object.name.clone(),
                            verdict: ProblemKind::DigestUnreadable,
                            reason,
                            account: key.account,
                            region: key.region,
                        });
                    }
                }
            },
        }
    }

    // Every digest is checked (its trust decides what its listing is worth), but a slice
    // reports and counts only its own.
    let mut digest_problems = Vec::new();
    check_locations(&mut digests, &mut digest_problems);
    let self_signed: Vec<bool> = digests.iter().map(|d| signed_in_metadata(d, keys)).collect();
    check_chains(&mut digests, &self_signed, &mut digest_problems, &|d| filter.owns(&d.object.name));
    let signatures = check_signatures(&mut digests, keys, &self_signed, &mut digest_problems);
    out.problems.extend(
        digest_problems
            .into_iter()
            .filter(|p| p.verdict == ProblemKind::DigestMissing || filter.owns(&p.object)),
    );

    // What trusted digests cover, own or not: a log file is judged unlisted against this.
    let mut covering: BTreeMap<(&str, &str), Vec<Period>> = BTreeMap::new();
    for d in digests.iter().filter(|d| d.trusted && !d.backfill) {
        covering.entry((&d.account, &d.region)).or_default().push(d.period);
    }
    let covering: BTreeMap<(&str, &str), Vec<Period>> =
        covering.into_iter().map(|(place, periods)| (place, merge(periods))).collect();

    let mut summaries: BTreeMap<(String, String), Summary> = BTreeMap::new();
    for (d, signature) in digests.iter().zip(&signatures) {
        if !filter.owns(&d.object.name) {
            continue;
        }
        let s = summary_of(&mut summaries, &d.account, &d.region);
        s.digests += 1;
        s.digests_trusted += u64::from(d.trusted);
        match signature {
            Signature::Valid => s.signatures_valid += 1,
            Signature::Unchecked => s.signatures_unchecked += 1,
            Signature::Failed => {}
        }
        if d.trusted && !d.backfill {
            s.covered.push(d.period);
        }
    }
    for s in summaries.values_mut() {
        s.close_periods();
    }

    // Every log file trusted digests list, by file name, with each listing (a file is listed
    // once, but a planted digest may list it again); and those only untrusted ones list.
    let mut listed: HashMap<&str, Vec<(&Read, usize)>> = HashMap::new();
    let mut listed_untrusted: HashMap<&str, &Read> = HashMap::new();
    let judged = |d: &Read| filter.listings_of.as_ref().is_none_or(|name| *name == d.object.name);
    for d in digests.iter().filter(|d| judged(d)) {
        for (i, file) in d.digest.log_files.iter().enumerate() {
            let name = file_name(&file.s3_object);
            if d.trusted {
                listed.entry(name).or_default().push((d, i));
            } else {
                listed_untrusted.entry(name).or_insert(d);
            }
        }
    }

    // A file known by name only is judged only when no trusted digest lists it and it was not
    // read as well.
    let listed_anywhere: HashSet<&str> = digests
        .iter()
        .filter(|d| d.trusted)
        .flat_map(|d| d.digest.log_files.iter().map(|f| file_name(&f.s3_object)))
        .collect();

    let hashed: HashSet<&str> = logs.iter().filter(|l| l.sha256.is_some()).map(|l| l.file.as_str()).collect();

    let mut seen: HashSet<&str> = HashSet::new();
    for log in logs {
        let name_only = log.sha256.is_none();
        if name_only && (listed_anywhere.contains(log.file.as_str()) || hashed.contains(log.file.as_str())) {
            continue;
        }
        let place = (log.account.as_deref().unwrap_or_default(), log.region.as_deref().unwrap_or_default());
        let covered = covering.get(&place).map_or(&[][..], Vec::as_slice);
        let (verdict, problem) = judge_log(log, &listed, &listed_untrusted, covered);
        if name_only && verdict == LogVerdict::NotCovered {
            continue;
        }
        let s = summary_of(&mut summaries, place.0, place.1);
        seen.insert(log.file.as_str());
        match verdict {
            LogVerdict::Verified => s.verified += 1,
            LogVerdict::Altered => s.altered += 1,
            LogVerdict::Unlisted => s.unlisted += 1,
            LogVerdict::NotCovered => s.not_covered += 1,
        }
        let reason = problem.as_ref().map(|(_, reason)| reason.clone());
        if let Some((kind, reason)) = problem {
            out.problems.push(Problem {
                object: log.name.clone(),
                verdict: kind,
                reason,
                account: log.account.clone(),
                region: log.region.clone(),
            });
        }
        out.log_files.push((log.name.clone(), verdict, reason));
    }

    for (name, listings) in &listed {
        // A missing file is named as the first digest that lists it names it.
        let Some(&(d, i)) = listings.first() else { continue };
        let Some(file) = d.digest.log_files.get(i) else { continue };
        if seen.contains(name) || !filter.wants_listed(&file.s3_object, &d.object.name) {
            continue;
        }
        summary_of(&mut summaries, &d.account, &d.region).missing += 1;
        let object = format!("s3://{}/{}", file.s3_bucket, file.s3_object);
        out.missing.push(MissingLogFile {
            file_name: (*name).to_string(),
            object: object.clone(),
            account: d.account.clone(),
            region: d.region.clone(),
            listed_by: d.object.name.clone(),
            period_start: d.period.start,
            period_end: d.period.end,
        });
        out.problems.push(Problem {
            object,
            verdict: ProblemKind::Missing,
            reason: format!(
                "listed by {} (log files delivered {} to {}) but not among the inputs: it may have held any event of account {} in {} delivered then",
                d.object.name,
                timestamp::format(d.period.start),
                timestamp::format(d.period.end),
                d.account,
                d.region
            ),
            account: Some(d.account.clone()),
            region: Some(d.region.clone()),
        });
    }

    out.missing.sort_by(|a, b| a.object.cmp(&b.object));
    out.problems.sort_by(|a, b| {
        (&a.account, &a.region, a.verdict, &a.object).cmp(&(&b.account, &b.region, b.verdict, &b.object))
    });
    out.summaries = summaries.into_values().collect();
    out
}

impl Filter {
    fn wants_place(&self, account: Option<&str>, region: Option<&str>) -> bool {
        let listed = |wanted: &[String], have: Option<&str>| {
            wanted.is_empty() || have.is_some_and(|h| wanted.iter().any(|w| w == h))
        };
        listed(&self.accounts, account) && listed(&self.regions, region)
    }

    /// The same window `ingest` applies to S3 keys: delivered at or after `since`, and at most
    /// an hour after `until`.
    fn wants_time(&self, delivered: Option<i64>) -> bool {
        let Some(t) = delivered else { return true };
        self.since.is_none_or(|s| t + 60 > s) && self.until.is_none_or(|u| t <= u + DELIVERY_WINDOW_SECONDS)
    }

    fn wants_log(&self, log: &LogObject) -> bool {
        self.wants_place(log.account.as_deref(), log.region.as_deref()) && self.wants_time(log.delivered)
    }

    /// Is a listed file that was not found missing here? In a slice, only if its time is the
    /// slice's (or, without a time, its digest is the slice's).
    fn wants_listed(&self, s3_object: &str, listed_by: &str) -> bool {
        let key = ObjectKey::parse(s3_object);
        let delivered = delivered_at(&key);
        let in_slice = match (&self.slice, delivered) {
            (None, _) => true,
            (Some(slice), Some(t)) => slice.from <= t && t < slice.to,
            (Some(_), None) => self.owns(listed_by),
        };
        in_slice
            && self.wants_place(key.account.as_deref(), key.region.as_deref())
            && self.wants_time(delivered)
    }

    /// Is the digest of this name counted and reported here (always, outside a slice)?
    fn owns(&self, digest: &str) -> bool {
        self.slice.as_ref().is_none_or(|slice| slice.own.contains(digest))
    }

    /// Digests are kept a little beyond the window: the files it selects are listed by them.
    fn wants_digest(&self, d: &Read) -> bool {
        let slack = 2 * DELIVERY_WINDOW_SECONDS;
        self.wants_place(Some(&d.account), Some(&d.region))
            && self.since.is_none_or(|s| d.period.end + slack >= s)
            && self.until.is_none_or(|u| d.period.start <= u + slack)
    }
}

fn read(object: &DigestObject) -> Result<Read<'_>, String> {
    let (digest, sha256) = object.content.as_ref().map_err(Clone::clone)?;
    let time = |field: &str, text: &str| {
        timestamp::parse(text).ok_or_else(|| format!("{field} is not a time: {text:?}"))
    };
    let period = Period {
        start: time("digestStartTime", &digest.digest_start_time)?,
        end: time("digestEndTime", &digest.digest_end_time)?,
    };
    let claimed = ObjectKey::parse(&digest.digest_s3_object);
    let region = claimed.region.ok_or_else(|| {
        format!("digestS3Object is not a CloudTrail digest key: {:?}", digest.digest_s3_object)
    })?;
    Ok(Read {
        object,
        digest,
        sha256: *sha256,
        period,
        account: digest.aws_account_id.clone(),
        region,
        backfill: file_name(&digest.digest_s3_object).ends_with("_backfill.json.gz"),
        trusted: true,
        signature_from_next: None,
    })
}

/// A digest must be where it says CloudTrail delivered it: the same bucket and key in S3, or a
/// path ending in its key from `AWSLogs/` on in a downloaded copy.
fn check_locations(digests: &mut [Read], problems: &mut Vec<Problem>) {
    for d in digests.iter_mut() {
        let claimed = &d.digest.digest_s3_object;
        let in_place = match &d.object.bucket {
            Some(bucket) => *bucket == d.digest.digest_s3_bucket && d.object.key == *claimed,
            None => {
                let tail = claimed.find("AWSLogs/").map_or(claimed.as_str(), |i| &claimed[i..]);
                let path = d.object.key.replace('\\', "/");
                path == tail || path.ends_with(&format!("/{tail}"))
            }
        };
        if !in_place {
            d.trusted = false;
            problems.push(problem(
                d,
                ProblemKind::DigestMoved,
                format!("it says CloudTrail delivered it to s3://{}/{claimed}", d.digest.digest_s3_bucket),
            ));
        }
    }
}

/// Does the digest's S3 metadata carry a signature the keys verify? Such a digest vouches for
/// itself, whatever a next digest records of it.
fn signed_in_metadata(d: &Read, keys: Option<&PublicKeys>) -> bool {
    let (Some(keys), Some(signature)) = (keys, d.object.metadata_signature.as_deref()) else { return false };
    keys.get(&d.digest.digest_public_key_fingerprint)
        .is_some_and(|key| signature_is_valid(key, d.digest.signing_string(&d.sha256).as_bytes(), signature))
}

/// Links each hourly chain (per account, region and trail) and checks each digest's hash against
/// the one the next digest records. A link named but absent is a missing digest, unless it lies
/// before the earliest digest given (a copy starts somewhere). What a next digest records of a
/// digest that vouches for itself (`self_signed`) counts only if the next one vouches for
/// itself too and is where it says: one planted after a genuine digest, naming it with another
/// hash or signature, cannot discredit it (its own signature fails later, alone).
fn check_chains<'a>(
    digests: &mut [Read<'a>],
    self_signed: &[bool],
    problems: &mut Vec<Problem>,
    reports: &dyn Fn(&Read) -> bool,
) {
    let mut chains: BTreeMap<(String, String, String), Vec<usize>> = BTreeMap::new();
    for (i, d) in digests.iter().enumerate() {
        // A moved digest stays a link (it is there, only not trusted), so it is not also missing.
        if !d.backfill {
            let trail = trail_of(&d.digest.digest_s3_object).to_string();
            chains.entry((d.account.clone(), d.region.clone(), trail)).or_default().push(i);
        }
    }
    for chain in chains.values_mut() {
        chain.sort_by_key(|&i| digests[i].period.end);
        let by_file: HashMap<String, usize> =
            chain.iter().map(|&i| (file_name(&digests[i].digest.digest_s3_object).to_string(), i)).collect();
        // The digests that name each one as their previous: more than one is a fork.
        let mut named_by: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (position, &i) in chain.iter().enumerate() {
            let Some(previous) = digests[i].digest.previous_digest_s3_object.clone() else { continue };
            match by_file.get(file_name(&previous)) {
                Some(&p) => {
                    named_by.entry(p).or_default().push(i);
                    if self_signed[p] && !(self_signed[i] && digests[i].trusted) {
                        continue;
                    }
                    let next: &'a Digest = digests[i].digest;
                    let recorded = next.previous_hash().ok().flatten();
                    digests[p].signature_from_next = next.previous_digest_signature.as_deref();
                    if recorded != Some(digests[p].sha256) {
                        digests[p].trusted = false;
                        let next = digests[i].object.name.clone();
                        problems.push(problem(
                            &digests[p],
                            ProblemKind::DigestAltered,
                            format!("its content does not have the SHA-256 the next digest, {next}, records"),
                        ));
                    }
                }
                None if position > 0 && reports(&digests[i]) => {
                    let d = &digests[i];
                    let bucket =
                        d.digest.previous_digest_s3_bucket.as_deref().unwrap_or(&d.digest.digest_s3_bucket);
                    problems.push(Problem {
                        object: format!("s3://{bucket}/{previous}"),
                        verdict: ProblemKind::DigestMissing,
                        reason: format!(
                            "{} names it as the previous digest, but it is not among the inputs: the log files it listed cannot be checked",
                            d.object.name
                        ),
                        account: Some(d.account.clone()),
                        region: Some(d.region.clone()),
                    });
                }
                None => {}
            }
        }
        for (p, nexts) in named_by {
            if let [first, second, ..] = nexts[..]
                && reports(&digests[p])
            {
                let (a, b) = (&digests[first].object.name, &digests[second].object.name);
                problems.push(problem(
                    &digests[p],
                    ProblemKind::DigestChainForked,
                    format!("both {a} and {b} name it as their previous digest: CloudTrail writes one chain, so one of them is not CloudTrail's"),
                ));
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signature {
    Valid,
    Failed,
    Unchecked,
}

/// Checks each still-trusted digest's signature: from its S3 metadata, or as the next digest
/// records it.
fn check_signatures(
    digests: &mut [Read],
    keys: Option<&PublicKeys>,
    self_signed: &[bool],
    problems: &mut Vec<Problem>,
) -> Vec<Signature> {
    digests
        .iter_mut()
        .zip(self_signed)
        .map(|(d, &self_signed)| {
            if !d.trusted {
                return Signature::Failed;
            }
            let from_metadata = d.object.metadata_signature.as_deref();
            if keys.is_some() && d.object.bucket.is_some() && from_metadata.is_none() {
                d.trusted = false;
                problems.push(problem(
                    d,
                    ProblemKind::DigestSignatureInvalid,
                    "its S3 object carries no signature (x-amz-meta-signature), which CloudTrail sets on every digest"
                        .to_string(),
                ));
                return Signature::Failed;
            }
            if let (Some(a), Some(b)) = (from_metadata, d.signature_from_next)
                && !a.eq_ignore_ascii_case(b)
            {
                d.trusted = false;
                problems.push(problem(
                    d,
                    ProblemKind::DigestSignatureInvalid,
                    "the signature in its S3 metadata differs from the one the next digest records".to_string(),
                ));
                return Signature::Failed;
            }
            let (Some(keys), Some(signature)) = (keys, from_metadata.or(d.signature_from_next)) else {
                return Signature::Unchecked;
            };
            let fingerprint = &d.digest.digest_public_key_fingerprint;
            let Some(key) = keys.get(fingerprint) else {
                d.trusted = false;
                problems.push(problem(
                    d,
                    ProblemKind::DigestKeyUnknown,
                    format!("signed with the key whose fingerprint is {fingerprint}, which the public keys given do not hold"),
                ));
                return Signature::Failed;
            };
            // A signature from the metadata was verified with the chains ([`signed_in_metadata`]).
            let valid = if from_metadata.is_some() {
                self_signed
            } else {
                signature_is_valid(key, d.digest.signing_string(&d.sha256).as_bytes(), signature)
            };
            if valid {
                Signature::Valid
            } else {
                d.trusted = false;
                problems.push(problem(
                    d,
                    ProblemKind::DigestSignatureInvalid,
                    format!("its signature does not verify with the key whose fingerprint is {fingerprint}"),
                ));
                Signature::Failed
            }
        })
        .collect()
}

fn judge_log(
    log: &LogObject,
    listed: &HashMap<&str, Vec<(&Read, usize)>>,
    listed_untrusted: &HashMap<&str, &Read>,
    covered: &[Period],
) -> (LogVerdict, Option<(ProblemKind, String)>) {
    let sha256 = match &log.sha256 {
        Some(Ok(sha256)) => Some(sha256),
        Some(Err(reason)) => return (LogVerdict::Altered, Some((ProblemKind::Altered, reason.clone()))),
        None => None,
    };
    if let (Some(sha256), Some(listings)) = (sha256, listed.get(log.file.as_str())) {
        // Verified only when every trusted digest that lists it agrees with its content: a
        // digest listing the content of an altered copy does not outvote the one it contradicts.
        let lists_its_content = |(d, i): &&(&Read, usize)| {
            d.digest.log_files.get(*i).and_then(|f| f.hash().ok()) == Some(*sha256)
        };
        let (agree, disagree): (Vec<_>, Vec<_>) = listings.iter().partition(lists_its_content);
        return match (agree.first().map(|(d, _)| d), disagree.first().map(|(d, _)| d)) {
            (_, None) => (LogVerdict::Verified, None),
            (None, Some(d)) => {
                let reason = format!("its content does not have the SHA-256 {} lists for it", d.object.name);
                (LogVerdict::Altered, Some((ProblemKind::Altered, reason)))
            }
            (Some(a), Some(d)) => {
                let reason = format!(
                    "the digests disagree: {} lists the SHA-256 of its content, {} another",
                    a.object.name, d.object.name
                );
                (LogVerdict::Altered, Some((ProblemKind::Altered, reason)))
            }
        };
    }
    if let Some(d) = listed_untrusted.get(log.file.as_str()) {
        let reason = format!("only {} lists it, and that digest failed verification", d.object.name);
        return (LogVerdict::Unlisted, Some((ProblemKind::Unlisted, reason)));
    }
    let in_covered_hour = log
        .delivered
        .is_some_and(|t| covered.iter().any(|p| p.start <= t && t + DELIVERY_WINDOW_SECONDS <= p.end));
    if in_covered_hour {
        let reason = "digests cover the hour after its delivery, but none lists it".to_string();
        (LogVerdict::Unlisted, Some((ProblemKind::Unlisted, reason)))
    } else {
        (LogVerdict::NotCovered, None)
    }
}

/// The summary of an account and region, started when first needed.
fn summary_of<'m>(
    summaries: &'m mut BTreeMap<(String, String), Summary>,
    account: &str,
    region: &str,
) -> &'m mut Summary {
    summaries.entry((account.to_string(), region.to_string())).or_insert_with(|| Summary {
        account: account.to_string(),
        region: region.to_string(),
        ..Summary::default()
    })
}

/// The trail part of a digest key's file name: everything before the end timestamp.
fn trail_of(key: &str) -> &str {
    let file = file_name(key);
    let file = file.strip_suffix(".json.gz").unwrap_or(file);
    let file = file.strip_suffix("_backfill").unwrap_or(file);
    file.rsplit_once('_').map_or(file, |(trail, _)| trail)
}

/// Sorted, merged periods; neighbours within [`CONTIGUOUS_SECONDS`] join.
fn merge(mut periods: Vec<Period>) -> Vec<Period> {
    periods.sort_by_key(|p| p.start);
    let mut out: Vec<Period> = Vec::with_capacity(periods.len());
    for p in periods {
        match out.last_mut() {
            Some(last) if p.start <= last.end + CONTIGUOUS_SECONDS => last.end = last.end.max(p.end),
            _ => out.push(p),
        }
    }
    out
}

fn problem(d: &Read, verdict: ProblemKind, reason: String) -> Problem {
    Problem {
        object: d.object.name.clone(),
        verdict,
        reason,
        account: Some(d.account.clone()),
        region: Some(d.region.clone()),
    }
}

impl Summary {
    /// Merges the covered periods and derives the gaps between them (after they were added to).
    pub(crate) fn close_periods(&mut self) {
        self.covered = merge(std::mem::take(&mut self.covered));
        self.gaps = self.covered.windows(2).map(|w| Period { start: w[0].end, end: w[1].start }).collect();
        self.hours_without_digests =
            self.gaps.iter().map(|g| u64::try_from((g.end - g.start + 3599) / 3600).unwrap_or(0)).sum();
    }

    /// Adds the counts and periods of a slice of the same account and region.
    pub(crate) fn add(&mut self, other: &Summary) {
        self.verified += other.verified;
        self.altered += other.altered;
        self.unlisted += other.unlisted;
        self.not_covered += other.not_covered;
        self.missing += other.missing;
        self.digests += other.digests;
        self.digests_trusted += other.digests_trusted;
        self.signatures_valid += other.signatures_valid;
        self.signatures_unchecked += other.signatures_unchecked;
        self.covered.extend_from_slice(&other.covered);
        self.close_periods();
    }
}
