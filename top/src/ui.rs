//! Drawing the [`View`] with ratatui: a title line, a status line (the
//! admin listener's error, or warnings), the per-site table, answers and
//! drops side by side, then Kafka/spool, certificates and TLS.

use std::time::Instant;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table, Wrap};

use crate::app::App;
use crate::model::{Counter, View};

const SMALLEST: (u16, u16) = (40, 10);

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let area = frame.area();
    if area.width < SMALLEST.0 || area.height < SMALLEST.1 {
        frame.render_widget(
            Paragraph::new(format!(
                "terminal too small ({}x{}); edge top needs {}x{}",
                area.width, area.height, SMALLEST.0, SMALLEST.1
            ))
            .wrap(Wrap { trim: true }),
            area,
        );
        return;
    }
    let [title, status, body] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(2),
        Constraint::Min(0),
    ])
    .areas(area);
    frame.render_widget(title_line(app), title);
    frame.render_widget(status_line(app), status);
    match &app.view {
        Some(view) => draw_view(frame, body, view),
        None => frame.render_widget(
            Paragraph::new(format!("waiting for {}/metrics …", app.target)),
            body,
        ),
    }
}

fn title_line(app: &App) -> Paragraph<'static> {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let mut spans = vec![
        Span::styled("edge top", bold),
        Span::raw(format!("  {}", app.target)),
    ];
    if let Some(view) = &app.view {
        if let Some(version) = &view.config_version {
            spans.push(Span::raw(format!("  config {version}")));
        }
        match &view.ready {
            Some(Ok((true, _))) => spans.push(Span::styled("  ready", fg(Color::Green))),
            Some(Ok((false, text))) => {
                spans.push(Span::styled(format!("  {text}"), fg(Color::Red)));
            }
            Some(Err(e)) => spans.push(Span::styled(format!("  /readyz: {e}"), fg(Color::Red))),
            None => {}
        }
    }
    spans.push(Span::raw(format!(
        "  every {:.1} s  q quits",
        app.interval.as_secs_f64()
    )));
    Paragraph::new(Line::from(spans))
}

fn status_line(app: &App) -> Paragraph<'static> {
    if let Some(failure) = &app.failure {
        let age = app
            .last_update
            .map(|t| {
                format!(
                    "; showing data from {} s ago",
                    Instant::now().saturating_duration_since(t).as_secs()
                )
            })
            .unwrap_or_default();
        return Paragraph::new(Line::styled(
            format!(
                "cannot read {} ({} failed, retrying every {:.1} s{age}): {}",
                app.target,
                failure.count,
                app.interval.as_secs_f64(),
                failure.error,
            ),
            fg(Color::Red).add_modifier(Modifier::BOLD),
        ))
        .wrap(Wrap { trim: true });
    }
    match &app.view {
        Some(view) if !view.warnings.is_empty() => Paragraph::new(Line::styled(
            view.warnings.join("; "),
            fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ))
        .wrap(Wrap { trim: true }),
        Some(view) => Paragraph::new(Line::from(match view.interval_seconds {
            Some(s) => format!("rates over the last {s:.1} s"),
            None => "first scrape: totals only, rates from the next refresh".to_string(),
        })),
        None => Paragraph::new(""),
    }
}

fn draw_view(frame: &mut Frame<'_>, area: Rect, view: &View) {
    let site_rows = u16::try_from(view.sites.len().max(1)).unwrap_or(u16::MAX);
    let sites_height = site_rows.saturating_add(3).min(area.height / 3).max(4);
    let [sites, middle, bottom] = Layout::vertical([
        Constraint::Length(sites_height),
        Constraint::Fill(1),
        Constraint::Fill(1),
    ])
    .areas(area);
    frame.render_widget(sites_table(view), sites);
    let [answers, drops] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(middle);
    frame.render_widget(answers_panel(view), answers);
    frame.render_widget(drops_table(view), drops);
    let [delivery, certs, tls] = Layout::horizontal([
        Constraint::Ratio(1, 3),
        Constraint::Ratio(1, 3),
        Constraint::Ratio(1, 3),
    ])
    .areas(bottom);
    frame.render_widget(delivery_panel(view), delivery);
    frame.render_widget(certs_panel(view), certs);
    frame.render_widget(tls_panel(view), tls);
}

fn block(title: &str) -> Block<'static> {
    Block::bordered().title(format!(" {title} "))
}

fn fg(color: Color) -> Style {
    Style::default().fg(color)
}

fn header(cells: &[&'static str]) -> Row<'static> {
    Row::new(cells.to_vec()).style(Style::default().add_modifier(Modifier::BOLD))
}

fn sites_table(view: &View) -> Table<'static> {
    let rows: Vec<Row<'static>> = view
        .sites
        .iter()
        .map(|r| {
            Row::new(vec![
                r.site.clone(),
                count(r.requests.total),
                per_sec(r.requests),
                count(r.events.total),
                per_sec(r.events),
                count(r.rate_limited.total),
                count(r.bots.total),
                count(r.failed.total),
            ])
        })
        .collect();
    let widths = [
        Constraint::Min(12),
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(8),
    ];
    Table::new(rows, widths)
        .header(header(&[
            "site", "requests", "req/s", "events", "events/s", "limited", "bots", "failed",
        ]))
        .block(block("sites"))
}

fn answers_panel(view: &View) -> Paragraph<'static> {
    let mut lines: Vec<Line<'static>> = Vec::new();
    for row in &view.answers {
        let style = match row.class {
            "5xx" | "other" => fg(Color::Red),
            "4xx" => fg(Color::Yellow),
            _ => Style::default(),
        };
        lines.push(Line::styled(
            format!(
                "{:<5} {:>8} {:>9}",
                row.class,
                count(row.counter.total),
                per_sec(row.counter)
            ),
            style.add_modifier(Modifier::BOLD),
        ));
        for (outcome, c) in &row.outcomes {
            lines.push(Line::styled(
                format!("  {outcome:<22} {:>8} {:>9}", count(c.total), per_sec(*c)),
                style,
            ));
        }
    }
    if lines.is_empty() {
        lines.push(Line::raw("no requests yet"));
    }
    Paragraph::new(lines).block(block("answers (total, /s)"))
}

fn drops_table(view: &View) -> Table<'static> {
    let rows: Vec<Row<'static>> = view
        .drops
        .iter()
        .map(|d| {
            Row::new(vec![
                d.kind.to_string(),
                d.reason.clone(),
                count(d.counter.total),
                per_sec(d.counter),
            ])
        })
        .collect();
    let empty = rows.is_empty();
    let widths = [
        Constraint::Length(18),
        Constraint::Min(14),
        Constraint::Length(8),
        Constraint::Length(8),
    ];
    let title = if empty { "drops: none" } else { "drops" };
    Table::new(rows, widths)
        .header(header(&["kind", "reason", "total", "/s"]))
        .block(block(title))
}

fn delivery_panel(view: &View) -> Paragraph<'static> {
    let d = &view.delivery;
    let mut lines = vec![
        Line::from(vec![
            Span::raw("kafka "),
            match d.kafka_ready {
                Some(true) => Span::styled("ready", fg(Color::Green)),
                Some(false) => Span::styled("not ready", fg(Color::Red)),
                None => Span::raw("?"),
            },
            Span::raw("  spool "),
            match d.writable {
                Some(true) => Span::styled("writable", fg(Color::Green)),
                Some(false) => Span::styled("refusing", fg(Color::Red)),
                None => Span::raw("?"),
            },
        ]),
        Line::raw(format!(
            "waiting {} records, oldest {}",
            d.spool_records.map_or("?".into(), count),
            d.oldest_age_seconds.map_or("?".into(), age)
        )),
        Line::raw(format!(
            "spool on disk {}",
            d.spool_bytes.map_or("?".into(), bytes)
        )),
        Line::raw(format!(
            "shipped {} ({})  failed {} ({})",
            count(d.shipped.total),
            per_sec(d.shipped),
            count(d.ship_failures.total),
            per_sec(d.ship_failures)
        )),
    ];
    for (outcome, c) in &d.refused {
        lines.push(Line::styled(
            format!("spool refused {outcome}: {}", count(c.total)),
            fg(Color::Red),
        ));
    }
    for (kind, c) in &d.client_errors {
        lines.push(Line::styled(
            format!("client error {kind}: {}", count(c.total)),
            fg(Color::Yellow),
        ));
    }
    match &d.spool {
        Ok(s) => {
            if let Some(full) = &s.full {
                lines.push(Line::styled(format!("full: {full}"), fg(Color::Red)));
            }
            if let Some(e) = &s.broker.last_error {
                lines.push(Line::styled(
                    format!("last error: {}", e.error),
                    fg(Color::Yellow),
                ));
            }
        }
        Err(e) => lines.push(Line::styled(e.clone(), fg(Color::Red))),
    }
    Paragraph::new(lines)
        .wrap(Wrap { trim: true })
        .block(block("kafka & spool"))
}

fn certs_panel(view: &View) -> Paragraph<'static> {
    let c = &view.certs;
    let mut lines = vec![Line::raw(format!(
        "files {}  acme {}",
        c.static_certs.map_or("?".into(), count),
        match c.acme_enabled {
            Some(false) => "off".to_string(),
            _ => c.acme_certs.map_or("?".into(), count),
        }
    ))];
    if !c.states.is_empty() {
        let states: Vec<String> = c.states.iter().map(|(s, n)| format!("{s} {n}")).collect();
        lines.push(Line::raw(states.join("  ")));
    }
    for (name, state, next, error) in &c.attention {
        let mut text = format!("{name}: {state}");
        if let Some(next) = next {
            let left = *next as f64 - now_unix();
            if left > 0.0 {
                text.push_str(&format!(", next try in {}", age(left)));
            } else {
                text.push_str(", next try due");
            }
        }
        if let Some(error) = error {
            text.push_str(&format!(" ({error})"));
        }
        lines.push(Line::styled(text, fg(Color::Yellow)));
    }
    for (site, left) in &c.expiring {
        let text = if *left < 0.0 {
            format!("{site}: EXPIRED {} ago", age(-left))
        } else {
            format!("{site}: expires in {}", age(*left))
        };
        lines.push(Line::styled(text, fg(Color::Red)));
    }
    if c.expiring.is_empty() {
        lines.push(Line::raw("none expiring within 14 days"));
    }
    if let Some(e) = &c.error {
        lines.push(Line::styled(e.clone(), fg(Color::Red)));
    }
    Paragraph::new(lines)
        .wrap(Wrap { trim: true })
        .block(block("certificates"))
}

fn tls_panel(view: &View) -> Paragraph<'static> {
    let mut lines: Vec<Line<'static>> = view
        .handshakes
        .iter()
        .map(|(outcome, c)| {
            let style = if outcome == "ok" {
                Style::default()
            } else {
                fg(Color::Yellow)
            };
            Line::styled(
                format!("{outcome:<15} {:>8} {:>8}", count(c.total), per_sec(*c)),
                style,
            )
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::raw("no handshakes yet"));
    }
    if !view.connections.is_empty() {
        let open: Vec<String> = view
            .connections
            .iter()
            .map(|(l, n)| format!("{l} {}", count(*n)))
            .collect();
        lines.push(Line::raw(format!("open: {}", open.join("  "))));
    }
    Paragraph::new(lines).block(block("TLS handshakes"))
}

/// The wall clock, Unix seconds (0 if the clock is before 1970).
fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A counter value: exact below a million, then with a unit.
pub fn count(v: f64) -> String {
    if v.abs() < 1e6 {
        format!("{v:.0}")
    } else if v.abs() < 1e9 {
        format!("{:.2}M", v / 1e6)
    } else {
        format!("{:.2}G", v / 1e9)
    }
}

/// A rate, or `-` before the second scrape.
pub fn per_sec(c: Counter) -> String {
    match c.per_sec {
        None => "-".to_string(),
        Some(r) if r < 10.0 => format!("{r:.1}"),
        Some(r) => format!("{r:.0}"),
    }
}

fn bytes(v: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = v;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn age(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 2.0 * 86_400.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} days", s / 86_400.0)
    }
}

#[cfg(test)]
#[path = "ui/tests.rs"]
mod tests;
