//! Verifying a bucket, or a copy of one, a day at a time, so that memory stays that of a few
//! days of one account and region however long the history.
//!
//! CloudTrail lays a bucket out as `AWSLogs/[o-org/]ACCOUNT/CloudTrail[-Digest]/REGION/YYYY/MM/DD/`.
//! The walk finds each account's folders, and for each region takes the days in order: a day's
//! log files are judged with the digests of that day, of the day before (the chain's previous
//! link) and of the day after (files delivered late in the day, and the signature the next
//! digest records), as a [`Slice`]. Files outside that layout (a flat folder of downloads, a
//! root deeper than an account's folder, files where CloudTrail writes none) are judged
//! together at the end, in memory: nothing found is left out.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use granttrail_cloudtrail::digest::PublicKeys;
use granttrail_cloudtrail::{KeyClass, ObjectKey};
use granttrail_grants::timestamp;

use super::{Filter, Input, Problem, Slice, Summary, Verification, analyse, read_parallel};

/// Where the objects are: a directory tree, or a bucket. Prefixes are `/`-separated and end in
/// `/` (the root as given may not).
pub trait Layout: Sync {
    /// The folders (each ending in `/`) and the files directly under `prefix`, each in name
    /// order; none when `prefix` does not exist.
    fn list(&self, prefix: &str) -> Result<(Vec<String>, Vec<String>), String>;
    /// Reads one file: a log file hashed, a digest parsed.
    fn read(&self, key: &str, class: KeyClass) -> Result<Input, String>;
}

/// What a walk found, besides the verdicts handed over slice by slice.
#[derive(Debug, Default)]
pub struct Walked {
    /// Problems, ordered by account, region, verdict and object.
    pub problems: Vec<Problem>,
    /// One per account and region, in that order.
    pub summaries: Vec<Summary>,
    /// Digests read.
    pub digests: u64,
    /// Files that are neither CloudTrail log files nor digests.
    pub other_files: u64,
    /// Objects or folders that could not be read, by name.
    pub errors: Vec<(String, String)>,
}

impl Walked {
    /// The whole verification, for printing (the verdicts were handed over as they came).
    pub fn verification(&self, signatures_checked: bool) -> Verification {
        Verification {
            problems: self.problems.clone(),
            summaries: self.summaries.clone(),
            signatures_checked,
            log_files: Vec::new(),
            missing: Vec::new(),
        }
    }
}

/// Several walks (of different sources) as one.
pub fn merge(walks: Vec<Walked>) -> Walked {
    let mut out = Walked::default();
    let mut summaries: BTreeMap<(String, String), Summary> = BTreeMap::new();
    for w in walks {
        out.problems.extend(w.problems);
        out.digests += w.digests;
        out.other_files += w.other_files;
        out.errors.extend(w.errors);
        for s in w.summaries {
            match summaries.get_mut(&(s.account.clone(), s.region.clone())) {
                Some(total) => total.add(&s),
                None => {
                    summaries.insert((s.account.clone(), s.region.clone()), s);
                }
            }
        }
    }
    out.summaries = summaries.into_values().collect();
    sort_problems(&mut out.problems);
    out
}

fn sort_problems(problems: &mut [Problem]) {
    problems.sort_by(|a, b| {
        (&a.account, &a.region, a.verdict, &a.object).cmp(&(&b.account, &b.region, b.verdict, &b.object))
    });
}

/// Folders below a root searched for `AWSLogs/` (a case folder, a bucket prefix).
const SEARCH_DEPTH: usize = 4;

const DAY: i64 = 86_400;

/// Verifies everything under the folders `roots` and the files `files`. `slice_done` hears
/// each slice's verification (its `log_files` and `missing`, to record) as soon as it is
/// judged; an error from it stops the walk.
pub fn walk(
    layout: &dyn Layout,
    roots: &[String],
    files: &[String],
    keys: Option<&PublicKeys>,
    filter: &Filter,
    jobs: usize,
    slice_done: &mut dyn FnMut(&Verification) -> Result<(), String>,
) -> Result<Walked, String> {
    let mut walk = Walk {
        layout,
        keys,
        filter,
        jobs,
        out: Walked::default(),
        summaries: BTreeMap::new(),
        loose: files.to_vec(),
    };
    let mut accounts = Vec::new();
    for root in roots {
        walk.find_roots(root, &mut accounts);
    }
    // Overlapping roots name an account twice.
    accounts.sort();
    accounts.dedup();
    for account in &accounts {
        for region in walk.regions(account) {
            walk.place(account, &region, slice_done)?;
        }
    }
    let mut loose = std::mem::take(&mut walk.loose);
    loose.sort();
    loose.dedup();
    if !loose.is_empty() {
        let inputs = walk.read_all(&loose);
        let v = analyse(&inputs, keys, filter);
        drop(inputs);
        slice_done(&v)?;
        walk.absorb(v);
    }
    let mut out = walk.out;
    out.summaries = walk.summaries.into_values().collect();
    sort_problems(&mut out.problems);
    Ok(out)
}

struct Walk<'a> {
    layout: &'a dyn Layout,
    keys: Option<&'a PublicKeys>,
    filter: &'a Filter,
    jobs: usize,
    out: Walked,
    summaries: BTreeMap<(String, String), Summary>,
    /// Files found outside the layout, judged together at the end.
    loose: Vec<String>,
}

/// The last name in a `/`-separated prefix or key.
fn last_name(path: &str) -> &str {
    path.trim_end_matches('/').rsplit('/').next().unwrap_or_default()
}

fn is_account(name: &str) -> bool {
    name.len() == 12 && name.bytes().all(|b| b.is_ascii_digit())
}

impl Walk<'_> {
    /// A folder's subfolders and files; an error is kept and reads as an empty folder.
    fn list(&mut self, prefix: &str) -> (Vec<String>, Vec<String>) {
        self.layout.list(prefix).unwrap_or_else(|e| {
            self.out.errors.push((prefix.to_string(), e));
            (Vec::new(), Vec::new())
        })
    }

    /// Collects the account folders (`.../AWSLogs/[o-org/]ACCOUNT/`) at or under `root`; what
    /// lies outside them goes loose.
    fn find_roots(&mut self, root: &str, accounts: &mut Vec<String>) {
        let root = if root.ends_with('/') || root.is_empty() { root.to_string() } else { format!("{root}/") };
        let parts: Vec<&str> = root.trim_end_matches('/').split('/').collect();
        match parts.iter().rposition(|p| *p == "AWSLogs").map(|i| &parts[i + 1..]) {
            None => self.search(&root, 0, accounts),
            Some([]) => self.awslogs(&root, accounts),
            Some([org]) if org.starts_with("o-") => self.organization(&root, accounts),
            Some([account]) if is_account(account) => accounts.push(root),
            Some([org, account]) if org.starts_with("o-") && is_account(account) => accounts.push(root),
            Some(_) => self.all_loose(&root),
        }
    }

    /// Looks for `AWSLogs/` a few folders down.
    fn search(&mut self, prefix: &str, depth: usize, accounts: &mut Vec<String>) {
        let (folders, files) = self.list(prefix);
        self.loose.extend(files);
        for folder in folders {
            if last_name(&folder) == "AWSLogs" {
                self.awslogs(&folder, accounts);
            } else if depth < SEARCH_DEPTH {
                self.search(&folder, depth + 1, accounts);
            } else {
                // Deeper than a copy's `AWSLogs/` would be: judged loose, never left out.
                self.all_loose(&folder);
            }
        }
    }

    fn awslogs(&mut self, folder: &str, accounts: &mut Vec<String>) {
        let (folders, files) = self.list(folder);
        self.loose.extend(files);
        for child in folders {
            let name = last_name(&child);
            if is_account(name) {
                accounts.push(child);
            } else if name.starts_with("o-") {
                self.organization(&child, accounts);
            } else {
                self.all_loose(&child);
            }
        }
    }

    fn organization(&mut self, folder: &str, accounts: &mut Vec<String>) {
        let (folders, files) = self.list(folder);
        self.loose.extend(files);
        for account in folders {
            if is_account(last_name(&account)) {
                accounts.push(account);
            } else {
                self.all_loose(&account);
            }
        }
    }

    /// Everything under `prefix`, to be judged loose.
    fn all_loose(&mut self, prefix: &str) {
        let (folders, files) = self.list(prefix);
        self.loose.extend(files);
        for folder in folders {
            self.all_loose(&folder);
        }
    }

    /// The regions of an account that the filter wants, from both trees. Anything else in the
    /// account's folder but Insights goes loose.
    fn regions(&mut self, account: &str) -> Vec<String> {
        if !self.filter.accounts.is_empty() && !self.filter.accounts.iter().any(|a| a == last_name(account)) {
            return Vec::new();
        }
        let (folders, files) = self.list(account);
        self.loose.extend(files);
        let mut regions = BTreeSet::new();
        for folder in folders {
            match last_name(&folder) {
                "CloudTrail" | "CloudTrail-Digest" => {
                    let (folders, files) = self.list(&folder);
                    self.loose.extend(files);
                    regions.extend(folders.iter().map(|f| last_name(f).to_string()));
                }
                "CloudTrail-Insight" => {}
                _ => self.all_loose(&folder),
            }
        }
        regions
            .into_iter()
            .filter(|r| self.filter.regions.is_empty() || self.filter.regions.iter().any(|w| w == r))
            .collect()
    }

    /// The date folders (`YYYY/MM/DD/`, as the start of that day) under `prefix` the filter may
    /// need: a few days either side of its window, for the digests; years and months wholly
    /// outside it are not listed. What is not a date folder goes loose.
    fn days(&mut self, prefix: &str, into: &mut BTreeSet<i64>) {
        let (years, files) = self.list(prefix);
        self.loose.extend(files);
        for year in years {
            let y: Option<i32> = last_name(&year).parse().ok().filter(|_| last_name(&year).len() == 4);
            if let Some((start, end)) = y.and_then(|y| Some((month_start(y, 1)?, month_start(y + 1, 1)?)))
                && !self.wants_span(start, end)
            {
                continue;
            }
            let (months, files) = self.list(&year);
            self.loose.extend(files);
            for month in months {
                let m: Option<u32> = last_name(&month).parse().ok().filter(|_| last_name(&month).len() == 2);
                if let (Some(y), Some(m @ 1..=12)) = (y, m) {
                    let (next_y, next_m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                    if let (Some(start), Some(end)) = (month_start(y, m), month_start(next_y, next_m))
                        && !self.wants_span(start, end)
                    {
                        continue;
                    }
                }
                let (days, files) = self.list(&month);
                self.loose.extend(files);
                for day in days {
                    let date =
                        format!("{}-{}-{}T00:00:00Z", last_name(&year), last_name(&month), last_name(&day));
                    let Some(start) = timestamp::parse(&date).filter(|_| last_name(&day).len() == 2) else {
                        self.all_loose(&day);
                        continue;
                    };
                    if self.wants_span(start, start + DAY) {
                        into.insert(start);
                    }
                }
            }
        }
    }

    /// May folders of `[start, end)` hold what the filter wants, digests two days either side
    /// of its window included?
    fn wants_span(&self, start: i64, end: i64) -> bool {
        self.filter.since.is_none_or(|s| end + 2 * DAY > s)
            && self.filter.until.is_none_or(|u| start - 2 * DAY <= u)
    }

    /// May the filter want log files of the day starting at `day`?
    fn wants_logs_of(&self, day: i64) -> bool {
        self.filter.since.is_none_or(|s| day + DAY + 60 > s)
            && self.filter.until.is_none_or(|u| day <= u + super::DELIVERY_WINDOW_SECONDS)
    }

    /// One account and region, day by day.
    fn place(
        &mut self,
        account: &str,
        region: &str,
        slice_done: &mut dyn FnMut(&Verification) -> Result<(), String>,
    ) -> Result<(), String> {
        let logs_at = |day: i64| format!("{account}CloudTrail/{region}/{}", day_folders(day));
        let digests_at = |day: i64| format!("{account}CloudTrail-Digest/{region}/{}", day_folders(day));
        let mut days = BTreeSet::new();
        self.days(&format!("{account}CloudTrail/{region}/"), &mut days);
        self.days(&format!("{account}CloudTrail-Digest/{region}/"), &mut days);
        let days: Vec<i64> = days.into_iter().collect();
        let mut previous: Vec<Input> = Vec::new();
        let mut current = match days.first() {
            Some(&day) => self.read_folder(&digests_at(day)),
            None => Vec::new(),
        };
        for (i, &day) in days.iter().enumerate() {
            let next = match days.get(i + 1) {
                Some(&later) => self.read_folder(&digests_at(later)),
                None => Vec::new(),
            };
            let logs = if self.wants_logs_of(day) { self.read_folder(&logs_at(day)) } else { Vec::new() };
            let own: HashSet<String> = current
                .iter()
                .filter_map(|input| match input {
                    Input::Digest(d) => Some(d.name.clone()),
                    Input::Log(_) => None,
                })
                .collect();
            let (n_previous, n_current) = (previous.len(), current.len());
            let mut inputs = previous;
            inputs.append(&mut current);
            let n_next = next.len();
            inputs.extend(next);
            inputs.extend(logs);
            let filter =
                Filter { slice: Some(Slice { from: day, to: day + DAY, own }), ..self.filter.clone() };
            let v = analyse(&inputs, self.keys, &filter);
            slice_done(&v)?;
            self.absorb(v);
            // This day's digests are the next day's previous ones (unless it had none: a day
            // without digests must not hide where the chain broke); the next day's, its own.
            inputs.truncate(n_previous + n_current + n_next);
            let mut rest = inputs.split_off(n_previous);
            current = rest.split_off(n_current);
            previous = if rest.is_empty() { inputs } else { rest };
        }
        Ok(())
    }

    /// Reads the CloudTrail files in a day's folder (and in any folder below it, judged with
    /// the day), `jobs` at a time.
    fn read_folder(&mut self, prefix: &str) -> Vec<Input> {
        let (mut folders, mut files) = self.list(prefix);
        while let Some(folder) = folders.pop() {
            let (more, found) = self.list(&folder);
            folders.extend(more);
            files.extend(found);
        }
        self.read_all(&files)
    }

    fn read_all(&mut self, files: &[String]) -> Vec<Input> {
        let mut wanted = Vec::with_capacity(files.len());
        for file in files {
            match ObjectKey::parse(file).class {
                class @ (KeyClass::Log | KeyClass::Digest) => wanted.push((file, class)),
                KeyClass::Insight | KeyClass::Other => self.out.other_files += 1,
            }
        }
        let layout = self.layout;
        let results = read_parallel(&wanted, self.jobs, |(file, class)| layout.read(file, *class));
        let mut inputs = Vec::with_capacity(wanted.len());
        for ((file, _), result) in wanted.iter().zip(results) {
            match result {
                Ok(input) => {
                    self.out.digests += u64::from(matches!(input, Input::Digest(_)));
                    inputs.push(input);
                }
                Err(e) => self.out.errors.push(((*file).clone(), e)),
            }
        }
        inputs
    }

    fn absorb(&mut self, v: Verification) {
        self.out.problems.extend(v.problems);
        for s in v.summaries {
            let key = (s.account.clone(), s.region.clone());
            match self.summaries.get_mut(&key) {
                Some(total) => total.add(&s),
                None => {
                    self.summaries.insert(key, s);
                }
            }
        }
    }
}

/// The start of a month, if it is a date.
fn month_start(year: i32, month: u32) -> Option<i64> {
    timestamp::parse(&format!("{year:04}-{month:02}-01T00:00:00Z"))
}

/// `YYYY/MM/DD/` of the day starting at `start`.
fn day_folders(start: i64) -> String {
    let date = timestamp::format(start);
    format!("{}/{}/{}/", &date[0..4], &date[5..7], &date[8..10])
}

/// A directory tree on disk: a downloaded copy of a bucket.
#[derive(Debug, Clone, Copy)]
pub struct Directory {
    /// A log file inflating past this is altered (it cannot be what CloudTrail delivered).
    pub max_object_bytes: u64,
}

impl Layout for Directory {
    fn list(&self, prefix: &str) -> Result<(Vec<String>, Vec<String>), String> {
        let (mut folders, mut files) = (Vec::new(), Vec::new());
        let entries = match std::fs::read_dir(prefix) {
            Ok(entries) => entries,
            // A day with digests and no log files, or the reverse.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((folders, files)),
            Err(e) => return Err(e.to_string()),
        };
        for entry in entries {
            let entry = entry.map_err(|e| e.to_string())?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Through a link too, as ingest follows them.
            if entry.path().is_dir() {
                folders.push(format!("{prefix}{name}/"));
            } else {
                files.push(format!("{prefix}{name}"));
            }
        }
        folders.sort();
        files.sort();
        Ok((folders, files))
    }

    fn read(&self, key: &str, class: KeyClass) -> Result<Input, String> {
        super::read::read_file(std::path::Path::new(key), class, self.max_object_bytes)
    }
}
