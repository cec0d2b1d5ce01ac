//! Listing a bucket folder by folder (ListObjectsV2 with a `/` delimiter), descending only
//! into folders the [`Window`] may want, so a narrow window costs a few listing calls even
//! on a bucket of years.

use aws_sdk_s3::Client;
use tokio::runtime::Handle;

use crate::{S3Error, Window};

/// An object the listing selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
}

/// Walks `bucket` under a prefix, one listing page at a time.
pub struct Walker {
    client: Client,
    bucket: String,
    window: Window,
    /// Folders still to list, the next one last.
    folders: Vec<String>,
    /// The folder being listed and where its next page starts.
    current: Option<(String, Option<String>)>,
}

impl Walker {
    pub fn new(client: Client, bucket: &str, prefix: &str, window: Window) -> Walker {
        Walker {
            client,
            bucket: bucket.to_string(),
            window,
            folders: Vec::new(),
            current: Some((prefix.to_string(), None)),
        }
    }

    /// The wanted objects of the next listing page (possibly none), or `None` when the walk
    /// is over. Blocks on `handle`: call it from a plain thread.
    pub fn next_page(&mut self, handle: &Handle) -> Result<Option<Vec<Listed>>, S3Error> {
        let (prefix, token) = match self.current.take() {
            Some(current) => current,
            None => match self.folders.pop() {
                Some(folder) => (folder, None),
                None => return Ok(None),
            },
        };
        let request = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .delimiter("/")
            .set_continuation_token(token);
        let page = handle
            .block_on(request.send())
            .map_err(|e| S3Error::new(format!("ListObjectsV2 s3://{}/{prefix}", self.bucket), e))?;
        if page.is_truncated() == Some(true) {
            self.current = page.next_continuation_token().map(|t| (prefix.clone(), Some(t.to_string())));
        }
        // Listed in key order; pushed in reverse so the smallest folder is walked first.
        let mut folders: Vec<String> = page
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix())
            .filter(|p| self.window.may_hold(p))
            .map(str::to_string)
            .collect();
        folders.reverse();
        self.folders.extend(folders);
        Ok(Some(
            page.contents()
                .iter()
                .filter_map(|o| {
                    let key = o.key()?;
                    self.window.wants(key).then(|| Listed {
                        key: key.to_string(),
                        size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    })
                })
                .collect(),
        ))
    }
}

/// One folder's listing, every page of it: the subfolders (each ending in `/`) and the keys of
/// the objects directly under `prefix`, in key order. Without `folders`, the keys of every object
/// under `prefix`, however deep (and no subfolders).
pub fn list_all(
    client: &Client,
    handle: &Handle,
    bucket: &str,
    prefix: &str,
    folders: bool,
) -> Result<(Vec<String>, Vec<String>), S3Error> {
    let (mut subfolders, mut keys) = (Vec::new(), Vec::new());
    let mut token = None;
    loop {
        let request = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_delimiter(folders.then(|| "/".to_string()))
            .set_continuation_token(token.take());
        let page = handle
            .block_on(request.send())
            .map_err(|e| S3Error::new(format!("ListObjectsV2 s3://{bucket}/{prefix}"), e))?;
        subfolders.extend(page.common_prefixes().iter().filter_map(|p| p.prefix()).map(str::to_string));
        keys.extend(page.contents().iter().filter_map(|o| o.key()).map(str::to_string));
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
            _ => return Ok((subfolders, keys)),
        }
    }
}
