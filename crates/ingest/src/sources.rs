//! Turning command-line paths into the list of objects to read.

use std::path::{Path, PathBuf};

use granttrail_cloudtrail::{KeyClass, ObjectKey};

/// One object to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Stdin,
}

impl Source {
    /// The name an object is stored and reported under: the absolute path of a file.
    pub fn name(&self) -> String {
        match self {
            Source::File(path) => {
                std::path::absolute(path).unwrap_or_else(|_| path.clone()).display().to_string()
            }
            Source::Stdin => "-".to_string(),
        }
    }
}

/// A file left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub path: PathBuf,
    pub reason: &'static str,
}

/// What [`collect_sources`] found.
#[derive(Debug, Default)]
pub struct SourceList {
    pub sources: Vec<Source>,
    pub skipped: Vec<Skip>,
    /// Paths that could not be read at all (missing, unreadable directory entries).
    pub errors: Vec<(PathBuf, String)>,
}

/// Expands paths: `-` is standard input; files are taken as given (unless their name marks
/// them as a digest or Insights file); directories are walked recursively in name order,
/// taking files named `*.json`, `*.jsonl`, `*.ndjson` and `*.gz`.
pub fn collect_sources(paths: &[PathBuf]) -> SourceList {
    let mut list = SourceList::default();
    for path in paths {
        if path.as_os_str() == "-" {
            // Standard input is one stream: read twice at once, each read would get part of it.
            if list.sources.contains(&Source::Stdin) {
                list.errors.push((path.clone(), "standard input is given more than once".to_string()));
            } else {
                list.sources.push(Source::Stdin);
            }
            continue;
        }
        match std::fs::metadata(path) {
            Err(e) => list.errors.push((path.clone(), e.to_string())),
            Ok(meta) if meta.is_dir() => walk(path, &mut list),
            Ok(_) => match skip_reason(path) {
                Some(reason) => list.skipped.push(Skip { path: path.clone(), reason }),
                None => list.sources.push(Source::File(path.clone())),
            },
        }
    }
    list
}

fn walk(dir: &Path, list: &mut SourceList) {
    // Links are followed: a folder of links to log files is a folder of log files. A link to
    // nothing, or one that loops, is an error naming it.
    for entry in walkdir::WalkDir::new(dir).follow_links(true).sort_by_file_name() {
        match entry {
            Err(e) => {
                let path = e.path().map(Path::to_path_buf).unwrap_or_else(|| dir.to_path_buf());
                list.errors.push((path, e.to_string()));
            }
            Ok(entry) if entry.file_type().is_file() => {
                let path = entry.into_path();
                if !has_log_extension(&path) {
                    list.skipped.push(Skip { path, reason: "not a .json, .jsonl, .ndjson or .gz file" });
                } else if let Some(reason) = skip_reason(&path) {
                    list.skipped.push(Skip { path, reason });
                } else {
                    list.sources.push(Source::File(path));
                }
            }
            Ok(_) => {}
        }
    }
}

fn has_log_extension(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    [".json", ".jsonl", ".ndjson", ".gz"].iter().any(|ext| name.ends_with(ext))
}

fn skip_reason(path: &Path) -> Option<&'static str> {
    match ObjectKey::parse(&path.to_string_lossy()).class {
        KeyClass::Digest => Some("CloudTrail digest file"),
        KeyClass::Insight => Some("CloudTrail Insights file"),
        KeyClass::Log | KeyClass::Other => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_walked_and_digests_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("AWSLogs/111122223333/CloudTrail/us-east-1/2024/01/02");
        let digests = dir.path().join("AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2024/01/02");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::create_dir_all(&digests).unwrap();
        for name in ["b.json.gz", "a.json", "notes.txt"] {
            std::fs::write(logs.join(name), "{}").unwrap();
        }
        std::fs::write(digests.join("d.json.gz"), "{}").unwrap();
        let list = collect_sources(&[
            dir.path().to_path_buf(),
            PathBuf::from("-"),
            dir.path().join("missing"),
            PathBuf::from("-"),
        ]);
        assert_eq!(
            list.sources,
            vec![Source::File(logs.join("a.json")), Source::File(logs.join("b.json.gz")), Source::Stdin]
        );
        let reasons: Vec<_> = list.skipped.iter().map(|s| s.reason).collect();
        assert_eq!(reasons, vec!["not a .json, .jsonl, .ndjson or .gz file", "CloudTrail digest file"]);
        let errors: Vec<&str> = list.errors.iter().map(|(_, e)| e.as_str()).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[1], "standard input is given more than once");
    }

    #[cfg(unix)]
    #[test]
    fn links_in_a_folder_are_followed_and_a_broken_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (real, links) = (dir.path().join("real"), dir.path().join("links"));
        std::fs::create_dir_all(&real).unwrap();
        std::fs::create_dir_all(&links).unwrap();
        std::fs::write(real.join("a.json.gz"), "{}").unwrap();
        std::os::unix::fs::symlink(real.join("a.json.gz"), links.join("a.json.gz")).unwrap();
        std::os::unix::fs::symlink(&real, links.join("more")).unwrap();
        std::os::unix::fs::symlink(real.join("gone.json.gz"), links.join("gone.json.gz")).unwrap();
        let list = collect_sources(std::slice::from_ref(&links));
        assert_eq!(
            list.sources,
            vec![Source::File(links.join("a.json.gz")), Source::File(links.join("more/a.json.gz"))]
        );
        assert_eq!(list.errors.len(), 1, "{:?}", list.errors);
        assert_eq!(list.errors[0].0, links.join("gone.json.gz"));
    }
}
