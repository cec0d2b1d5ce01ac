//! The HTML report: one self-contained page. Inline CSS and SVG, no scripts, no external
//! resources (a Content-Security-Policy forbids them too), readable on a laptop and printable.
//! Every string from a log goes through [`escape`].

use std::borrow::Cow;
use std::io::{self, Write};

use super::{GrantEntry, Report, constraints_text, scope_sentence, short_time, svg};

/// Escapes text for HTML element content and quoted attribute values, and drops control
/// characters other than tab and newline.
pub fn escape(text: &str) -> Cow<'_, str> {
    let needs =
        |c: char| matches!(c, '&' | '<' | '>' | '"' | '\'') || (c.is_control() && c != '\n' && c != '\t');
    if !text.chars().any(needs) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn opt(v: &Option<String>) -> Cow<'_, str> {
    match v {
        Some(s) => escape(s),
        None => Cow::Borrowed("–"),
    }
}

const STYLE: &str = r#"
:root { --fg: #1a202c; --muted: #4a5568; --line: #e2e8f0; --high: #c53030; --medium: #c05621; --low: #b7791f; --info: #2b6cb0; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg);
       margin: 0 auto; padding: 24px 32px; max-width: 1280px; font-size: 14px; line-height: 1.45; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 20px 0 6px; overflow-wrap: anywhere; }
.meta { color: var(--muted); margin: 0 0 16px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; margin: 12px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
.card .n { font-size: 24px; font-weight: 600; display: block; }
.card .l { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 16px; font-size: 12.5px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 6px; text-align: left; vertical-align: top; overflow-wrap: anywhere; }
th { background: #f7fafc; font-weight: 600; }
thead { display: table-header-group; }
tr { break-inside: avoid; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 11.5px; }
.sev { display: inline-block; padding: 1px 7px; border-radius: 10px; color: #fff; font-size: 11px; font-weight: 600; text-transform: uppercase; }
.sev-high { background: var(--high); } .sev-medium { background: var(--medium); } .sev-low { background: var(--low); } .sev-info { background: var(--info); }
.state-active { color: #2b6cb0; font-weight: 600; } .state-ended { color: var(--muted); }
.small { color: var(--muted); font-size: 11.5px; }
.nw, .sev { white-space: nowrap; overflow-wrap: normal; }
.timeline { display: block; max-width: 100%; height: auto; margin: 4px 0 12px; }
ul.notes li { margin: 4px 0; }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 8px; }
@media print {
  @page { size: A4 landscape; margin: 12mm; }
  body { padding: 0; max-width: none; font-size: 11px; }
  h2 { break-after: avoid; }
  .timeline, .card { break-inside: avoid; }
  table { font-size: 10px; }
  .sev, th, .card { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
}
"#;

pub fn write(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let s = &r.summary;
    let scope = &r.scope;
    let findings_by_id = r.findings_by_id();
    let grants_by_key = r.grants_by_key();
    writeln!(out, "<!DOCTYPE html>")?;
    writeln!(out, "<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">")?;
    writeln!(
        out,
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
    )?;
    writeln!(out, "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")?;
    writeln!(out, "<title>KMS grant report</title>\n<style>{STYLE}</style>\n</head>\n<body>")?;
    writeln!(out, "<h1>KMS grant report</h1>")?;
    writeln!(out, "<p class=\"meta\">{}</p>", escape(&scope_sentence(scope)))?;

    writeln!(out, "<section id=\"summary\">\n<h2>Summary</h2>\n<div class=\"cards\">")?;
    let card = |out: &mut dyn Write, n: String, label: &str| {
        writeln!(
            out,
            "<div class=\"card\"><span class=\"n\">{n}</span><span class=\"l\">{label}</span></div>"
        )
    };
    card(out, s.grants.to_string(), "grants")?;
    card(out, s.active.to_string(), "active")?;
    card(out, s.ended.to_string(), "ended")?;
    card(out, s.created_before_logs.to_string(), "created before the logs")?;
    card(out, s.keys.to_string(), "keys")?;
    card(out, s.accounts.to_string(), "accounts")?;
    card(out, s.calls_through_grants.to_string(), "calls through grants")?;
    card(out, s.grant_only_calls.to_string(), "grant-only calls")?;
    let f = &s.findings;
    for (n, severity) in [(f.high, "high"), (f.medium, "medium"), (f.low, "low"), (f.info, "info")] {
        card(out, n.to_string(), &format!("<span class=\"sev sev-{severity}\">{severity}</span> findings"))?;
    }
    writeln!(out, "</div>")?;
    if s.top_findings.is_empty() {
        writeln!(out, "<p>No findings.</p>")?;
    } else {
        writeln!(out, "<h3>Top findings</h3>\n<ol>")?;
        for id in &s.top_findings {
            if let Some(f) = findings_by_id.get(id.as_str()).copied() {
                writeln!(
                    out,
                    "<li><span class=\"sev sev-{sev}\">{sev}</span> <a href=\"#{id}\">{title}</a> — grant {grant}: {detail}</li>",
                    sev = f.severity,
                    id = escape(&f.id),
                    title = escape(f.title),
                    grant = escape(&f.grant_name.clone().unwrap_or_else(|| short_id(&f.grant_id))),
                    detail = escape(&f.detail),
                )?;
            }
        }
        writeln!(out, "</ol>")?;
    }
    writeln!(out, "</section>")?;

    writeln!(out, "<section id=\"timelines\">\n<h2>Grant timelines</h2>")?;
    writeln!(
        out,
        "<p class=\"small\">One bar per grant, from its creation to its end; grants still active run to the end of the period. Marks are the calls each grant covered; hover a bar for details.</p>"
    )?;
    for (i, k) in r.keys.iter().enumerate() {
        let grants: &[&GrantEntry] = grants_by_key.get(k.key_arn.as_str()).map_or(&[], Vec::as_slice);
        writeln!(
            out,
            "<h3 class=\"mono\">{}</h3>\n<p class=\"small\">{} grant(s), {} active; {} call(s) through grants, {} grant-only; {} to {} UTC</p>",
            if k.key_arn.is_empty() { "(key not known)".into() } else { escape(&k.key_arn) },
            k.grants,
            k.active,
            k.calls_through_grants,
            k.grant_only_calls,
            short_time(&k.timeline_start),
            short_time(&k.timeline_end),
        )?;
        if let Some(used) = &k.kms_last_use {
            writeln!(out, "<p class=\"small\">Last use recorded by KMS: {}</p>", escape(&used.describe()))?;
        }
        writeln!(out, "{}", svg::timeline(k, grants, i))?;
    }
    writeln!(out, "</section>")?;

    writeln!(out, "<section id=\"inventory\">\n<h2>Grant inventory</h2>")?;
    writeln!(
        out,
        "<table>\n<thead><tr><th>Grant</th><th>State</th><th>Grantee / retiring principal</th><th>Operations and constraints</th><th>Created</th><th>Ended</th><th>Use</th><th>Findings</th></tr></thead>\n<tbody>"
    )?;
    for g in &r.grants {
        let state_class = if g.active_at_as_of { "state-active" } else { "state-ended" };
        let name =
            g.name.as_deref().map(|n| format!("<strong>{}</strong><br>", escape(n))).unwrap_or_default();
        let ops = match &g.operations {
            Some(o) => escape(&o.join(", ")).into_owned(),
            None => "unknown".into(),
        };
        let constraints = match constraints_text(g.constraints.as_ref()) {
            Some(c) => escape(&c).into_owned(),
            None if g.creation_seen => "no constraint".into(),
            None => "unknown".into(),
        };
        let created = if g.creation_seen {
            let via = g.created_via.as_deref().map(|v| format!(" via {}", escape(v))).unwrap_or_default();
            let ip =
                g.created_from_ip.as_deref().map(|v| format!("<br>from {}", escape(v))).unwrap_or_default();
            let ua = g
                .created_user_agent
                .as_deref()
                .map(|v| format!("<br><span class=\"small\">{}</span>", escape(v)))
                .unwrap_or_default();
            let through = if g.created_through_grants.is_empty() {
                String::new()
            } else {
                format!(
                    "<br>through grant {}",
                    g.created_through_grants
                        .iter()
                        .map(|p| escape(&short_id(p)).into_owned())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            format!(
                "{}<br>by {}{via}{ip}{ua}{through}",
                short_time(g.created_at.as_deref().unwrap_or_default()),
                opt(&g.created_by)
            )
        } else {
            "before the logs (CreateGrant not seen)".into()
        };
        let ended = match &g.ended_at {
            Some(t) => format!(
                "{}<br>{} by {}{}",
                short_time(t),
                opt(&g.ended_how),
                opt(&g.ended_by),
                g.ended_via.as_deref().map(|v| format!(" via {}", escape(v))).unwrap_or_default()
            ),
            None => "still active".into(),
        };
        let uses = if g.uses == 0 {
            "not used".to_string()
        } else {
            format!(
                "{} call(s), {} grant-only<br><span class=\"small\">{} to {}</span>",
                g.uses,
                g.grant_only_calls,
                short_time(g.first_use.as_deref().unwrap_or_default()),
                short_time(g.last_use.as_deref().unwrap_or_default())
            )
        };
        let findings: Vec<String> = g
            .findings
            .iter()
            .filter_map(|id| findings_by_id.get(id.as_str()).copied())
            .map(|f| {
                format!("<a href=\"#{}\" class=\"sev sev-{}\">{}</a>", escape(&f.id), f.severity, f.rule_id)
            })
            .collect();
        writeln!(
            out,
            "<tr id=\"grant-{gid}\"><td>{name}<span class=\"mono\">{gid}</span><br><span class=\"small mono\">{key}</span></td><td class=\"{state_class}\">{state}</td><td>{grantee}<br><span class=\"small\">retiring: {retiring}</span></td><td>{ops}<br><span class=\"small\">{constraints}</span></td><td>{created}</td><td>{ended}</td><td>{uses}</td><td>{findings}</td></tr>",
            gid = escape(&g.grant_id),
            key = escape(&g.key_arn),
            state = if g.creation_seen {
                g.state_as_of.clone()
            } else {
                format!("{} (created before logs)", g.state_as_of)
            },
            grantee = opt(&g.grantee_principal),
            retiring = opt(&g.retiring_principal),
            findings = findings.join(" "),
        )?;
    }
    if r.grants.is_empty() {
        writeln!(out, "<tr><td colspan=\"8\">No grants in the period.</td></tr>")?;
    }
    writeln!(out, "</tbody>\n</table>\n</section>")?;

    writeln!(out, "<section id=\"findings\">\n<h2>Findings</h2>")?;
    if r.findings.is_empty() {
        writeln!(out, "<p>No findings.</p>")?;
    } else {
        writeln!(
            out,
            "<table>\n<thead><tr><th>Severity</th><th>Rule</th><th>Finding</th><th>Grant</th><th>Remediation</th></tr></thead>\n<tbody>"
        )?;
        for f in &r.findings {
            writeln!(
                out,
                "<tr id=\"{id}\"><td class=\"nw\"><span class=\"sev sev-{sev}\">{sev}</span></td><td class=\"nw\">{rule}</td><td><strong>{title}</strong><br>{detail}<br><span class=\"small\">{why}</span><br><span class=\"small mono\">{id}; events: {events}</span></td><td><a href=\"#grant-{gid}\">{grant}</a><br><span class=\"small mono\">{key}</span></td><td><code>{remediation}</code></td></tr>",
                id = escape(&f.id),
                sev = f.severity,
                rule = f.rule_id,
                title = escape(f.title),
                detail = escape(&f.detail),
                why = escape(f.why),
                events = escape(&f.event_ids.join(", ")),
                gid = escape(&f.grant_id),
                grant = escape(&f.grant_name.clone().unwrap_or_else(|| short_id(&f.grant_id))),
                key = escape(&f.key_arn),
                remediation = escape(&f.remediation),
            )?;
        }
        writeln!(out, "</tbody>\n</table>")?;
    }
    writeln!(out, "</section>")?;

    let c = &r.coverage;
    writeln!(out, "<section id=\"coverage\">\n<h2>Coverage</h2>")?;
    writeln!(
        out,
        "<p>Days examined: {} to {} (UTC).</p>",
        c.first_day.as_deref().unwrap_or("none"),
        c.last_day.as_deref().unwrap_or("none")
    )?;
    writeln!(
        out,
        "<table>\n<thead><tr><th>Account</th><th>Region</th><th>KMS events</th><th>Days with events</th><th>Days without KMS events</th></tr></thead>\n<tbody>"
    )?;
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
        writeln!(
            out,
            "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&src.account),
            escape(&src.region),
            src.events,
            src.days_with_events,
            escape(&missing)
        )?;
    }
    writeln!(out, "</tbody>\n</table>")?;
    if c.gaps.is_empty() {
        writeln!(
            out,
            "<p>No stretch of {} hours or more without KMS events in any account and region.</p>",
            c.gap_hours
        )?;
    } else {
        writeln!(
            out,
            "<h3>Gaps of {} hours or more without KMS events</h3>\n<ul class=\"notes\">",
            c.gap_hours
        )?;
        for g in &c.gaps {
            writeln!(
                out,
                "<li>{} {}: {} to {} ({} hours)</li>",
                escape(&g.account),
                escape(&g.region),
                short_time(&g.from),
                short_time(&g.to),
                g.hours
            )?;
        }
        writeln!(out, "</ul>")?;
    }
    if !c.trail_changes.is_empty() {
        writeln!(
            out,
            "<h3>Trail selector changes</h3>\n<table>\n<thead><tr><th>Time</th><th>Trail</th><th>Account / region</th><th>By</th><th>KMS events logged after</th><th>Effect</th></tr></thead>\n<tbody>"
        )?;
        for t in &c.trail_changes {
            writeln!(
                out,
                "<tr><td>{}</td><td>{}<br><span class=\"small\">{}</span></td><td>{} {}</td><td>{}</td><td><strong>{}</strong></td><td>{}</td></tr>",
                short_time(&t.time),
                opt(&t.trail),
                escape(&t.event_name),
                opt(&t.account),
                opt(&t.region),
                opt(&t.caller),
                t.kms_logging,
                escape(&t.effect)
            )?;
        }
        writeln!(out, "</tbody>\n</table>")?;
    }
    verification(c, out)?;
    writeln!(out, "<ul class=\"notes\">")?;
    for n in &c.notes {
        writeln!(out, "<li>{}</li>", escape(n))?;
    }
    writeln!(out, "</ul>\n</section>")?;
    writeln!(out, "<footer>{}; report format {}.</footer>", escape(&r.generator), r.report_version)?;
    writeln!(out, "</body>\n</html>")?;
    Ok(())
}

fn short_id(id: &str) -> String {
    if id.chars().count() > 12 {
        format!("{}…", id.chars().take(12).collect::<String>())
    } else {
        id.to_string()
    }
}

/// What CloudTrail's digests say of the log files, or that nobody asked them.
fn verification(c: &granttrail_ingest::report::Coverage, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "<h3>Log file integrity</h3>")?;
    if c.verification.is_empty() {
        writeln!(
            out,
            "<p>The log files were not checked against CloudTrail's signed digests (<code>granttrail verify</code>).</p>"
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "<table>\n<thead><tr><th>Account / region</th><th>Verified</th><th>Altered</th><th>Missing</th><th>Unlisted</th><th>Not covered</th><th>Digests trusted</th><th>Signatures valid</th><th>Hours without digests</th><th>Checked</th></tr></thead>\n<tbody>"
    )?;
    for v in &c.verification {
        writeln!(
            out,
            "<tr><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} of {}</td><td>{} ({} unchecked)</td><td>{}</td><td>{}</td></tr>",
            escape(&v.account),
            escape(&v.region),
            v.verified,
            v.altered,
            v.missing,
            v.unlisted,
            v.not_covered,
            v.digests_trusted,
            v.digests,
            v.signatures_valid,
            v.signatures_unchecked,
            v.hours_without_digests,
            short_time(&v.verified_at)
        )?;
    }
    writeln!(out, "</tbody>\n</table>")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape("<img src=x onerror=alert(1)>"), "&lt;img src=x onerror=alert(1)&gt;");
        assert_eq!(escape("a\"b'c&d"), "a&quot;b&#39;c&amp;d");
        assert_eq!(escape("bell\u{7}\u{1b}[31m"), "bell[31m");
    }
}
