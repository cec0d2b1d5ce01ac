//! The per-key timeline: one bar per grant from its creation to its end (or to the end of the
//! period when still active), with a mark for each call it covered. Plain SVG text, sized for
//! one grant to a few hundred.

use std::fmt::Write;

use granttrail_grants::timestamp;

use super::html::escape;
use super::{GrantEntry, KeyEntry};

const WIDTH: f64 = 1000.0;
const LABEL_WIDTH: f64 = 230.0;
const PLOT_LEFT: f64 = 240.0;
const PLOT_RIGHT: f64 = 985.0;
const AXIS_HEIGHT: f64 = 34.0;
const LEGEND_HEIGHT: f64 = 30.0;

/// Tick steps to choose from, in seconds.
const STEPS: [i64; 20] = [
    60,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10_800,
    21_600,
    43_200,
    86_400,
    172_800,
    432_000,
    604_800,
    1_209_600,
    2_592_000,
    7_776_000,
    15_552_000,
    31_536_000,
    157_680_000,
];

/// Row height for `n` grants: roomy for a few, thin for hundreds.
fn row_height(n: usize) -> f64 {
    (480.0 / n.max(1) as f64).clamp(4.0, 22.0)
}

/// The timeline of one key's grants, as an `<svg>` element.
pub fn timeline(key: &KeyEntry, grants: &[&GrantEntry], index: usize) -> String {
    let (mut start, mut end) = key.span;
    if end - start < 600 {
        // A period of one instant: show half an hour around it.
        start -= 900;
        end += 900;
    }
    let span = (end - start) as f64;
    let x = |t: i64| PLOT_LEFT + (PLOT_RIGHT - PLOT_LEFT) * ((t.clamp(start, end) - start) as f64 / span);
    let row = row_height(grants.len());
    let labelled = row >= 9.0;
    let plot_height = row * grants.len().max(1) as f64;
    let height = AXIS_HEIGHT + plot_height + LEGEND_HEIGHT + 8.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="timeline" id="timeline-{index}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0}" width="100%" role="img" aria-labelledby="timeline-{index}-title">"#
    );
    let _ = write!(
        s,
        r#"<title id="timeline-{index}-title">Grant lifetimes and uses on {}</title>"#,
        escape(&key.key_arn)
    );

    // Axis: ticks, labels and grid lines.
    let step = STEPS.iter().copied().find(|st| (end - start) / st <= 8).unwrap_or(157_680_000);
    let first_tick = start.div_euclid(step) * step + if start % step == 0 { 0 } else { step };
    let mut tick = first_tick;
    let mut previous_day = String::new();
    let _ = write!(
        s,
        r##"<line x1="{PLOT_LEFT}" y1="{AXIS_HEIGHT}" x2="{PLOT_RIGHT}" y2="{AXIS_HEIGHT}" stroke="#718096" stroke-width="1"/>"##
    );
    while tick <= end {
        let tx = x(tick);
        let text = timestamp::format(tick);
        let day = text[..10].to_string();
        let label = if step >= 86_400 {
            day.clone()
        } else if day != previous_day {
            format!("{} {}", &text[5..10], &text[11..16])
        } else {
            text[11..16].to_string()
        };
        previous_day = day;
        let _ = write!(
            s,
            r##"<line x1="{tx:.1}" y1="{}" x2="{tx:.1}" y2="{:.1}" stroke="#e2e8f0" stroke-width="1"/><line x1="{tx:.1}" y1="{}" x2="{tx:.1}" y2="{AXIS_HEIGHT}" stroke="#718096"/><text x="{tx:.1}" y="{}" font-size="11" text-anchor="middle" fill="#2d3748">{label}</text>"##,
            AXIS_HEIGHT,
            AXIS_HEIGHT + plot_height,
            AXIS_HEIGHT - 5.0,
            AXIS_HEIGHT - 9.0,
        );
        tick += step;
    }
    let _ = write!(s, r##"<text x="{}" y="12" font-size="11" fill="#4a5568">UTC</text>"##, PLOT_LEFT - 34.0);

    if grants.is_empty() {
        let _ = write!(
            s,
            r##"<text x="{PLOT_LEFT}" y="{}" font-size="12" fill="#4a5568">No grants on this key in the period.</text>"##,
            AXIS_HEIGHT + 15.0
        );
    }
    for (i, g) in grants.iter().enumerate() {
        let top = AXIS_HEIGHT + row * i as f64;
        let bar_h = (row * 0.62).max(2.0);
        let bar_y = top + (row - bar_h) / 2.0;
        let x0 = g.created_seconds.map_or(PLOT_LEFT, x);
        let x1 = g.ended_seconds.map_or(PLOT_RIGHT, x).max(x0 + 2.0);
        let (fill, state) = if g.active_at_as_of { ("#2b6cb0", "active") } else { ("#a0aec0", "ended") };
        let created = g.created_at.as_deref().unwrap_or("before the logs");
        let ended = g.ended_at.as_deref().unwrap_or("still active");
        let tip = format!(
            "{} — {state}; created {created}; ended {ended}; {} use(s), {} grant-only",
            g.label(),
            g.uses,
            g.grant_only_calls
        );
        if i % 2 == 1 {
            let _ =
                write!(s, r##"<rect x="0" y="{top:.1}" width="{WIDTH}" height="{row:.1}" fill="#f7fafc"/>"##);
        }
        let _ = write!(s, "<g><title>{}</title>", escape(&tip));
        let dash = if g.created_seconds.is_none() { r#" stroke-dasharray="3 2""# } else { "" };
        let _ = write!(
            s,
            r##"<rect class="grant-bar" x="{x0:.1}" y="{bar_y:.1}" width="{:.1}" height="{bar_h:.1}" fill="{fill}" fill-opacity="0.85" stroke="#2d3748" stroke-width="0.5"{dash}/>"##,
            x1 - x0
        );
        if g.ended_seconds.is_none_or(|e| e > end) {
            // Still active at the end of the period: an arrow there.
            let mid = bar_y + bar_h / 2.0;
            let _ = write!(
                s,
                r##"<path d="M{:.1} {:.1} L{:.1} {mid:.1} L{:.1} {:.1} Z" fill="{fill}"/>"##,
                PLOT_RIGHT,
                bar_y - 1.0,
                PLOT_RIGHT + 8.0,
                PLOT_RIGHT,
                bar_y + bar_h + 1.0
            );
        }
        // Uses (in time order): one mark per pixel column, coloured grant-only if any call
        // there depended on a grant.
        let mut drawn: Vec<(i64, bool)> = Vec::new();
        for &(t, only) in &g.use_times {
            let px = x(t).round() as i64;
            match drawn.last_mut() {
                Some(last) if last.0 == px => last.1 |= only,
                _ => drawn.push((px, only)),
            }
        }
        for (px, only) in drawn {
            let colour = if only { "#c05621" } else { "#1a202c" };
            let _ = write!(
                s,
                r#"<rect class="use-mark" x="{:.1}" y="{:.1}" width="2" height="{:.1}" fill="{colour}"/>"#,
                px as f64 - 1.0,
                top + 1.0,
                (row - 2.0).max(2.0)
            );
        }
        s.push_str("</g>");
        if labelled {
            let mut label = g.label();
            if label.chars().count() > 34 {
                label = format!("{}…", label.chars().take(33).collect::<String>());
            }
            let _ = write!(
                s,
                r##"<text x="{}" y="{:.1}" font-size="{:.0}" text-anchor="end" fill="#1a202c">{}</text>"##,
                LABEL_WIDTH,
                top + row / 2.0 + 4.0,
                (row - 8.0).clamp(9.0, 12.0),
                escape(&label)
            );
        }
    }
    if !labelled {
        let _ = write!(
            s,
            r##"<text x="{LABEL_WIDTH}" y="{:.1}" font-size="11" text-anchor="end" fill="#4a5568">{} grants, oldest first</text>"##,
            AXIS_HEIGHT + 14.0,
            grants.len()
        );
    }

    // Legend.
    let ly = AXIS_HEIGHT + plot_height + 20.0;
    let _ = write!(
        s,
        r##"<g font-size="11" fill="#2d3748"><rect x="{PLOT_LEFT}" y="{:.1}" width="18" height="9" fill="#2b6cb0"/><text x="{}" y="{ly:.1}">active</text><rect x="{}" y="{:.1}" width="18" height="9" fill="#a0aec0"/><text x="{}" y="{ly:.1}">ended</text><rect x="{}" y="{:.1}" width="18" height="9" fill="none" stroke="#2d3748" stroke-dasharray="3 2"/><text x="{}" y="{ly:.1}">created before the logs</text><rect x="{}" y="{:.1}" width="2" height="11" fill="#1a202c"/><text x="{}" y="{ly:.1}">use</text><rect x="{}" y="{:.1}" width="2" height="11" fill="#c05621"/><text x="{}" y="{ly:.1}">grant-only use</text></g>"##,
        ly - 9.0,
        PLOT_LEFT + 24.0,
        PLOT_LEFT + 70.0,
        ly - 9.0,
        PLOT_LEFT + 94.0,
        PLOT_LEFT + 140.0,
        ly - 9.0,
        PLOT_LEFT + 164.0,
        PLOT_LEFT + 310.0,
        ly - 10.0,
        PLOT_LEFT + 318.0,
        PLOT_LEFT + 350.0,
        ly - 10.0,
        PLOT_LEFT + 358.0,
    );
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(i: usize, created: Option<i64>, ended: Option<i64>, uses: Vec<(i64, bool)>) -> GrantEntry {
        GrantEntry {
            key_arn: "arn:aws:kms:us-east-1:111122223333:key/k".into(),
            grant_id: format!("{i:064}"),
            name: (i == 0).then(|| "<b>name</b>".to_string()),
            state: if ended.is_some() { "retired" } else { "active" },
            active_at_as_of: ended.is_none(),
            state_as_of: String::new(),
            creation_seen: created.is_some(),
            grantee_principal: None,
            retiring_principal: None,
            operations: None,
            constraints: None,
            created_at: created.map(timestamp::format),
            created_by: None,
            created_via: None,
            created_from_ip: None,
            created_user_agent: None,
            created_through_grants: Vec::new(),
            ended_at: ended.map(timestamp::format),
            ended_by: None,
            ended_via: None,
            ended_how: None,
            uses: uses.len() as u64,
            grant_only_calls: uses.iter().filter(|(_, o)| *o).count() as u64,
            first_use: None,
            last_use: None,
            findings: Vec::new(),
            anomalies: 0,
            created_seconds: created,
            ended_seconds: ended,
            use_times: uses,
        }
    }

    fn key(span: (i64, i64)) -> KeyEntry {
        KeyEntry {
            key_arn: "arn:aws:kms:us-east-1:111122223333:key/k".into(),
            account: None,
            region: None,
            grants: 0,
            active: 0,
            calls_through_grants: 0,
            grant_only_calls: 0,
            timeline_start: String::new(),
            timeline_end: String::new(),
            kms_last_use: None,
            span,
        }
    }

    fn height(svg: &str) -> f64 {
        let view = svg.split("viewBox=\"0 0 1000 ").nth(1).unwrap_or_default();
        view.split('"').next().unwrap_or_default().parse().unwrap_or_default()
    }

    const T: i64 = 1_714_554_000; // 2024-05-01T09:00:00Z

    #[test]
    fn one_grant_is_labelled_escaped_and_has_axis_dates() {
        let g = grant(0, Some(T + 600), None, vec![(T + 1200, true), (T + 1260, false)]);
        let svg = timeline(&key((T, T + 3600)), &[&g], 0);
        assert!(svg.contains("&lt;b&gt;name&lt;/b&gt;") && !svg.contains("<b>"));
        assert_eq!(svg.matches("class=\"grant-bar\"").count(), 1);
        assert_eq!(svg.matches("class=\"use-mark\"").count(), 2);
        assert!(svg.contains(">05-01 09:00<"), "the first tick carries the date: {svg}");
        assert!(svg.contains("<path"), "an active grant ends in an arrow");
    }

    #[test]
    fn hundreds_of_grants_stay_a_readable_size() {
        let grants: Vec<GrantEntry> = (0..300)
            .map(|i| {
                let start = T + i as i64 * 86_400;
                grant(
                    i,
                    Some(start),
                    Some(start + 40 * 86_400),
                    (0..50).map(|u| (start + u * 3600, false)).collect(),
                )
            })
            .collect();
        let refs: Vec<&GrantEntry> = grants.iter().collect();
        let svg = timeline(&key((T, T + 400 * 86_400)), &refs, 1);
        assert_eq!(svg.matches("class=\"grant-bar\"").count(), 300);
        let h = height(&svg);
        assert!((1200.0..=1400.0).contains(&h), "4 px a row: {h}");
        assert!(svg.contains("300 grants, oldest first"), "no unreadable labels");
        // Uses close together share a mark: far fewer marks than the 15,000 uses.
        assert!(svg.matches("class=\"use-mark\"").count() < 15_000);
        assert!(svg.contains(">2024-06-"), "day ticks carry full dates");
        let one = timeline(&key((T, T + 3600)), &refs[..1], 2);
        assert!(height(&one) < 200.0, "one grant, one short chart: {}", height(&one));
    }
}
