//! Draws loadgen's latency histograms into a PNG (plotters, bitmap backend;
//! text in DejaVu Sans from the system's fonts, package `fonts-dejavu-core`).

use anyhow::Context as _;
use hdrhistogram::Histogram;
use plotters::prelude::*;
use std::path::Path;

const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

fn register_font() -> anyhow::Result<()> {
    let bytes = FONT_PATHS
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .context("no DejaVuSans.ttf found (apt install fonts-dejavu-core)")?;
    // plotters wants the font for the life of the process; loadgen draws once.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("DejaVuSans.ttf is not a usable font"))
}

/// Per-0.1 ms counts up to `max_ms`.
fn buckets(h: &Histogram<u64>, max_ms: f64) -> Vec<(f64, u64)> {
    let n = (max_ms * 10.0).ceil() as usize + 1;
    let mut out = vec![0u64; n];
    for v in h.iter_recorded() {
        let i = ((v.value_iterated_to() as f64 / 100.0) as usize).min(n - 1);
        out[i] += v.count_since_last_iteration();
    }
    out.into_iter()
        .enumerate()
        .map(|(i, c)| (i as f64 / 10.0, c))
        .collect()
}

/// Both directions on one chart, log count axis.
pub fn latency_png(path: &Path, up: &Histogram<u64>, down: &Histogram<u64>) -> anyhow::Result<()> {
    register_font()?;
    let max_ms =
        ((up.value_at_quantile(0.9999).max(down.value_at_quantile(0.9999)) as f64) / 1000.0).clamp(1.0, 50.0);
    let (bu, bd) = (buckets(up, max_ms), buckets(down, max_ms));
    let top = bu.iter().chain(bd.iter()).map(|b| b.1).max().unwrap_or(1).max(1) as f64;
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("voxbridge added latency per frame", ("sans-serif", 26))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..max_ms + 0.1, (0.8f64..top * 2.0).log_scale())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("added latency, ms (0.1 ms buckets)")
        .y_desc("frames")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (data, color, label) in [
        (&bu, BLUE, "caller -> bot (forwarding)"),
        (&bd, RED, "bot -> caller (lateness vs 20 ms tick)"),
    ] {
        chart
            .draw_series(LineSeries::new(
                data.iter()
                    .filter(|b| b.1 > 0)
                    .map(|&(x, c)| (x + 0.05, c as f64)),
                color.stroke_width(2),
            ))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
