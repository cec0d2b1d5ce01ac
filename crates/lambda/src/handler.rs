//! One invocation: unwrap the event, ingest what it announces, report per-message failures,
//! publish new findings; or write a snapshot.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_lambda_events::event::sqs::SqsBatchResponse;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use granttrail_cloudtrail::digest::stored_bytes_bound;
use granttrail_cloudtrail::envelope::{Delivery, unwrap_event};
use granttrail_cloudtrail::{KeyClass, ObjectKey};
use granttrail_grants::findings::FindingView;
use granttrail_grants::timestamp;
use granttrail_ingest::verify::{
    Filter, Input, LogVerdict, MAX_DIGEST_STORED_BYTES, Verification, analyse, digest_from_stored,
    hashed_log, log_from_stored, named_log,
};
use granttrail_ingest::{CONFLICT_ATTEMPTS, Limits, Outcome, conflict_pause, ingest_object, now};
use granttrail_s3::{
    ClientOptions, connect, fetch_digest_object, fetch_object, list_all, object_name, open_object,
};
use granttrail_store::db::Engine;
use granttrail_store::{Journal, Location, Store, VerificationRun};
use serde_json::{Value, json};
use tokio::runtime::Handle;
use tracing::{error, info, warn};

use crate::Env;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The function's state, kept between invocations of one sandbox.
pub struct Handler {
    store: Arc<Mutex<Store>>,
    s3: aws_sdk_s3::Client,
    sns: aws_sdk_sns::Client,
    secrets: aws_sdk_secretsmanager::Client,
    env: Env,
    limits: Limits,
}

impl Handler {
    /// Opens the database (rollback journal: it lives on a network file system) and the AWS
    /// clients (standard chain; `AWS_ENDPOINT_URL` is honoured, with path-style S3).
    pub async fn new(env: Env) -> Result<Handler, Error> {
        let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let secrets = aws_sdk_secretsmanager::Client::new(&shared);
        let store = open_store(&env, &secrets).await?;
        Ok(Handler {
            store: Arc::new(Mutex::new(store)),
            s3: connect(&ClientOptions::default()).await,
            sns: aws_sdk_sns::Client::new(&shared),
            secrets,
            env,
            limits: Limits::default(),
        })
    }

    /// Opens the database again, with its secret read again, when the server has closed the
    /// connection (a restart, a failover, maintenance) or refused its credentials (a rotated
    /// password): otherwise this instance would fail every message it is given, while Lambda
    /// keeps it warm. Returns whether it did.
    async fn reconnect_if_lost(&self) -> Result<bool, Error> {
        if !lock(&self.store)?.connection_lost() {
            return Ok(false);
        }
        warn!("the database connection was lost: opening it again");
        let fresh = open_store(&self.env, &self.secrets).await?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || -> Result<(), Error> {
            // The old store is dropped here: its client's runtime may not end on an async thread.
            let _lost = std::mem::replace(&mut *lock(&store)?, fresh);
            Ok(())
        })
        .await??;
        Ok(true)
    }

    /// Handles one event. For SQS events the answer lists the messages to redeliver; for
    /// other events a failure is an error, so Lambda's own retries and destinations apply.
    pub async fn handle(&self, event: Value) -> Result<Value, Error> {
        let started = Instant::now();
        if let Some(scheduled @ ("snapshot" | "evaluate")) = event.get("granttrail").and_then(Value::as_str) {
            // Some findings appear with time alone (a grant grows old): the scheduled
            // invocation evaluates every key, batches only the keys they touched.
            let published = self.publish_new_findings(Scope::AllKeys).await?;
            info!(published_findings = published, "every key evaluated");
            self.apply_retention().await?;
            if scheduled == "evaluate" {
                return Ok(json!({ "published_findings": published }));
            }
            return self.snapshot().await;
        }
        self.reconnect_if_lost().await?;
        let messages = unwrap_event(&serde_json::to_vec(&event)?)?;
        let mut response = SqsBatchResponse::default();
        let mut failures = Vec::new();
        let mut objects = 0usize;
        // The keys a digest checked in this batch calls into question, once any was checked.
        let mut verified = None;
        for message in &messages {
            let deliver =
                async |objects: &mut usize, verified: &mut Option<Vec<String>>| match &message.deliveries {
                    Err(reason) => Err(reason.clone()),
                    Ok(deliveries) => self.deliver(deliveries, objects, verified).await,
                };
            let mut result = deliver(&mut objects, &mut verified).await;
            if result.is_err() {
                // The server went away during the message (a restart or failover): once the
                // database is open again, the message is written again, which is safe.
                match self.reconnect_if_lost().await {
                    Ok(true) => result = deliver(&mut objects, &mut verified).await,
                    Ok(false) => {}
                    Err(e) => error!(error = %e, "opening the database again failed"),
                }
            }
            if let Err(reason) = result {
                error!(message_id = message.id.as_deref(), error = %reason, "message failed");
                match &message.id {
                    Some(id) => response.add_failure(id.clone()),
                    None => failures.push(reason),
                }
            }
        }
        // Everything acknowledged below is committed; labels and findings are derived, so a
        // failure there is logged and retried by the next invocation, not by redelivery.
        let scope = match verified {
            None => Scope::TouchedKeys,
            Some(keys) => Scope::Verified(keys),
        };
        let published = match self.publish_new_findings(scope).await {
            Ok(n) => n,
            Err(e) => {
                error!(error = %e, "publishing findings failed; they are retried next time");
                0
            }
        };
        info!(
            messages = messages.len(),
            objects,
            failed_messages = response.batch_item_failures.len() + failures.len(),
            published_findings = published,
            duration_ms = started.elapsed().as_millis() as u64,
            "invocation"
        );
        if !failures.is_empty() {
            return Err(failures.join("; ").into());
        }
        if messages.iter().any(|m| m.id.is_some()) {
            return Ok(serde_json::to_value(response)?);
        }
        Ok(json!({ "objects": objects, "published_findings": published }))
    }

    /// Ingests what one message asks for, and checks the digests it announces; the first
    /// failure fails the message.
    async fn deliver(
        &self,
        deliveries: &[Delivery],
        objects: &mut usize,
        verified: &mut Option<Vec<String>>,
    ) -> Result<(), String> {
        for delivery in deliveries {
            match delivery {
                Delivery::Object { bucket, key } => {
                    let name = object_name(bucket, key);
                    let class = ObjectKey::parse(key).class;
                    if class == KeyClass::Digest {
                        let keys = self.verify_digest(bucket.clone(), key.clone()).await?;
                        verified.get_or_insert_with(Vec::new).extend(keys);
                        *objects += 1;
                        continue;
                    }
                    if class != KeyClass::Log {
                        info!(object = %name, outcome = "skipped", reason = skip_reason(class), "object");
                        continue;
                    }
                    let (s3, bucket, key) = (self.s3.clone(), bucket.clone(), key.clone());
                    self.ingest(name, move |handle| {
                        open_object(&s3, handle, &bucket, &key)
                            .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>)
                    })
                    .await?;
                }
                Delivery::Records(records) => {
                    // Named by content, so a redelivered message is recognised as done.
                    let text = records.join("\n");
                    let name = format!("records:{:016x}", granttrail_grants::fnv1a(text.bytes()));
                    self.ingest(name, move |_| Ok(Box::new(Cursor::new(text.clone().into_bytes())))).await?;
                }
                Delivery::Ignored(why) => info!(outcome = "ignored", reason = why, "message"),
            }
            *objects += 1;
        }
        Ok(())
    }

    /// Ingests one object on a blocking thread (SQLite and the decoder are synchronous; the
    /// body is pulled from S3 chunk by chunk as the decoder asks).
    async fn ingest<F>(&self, name: String, open: F) -> Result<(), String>
    where
        F: Fn(&Handle) -> std::io::Result<Box<dyn std::io::Read + Send>> + Send + 'static,
    {
        let started = Instant::now();
        let (store, limits, handle) = (self.store.clone(), self.limits, Handle::current());
        let task_name = name.clone();
        let outcome = tokio::task::spawn_blocking(move || -> Result<Outcome, String> {
            let mut store = lock(&store)?;
            let mut attempt = 1;
            loop {
                if store.is_ingested(&task_name).map_err(|e| e.to_string())? {
                    return Ok(Outcome::AlreadyIngested);
                }
                let reader = open(&handle).map_err(|e| format!("cannot read: {e}"))?;
                match ingest_object(&mut store, &task_name, reader, &limits, now()) {
                    // A conflict with another instance undid the object: read and write it again.
                    Err(e) if e.is_conflict() && attempt < CONFLICT_ATTEMPTS => {
                        warn!(object = %task_name, attempt, "conflict with another writer: writing the object again");
                        std::thread::sleep(conflict_pause(attempt));
                        attempt += 1;
                    }
                    result => return result.map_err(|e| e.to_string()),
                }
            }
        })
        .await
        .map_err(|e| format!("{name}: {e}"))?
        .map_err(|e| format!("{name}: {e}"))?;
        let duration_ms = started.elapsed().as_millis() as u64;
        match outcome {
            Outcome::Ingested { counts, first_skip, .. } => {
                for c in &counts.collisions {
                    warn!(object = %name, event_id = %c.event_id, other_object = %c.other_object, "eventID collision: both records kept");
                }
                info!(
                    object = %name,
                    outcome = "ingested",
                    records = counts.records,
                    kms_events = counts.kms_events,
                    new_events = counts.new_events,
                    grant_events = counts.grant_events,
                    skipped_records = counts.skipped_records,
                    first_skip = first_skip.map(|e| e.to_string()),
                    duration_ms,
                    "object"
                );
                Ok(())
            }
            Outcome::AlreadyIngested => {
                info!(object = %name, outcome = "already ingested", duration_ms, "object");
                Ok(())
            }
            Outcome::Rejected(e) => {
                error!(object = %name, outcome = "rejected", error = %e, duration_ms, "object");
                Err(format!("{name}: {e}"))
            }
        }
    }

    /// Checks a digest as it arrives, against the digest before it (the chain, and the
    /// signature the new one records for it) and the log files it lists: each one's content
    /// hash as kept when it was ingested, or read now when it was not; a listed file that is not
    /// in the bucket is missing. The verdicts are recorded like `granttrail verify`'s. Returns
    /// the keys of the events stored from files found altered or unlisted.
    ///
    /// A log file named in the hours of the previous digest that neither digest lists is
    /// unlisted (planted, or its listing removed): the bucket's log folder for those hours is
    /// listed, by name only.
    async fn verify_digest(&self, bucket: String, key: String) -> Result<Vec<String>, String> {
        let started = Instant::now();
        let name = object_name(&bucket, &key);
        let (store, s3, handle) = (self.store.clone(), self.s3.clone(), Handle::current());
        let (public_keys, max_bytes) = (self.env.public_keys.clone(), self.limits.max_object_bytes);
        let task_name = name.clone();
        let judged = tokio::task::spawn_blocking(move || -> Result<Option<(Verification, Vec<String>)>, String> {
            // Objects are fetched whole (up to a bound: a larger one cannot be read, a verdict):
            // a failed transfer is an error (the message is retried), never a verdict on the content.
            let read_digest_at = |bucket: &str, key: &str| {
                let stored = fetch_digest_object(&s3, &handle, bucket, key, MAX_DIGEST_STORED_BYTES);
                digest_from_stored(object_name(bucket, key), key, Some(bucket.to_string()), stored)
            };
            let digest = match read_digest_at(&bucket, &key) {
                Ok(digest) => digest,
                // Announced, then gone: S3 is consistent, so it was deleted. Nothing to retry.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    error!(
                        object = %task_name,
                        problem = "digest missing",
                        reason = "announced by the bucket's notification, then deleted before it could be read",
                        digest = %task_name,
                        "log integrity"
                    );
                    return Ok(None);
                }
                Err(e) => return Err(format!("cannot read: {e}")),
            };
            let mut inputs = Vec::new();
            if let Ok((d, _)) = &digest.content {
                if let Some(previous) = &d.previous_digest_s3_object {
                    let at = d.previous_digest_s3_bucket.as_deref().unwrap_or(&bucket);
                    match read_digest_at(at, previous) {
                        Ok(previous) => {
                            // The two digests cover the previous one's hours and the hour after:
                            // a file named then that neither lists is unlisted.
                            if let Ok((p, _)) = &previous.content {
                                for key in logs_named_during(&s3, &handle, &bucket, &key, p)? {
                                    inputs.push(Input::Log(named_log(object_name(&bucket, &key), &key)));
                                }
                            }
                            inputs.push(Input::Digest(Box::new(previous)));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => error!(
                            object = %object_name(at, previous),
                            problem = "digest missing",
                            reason = %format!("{task_name} names it as the previous digest, but it is not in the bucket: the log files it listed cannot be checked"),
                            digest = %task_name,
                            "log integrity"
                        ),
                        Err(e) => return Err(format!("previous digest {}: {e}", object_name(at, previous))),
                    }
                }
                for file in &d.log_files {
                    let name = object_name(&file.s3_bucket, &file.s3_object);
                    let kept = lock(&store)?.content_sha256(&name).map_err(|e| e.to_string())?;
                    let log = match kept {
                        Some(sha256) => hashed_log(name, &file.s3_object, Ok(sha256)),
                        None => {
                            let most = stored_bytes_bound(max_bytes);
                            let stored = fetch_object(&s3, &handle, &file.s3_bucket, &file.s3_object, most);
                            match log_from_stored(name.clone(), &file.s3_object, stored, max_bytes) {
                                Ok(log) => log,
                                // Not among the inputs: judged missing.
                                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                                Err(e) => return Err(format!("{name}: {e}")),
                            }
                        }
                    };
                    inputs.push(Input::Log(log));
                }
            }
            inputs.push(Input::Digest(Box::new(digest)));
            let filter = Filter { listings_of: Some(task_name), ..Filter::default() };
            let v = analyse(&inputs, public_keys.as_ref(), &filter);
            let at = now();
            let mut store = lock(&store)?;
            let files = v.file_verdicts(at);
            // No summaries: they describe whole accounts and regions, which one digest does not.
            store
                .record_verification(VerificationRun { files: &files, missing: &v.missing, summaries: &[], at })
                .map_err(|e| e.to_string())?;
            let untrusted: Vec<String> = files
                .iter()
                .filter(|f| matches!(f.verdict, LogVerdict::Altered | LogVerdict::Unlisted))
                .map(|f| f.object.clone())
                .collect();
            let keys = store.keys_of_objects(&untrusted).map_err(|e| e.to_string())?;
            Ok(Some((v, keys)))
        })
        .await
        .map_err(|e| format!("{name}: {e}"))?
        .map_err(|e| format!("{name}: {e}"))?;
        let Some((v, keys)) = judged else { return Ok(Vec::new()) };
        for p in &v.problems {
            error!(object = %p.object, problem = p.verdict.as_str(), reason = %p.reason, digest = %name, "log integrity");
        }
        let count = |verdict: LogVerdict| v.log_files.iter().filter(|(_, got, _)| *got == verdict).count();
        info!(
            object = %name,
            outcome = "verified",
            verified = count(LogVerdict::Verified),
            altered = count(LogVerdict::Altered),
            missing = v.missing.len(),
            signatures_checked = v.signatures_checked,
            problems = v.problems.len(),
            duration_ms = started.elapsed().as_millis() as u64,
            "digest"
        );
        Ok(keys)
    }

    /// Relabels, evaluates every rule (on the keys the relabelling touched, or on all), and
    /// publishes the findings not published before, one SNS message each. Returns how many
    /// were published.
    async fn publish_new_findings(&self, scope: Scope) -> Result<usize, Error> {
        let (store, rules, topic) =
            (self.store.clone(), self.env.config.findings.clone(), self.env.findings_topic_arn.clone());
        let pending = tokio::task::spawn_blocking(move || -> Result<Vec<(String, Value)>, Error> {
            let mut store = lock(&store)?;
            let relabelled = store.refresh_labels()?;
            if topic.is_none() {
                return Ok(Vec::new());
            }
            // The invocation time: the logs of a bucket the function follows run up to it.
            let at = now();
            let findings = match scope {
                Scope::AllKeys => store.findings(&rules, at, Some(at))?,
                Scope::TouchedKeys => store.findings_on_keys(&rules, at, Some(at), &relabelled.keys)?,
                Scope::Verified(mut keys) => {
                    keys.extend(relabelled.keys);
                    keys.sort();
                    keys.dedup();
                    store.findings_after_verification(&rules, at, Some(at), &keys)?
                }
            };
            let ids: Vec<&str> = findings.iter().map(|f| f.id.as_str()).collect();
            let new = store.unpublished(&ids)?;
            let mut out = Vec::new();
            let snapshots = store.grant_lists()?;
            for f in findings.iter().filter(|f| new.contains(&f.id.as_str())) {
                let evidence = store.finding_evidence(f, &snapshots)?;
                let mut objects: Vec<String> = evidence.iter().filter_map(|e| e.object.clone()).collect();
                objects.sort();
                objects.dedup();
                let name = store.grant(&f.key_arn, &f.grant_id)?.and_then(|g| g.spec.name);
                // The shape `findings --format json` prints, so that one interface is learnt once.
                let view = FindingView::new(f, name, evidence, at);
                out.push((f.id.clone(), json!({ "finding": view, "objects": objects })));
            }
            Ok(out)
        })
        .await??;
        let Some(topic) = &self.env.findings_topic_arn else { return Ok(0) };
        let mut published = 0;
        for (id, message) in pending {
            let attribute = |v: &str| {
                aws_sdk_sns::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(v)
                    .build()
            };
            let finding = &message["finding"];
            let severity = finding["severity"].as_str().unwrap_or_default().to_string();
            let rule = finding["rule_id"].as_str().unwrap_or_default().to_string();
            self.sns
                .publish()
                .topic_arn(topic)
                .message(message.to_string())
                .message_attributes("severity", attribute(&severity)?)
                .message_attributes("rule_id", attribute(&rule)?)
                .send()
                .await
                .map_err(|e| format!("SNS Publish to {topic}: {}", granttrail_s3::error_chain(&e)))?;
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || -> Result<(), Error> {
                let store = lock(&store)?;
                Ok(store.mark_published(&id, now())?)
            })
            .await??;
            info!(finding_id = %finding["id"].as_str().unwrap_or_default(), rule_id = %rule, severity = %severity, "finding published");
            published += 1;
        }
        Ok(published)
    }

    /// Drops the records of calls older than `[store] keep_call_records_days`, when it is set
    /// (on the scheduled invocation: once a day is enough for a retention counted in days).
    async fn apply_retention(&self) -> Result<(), Error> {
        let Some(days) = self.env.config.store.keep_call_records_days else { return Ok(()) };
        let (store, rules) = (self.store.clone(), self.env.config.findings.clone());
        let (pruned, _) = tokio::task::spawn_blocking(move || -> Result<_, Error> {
            let mut store = lock(&store)?;
            Ok(store.prune_call_records(&rules, now(), days)?)
        })
        .await??;
        info!(
            pruned_records = pruned.records,
            pruned_bytes = pruned.bytes,
            keep_days = days,
            "old call records dropped"
        );
        Ok(())
    }

    /// Writes a consistent copy of the database to the snapshot bucket, as
    /// `<prefix>granttrail-<time>.db` and `<prefix>latest.db`.
    async fn snapshot(&self) -> Result<Value, Error> {
        let Some((bucket, prefix)) = &self.env.snapshot else {
            return Err("a snapshot was asked for but GRANTTRAIL_SNAPSHOT_BUCKET is not set".into());
        };
        let started = Instant::now();
        let at = now();
        let file: PathBuf =
            std::env::temp_dir().join(format!("granttrail-snapshot-{at}-{}.db", std::process::id()));
        let store = self.store.clone();
        let target = file.clone();
        tokio::task::spawn_blocking(move || -> Result<(), Error> {
            let _ = std::fs::remove_file(&target);
            let mut store = lock(&store)?;
            match store.engine() {
                Engine::Sqlite => store.snapshot_to(&target)?,
                // The shared database, copied into a SQLite file an investigator can take away.
                Engine::Postgres => {
                    let mut file = Store::open(&target)?;
                    store.copy_into(&mut file, &mut |_, _| {})?;
                }
            }
            Ok(())
        })
        .await??;
        let bytes = std::fs::metadata(&file)?.len();
        let stamp: String = timestamp::format(at).chars().filter(|c| *c != '-' && *c != ':').collect();
        let keys = [format!("{prefix}granttrail-{stamp}.db"), format!("{prefix}latest.db")];
        let mut result = Ok(());
        for key in &keys {
            let body = ByteStream::from_path(&file).await?;
            let sent = self
                .s3
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_type("application/vnd.sqlite3")
                .body(body)
                .send()
                .await;
            if let Err(e) = sent {
                result = Err(format!("PutObject s3://{bucket}/{key}: {}", granttrail_s3::error_chain(&e)));
                break;
            }
        }
        let _ = std::fs::remove_file(&file);
        result?;
        let location = format!("s3://{bucket}/{}", keys[0]);
        info!(snapshot = %location, bytes, duration_ms = started.elapsed().as_millis() as u64, "snapshot");
        Ok(json!({ "snapshot": location, "latest": format!("s3://{bucket}/{}", keys[1]), "bytes": bytes }))
    }
}

/// The log files in `bucket` whose names put them in the hours `previous` covers, found by
/// listing the log folder of the account and region of the digest `digest_key` (one listing
/// an hour, narrowed by the file names' time).
fn logs_named_during(
    s3: &aws_sdk_s3::Client,
    handle: &Handle,
    bucket: &str,
    digest_key: &str,
    previous: &granttrail_cloudtrail::digest::Digest,
) -> Result<Vec<String>, String> {
    let (Some(base), Some(region)) = (
        digest_key.find("/CloudTrail-Digest/").map(|i| &digest_key[..i]),
        ObjectKey::parse(digest_key).region,
    ) else {
        return Ok(Vec::new());
    };
    let (Some(start), Some(end)) =
        (timestamp::parse(&previous.digest_start_time), timestamp::parse(&previous.digest_end_time))
    else {
        return Ok(Vec::new());
    };
    let account = &previous.aws_account_id;
    let mut keys = Vec::new();
    // A digest covers an hour; a day at most, whatever it says.
    for hour in (start - start.rem_euclid(3600)..end).step_by(3600).take(24) {
        let t = timestamp::format(hour);
        let (y, m, d, hh) = (&t[0..4], &t[5..7], &t[8..10], &t[11..13]);
        let prefix =
            format!("{base}/CloudTrail/{region}/{y}/{m}/{d}/{account}_CloudTrail_{region}_{y}{m}{d}T{hh}");
        keys.extend(list_all(s3, handle, bucket, &prefix, false).map_err(|e| e.to_string())?.1);
    }
    Ok(keys)
}

/// The database, unless an earlier panic while holding it left it unusable.
/// `url` with the user name (when it names none) and password of a Secrets Manager secret's
/// JSON (`username`, `password`, as Amazon RDS keeps a database's credentials).
/// Where the database is, with the password of its secret when `env` names one (read now:
/// it may have been rotated since the last time).
async fn database_location(env: &Env, secrets: &aws_sdk_secretsmanager::Client) -> Result<Location, Error> {
    let (Location::Postgres(url), Some(arn)) = (&env.db, &env.db_secret_arn) else {
        return Ok(env.db.clone());
    };
    let secret = secrets
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| format!("reading the database secret {arn}: {}", DisplayErrorContext(&e)))?;
    let text = secret.secret_string().ok_or_else(|| format!("the database secret {arn} holds no text"))?;
    Ok(Location::Postgres(
        with_credentials(url, text).map_err(|e| format!("the database secret {arn}: {e}"))?,
    ))
}

/// Opens the database of `env` on a blocking thread: PostgreSQL's client runs its own runtime,
/// which must not be started on an async one's thread.
async fn open_store(env: &Env, secrets: &aws_sdk_secretsmanager::Client) -> Result<Store, Error> {
    let location = database_location(env, secrets).await?;
    let labels = env.config.labels.clone();
    tokio::task::spawn_blocking(move || open_at(&location, &labels)).await?
}

fn open_at(location: &Location, labels: &granttrail_grants::Settings) -> Result<Store, Error> {
    let mut store = Store::open_at(location, Journal::Rollback, &mut |_| {})?;
    store.use_settings(labels, false)?;
    Ok(store)
}

fn with_credentials(url: &str, secret: &str) -> Result<String, String> {
    let secret: Value = serde_json::from_str(secret).map_err(|e| format!("not JSON: {e}"))?;
    let password = secret["password"].as_str().ok_or("no \"password\" in it")?;
    let (scheme, rest) = url.split_once("://").ok_or("GRANTTRAIL_DB is not a URL")?;
    let (user, host) = match rest.split_once('@') {
        Some((user, host)) => (user.split(':').next().unwrap_or_default().to_string(), host),
        None => (
            secret["username"]
                .as_str()
                .ok_or("no user in GRANTTRAIL_DB and no \"username\" in it")?
                .to_string(),
            rest,
        ),
    };
    Ok(format!("{scheme}://{}:{}@{host}", percent_encoded(&user), percent_encoded(password)))
}

/// `text` safe inside a URL's user information.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn lock(store: &Mutex<Store>) -> Result<std::sync::MutexGuard<'_, Store>, String> {
    store.lock().map_err(|_| "the database is unusable after an earlier crash".to_string())
}

fn skip_reason(class: KeyClass) -> &'static str {
    match class {
        KeyClass::Insight => "a CloudTrail Insights file",
        _ => "not a CloudTrail log file",
    }
}

/// Which keys' findings an invocation evaluates.
#[derive(Debug, Clone)]
enum Scope {
    /// The keys whose labels this invocation brought up to date.
    TouchedKeys,
    /// Those, the keys whose events came from files a digest found untrusted, and the findings
    /// on log files themselves (altered, missing).
    Verified(Vec<String>),
    AllKeys,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_gives_the_url_its_password_and_if_needed_its_user() {
        let secret = r#"{"username": "admin", "password": "p@ss:w/rd"}"#;
        assert_eq!(
            with_credentials("postgres://granttrail@db.internal:5432/g?sslmode=require", secret).unwrap(),
            "postgres://granttrail:p%40ss%3Aw%2Frd@db.internal:5432/g?sslmode=require"
        );
        // The template's URL: every parameter kept.
        let checked = "db.internal:5432/g?sslmode=verify-full&sslrootcert=/var/task/global-bundle.pem";
        assert_eq!(
            with_credentials(&format!("postgres://granttrail@{checked}"), secret).unwrap(),
            format!("postgres://granttrail:p%40ss%3Aw%2Frd@{checked}")
        );
        assert_eq!(
            with_credentials("postgres://db.internal/g", secret).unwrap(),
            "postgres://admin:p%40ss%3Aw%2Frd@db.internal/g"
        );
        assert!(with_credentials("postgres://db/g", "{}").unwrap_err().contains("password"));
        assert!(
            with_credentials("postgres://db/g", r#"{"password": "x"}"#).unwrap_err().contains("username")
        );
        assert!(with_credentials("postgres://db/g", "not json").unwrap_err().contains("not JSON"));
    }
}
