//! `granttrail import`: documents from outside the logs that make stronger evidence possible.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
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
            if !args.key.starts_with("arn:") || !args.key.contains(":key/") {
                bail!("--key must be a full key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), not {:?}", args.key);
            }
            let text = read(&args.file)?;
            let policy = policy_text(&text).with_context(|| format!("{}", args.file.display()))?;
            let at = args.at.unwrap_or_else(granttrail_ingest::now);
            store
                .import_key_policy(&args.key, at, &policy, &args.file.display().to_string())
                .with_context(|| format!("{}", args.file.display()))?;
            println!("imported the key policy of {} from {}", args.key, args.file.display());
        }
        ImportCommand::Iam(args) => {
            let text = read(&args.file)?;
            let account = account_of(&text).with_context(|| format!("{}", args.file.display()))?;
            let at = args.at.unwrap_or_else(granttrail_ingest::now);
            let principals = store
                .import_iam(&account, at, &text, &args.file.display().to_string())
                .with_context(|| format!("{}", args.file.display()))?;
            println!(
                "imported {principals} IAM principal(s) of account {account} from {}",
                args.file.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
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
