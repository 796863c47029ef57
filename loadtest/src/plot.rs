//! SVG charts under a title with the run's settings: achieved requests/s
//! with errors and non-2xx answers per second by class, per-second p50/p99
//! latency over time, and the percentile distribution.

use std::path::Path;

use anyhow::{Result, anyhow};
use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::stats::{SecondCounts, Stats};

/// The distribution chart's x axis is "number of nines", `x = -log10(1 - p/100)`:
/// 0 → p0, 1 → p90, 2 → p99, 3 → p99.9, 4 → p99.99, 5 → p99.999.
const MAX_NINES: f64 = 5.0;

fn nines(p: f64) -> f64 {
    -(1.0 - p / 100.0).log10()
}

/// Axis label for an x position: the percentile it stands for.
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let s = format!("{p:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("p{s}")
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Per-second (p50, p99) in ms; seconds without responses are skipped.
pub fn per_second_series(per_second: &[Histogram<u64>]) -> Vec<(f64, f64, f64)> {
    per_second
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.is_empty())
        .map(|(s, h)| {
            (
                s as f64,
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.99)),
            )
        })
        .collect()
}

/// (x = -log10(1 - q), latency ms) points from p0 up to the highest percentile the
/// sample count supports (at most p99.999).
pub fn distribution_series(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let n = h.len() as f64;
    let max_x = nines(100.0 * (1.0 - 1.0 / n.max(2.0))).min(MAX_NINES);
    let steps = 250;
    (0..=steps)
        .map(|i| {
            let x = max_x * f64::from(i) / f64::from(steps);
            let q = 1.0 - 10f64.powf(-x);
            (x, ms(h.value_at_quantile(q)))
        })
        .collect()
}

/// One line of the throughput chart: its label, colour and value per second.
type CountSeries = (&'static str, RGBColor, fn(&SecondCounts) -> u64);

/// The throughput chart's lines: everything answered, then each non-2xx
/// class and the errors (2xx is the rest).
const COUNT_SERIES: [CountSeries; 6] = [
    ("achieved req/s (answered)", BLACK, |c| c.completed),
    ("2xx/s", GREEN, |c| c.s2xx),
    ("4xx/s (not 429)", MAGENTA, |c| c.s4xx),
    ("429/s", CYAN, |c| c.s429),
    ("5xx/s", RED, |c| c.s5xx),
    ("errors+timeouts/s", RGBColor(255, 140, 0), |c| c.errors),
];

/// A last, partial second shorter than this is left out of the rates (too
/// short to say anything; it would show as a dip).
const MIN_PARTIAL_SECOND: f64 = 0.1;

/// Rates of one count series: (middle of the interval, count per second).
/// The last second is cut at `elapsed_s` (the run's end) and its count
/// divided by the part of the second it covers.
pub fn count_series(
    per_second: &[SecondCounts],
    elapsed_s: f64,
    f: fn(&SecondCounts) -> u64,
) -> Vec<(f64, f64)> {
    let n = per_second.len();
    per_second
        .iter()
        .enumerate()
        .filter_map(|(s, c)| {
            let start = s as f64;
            let width = (elapsed_s - start).clamp(0.0, 1.0);
            if width < MIN_PARTIAL_SECOND && !(n == 1 && width > 0.0) {
                return None;
            }
            Some((start + width / 2.0, f(c) as f64 / width))
        })
        .collect()
}

/// The subtitle: what share of the answers were not 2xx.
pub fn outcome_line(stats: &Stats) -> String {
    let c = stats.counters;
    let pct = |n: u64| {
        if c.sent == 0 {
            0.0
        } else {
            100.0 * n as f64 / c.sent as f64
        }
    };
    format!(
        "{} sent: 2xx {:.1} %, 4xx {:.1} % (429 {:.1} %), 5xx {:.1} %, errors+timeouts {:.1} %",
        c.sent,
        pct(c.s2xx),
        pct(c.s4xx + c.s429),
        pct(c.s429),
        pct(c.s5xx),
        pct(c.errors + c.timeouts)
    )
}

/// Writes the charts to `path` under `title` (the run's settings).
pub fn write_svg(path: &Path, stats: &Stats, title: &str) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("plotting {}: {e}", path.display());
    let root = SVGBackend::new(path, (1000, 1250)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (head, body) = root.split_vertically(70);
    head.draw(&Text::new(title, (15, 12), ("sans-serif", 18)))
        .map_err(|e| err(&e))?;
    head.draw(&Text::new(
        outcome_line(stats),
        (15, 40),
        ("sans-serif", 15).into_font().color(&RGBColor(90, 90, 90)),
    ))
    .map_err(|e| err(&e))?;
    let (rates, rest) = body.split_vertically(400);
    let (top, bottom) = rest.split_vertically(390);

    let counts = &stats.per_second_counts;
    let elapsed_s = stats.elapsed.as_secs_f64();
    let max_t = (counts.len() as f64).max(1.0);
    let max_y = count_series(counts, elapsed_s, |c| c.completed + c.errors)
        .iter()
        .map(|p| p.1)
        .fold(0.0, f64::max);
    let mut chart = ChartBuilder::on(&rates)
        .caption(
            "Achieved requests/s, errors and non-2xx answers per second",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_t, 0.0..(max_y.max(1.0) * 1.1))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("second")
        .y_desc("per second")
        .draw()
        .map_err(|e| err(&e))?;
    for (label, color, f) in COUNT_SERIES {
        chart
            .draw_series(LineSeries::new(count_series(counts, elapsed_s, f), &color))
            .map_err(|e| err(&e))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;

    let series = per_second_series(&stats.per_second);
    let max_t = series.last().map_or(1.0, |s| s.0 + 1.0);
    let max_y = series.iter().map(|s| s.2).fold(0.0, f64::max).max(0.001) * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            "Latency over time (from intended send time)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_t, 0.0..max_y)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("second")
        .y_desc("latency (ms)")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(series.iter().map(|s| (s.0, s.1)), &BLUE))
        .map_err(|e| err(&e))?
        .label("p50")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(series.iter().map(|s| (s.0, s.2)), &RED))
        .map_err(|e| err(&e))?
        .label("p99")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;

    let dist = distribution_series(&stats.latency);
    let max_y = dist.iter().map(|d| d.1).fold(0.0, f64::max).max(0.001) * 1.1;
    let mut chart = ChartBuilder::on(&bottom)
        .caption("Latency by percentile", ("sans-serif", 20))
        .margin(15)
        .margin_right(40)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..MAX_NINES, 0.0..max_y)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_labels(6)
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(dist, &BLUE))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stats::Outcome;

    #[test]
    fn writes_svg_with_every_chart_and_the_title() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        let mut per = vec![h.clone(), h.clone()];
        for v in 1..=1000u64 {
            h.record(v * 10).unwrap();
            per[(v % 2) as usize].record(v * 10).unwrap();
        }
        let mut stats = Stats::default();
        let ms = Duration::from_millis;
        for (i, code) in [202, 202, 421, 421, 421, 503].into_iter().enumerate() {
            stats.record_sent();
            stats.record(Outcome::Status(code), ms(1), 0, ms(300 * i as u64));
        }
        stats.record_sent();
        stats.record(Outcome::Error, ms(1), 1, ms(1500));
        // Finished at 0, 0.3 … 1.5 s: a full second, then half of one.
        assert_eq!(
            count_series(&stats.per_second_counts, 1.5, |c| c.s4xx),
            vec![(0.5, 2.0), (1.25, 2.0)]
        );
        assert_eq!(
            count_series(&stats.per_second_counts, 1.5, |c| c.errors),
            vec![(0.5, 0.0), (1.25, 2.0)]
        );
        // A last sliver of a second is left out.
        assert_eq!(
            count_series(&stats.per_second_counts, 1.02, |c| c.completed).len(),
            1
        );
        assert_eq!(
            outcome_line(&stats),
            "7 sent: 2xx 28.6 %, 4xx 42.9 % (429 0.0 %), 5xx 14.3 %, errors+timeouts 14.3 %"
        );
        stats.latency = h.clone();
        stats.per_second = per.clone();
        let series = per_second_series(&per);
        assert_eq!(series.len(), 2);
        assert!(series.iter().all(|s| s.2 >= s.1));
        let dist = distribution_series(&h);
        assert!(dist.windows(2).all(|w| w[1].1 >= w[0].1), "monotonic");
        assert_eq!(percentile_label(2.0), "p99");
        assert_eq!(percentile_label(3.0), "p99.9");
        assert_eq!(percentile_label(0.0), "p0");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.svg");
        write_svg(
            &path,
            &stats,
            "synth http://127.0.0.1:8080 | 40 req/s for 1 s",
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("Latency over time") && svg.contains("Latency by percentile"));
        assert!(svg.contains("Achieved requests/s"));
        assert!(svg.contains("synth http://127.0.0.1:8080 | 40 req/s for 1 s"));
        assert!(svg.contains("4xx 42.9 %"));
        assert!(svg.contains("errors+timeouts/s"));
    }
}
