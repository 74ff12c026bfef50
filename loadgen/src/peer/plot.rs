//! The peer report's SVG plots (pure): one bar per metric showing how far ahead or
//! behind zring is (log scale, 1× in the middle), and latency percentile curves of
//! every target on log axes.

use super::model::{PeerReport, Shape, TARGETS};
use super::render::{Better, METRICS};
use plotters::coord::combinators::IntoLogRange;
use plotters::coord::ranged1d::{IntoSegmentedCoord, SegmentValue};
use plotters::prelude::*;

const WIDTH: u32 = 900;

/// A labelled curve: name, colour, stroke width, points.
type Curve = (String, RGBColor, u32, Vec<(f64, f64)>);
const GOOD: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const BAD: RGBColor = RGBColor(0xd6, 0x27, 0x28);
/// Colours of direct, ztunnel, zring.
const COLORS: [RGBColor; 3] = [
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
];

/// `(label, advantage)`: >1 means zring is better by that factor, whatever the direction.
/// With both shapes in the report, labels start with `cross: ` or `same: `.
pub fn advantages(r: &PeerReport) -> Vec<(String, f64)> {
    let shapes = r.shapes();
    let named = shapes.len() > 1;
    shapes
        .into_iter()
        .flat_map(|shape| {
            let prefix = if named {
                format!("{}: ", shape.key())
            } else {
                String::new()
            };
            METRICS
                .iter()
                .filter(|(_, m, _, _)| !m.starts_with("p90") && *m != "failures")
                .filter_map(move |(fig, m, label, dir)| {
                    let ratio = r
                        .figure_in(shape, fig)?
                        .ratio(m)
                        .filter(|v| *v > 0.0 && v.is_finite())?;
                    let adv = if *dir == Better::Higher {
                        ratio
                    } else {
                        1.0 / ratio
                    };
                    Some((format!("{prefix}{fig}: {label}"), adv))
                })
        })
        .collect()
}

/// Horizontal bars of zring's advantage per metric (log x axis around 1×).
pub fn ratio_svg(r: &PeerReport) -> String {
    let mut bars = advantages(r);
    bars.reverse();
    let n = bars.len().max(1);
    let span = bars.iter().map(|(_, v)| v.max(1.0 / v)).fold(2.0, f64::max) * 1.2;
    let mut svg = String::new();
    {
        let h = 120 + 22 * n as u32;
        let root = SVGBackend::with_string(&mut svg, (WIDTH, h)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let chart = ChartBuilder::on(&root)
            .caption(
                "zring vs ztunnel: green = zring ahead, red = behind (×, log)",
                ("sans-serif", 18),
            )
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(330)
            .build_cartesian_2d((1.0 / span..span).log_scale(), (0..n - 1).into_segmented());
        let Ok(mut chart) = chart else {
            return fallback();
        };
        let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        let label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        let _ = chart
            .configure_mesh()
            .y_labels(n)
            .y_label_formatter(&label)
            .x_desc("zring advantage (× better than ztunnel)")
            .x_labels(40)
            .x_label_formatter(&round_factor)
            .disable_y_mesh()
            .draw();
        let rects = bars.iter().enumerate().map(|(i, (_, v))| {
            let color = if *v >= 1.0 { GOOD } else { BAD };
            let (y0, y1) = (SegmentValue::Exact(i), SegmentValue::Exact(i + 1));
            let mut r = Rectangle::new([(1.0, y0), (*v, y1)], color.filled());
            r.set_margin(3, 3, 0, 0);
            r
        });
        let _ = chart.draw_series(rects);
        let values = bars.iter().enumerate().map(|(i, (_, v))| {
            let at = (v.max(1.0) * 1.03, SegmentValue::CenterOf(i));
            Text::new(format!("{v:.2}×"), at, ("sans-serif", 11))
        });
        let _ = chart.draw_series(values);
        let one = [(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Exact(n))];
        let _ = chart.draw_series(LineSeries::new(one, BLACK.stroke_width(2)));
        let _ = root.present();
    }
    svg
}

/// Labels only the round factors of the log axis (0.1×, 0.2×, 0.5×, 1×, 2×, 5×, 10× …).
pub fn round_factor(v: &f64) -> String {
    let decade = 10f64.powf(v.log10().floor());
    let lead = v / decade;
    let round = [1.0, 2.0, 5.0].iter().any(|m| (lead - m).abs() < 0.02);
    if round {
        format!("{}×", (v * 100.0).round() / 100.0)
    } else {
        String::new()
    }
}

/// The x position of a percentile on a "nines" axis: 50% → 0.3, 99% → 2, 99.9% → 3.
pub fn nines(p: f64) -> f64 {
    -(1.0 - p).log10()
}

/// Percentile points `(nines, µs)` of `target` in `shape`'s figure `fig` (medians over
/// repeats).
pub fn curve(r: &PeerReport, shape: Shape, fig: &str, target: &str) -> Vec<(f64, f64)> {
    let Some(f) = r.figure_in(shape, fig) else {
        return Vec::new();
    };
    [
        (0.5, "p50_us"),
        (0.9, "p90_us"),
        (0.99, "p99_us"),
        (0.999, "p999_us"),
        (0.9999, "max_us"),
    ]
    .iter()
    .filter_map(|(p, m)| Some((nines(*p), f.stat(target, m)?.median.max(1.0))))
    .collect()
}

/// `shape`'s latency percentile curves: closed loop (thin) and its open loop (thick:
/// 5k/s across nodes, 10k/s on one node).
pub fn latency_svg(r: &PeerReport, shape: Shape) -> String {
    let open = match shape {
        Shape::Cross => ("open_5k", "5k/s", 3),
        Shape::Same => ("open_10k", "10k/s", 3),
    };
    let figs = [("echo_closed", "closed loop", 1), open];
    let series: Vec<Curve> = figs
        .iter()
        .flat_map(|(fig, name, w)| {
            TARGETS.iter().enumerate().map(move |(i, t)| {
                let pts = curve(r, shape, fig, t);
                (format!("{t}, {name}"), COLORS[i], *w, pts)
            })
        })
        .filter(|s| !s.3.is_empty())
        .collect();
    let max_y = series
        .iter()
        .flat_map(|s| s.3.iter().map(|p| p.1))
        .fold(100.0, f64::max)
        * 2.0;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 520)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{}: 1 KiB echo latency by percentile (log axes; last point = max)",
                    shape.title()
                ),
                ("sans-serif", 18),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0f64..4.2, (5.0f64..max_y).log_scale());
        let Ok(mut chart) = chart else {
            return fallback();
        };
        let pct = |x: &f64| match (x * 10.0).round() as i64 {
            3 => "p50".to_string(),
            10 => "p90".into(),
            20 => "p99".into(),
            30 => "p99.9".into(),
            40 => "max".into(),
            _ => String::new(),
        };
        let _ = chart
            .configure_mesh()
            .x_labels(43)
            .x_label_formatter(&pct)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .y_desc("latency (µs, log)")
            .x_desc("percentile")
            .draw();
        for (name, color, w, pts) in series {
            let style = color.stroke_width(w);
            let marks = pts.clone();
            if let Ok(a) = chart.draw_series(LineSeries::new(pts, style)) {
                a.label(name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            }
            let _ = chart.draw_series(marks.into_iter().map(|p| Circle::new(p, 3, color.filled())));
        }
        let _ = chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw();
        let _ = root.present();
    }
    svg
}

fn fallback() -> String {
    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"400\" height=\"60\"><text x=\"20\" y=\"40\">no data to plot</text></svg>".into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::fixture::fixture;

    #[test]
    fn advantages_invert_lower_is_better_metrics() {
        let a = advantages(&fixture());
        let get = |k: &str| a.iter().find(|(l, _)| l == k).unwrap().1;
        assert!((get("bulk1: Gb/s") - 9.5 / 7.7).abs() < 1e-9);
        assert!((get("bulk1: proxy CPU s/GB") - 1.3).abs() < 1e-9);
        assert!(!a.iter().any(|(l, _)| l.contains("failures")));
        let mut both = crate::peer::fixture::cross_fixture();
        both.figures.extend(fixture().figures);
        let a = advantages(&both);
        assert!(a[0].0.starts_with("cross: bulk1"), "{a:?}");
        assert!(a
            .iter()
            .any(|(l, _)| l == "same: sweep: highest rate with p99 < 1 ms, req/s"));
    }

    #[test]
    fn ratio_plot_labels_every_bar_once() {
        let svg = ratio_svg(&fixture());
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches(">\nbulk1: Gb/s\n<").count(), 1, "{svg}");
        assert!(svg.matches("<rect").count() >= advantages(&fixture()).len());
    }

    #[test]
    fn latency_plot_has_a_labelled_curve_per_target_and_load() {
        let svg = latency_svg(&fixture(), Shape::Same);
        for l in [
            "direct, closed loop",
            "ztunnel, 10k/s",
            "zring, closed loop",
        ] {
            assert!(svg.contains(l), "missing {l}");
        }
        assert!(svg.matches("<polyline").count() >= 6);
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
        assert_eq!(round_factor(&0.5), "0.5×");
        assert_eq!(round_factor(&20.0), "20×");
        assert_eq!(round_factor(&3.0), "");
        assert_eq!(curve(&fixture(), Shape::Same, "open_10k", "zring").len(), 5);
        let cross = latency_svg(&crate::peer::fixture::cross_fixture(), Shape::Cross);
        assert!(cross.contains("zring, 5k/s") && cross.contains("Cross node"));
        assert!(ratio_svg(&PeerReport::default()).contains("<svg"));
    }
}
