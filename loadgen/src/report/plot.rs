//! SVG plots with plotters: latency percentiles vs offered rate (baseline vs mesh) and
//! bulk throughput bars. Pure: a report in, SVG text out.

use super::Report;
use plotters::prelude::*;

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

/// Latency (ms) vs offered rate: p50 and p99 of baseline and mesh.
pub fn latency_svg(r: &Report) -> String {
    let series = latency_series(r);
    let max_x = series
        .iter()
        .flat_map(|s| s.3.iter().map(|p| p.0))
        .fold(1.0, f64::max)
        * 1.05;
    let max_y = series
        .iter()
        .flat_map(|s| s.3.iter().map(|p| p.1))
        .fold(0.1, f64::max)
        * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let _ = root.fill(&WHITE);
        let chart = ChartBuilder::on(&root)
            .caption(
                "request/response latency vs offered rate",
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..max_x, 0f64..max_y);
        let Ok(mut chart) = chart else {
            return svg_fallback();
        };
        let _ = chart
            .configure_mesh()
            .x_desc("offered requests/s")
            .y_desc("latency (ms)")
            .draw();
        for (name, color, thick, pts) in series {
            let style = color.stroke_width(if thick { 3 } else { 1 });
            if let Ok(a) = chart.draw_series(LineSeries::new(pts, style)) {
                a.label(name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            }
        }
        let _ = chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw();
        let _ = root.present();
    }
    svg
}

/// Bulk throughput (Gb/s) per stream count, baseline and mesh bars side by side.
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
            .caption(
                "bulk throughput: baseline (blue) vs mesh (red)",
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n as f64, 0f64..max_y);
        let Ok(mut chart) = chart else {
            return svg_fallback();
        };
        let fmt = |x: &f64| labels.get(x.floor() as usize).cloned().unwrap_or_default();
        let _ = chart
            .configure_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&fmt)
            .y_desc("Gb/s")
            .disable_x_mesh()
            .draw();
        let bars = r.bulk.iter().enumerate().flat_map(|(i, b)| {
            let x = i as f64;
            let base = Rectangle::new(
                [(x + 0.1, 0.0), (x + 0.45, b.baseline.gbps)],
                BASELINE.filled(),
            );
            let mesh = b
                .mesh
                .as_ref()
                .map(|m| Rectangle::new([(x + 0.55, 0.0), (x + 0.9, m.gbps)], MESH.filled()));
            std::iter::once(base).chain(mesh)
        });
        let _ = chart.draw_series(bars);
        let _ = root.present();
    }
    svg
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
