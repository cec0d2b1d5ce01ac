//! `granttrail import`: documents from outside the logs that make stronger evidence possible.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use granttrail_grants::{last_usage, reconcile};
use granttrail_store::Store;
use serde_json::Value;

use crate::parse_time;

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// A key policy, as printed by `aws kms get-key-policy` (or the policy document itself).
    ///
    /// Lets granttrail decide from the key policy whether a call could have succeeded without
    /// its grant (evidence L4). The policy is taken as in force at --at (default: now) and for
    /// as long as no PutKeyPolicy event on the key says otherwise.
    KeyPolicy(KeyPolicyArgs),
    /// IAM users, groups, roles and policies, as printed by `aws iam get-account-authorization-details`.
    ///
    /// Together with the key policy, lets granttrail evaluate the policy path fully (evidence
    /// L5) for principals of that account, as of --at (default: now) and until an IAM change
    /// event for the principal.
    Iam(IamArgs),
    /// The grants of a key, as printed by `aws kms list-grants --key-id ARN` (one page, several
    /// pages one after another, or a JSON list of pages).
    ///
    /// `granttrail findings` then compares them with the grants rebuilt from the logs: grants
    /// that exist but were never seen created (GT101; GT104, information only, for AWS service
    /// grants), grants the history says are active but that no longer exist (GT102), and grants
    /// whose attributes or state differ (GT103). The listing is taken as of --at (default: now);
    /// the latest listing of each key counts.
    ListGrants(ListGrantsArgs),
    /// KMS's record of the key's last use, as printed by `aws kms get-key-last-usage --key-id ARN`.
    ///
    /// `granttrail findings` raises GT105 when KMS reports a use the logs do not hold, or one
    /// later than the latest logged call on the key: the logs are incomplete for that key. The
    /// report shows the last use per key. Read as of --at (default: now); the latest record of
    /// each key counts.
    KeyLastUsage(KeyLastUsageArgs),
}

#[derive(Debug, Args)]
pub struct KeyLastUsageArgs {
    file: PathBuf,
    /// The key it describes (full key ARN).
    #[arg(long, value_name = "ARN")]
    key: String,
    /// When it was read: RFC 3339 or a date.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<i64>,
}

#[derive(Debug, Args)]
pub struct ListGrantsArgs {
    file: PathBuf,
    /// The key that was listed (full key ARN).
    #[arg(long, value_name = "ARN")]
    key: String,
    /// When the listing was taken (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<i64>,
}

#[derive(Debug, Args)]
pub struct KeyPolicyArgs {
    file: PathBuf,
    /// The key the policy belongs to (full key ARN).
    #[arg(long, value_name = "ARN")]
    key: String,
    /// When the policy was read (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<i64>,
}

#[derive(Debug, Args)]
pub struct IamArgs {
    file: PathBuf,
    /// When the snapshot was taken (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<i64>,
}

pub fn run(store: &mut Store, command: &ImportCommand) -> anyhow::Result<ExitCode> {
    match command {
        ImportCommand::KeyPolicy(args) => {
            check_key_arn(&args.key)?;
            let text = read(&args.file)?;
            let policy = policy_text(&text).with_context(|| format!("{}", args.file.display()))?;
            let at = args.at.unwrap_or_else(granttrail_ingest::now);
            store
                .import_key_policy(&args.key, at, &policy, &args.file.display().to_string())
                .with_context(|| format!("{}", args.file.display()))?;
            writeln!(
                std::io::stdout(),
                "imported the key policy of {} from {}",
                args.key,
                args.file.display()
            )?;
        }
        ImportCommand::Iam(args) => {
            let text = read(&args.file)?;
            let account = account_of(&text).with_context(|| format!("{}", args.file.display()))?;
            let at = args.at.unwrap_or_else(granttrail_ingest::now);
            let principals = store
                .import_iam(&account, at, &text, &args.file.display().to_string())
                .with_context(|| format!("{}", args.file.display()))?;
            writeln!(
                std::io::stdout(),
                "imported {principals} IAM principal(s) of account {account} from {}",
                args.file.display()
            )?;
        }
        ImportCommand::ListGrants(args) => {
            check_key_arn(&args.key)?;
            let text = read(&args.file)?;
            // The evidence names the file as ingest names objects: by its absolute path.
            let source =
                std::fs::canonicalize(&args.file).unwrap_or_else(|_| args.file.clone()).display().to_string();
            let listing =
                reconcile::parse_list_grants(&text).map_err(anyhow::Error::msg).context(source.clone())?;
            if let Some(other) =
                listing.grants.iter().find(|g| g.key_id.as_deref().is_some_and(|k| k != args.key))
            {
                bail!(
                    "{source}: grant {} is on key {}, not on --key {}",
                    other.grant_id,
                    other.key_id.as_deref().unwrap_or_default(),
                    args.key
                );
            }
            let at = args.at.unwrap_or_else(granttrail_ingest::now);
            store.import_grant_list(&args.key, at, &listing, &source).context(source.clone())?;
            writeln!(
                std::io::stdout(),
                "imported {} grant(s) of {} from {source}",
                listing.grants.len(),
                args.key
            )?;
            if !listing.complete {
                eprintln!(
                    "granttrail: warning: {source} is a truncated listing (\"Truncated\": true); grants it does not show are not reported as gone"
                );
            }
        }
        ImportCommand::KeyLastUsage(args) => {
            check_key_arn(&args.key)?;
            let text = read(&args.file)?;
            let source =
                std::fs::canonicalize(&args.file).unwrap_or_else(|_| args.file.clone()).display().to_string();
            let usage = last_usage::parse(&text).map_err(anyhow::Error::msg).context(source.clone())?;
            let value: Value = serde_json::from_str(&text).context(source.clone())?;
            if let Some(id) = value.get("KeyId").and_then(Value::as_str)
                && !args.key.ends_with(id)
            {
                bail!("{source}: describes key {id}, not --key {}", args.key);
            }
            let at = args.at.unwrap_or_else(granttrail_ingest::now);
            store.import_key_last_usage(&args.key, at, &text, &source).context(source.clone())?;
            let what = match &usage.last_use {
                Some(u) => format!("last used {}", granttrail_grants::timestamp::format(u.at)),
                None => "not used since KMS began tracking".to_string(),
            };
            writeln!(std::io::stdout(), "imported the last usage of {} ({what}) from {source}", args.key)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check_key_arn(key: &str) -> anyhow::Result<()> {
    if !key.starts_with("arn:") || !key.contains(":key/") {
        bail!("--key must be a full key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), not {key:?}");
    }
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// `get-key-policy` prints `{"Policy": "<document as a string>", "PolicyName": "default"}`.
fn policy_text(text: &str) -> anyhow::Result<String> {
    let value: Value = serde_json::from_str(text).context("not JSON")?;
    match value.get("Policy") {
        Some(Value::String(policy)) => Ok(policy.clone()),
        Some(_) => bail!("\"Policy\" is not a string"),
        None if value.get("Statement").is_some() => Ok(text.to_string()),
        None => bail!("neither get-key-policy output nor a policy document"),
    }
}

/// The account a `get-account-authorization-details` document describes, from its ARNs.
fn account_of(text: &str) -> anyhow::Result<String> {
    let value: Value = serde_json::from_str(text).context("not JSON")?;
    ["RoleDetailList", "UserDetailList", "GroupDetailList"]
        .iter()
        .filter_map(|list| value.get(*list).and_then(Value::as_array))
        .flatten()
        .filter_map(|entity| entity.get("Arn").and_then(Value::as_str))
        .find_map(|arn| granttrail_grants::event::arn_account(arn).map(str::to_string))
        .context("no user, group or role ARN to tell the account from")
}
