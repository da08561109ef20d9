//! Labelled scatter plots (SVG) for quality-versus-cost results.

use anyhow::Result;
use plotters::prelude::*;
use std::path::Path;

/// A family of points, drawn in one colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The exhaustive reference (red).
    Exact,
    /// A named profile (blue).
    Profile,
    /// A single rung searched exhaustively, or a graph plan (green).
    Rung,
    /// Anything else, such as an explicit stage plan (black).
    Other,
}

/// One labelled point.
#[derive(Clone, Debug)]
pub struct Point {
    /// Its label (cut to 28 characters on the plot).
    pub label: String,
    /// X value.
    pub x: f64,
    /// Y value.
    pub y: f64,
    /// Its family.
    pub kind: Kind,
}

/// Draws `points` into an SVG at `path`.
pub fn scatter(path: &Path, title: &str, x_desc: &str, y_desc: &str, points: &[Point]) -> Result<()> {
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_x = points.iter().map(|p| p.x).fold(0.0, f64::max).max(1e-3) * 1.15;
    let min_y = points.iter().map(|p| p.y).fold(1.0, f64::min);
    let max_y = points.iter().map(|p| p.y).fold(0.0, f64::max);
    let pad = ((max_y - min_y) * 0.08).max(0.005);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_x, (min_y - pad)..(max_y + pad))?;
    chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw()?;
    for p in points {
        let color = match p.kind {
            Kind::Exact => RED,
            Kind::Profile => BLUE,
            Kind::Rung => GREEN,
            Kind::Other => BLACK,
        };
        chart.draw_series(std::iter::once(Circle::new((p.x, p.y), 5, color.filled())))?;
        let short: String = p.label.chars().take(28).collect();
        chart.draw_series(std::iter::once(Text::new(short, (p.x, p.y), ("sans-serif", 11))))?;
    }
    root.present()?;
    Ok(())
}
