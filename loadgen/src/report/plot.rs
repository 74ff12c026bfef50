//! SVG plots with plotters: latency percentiles vs offered rate (baseline vs mesh) and
//! bulk throughput bars. Pure: a report in, SVG text out.

use super::Report;
use plotters::coord::combinators::IntoLogRange;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const SIZE: (u32, u32) = (800, 500);
const BASELINE: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const MESH: RGBColor = RGBColor(0xd6, 0x27, 0x28);

type Series = (&'static str, RGBColor, bool, Vec<(f64, f64)>);

fn latency_series(r: &Report) -> Vec<Series> {
    let pts = &r.request_response;
    let ms = |v: u64| v as f64 / 1000.0;
    let base = |f: fn(&crate::hist::Percentiles) -> u64| {
        pts.iter()
            .map(|p| (p.offered_rps, ms(f(&p.baseline.latency))))
            .collect::<Vec<_>>()
    };
    let mesh = |f: fn(&crate::hist::Percentiles) -> u64| {
        pts.iter()
            .filter_map(|p| Some((p.offered_rps, ms(f(&p.mesh.as_ref()?.latency)))))
            .collect::<Vec<_>>()
    };
    vec![
        ("baseline p50", BASELINE, false, base(|l| l.p50_us)),
        ("baseline p99", BASELINE, true, base(|l| l.p99_us)),
        ("mesh p50", MESH, false, mesh(|l| l.p50_us)),
        ("mesh p99", MESH, true, mesh(|l| l.p99_us)),
    ]
}

/// Latency (ms, log axis) vs offered rate (log axis): p50 and p99 of baseline and
/// mesh, every point marked, every series in the legend. A log latency axis keeps a
/// saturated point (hundreds of ms) from flattening every other rate.
pub fn latency_svg(r: &Report) -> String {
    let series = latency_series(r);
    let xs = || series.iter().flat_map(|s| s.3.iter().map(|p| p.0));
    let ys = || series.iter().flat_map(|s| s.3.iter().map(|p| p.1));
    let (min_x, max_x) = (
        xs().fold(f64::MAX, f64::min).min(1e9),
        xs().fold(1.0, f64::max),
    );
    let min_x = if min_x >= max_x { max_x / 2.0 } else { min_x };
    let (min_y, max_y) = (
        ys().fold(f64::MAX, f64::min).clamp(0.001, 1.0),
        ys().fold(0.1, f64::max),
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let _ = root.fill(&WHITE);
        let chart = ChartBuilder::on(&root)
            .caption(
                "request/response latency vs offered rate (log axes)",
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(
                (min_x * 0.8..max_x * 1.25).log_scale(),
                (min_y * 0.5..max_y * 8.0).log_scale(),
            );
        let Ok(mut chart) = chart else {
            return svg_fallback();
        };
        let _ = chart
            .configure_mesh()
            .x_desc("offered requests/s")
            .y_desc("latency (ms, log)")
            .x_label_formatter(&|_| String::new())
            .y_label_formatter(&|v| format!("{v}"))
            .draw();
        // The offered rates themselves label the (log) x axis.
        for p in &r.request_response {
            let at = chart.backend_coord(&(p.offered_rps, min_y * 0.5));
            let _ = root.draw(&Text::new(
                format!("{:.0}", p.offered_rps),
                (at.0, at.1 + 8),
                under(),
            ));
        }
        for (name, color, thick, pts) in series {
            let style = color.stroke_width(if thick { 3 } else { 1 });
            let marks = pts.clone();
            if let Ok(a) = chart.draw_series(LineSeries::new(pts, style)) {
                a.label(name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            }
            let _ = chart.draw_series(marks.into_iter().map(|p| Circle::new(p, 3, color.filled())));
        }
        let _ = chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw();
        let _ = root.present();
    }
    svg
}

/// Bulk throughput (Gb/s) per stream count: baseline and mesh bars side by side, one
/// x label per stream count, a legend for the two paths.
pub fn throughput_svg(r: &Report) -> String {
    let n = r.bulk.len().max(1);
    let max_y = r
        .bulk
        .iter()
        .flat_map(|b| [Some(b.baseline.gbps), b.mesh.as_ref().map(|m| m.gbps)])
        .flatten()
        .fold(0.1, f64::max)
        * 1.15;
    let labels: Vec<String> = r
        .bulk
        .iter()
        .map(|b| format!("{} stream(s)", b.streams))
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let _ = root.fill(&WHITE);
        let chart = ChartBuilder::on(&root)
            .caption("bulk throughput", ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n as f64, 0f64..max_y);
        let Ok(mut chart) = chart else {
            return svg_fallback();
        };
        let _ = chart
            .configure_mesh()
            .x_label_formatter(&|_| String::new())
            .y_desc("Gb/s")
            .disable_x_mesh()
            .draw();
        // One label per stream count, under the middle of its pair of bars.
        for (i, l) in labels.iter().enumerate() {
            let at = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            let _ = root.draw(&Text::new(l.clone(), (at.0, at.1 + 8), under()));
        }
        let bar = |i: usize, lo: f64, v: f64, c: RGBColor| {
            let x = i as f64 + lo;
            Rectangle::new([(x, 0.0), (x + 0.35, v)], c.filled())
        };
        let base = r.bulk.iter().enumerate();
        if let Ok(a) = chart.draw_series(base.map(|(i, b)| bar(i, 0.1, b.baseline.gbps, BASELINE)))
        {
            a.label("baseline")
                .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], BASELINE.filled()));
        }
        if let Ok(a) = chart.draw_series(
            r.bulk
                .iter()
                .enumerate()
                .filter_map(|(i, b)| Some(bar(i, 0.55, b.mesh.as_ref()?.gbps, MESH))),
        ) {
            a.label("mesh")
                .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], MESH.filled()));
        }
        let _ = chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK)
            .draw();
        let _ = root.present();
    }
    svg
}

/// The style of a label centred under a point.
fn under() -> TextStyle<'static> {
    TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Center, VPos::Top))
}

fn svg_fallback() -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\"><text x=\"20\" y=\"40\">no data to plot</text></svg>",
        SIZE.0, SIZE.1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_plot_has_four_labelled_series() {
        let svg = latency_svg(&crate::report::tests::sample());
        assert!(svg.starts_with("<svg"));
        for label in ["baseline p50", "baseline p99", "mesh p50", "mesh p99"] {
            assert!(svg.contains(label), "missing {label}");
        }
        assert!(svg.matches("<polyline").count() >= 4);
    }

    #[test]
    fn throughput_plot_draws_a_bar_per_path() {
        let svg = throughput_svg(&crate::report::tests::sample());
        assert!(svg.contains("1 stream(s)"));
        assert!(svg.matches("<rect").count() >= 3, "{svg}");
    }

    #[test]
    fn empty_report_still_renders() {
        let r = Report::default();
        assert!(latency_svg(&r).contains("<svg"));
        assert!(throughput_svg(&r).contains("<svg"));
    }
}
