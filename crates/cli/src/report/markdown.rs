//! The Markdown report (GitHub flavour). Every string from a log goes through [`escape`], so it
//! stays text inside a table cell: no pipes that split cells, no line breaks, no code spans,
//! links, emphasis or HTML.

use std::io::{self, Write};

use super::{Report, constraints_text, scope_sentence, short_time};

/// Escapes text for a Markdown table cell or a line of prose.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '&' | '#' | '!' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn opt(v: &Option<String>) -> String {
    v.as_deref().map(escape).unwrap_or_else(|| "–".into())
}

fn row(out: &mut dyn Write, cells: &[String]) -> io::Result<()> {
    writeln!(out, "| {} |", cells.join(" | "))
}

fn header(out: &mut dyn Write, names: &[&str]) -> io::Result<()> {
    writeln!(out, "| {} |", names.join(" | "))?;
    writeln!(out, "|{}", " --- |".repeat(names.len()))
}

pub fn write(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let s = &r.summary;
    let scope = &r.scope;
    let findings_by_id = r.findings_by_id();
    writeln!(out, "# KMS grant report\n")?;
    writeln!(out, "{}\n", escape(&scope_sentence(scope)))?;

    writeln!(out, "## Summary\n")?;
    header(out, &["", "count"])?;
    let f = &s.findings;
    for (name, n) in [
        ("grants", s.grants.to_string()),
        ("active", s.active.to_string()),
        ("ended", s.ended.to_string()),
        ("created before the logs", s.created_before_logs.to_string()),
        ("keys", s.keys.to_string()),
        ("accounts", s.accounts.to_string()),
        ("calls through grants", s.calls_through_grants.to_string()),
        ("grant-only calls", s.grant_only_calls.to_string()),
        (
            "findings: high / medium / low / info",
            format!("{} / {} / {} / {}", f.high, f.medium, f.low, f.info),
        ),
    ] {
        row(out, &[name.into(), n])?;
    }
    writeln!(out)?;
    if !s.top_findings.is_empty() {
        writeln!(out, "Top findings:\n")?;
        for (i, id) in s.top_findings.iter().enumerate() {
            if let Some(f) = findings_by_id.get(id.as_str()).copied() {
                writeln!(
                    out,
                    "{}. **{}** {} ({}): grant {}: {}",
                    i + 1,
                    f.severity,
                    escape(f.title),
                    f.rule_id,
                    escape(&f.grant_name.clone().unwrap_or_else(|| f.grant_id.chars().take(12).collect())),
                    escape(&f.detail)
                )?;
            }
        }
        writeln!(out)?;
    }

    writeln!(out, "## Keys\n")?;
    header(
        out,
        &[
            "key",
            "grants",
            "active",
            "calls through grants",
            "grant-only calls",
            "timeline",
            "last use (KMS)",
        ],
    )?;
    for k in &r.keys {
        row(
            out,
            &[
                escape(&k.key_arn),
                k.grants.to_string(),
                k.active.to_string(),
                k.calls_through_grants.to_string(),
                k.grant_only_calls.to_string(),
                format!("{} to {}", short_time(&k.timeline_start), short_time(&k.timeline_end)),
                k.kms_last_use.as_ref().map_or_else(|| "–".into(), |u| escape(&u.describe())),
            ],
        )?;
    }
    writeln!(out)?;

    writeln!(out, "## Grant inventory\n")?;
    header(
        out,
        &[
            "grant",
            "name",
            "key",
            "state",
            "grantee",
            "retiring principal",
            "operations",
            "constraints",
            "created",
            "ended",
            "uses",
            "grant-only calls",
            "findings",
        ],
    )?;
    for g in &r.grants {
        let created = if g.creation_seen {
            let via = g.created_via.as_deref().map(|v| format!(" via {}", escape(v))).unwrap_or_default();
            let through = if g.created_through_grants.is_empty() {
                String::new()
            } else {
                format!(" through grant {}", escape(&g.created_through_grants.join(", ")))
            };
            format!(
                "{} by {}{via}{through}",
                short_time(g.created_at.as_deref().unwrap_or_default()),
                opt(&g.created_by)
            )
        } else {
            "before the logs".into()
        };
        let ended = match &g.ended_at {
            Some(t) => format!(
                "{} {} by {}{}",
                short_time(t),
                opt(&g.ended_how),
                opt(&g.ended_by),
                g.ended_via.as_deref().map(|v| format!(" via {}", escape(v))).unwrap_or_default()
            ),
            None => "still active".into(),
        };
        let constraints = match constraints_text(g.constraints.as_ref()) {
            Some(c) => escape(&c),
            None if g.creation_seen => "none".into(),
            None => "unknown".into(),
        };
        row(
            out,
            &[
                escape(&g.grant_id),
                opt(&g.name),
                escape(&g.key_arn),
                g.state_as_of.clone(),
                opt(&g.grantee_principal),
                opt(&g.retiring_principal),
                g.operations.as_ref().map(|o| escape(&o.join(", "))).unwrap_or_else(|| "unknown".into()),
                constraints,
                created,
                ended,
                g.uses.to_string(),
                g.grant_only_calls.to_string(),
                g.findings
                    .iter()
                    .filter_map(|id| findings_by_id.get(id.as_str()).copied())
                    .map(|f| f.rule_id)
                    .collect::<Vec<_>>()
                    .join(", "),
            ],
        )?;
    }
    writeln!(out)?;

    writeln!(out, "## Findings\n")?;
    if r.findings.is_empty() {
        writeln!(out, "No findings.\n")?;
    } else {
        header(out, &["severity", "rule", "title", "grant", "detail", "remediation", "id"])?;
        for f in &r.findings {
            row(
                out,
                &[
                    f.severity.into(),
                    f.rule_id.into(),
                    escape(f.title),
                    escape(&f.grant_name.clone().unwrap_or_else(|| f.grant_id.clone())),
                    escape(&f.detail),
                    escape(&f.remediation),
                    escape(&f.id),
                ],
            )?;
        }
        writeln!(out)?;
        writeln!(out, "Why each rule matters:\n")?;
        let mut seen = Vec::new();
        for f in &r.findings {
            if !seen.contains(&f.rule_id) {
                seen.push(f.rule_id);
                writeln!(out, "- {} {}: {}", f.rule_id, escape(f.title), escape(f.why))?;
            }
        }
        writeln!(out)?;
    }

    let c = &r.coverage;
    writeln!(out, "## Coverage\n")?;
    writeln!(
        out,
        "Days examined: {} to {} (UTC).\n",
        c.first_day.as_deref().unwrap_or("none"),
        c.last_day.as_deref().unwrap_or("none")
    )?;
    verification(c, out)?;
    header(out, &["account", "region", "KMS events", "days with events", "days without KMS events"])?;
    for src in &c.sources {
        let missing = if src.days_without_events.is_empty() {
            "none".to_string()
        } else {
            src.days_without_events
                .iter()
                .map(|d| {
                    if d.days == 1 {
                        d.from.clone()
                    } else {
                        format!("{} to {} ({} days)", d.from, d.to, d.days)
                    }
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        row(
            out,
            &[
                escape(&src.account),
                escape(&src.region),
                src.events.to_string(),
                src.days_with_events.to_string(),
                escape(&missing),
            ],
        )?;
    }
    writeln!(out)?;
    if c.gaps.is_empty() {
        writeln!(
            out,
            "No stretch of {} hours or more without KMS events in any account and region.\n",
            c.gap_hours
        )?;
    } else {
        writeln!(out, "Gaps of {} hours or more without KMS events:\n", c.gap_hours)?;
        for g in &c.gaps {
            writeln!(
                out,
                "- {} {}: {} to {} ({} hours)",
                escape(&g.account),
                escape(&g.region),
                short_time(&g.from),
                short_time(&g.to),
                g.hours
            )?;
        }
        writeln!(out)?;
    }
    if !c.trail_changes.is_empty() {
        writeln!(out, "Trail selector changes:\n")?;
        header(
            out,
            &["time", "event", "trail", "account", "region", "by", "KMS events logged after", "effect"],
        )?;
        for t in &c.trail_changes {
            row(
                out,
                &[
                    short_time(&t.time),
                    escape(&t.event_name),
                    opt(&t.trail),
                    opt(&t.account),
                    opt(&t.region),
                    opt(&t.caller),
                    t.kms_logging.into(),
                    escape(&t.effect),
                ],
            )?;
        }
        writeln!(out)?;
    }
    writeln!(out, "Notes:\n")?;
    for n in &c.notes {
        // Our own sentences, not log text.
        writeln!(out, "- {n}")?;
    }
    writeln!(out, "\n---\n{}; report format {}.", escape(&r.generator), r.report_version)?;
    Ok(())
}

/// What CloudTrail's digests say of the log files, or that nobody asked them.
fn verification(c: &granttrail_ingest::report::Coverage, out: &mut dyn Write) -> io::Result<()> {
    if c.verification.is_empty() {
        writeln!(
            out,
            "The log files were not checked against CloudTrail's signed digests (granttrail verify).\n"
        )?;
        return Ok(());
    }
    writeln!(out, "Log files checked against CloudTrail's signed digests (granttrail verify):\n")?;
    header(
        out,
        &[
            "account",
            "region",
            "verified",
            "altered",
            "missing",
            "unlisted",
            "not covered",
            "digests trusted",
            "signatures valid",
            "hours without digests",
            "checked at",
        ],
    )?;
    for v in &c.verification {
        row(
            out,
            &[
                escape(&v.account),
                escape(&v.region),
                v.verified.to_string(),
                v.altered.to_string(),
                v.missing.to_string(),
                v.unlisted.to_string(),
                v.not_covered.to_string(),
                format!("{} of {}", v.digests_trusted, v.digests),
                format!("{} ({} unchecked)", v.signatures_valid, v.signatures_unchecked),
                v.hours_without_digests.to_string(),
                short_time(&v.verified_at),
            ],
        )?;
    }
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_cannot_break_out() {
        assert_eq!(escape("a|b"), "a\\|b");
        assert_eq!(escape("line\nbreak\r\n"), "line break  ");
        assert_eq!(escape("`code`"), "\\`code\\`");
        assert_eq!(escape("<img src=x onerror=alert(1)>"), "\\<img src=x onerror=alert(1)\\>");
        assert_eq!(escape("[link](http://x)"), "\\[link\\](http://x)");
        assert_eq!(escape("*bold* _it_ \\"), "\\*bold\\* \\_it\\_ \\\\");
        assert_eq!(escape("arn:aws:kms:us-east-1:1:key/a-b"), "arn:aws:kms:us-east-1:1:key/a-b");
    }
}
