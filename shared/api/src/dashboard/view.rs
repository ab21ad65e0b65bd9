//! What every page shares: the page shell (skip link, navigation, who is signed in), the
//! expiry chart as SVG, and small formatting helpers. maud escapes every interpolated
//! value, so a scanned server's subject or a finding's words are text, never markup.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use certpilot_core::model::overview::{Overview, Week};
use maud::{DOCTYPE, Markup, html};
use time::OffsetDateTime;

use super::session::Session;

/// The navigation, in order: (path, label).
const NAV: [(&str, &str); 5] = [
    ("/ui", "Overview"),
    ("/ui/inventory", "Inventory"),
    ("/ui/certificates", "Certificates"),
    ("/ui/findings", "Findings"),
    ("/ui/request", "Request"),
];

/// A whole page: `title`, the navigation with `current` marked, `body`. `refresh` reloads
/// it every so many seconds (a request's progress, without JavaScript).
pub(crate) fn page(
    title: &str,
    current: &str,
    session: Option<&Session>,
    refresh: Option<u32>,
    body: Markup,
) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, refresh))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui" { "certpilot" }
                    nav aria-label="Main" {
                        ul {
                            @for (path, label) in NAV {
                                li {
                                    @if path == current {
                                        a href=(path) aria-current="page" { (label) }
                                    } @else {
                                        a href=(path) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    @if let Some(s) = session {
                        div.who {
                            span { "Signed in as " strong { (s.principal) } }
                            form method="post" action="/ui/logout" {
                                (csrf(s))
                                button.secondary type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    html_response(StatusCode::OK, markup)
}

/// The `<head>` of every page.
fn head(title: &str, refresh: Option<u32>) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            @if let Some(s) = refresh { meta http-equiv="refresh" content=(s); }
            title { (title) " · certpilot" }
            link rel="stylesheet" href="/ui/assets/dashboard.css";
        }
    }
}

/// `markup` as an HTML answer that no other site may frame and that caches nowhere.
pub(crate) fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut res = (status, markup).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    res
}

/// A page that says why something was refused.
pub(crate) fn refusal(status: StatusCode, why: &str) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head("Refused", None))
            body {
                main #main {
                    h1 { "Refused" }
                    p.error role="alert" { (why) }
                    p { a href="/ui" { "Back to the overview" } }
                }
            }
        }
    };
    html_response(status, markup)
}

/// The hidden field every form carries.
pub(crate) fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// `v` for a URL's query.
pub fn query_escape(v: &str) -> String {
    serde_urlencoded::to_string([("", v)])
        .map(|s| s.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

/// A date as people read it (`2026-12-06`).
pub(crate) fn date(t: OffsetDateTime) -> String {
    let d = t.date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// A time as people read it, in UTC (`2026-12-06 14:03 UTC`).
pub(crate) fn when(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{} {:02}:{:02} UTC", date(t), t.hour(), t.minute())
}

/// The expiry timeline: certificates by week of expiry, managed and unmanaged stacked,
/// with the expired ones said in words above it. A data table follows for screen readers
/// and anyone who wants the numbers.
pub(crate) fn chart(o: &Overview) -> Markup {
    let (w, h, left, bottom, top) = (720.0_f64, 260.0_f64, 44.0_f64, 44.0_f64, 16.0_f64);
    let max = o
        .weeks
        .iter()
        .map(|x| x.managed + x.unmanaged)
        .max()
        .unwrap_or(0)
        .max(1);
    // A round top for the axis: 1, 2, 5, 10, 20, 50…
    let mut top_value = 1u64;
    while top_value < max {
        top_value = match top_value.to_string().chars().next() {
            Some('1') => top_value * 2,
            Some('2') => top_value / 2 * 5,
            _ => top_value * 2,
        };
    }
    let plot_h = h - bottom - top;
    let n = o.weeks.len().max(1) as f64;
    let slot = (w - left - 8.0) / n;
    let bar = slot * 0.7;
    let y = |v: u64| top + plot_h - plot_h * (v as f64) / (top_value as f64);
    let label = format!(
        "Certificates by week of expiry over the next {} weeks: {} managed and {} unmanaged in all; {} managed and {} unmanaged already expired.",
        o.weeks.len(),
        o.weeks.iter().map(|x| x.managed).sum::<u64>(),
        o.weeks.iter().map(|x| x.unmanaged).sum::<u64>(),
        o.expired.0,
        o.expired.1
    );
    let ticks = [0, top_value / 2, top_value];
    html! {
        @if o.expired.0 + o.expired.1 > 0 {
            p.error role="status" {
                strong { "Expired: " }
                (o.expired.0) " managed, " (o.expired.1) " unmanaged certificate(s) already past their end date."
            }
        }
        p.legend aria-hidden="true" {
            span { span.swatch.managed {} "managed" }
            span { span.swatch.unmanaged {} "unmanaged" }
        }
        svg.chart viewBox=(format!("0 0 {w} {h}")) role="img" aria-label=(label) xmlns="http://www.w3.org/2000/svg" {
            title { (label) }
            @for t in ticks {
                line x1=(left) x2=(w - 4.0) y1=(y(t)) y2=(y(t)) stroke="#d0d7de" {}
                text x=(left - 6.0) y=(y(t) + 4.0) text-anchor="end" font-size="12" fill="#4a5360" { (t) }
            }
            @for (i, week) in o.weeks.iter().enumerate() {
                @let x = left + slot * (i as f64) + (slot - bar) / 2.0;
                @let managed_top = y(week.managed);
                @let all_top = y(week.managed + week.unmanaged);
                g {
                    title { (week_label(week)) ": " (week.managed) " managed, " (week.unmanaged) " unmanaged" }
                    @if week.managed > 0 {
                        rect x=(format!("{x:.1}")) y=(format!("{managed_top:.1}")) width=(format!("{bar:.1}")) height=(format!("{:.1}", y(0) - managed_top)) fill="#0b5cad" {}
                    }
                    @if week.unmanaged > 0 {
                        rect x=(format!("{x:.1}")) y=(format!("{all_top:.1}")) width=(format!("{bar:.1}")) height=(format!("{:.1}", managed_top - all_top)) fill="#b35c00" {}
                    }
                }
                @if i % 2 == 0 {
                    text x=(format!("{:.1}", x + bar / 2.0)) y=(h - bottom + 16.0) text-anchor="middle" font-size="11" fill="#4a5360" { (short_date(week.starts)) }
                }
            }
            text x=(left) y=(h - 6.0) font-size="12" fill="#4a5360" { "week starting" }
        }
        details {
            summary { "The numbers" }
            div.table-wrap tabindex="0" role="region" aria-label="Certificates expiring each week" {
                table #weeks {
                    caption { "Certificates expiring each week" }
                    thead { tr { th scope="col" { "Week starting" } th.num scope="col" { "Managed" } th.num scope="col" { "Unmanaged" } } }
                    tbody {
                        @for week in &o.weeks {
                            tr { td { (date(week.starts)) } td.num { (week.managed) } td.num { (week.unmanaged) } }
                        }
                    }
                }
            }
        }
    }
}

fn week_label(w: &Week) -> String {
    format!("week of {}", date(w.starts))
}

fn short_date(t: OffsetDateTime) -> String {
    format!("{} {}", t.day(), &t.month().to_string()[..3])
}
