//! A tiny hand-written SVG writer: a percentile curve chart and a bar chart, both stamped with
//! the run's provenance lines.

use std::fmt::Write;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 560.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 160.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 130.0;
const COLORS: [&str; 6] = [
    "#d9480f", "#1971c2", "#2f9e44", "#7048e8", "#e67700", "#495057",
];

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// (percentile 0..=100, value) points; 100 is plotted as "max".
    pub points: Vec<(f64, f64)>,
}

/// Escapes text for SVG/XML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Horizontal position of a percentile on the "nines" scale: 50 -> 0.3, 90 -> 1, 99 -> 2,
/// 99.9 -> 3, ...; 100 (the maximum) is put one step past 99.99.
pub fn nines(percentile: f64) -> f64 {
    if percentile >= 100.0 {
        5.0
    } else {
        -(1.0 - percentile / 100.0).log10()
    }
}

fn header(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"30\" font-size=\"18\" text-anchor=\"middle\">{}</text>\n",
        WIDTH / 2.0,
        escape(title)
    );
}

fn footer(out: &mut String, stamp: &[String]) {
    for (i, line) in stamp.iter().enumerate() {
        let _ = writeln!(
            out,
            "<text x=\"10\" y=\"{}\" font-size=\"10\" fill=\"#555\">{}</text>",
            HEIGHT - 12.0 - 13.0 * (stamp.len() - 1 - i) as f64,
            escape(line)
        );
    }
    out.push_str("</svg>\n");
}

fn fmt_value(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Latency-by-percentile chart: x on the "nines" scale, y logarithmic.
pub fn percentile_chart(title: &str, y_label: &str, stamp: &[String], series: &[Series]) -> String {
    let mut out = String::new();
    header(&mut out, title);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let positive: Vec<f64> = values.filter(|v| *v > 0.0).collect();
    let lo = positive.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = positive.iter().copied().fold(0.0, f64::max);
    let (lo_dec, hi_dec) = if positive.is_empty() {
        (0.0, 1.0)
    } else {
        let l = lo.log10().floor();
        let h = hi.log10().ceil();
        (l, if h > l { h } else { l + 1.0 })
    };
    let x_max = nines(100.0);
    let px = |p: f64| LEFT + nines(p) / x_max * plot_w;
    let py = |v: f64| {
        let v = v.max(10f64.powf(lo_dec));
        TOP + plot_h - (v.log10() - lo_dec) / (hi_dec - lo_dec) * plot_h
    };
    // Grid: decades on y, the usual percentiles on x.
    let mut d = lo_dec;
    while d <= hi_dec + 1e-9 {
        let y = py(10f64.powf(d));
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            fmt_value(10f64.powf(d))
        );
        d += 1.0;
    }
    for (p, label) in [
        (50.0, "50"),
        (90.0, "90"),
        (99.0, "99"),
        (99.9, "99.9"),
        (99.99, "99.99"),
        (100.0, "max"),
    ] {
        let x = px(p);
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            TOP + plot_h,
            TOP + plot_h + 18.0
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">percentile</text>\
         <text x=\"20\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 20 {:.1})\">{}</text>\
         <rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#333\"/>",
        LEFT + plot_w / 2.0,
        TOP + plot_h + 38.0,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        let color = COLORS.get(i % COLORS.len()).copied().unwrap_or("#000");
        let points: Vec<String> = s
            .points
            .iter()
            .map(|&(p, v)| format!("{:.1},{:.1}", px(p), py(v)))
            .collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        for &(p, v) in &s.points {
            let _ = writeln!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>",
                px(p),
                py(v)
            );
        }
        let ly = TOP + 20.0 + 20.0 * i as f64;
        let _ = writeln!(
            out,
            "<line x1=\"{:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{color}\" \
             stroke-width=\"3\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            WIDTH - RIGHT + 15.0,
            WIDTH - RIGHT + 40.0,
            WIDTH - RIGHT + 46.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
    footer(&mut out, stamp);
    out
}

/// Vertical bars, one per (label, value), values printed on top.
pub fn bar_chart(title: &str, y_label: &str, stamp: &[String], bars: &[(String, f64)]) -> String {
    let mut out = String::new();
    header(&mut out, title);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let hi = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    let top = if hi > 0.0 { hi * 1.15 } else { 1.0 };
    let _ = writeln!(
        out,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#333\"/>\
         <text x=\"20\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 20 {:.1})\">{}</text>",
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(y_label)
    );
    for k in 0..=4 {
        let v = top * f64::from(k) / 4.0;
        let y = TOP + plot_h - plot_h * f64::from(k) / 4.0;
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            fmt_value(v)
        );
    }
    let n = bars.len().max(1) as f64;
    let slot = plot_w / n;
    let bar_w = slot * 0.6;
    for (i, (label, v)) in bars.iter().enumerate() {
        let color = COLORS.get(i % COLORS.len()).copied().unwrap_or("#000");
        let h = (v.max(0.0) / top) * plot_h;
        let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
        let y = TOP + plot_h - h;
        let _ = writeln!(
            out,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x + bar_w / 2.0,
            y - 6.0,
            fmt_value(*v),
            x + bar_w / 2.0,
            TOP + plot_h + 18.0,
            escape(label)
        );
    }
    footer(&mut out, stamp);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balanced(svg: &str) -> bool {
        // Every opened element is closed, in order (self-closing ones count as both).
        let mut stack = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let Some(end) = rest[start..].find('>') else {
                return false;
            };
            let tag = &rest[start + 1..start + end];
            if let Some(name) = tag.strip_prefix('/') {
                if stack.pop() != Some(name.trim().to_owned()) {
                    return false;
                }
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap_or("").to_owned());
            }
            rest = &rest[start + end + 1..];
        }
        stack.is_empty()
    }

    #[test]
    fn nines_scale() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert!(nines(99.99) < nines(100.0));
    }

    #[test]
    fn percentile_chart_is_well_formed_with_polylines() {
        let series = vec![
            Series {
                name: "hearth".into(),
                points: vec![(50.0, 20.0), (99.0, 80.0), (99.9, 300.0), (100.0, 2000.0)],
            },
            Series {
                name: "a<b>".into(),
                points: vec![(50.0, 25.0), (99.0, 90.0), (100.0, 5000.0)],
            },
        ];
        let svg = percentile_chart("Latency", "µs", &["stamp & co".into()], &series);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("points=\""));
        assert!(svg.contains("a&lt;b&gt;") && svg.contains("stamp &amp; co"));
        assert!(balanced(&svg));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn bar_chart_is_well_formed() {
        let bars = vec![("hearth".to_string(), 1.5), ("glommio".to_string(), 3.25)];
        let svg = bar_chart("CPU", "µs/req", &["x".into()], &bars);
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<rect").count(), 2 + 2);
        assert!(svg.contains(">3.25<"));
        assert!(balanced(&svg));
        let empty = bar_chart("CPU", "µs/req", &[], &[]);
        assert!(balanced(&empty) && !empty.contains("NaN"));
    }
}
