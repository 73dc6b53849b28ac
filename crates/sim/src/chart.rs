//! A plain SVG line chart of a report's time series (attached and assigned addresses per group,
//! free addresses per subnet). Hand-written: a few polylines need no plotting library or fonts.

use std::fmt::Write as _;

use crate::report::Report;

const W: f64 = 960.0;
const H: f64 = 420.0;
const PAD: f64 = 56.0;
/// A named series: label, points, dashed.
type Line = (String, Vec<(f64, f64)>, bool);

const COLORS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
];

/// Render the chart.
pub fn svg(r: &Report) -> String {
    let mut lines: Vec<Line> = Vec::new();
    for (i, g) in r.series_groups.iter().enumerate() {
        let pick = |f: fn(&(u32, u32)) -> u32| {
            r.series
                .iter()
                .map(|s| (s.t_s, f64::from(f(&s.groups[i]))))
                .collect()
        };
        lines.push((format!("{g} attached"), pick(|v| v.0), false));
        lines.push((format!("{g} assigned"), pick(|v| v.1), false));
    }
    for (i, s) in r.series_subnets.iter().enumerate() {
        lines.push((
            format!("{s} free"),
            r.series
                .iter()
                .map(|x| (x.t_s, f64::from(x.subnets[i].0)))
                .collect(),
            true,
        ));
    }
    render(&lines, "addresses")
}

/// Idle addresses (attached, unassigned) over time of several runs of one scenario, and the
/// pods holding an address (dashed, from the first run: the workload is the same).
pub fn compare_svg(runs: &[(&str, &Report)]) -> String {
    let mut lines: Vec<Line> = Vec::new();
    for (label, r) in runs {
        let pts = r
            .idle_series()
            .into_iter()
            .map(|(t, v)| (t, f64::from(v)))
            .collect();
        lines.push((format!("{label} idle"), pts, false));
    }
    if let Some((_, r)) = runs.first() {
        let pods = r
            .series
            .iter()
            .map(|s| (s.t_s, f64::from(s.groups.iter().map(|g| g.1).sum::<u32>())))
            .collect();
        lines.push(("pods with an address".into(), pods, true));
    }
    render(&lines, "addresses")
}

fn render(lines: &[Line], y_label: &str) -> String {
    let t_max = lines
        .iter()
        .flat_map(|l| l.1.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let y_max = lines
        .iter()
        .flat_map(|l| l.1.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.05;
    let x = |t: f64| PAD + (W - 2.0 * PAD) * t / t_max;
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * v / y_max;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let _ = writeln!(
        out,
        "<line x1=\"{PAD}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>",
        H - PAD,
        W - PAD,
        H - PAD
    );
    let _ = writeln!(
        out,
        "<line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{}\" stroke=\"black\"/>",
        H - PAD
    );
    for k in 0..=4 {
        let v = y_max * f64::from(k) / 4.0;
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}</text>",
            PAD - 6.0,
            y(v) + 4.0,
            v
        );
        let t = t_max * f64::from(k) / 4.0;
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x(t),
            H - PAD + 18.0,
            fmt_t(t)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">time</text>",
        W / 2.0,
        H - 12.0
    );
    let _ = writeln!(
        out,
        "<text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">{}</text>",
        H / 2.0,
        H / 2.0,
        escape(y_label)
    );
    for (i, (name, pts, dashed)) in lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        let dash = if *dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.6\"{dash} points=\"{}\"/>",
            path.join(" ")
        );
        let ly = PAD + 16.0 * i as f64;
        let _ = writeln!(
            out,
            "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"2\"{dash}/>",
            W - PAD - 170.0,
            W - PAD - 150.0
        );
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\">{}</text>",
            W - PAD - 144.0,
            ly + 4.0,
            escape(name)
        );
    }
    out.push_str("</svg>\n");
    out
}

fn fmt_t(t: f64) -> String {
    if t >= 7200.0 {
        format!("{:.1}h", t / 3600.0)
    } else if t >= 120.0 {
        format!("{:.0}m", t / 60.0)
    } else {
        format!("{t:.0}s")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
