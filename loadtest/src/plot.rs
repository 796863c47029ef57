//! SVG charts: per-second p50/p99 latency over time, and the percentile distribution.

use std::path::Path;

use anyhow::{Result, anyhow};
use hdrhistogram::Histogram;
use plotters::prelude::*;

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

/// Writes the two charts to `path`.
pub fn write_svg(
    path: &Path,
    latency: &Histogram<u64>,
    per_second: &[Histogram<u64>],
) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("plotting {}: {e}", path.display());
    let root = SVGBackend::new(path, (1000, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(400);

    let series = per_second_series(per_second);
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

    let dist = distribution_series(latency);
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
    use super::*;

    #[test]
    fn writes_svg_with_both_charts() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        let mut per = vec![h.clone(), h.clone()];
        for v in 1..=1000u64 {
            h.record(v * 10).unwrap();
            per[(v % 2) as usize].record(v * 10).unwrap();
        }
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
        write_svg(&path, &h, &per).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("Latency over time") && svg.contains("Latency by percentile"));
    }
}
