//! The report as one self-contained HTML page: inline CSS, charts as inline
//! SVG, no script, font, image or style from anywhere else, so it opens
//! offline and can be mailed. Charts draw aggregates (weeks, months, the 168
//! cells of the clock, top lists), so the page stays small however long the
//! history is. Every chart is an `<svg id=...>` whose marks have a class
//! (`bar`, `cell`, `segment`, `gap`) and a `<title>` with their figure.

use std::fmt::Write;

use super::{Ranked, ReportData, Span, WEEKDAYS};

const ACCENT: &str = "#1db954";
const MUTED: &str = "#8a8f98";
const GAP: &str = "#e8590c";

/// Text safe inside HTML elements and attributes.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The whole page.
pub fn render(d: &ReportData) -> String {
    let mut page = String::with_capacity(64 * 1024);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Listening report</title><style>{}</style></head><body>",
        STYLE
    );
    let (first, last) = (d.first.as_deref().unwrap_or("-"), d.last.as_deref().unwrap_or("-"));
    let _ = write!(
        page,
        "<h1>Listening report</h1><p class=\"sub\">{} &middot; local times in {}</p>\
         <div class=\"totals\"><div><b id=\"total-plays\">{}{}</b> plays</div>\
         <div><b id=\"total-hours\">{}{:.1}</b> hours</div><div><b>{}</b> to <b>{}</b></div></div>",
        esc(&d.period),
        esc(&d.zone),
        d.at_least(),
        d.plays,
        d.at_least(),
        d.hours,
        esc(first),
        esc(last)
    );
    if let Some(why) = d.gaps_reason() {
        let _ = write!(page, "<p class=\"note\" id=\"at-least\">&ldquo;At least&rdquo;: {}.</p>", esc(&why));
    }
    if let (Some((h, hp)), Some((w, wp))) = (d.busiest_hour(), d.busiest_weekday()) {
        let _ = write!(
            page,
            "<p>Busiest hour <b>{h:02}:00&ndash;{:02}:00</b> ({hp} plays), busiest day <b>{}</b> ({wp} plays).</p>",
            (h + 1) % 24,
            WEEKDAYS[w]
        );
    }
    section(&mut page, "The listening clock", "plays by day of the week and hour", &heatmap(&d.clock));
    section(&mut page, "Time listened per week", "hours; coverage gaps in orange", &weeks(&d.weeks, &d.gaps));
    page.push_str("<div class=\"grid\">");
    for (id, title, list) in [
        ("top-artists", "Top artists", &d.top_artists),
        ("top-tracks", "Top tracks", &d.top_tracks),
        ("top-albums", "Top albums", &d.top_albums),
    ] {
        section(&mut page, title, "plays", &top_list(id, list));
    }
    page.push_str("</div>");
    section(&mut page, "Discoveries per month", "artists and tracks played for the first time", &discoveries(d));
    section(&mut page, "Music, podcasts, audiobooks", "plays of each", &content(&d.content));
    page.push_str("<p class=\"foot\">Made by tunelake from the lake's star schema.</p></body></html>\n");
    page
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;\
max-width:1100px;color:#1f2328;padding:0 1rem}h1{margin-bottom:.2rem}.sub{color:#57606a;margin-top:0}\
.totals{display:flex;gap:2.5rem;font-size:1.1rem;margin:1rem 0}.totals b{font-size:1.6rem}\
.note{background:#fff4e6;border-left:4px solid #e8590c;padding:.5rem .8rem}section{margin:1.6rem 0}\
h2{font-size:1.15rem;margin-bottom:.1rem}.what{color:#57606a;font-size:.85rem;margin:0 0 .4rem}\
svg{display:block;max-width:100%;height:auto}svg text{font-size:11px;fill:#57606a}\
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(330px,1fr));gap:1rem}\
table{border-collapse:collapse;font-size:.85rem;width:100%}td{padding:2px 6px;border-bottom:1px solid #eee}\
td.count{text-align:right;font-variant-numeric:tabular-nums}.foot{color:#8a8f98;font-size:.8rem}";

fn section(page: &mut String, title: &str, what: &str, body: &str) {
    let _ = write!(page, "<section><h2>{}</h2><p class=\"what\">{}</p>{body}</section>", esc(title), esc(what));
}

/// 7 rows (Monday first) of 24 cells, shaded by plays.
fn heatmap(clock: &[[i64; 24]; 7]) -> String {
    let (cell, left, top) = (34.0, 80.0, 18.0);
    let max = clock.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let mut svg = svg_open("clock", left + 24.0 * cell + 4.0, top + 7.0 * cell + 4.0);
    for h in (0..24).step_by(3) {
        let _ = write!(svg, "<text x=\"{}\" y=\"12\">{h:02}</text>", left + h as f64 * cell + 4.0);
    }
    for (d, hours) in clock.iter().enumerate() {
        let y = top + d as f64 * cell;
        let _ = write!(svg, "<text x=\"0\" y=\"{}\">{}</text>", y + cell * 0.62, &WEEKDAYS[d][..3]);
        for (h, &n) in hours.iter().enumerate() {
            let shade = 0.06 + 0.94 * (n as f64 / max);
            let _ = write!(
                svg,
                "<rect class=\"cell\" data-plays=\"{n}\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
                 fill=\"{ACCENT}\" fill-opacity=\"{shade:.3}\"><title>{} {h:02}:00: {n} plays</title></rect>",
                left + h as f64 * cell,
                cell - 2.0,
                cell - 2.0,
                WEEKDAYS[d]
            );
        }
    }
    svg + "</svg>"
}

/// One bar per week, hours high; gaps as orange bands over the weeks they touch.
fn weeks(weeks: &[Span], gaps: &[super::Gap]) -> String {
    let (width, height, bottom) = (1060.0, 220.0, 20.0);
    let mut svg = svg_open("weeks", width, height + bottom);
    if weeks.is_empty() {
        return svg + "<text x=\"10\" y=\"20\">no plays in this period</text></svg>";
    }
    // Few weeks make narrow bars, not slabs.
    let step = (width / weeks.len() as f64).min(40.0);
    let max = weeks.iter().map(|w| w.hours).fold(0.0, f64::max).max(0.1);
    // The week a date falls in: the last whose start is not after it.
    let index = |date: &str| weeks.iter().rposition(|w| w.start.as_str() <= date).unwrap_or(0);
    for g in gaps {
        let (a, b) = (index(g.from.get(..10).unwrap_or("")), index(g.to.get(..10).unwrap_or("")));
        let _ = write!(
            svg,
            "<rect class=\"gap\" x=\"{:.1}\" y=\"0\" width=\"{:.1}\" height=\"{height}\" fill=\"{GAP}\" \
             fill-opacity=\"0.25\"><title>coverage gap ({}): {} to {}</title></rect>",
            a as f64 * step,
            ((b.max(a) - a + 1) as f64 * step).max(2.0),
            esc(&g.user),
            esc(&g.from),
            esc(&g.to)
        );
    }
    for (i, w) in weeks.iter().enumerate() {
        let h = w.hours / max * (height - 10.0);
        let _ = write!(
            svg,
            "<rect class=\"bar\" data-hours=\"{}\" x=\"{:.2}\" y=\"{:.1}\" width=\"{:.2}\" height=\"{h:.1}\" \
             fill=\"{ACCENT}\"><title>week of {}: {} hours, {} plays</title></rect>",
            w.hours,
            i as f64 * step + step * 0.1,
            height - h,
            (step * 0.8).max(0.5),
            esc(&w.start),
            w.hours,
            w.plays
        );
    }
    // A date label is about 70 px wide.
    let label_every = ((80.0 / step).ceil() as usize).max(1);
    for (i, w) in weeks.iter().enumerate().step_by(label_every) {
        let _ = write!(svg, "<text x=\"{:.1}\" y=\"{}\">{}</text>", i as f64 * step, height + 14.0, esc(&w.start));
    }
    svg + "</svg>"
}

/// Horizontal bars with their names, and the same figures as a table.
fn top_list(id: &str, list: &[Ranked]) -> String {
    let (width, row) = (330.0, 22.0);
    let max = list.iter().map(|r| r.plays).max().unwrap_or(0).max(1) as f64;
    let mut svg = svg_open(id, width, row * list.len().max(1) as f64);
    let mut table = format!("<details><summary>as a table</summary><table id=\"{id}-table\">");
    for (i, r) in list.iter().enumerate() {
        let name = match &r.by {
            Some(by) => format!("{} - {by}", r.name),
            None => r.name.clone(),
        };
        let w = (r.plays as f64 / max * (width - 40.0)).max(1.0);
        let y = i as f64 * row;
        let _ = write!(
            svg,
            "<rect class=\"bar\" data-plays=\"{}\" x=\"0\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{ACCENT}\" \
             fill-opacity=\"0.35\"><title>{}: {} plays</title></rect><text x=\"4\" y=\"{:.1}\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            r.plays,
            y + 1.0,
            row - 3.0,
            esc(&name),
            r.plays,
            y + 15.0,
            esc(&truncate(&name, 42)),
            width - 34.0,
            y + 15.0,
            r.plays
        );
        let _ = write!(table, "<tr><td>{}</td><td class=\"count\">{}</td></tr>", esc(&name), r.plays);
    }
    if list.is_empty() {
        svg.push_str("<text x=\"4\" y=\"15\">none</text>");
        return svg + "</svg>";
    }
    format!("{svg}</svg>{table}</table></details>")
}

/// Two bars a month: new artists, new tracks.
fn discoveries(d: &ReportData) -> String {
    let (width, height, bottom) = (1060.0, 160.0, 20.0);
    let mut svg = svg_open("discoveries", width, height + bottom);
    let months = &d.discoveries;
    let step = (width / months.len().max(1) as f64).min(60.0);
    let max = months.iter().map(|m| m.1.max(m.2)).max().unwrap_or(0).max(1) as f64;
    for (i, (month, artists, tracks)) in months.iter().enumerate() {
        for (k, (n, what, colour)) in [(artists, "artists", ACCENT), (tracks, "tracks", MUTED)].into_iter().enumerate()
        {
            let h = (*n as f64 / max * (height - 10.0)).max(1.0);
            let _ = write!(
                svg,
                "<rect class=\"bar\" data-{what}=\"{n}\" x=\"{:.2}\" y=\"{:.1}\" width=\"{:.2}\" height=\"{h:.1}\" \
                 fill=\"{colour}\"><title>{}: {n} new {what}</title></rect>",
                i as f64 * step + step * (0.1 + 0.4 * k as f64),
                height - h,
                (step * 0.4).max(0.5),
                esc(month)
            );
        }
    }
    let label_every = ((50.0 / step).ceil() as usize).max(1);
    for (i, (month, ..)) in months.iter().enumerate().step_by(label_every) {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\">{}</text>",
            i as f64 * step,
            height + 14.0,
            esc(month.get(..7).unwrap_or(month))
        );
    }
    svg + "</svg>"
}

/// One stacked bar: each kind's share of the plays.
fn content(kinds: &[(String, i64, i64)]) -> String {
    let (width, height) = (1060.0, 46.0);
    let total = kinds.iter().map(|k| k.1).sum::<i64>().max(1) as f64;
    let colours = [ACCENT, "#3b5bdb", "#ae3ec9", MUTED];
    let mut svg = svg_open("content", width, height);
    let mut x = 0.0;
    for (i, (kind, plays, _)) in kinds.iter().enumerate() {
        let w = *plays as f64 / total * width;
        let _ = write!(
            svg,
            "<rect class=\"segment\" data-plays=\"{plays}\" x=\"{x:.1}\" y=\"0\" width=\"{:.1}\" height=\"26\" \
             fill=\"{}\"><title>{}: {plays} plays</title></rect><text x=\"{:.1}\" y=\"40\">{} {plays}</text>",
            w.max(1.0),
            colours[i % colours.len()],
            esc(kind),
            x + 2.0,
            esc(kind)
        );
        x += w;
    }
    svg + "</svg>"
}

fn svg_open(id: &str, width: f64, height: f64) -> String {
    format!(
        "<svg id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\">"
    )
}

fn truncate(s: &str, chars: usize) -> String {
    if s.chars().count() <= chars { s.to_string() } else { s.chars().take(chars - 1).collect::<String>() + "…" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_names_nothing_outside_itself_and_escapes_what_it_shows() {
        let mut d = ReportData { period: "all of it".into(), zone: "Europe/Berlin".into(), ..Default::default() };
        d.top_artists = vec![Ranked { name: "<script>alert(1)</script>".into(), by: None, plays: 3 }];
        d.weeks = vec![Span { start: "2024-01-01".into(), hours: 1.5, plays: 20 }];
        d.clock[0][9] = 4;
        let page = render(&d);
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        // The only URL is the SVG namespace, which names and loads nothing.
        let urls: Vec<&str> = page.match_indices("http").map(|(i, _)| &page[i..i + 26]).collect();
        assert!(urls.iter().all(|u| u.starts_with("http://www.w3.org/2000/svg")), "{urls:?}");
        assert_eq!(page.matches("class=\"cell\"").count(), 168);
        assert_eq!(page.matches("<rect class=\"bar\" data-hours").count(), 1);
    }
}
