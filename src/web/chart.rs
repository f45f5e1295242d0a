//! Charts as inline SVG, drawn on the server: a chart is its series' points already scaled
//! to the drawing's box, so the template only writes numbers (no script, no request).

/// The drawing's box (user units); the SVG scales to the page's width.
pub const WIDTH: f64 = 600.0;
pub const HEIGHT: f64 = 150.0;
/// Room for the axis labels at the left.
const LEFT: f64 = 4.0;
/// Points a line has at most: more epochs are averaged in buckets (a 600-unit-wide
/// drawing shows no more, and a page over 1,000 epochs stays tens of KiB).
pub const MAX_POINTS: usize = 150;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: &'static str,
    pub color: &'static str,
    /// `x,y x,y ...` in the box.
    pub points: String,
}

/// One bar of a bar chart, in the box, with its tooltip.
#[derive(Debug, Clone)]
pub struct Bar {
    pub x: String,
    pub y: String,
    pub w: String,
    pub h: String,
    pub title: String,
}

#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub title: String,
    /// The top of the scale and the epochs at both ends, as shown.
    pub max_label: String,
    pub first: String,
    pub last: String,
    pub series: Vec<Series>,
    pub bars: Vec<Bar>,
    /// No value to draw: the template says so instead.
    pub empty: bool,
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

/// A coordinate of a line's point, to the unit (the drawing is 600 units wide).
fn coordinate(v: f64) -> String {
    format!("{v:.0}")
}

/// `(x, value)` pairs averaged into at most `MAX_POINTS` buckets of consecutive epochs
/// (gaps left out).
fn thinned(xs: &[i64], values: &[Option<f64>]) -> Vec<(f64, f64)> {
    let points: Vec<(f64, f64)> = xs
        .iter()
        .zip(values)
        .filter_map(|(&e, v)| v.map(|v| (e as f64, v)))
        .collect();
    let per = points.len().div_ceil(MAX_POINTS).max(1);
    points
        .chunks(per)
        .map(|c| {
            let n = c.len() as f64;
            (
                c.iter().map(|p| p.0).sum::<f64>() / n,
                c.iter().map(|p| p.1).sum::<f64>() / n,
            )
        })
        .collect()
}

/// A nice top for a scale of values up to `max`.
fn top_of(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&t| t >= max)
        .unwrap_or(max)
}

fn label(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        let shown = format!("{v:.8}");
        shown.trim_end_matches('0').to_string()
    }
}

/// Lines over epochs: `xs` the epochs, each series its values (`None`: a gap). The scale
/// starts at 0.
pub fn lines(
    title: &str,
    xs: &[i64],
    series: &[(&'static str, &'static str, Vec<Option<f64>>)],
) -> Chart {
    let max = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().flatten())
        .fold(0f64, |m, &v| m.max(v));
    let top = top_of(max);
    let (Some(&first), Some(&last)) = (xs.first(), xs.last()) else {
        return Chart {
            title: title.into(),
            empty: true,
            ..Chart::default()
        };
    };
    let span = (last - first).max(1) as f64;
    let x = |e: f64| LEFT + (e - first as f64) / span * (WIDTH - LEFT - 2.0);
    let y = |v: f64| HEIGHT - 2.0 - v / top * (HEIGHT - 4.0);
    let drawn = series
        .iter()
        .map(|(name, color, values)| Series {
            name,
            color,
            points: thinned(xs, values)
                .into_iter()
                .map(|(e, v)| format!("{},{}", coordinate(x(e)), coordinate(y(v))))
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect::<Vec<_>>();
    Chart {
        title: title.into(),
        max_label: label(top),
        first: first.to_string(),
        last: last.to_string(),
        empty: drawn.iter().all(|s| s.points.is_empty()),
        series: drawn,
        bars: Vec::new(),
    }
}

/// Bars over epochs `(epoch, value)`, one per epoch from the first to the last.
pub fn bars(title: &str, values: &[(i64, i64)]) -> Chart {
    let (Some(&(first, _)), Some(&(last, _))) = (values.first(), values.last()) else {
        return Chart {
            title: title.into(),
            empty: true,
            ..Chart::default()
        };
    };
    let top = top_of(values.iter().map(|&(_, v)| v as f64).fold(0.0, f64::max));
    let slots = (last - first + 1).max(1) as f64;
    let slot = (WIDTH - LEFT) / slots;
    let bars = values
        .iter()
        .map(|&(e, v)| {
            let h = v as f64 / top * (HEIGHT - 4.0);
            Bar {
                x: fmt(LEFT + (e - first) as f64 * slot + slot * 0.1),
                y: fmt(HEIGHT - 2.0 - h),
                w: fmt(slot * 0.8),
                h: fmt(h),
                title: format!("epoch {e}: {v} windows"),
            }
        })
        .collect();
    Chart {
        title: title.into(),
        max_label: label(top),
        first: first.to_string(),
        last: last.to_string(),
        series: Vec::new(),
        bars,
        empty: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_round_up_and_points_stay_in_the_box() {
        assert_eq!(top_of(0.0), 1.0);
        assert_eq!(top_of(7.0), 10.0);
        assert_eq!(top_of(48.0), 50.0);
        assert_eq!(top_of(120.0), 200.0);
        assert_eq!(label(top_of(0.0004)), "0.0005");
        let c = lines(
            "t",
            &[10, 11, 12],
            &[("a", "#000", vec![Some(0.0), None, Some(48.0)])],
        );
        assert_eq!(c.max_label, "50");
        assert_eq!(c.series[0].points, "4,148 598,8");
        // A thousand epochs: at most MAX_POINTS points, the mean of each bucket.
        let xs: Vec<i64> = (0..1000).collect();
        let ones = vec![Some(1.0); 1000];
        let long = lines("t", &xs, &[("a", "#000", ones)]);
        assert_eq!(long.series[0].points.split(' ').count(), 143);
        let b = bars("w", &[(3, 48), (5, 24)]);
        assert_eq!(b.bars.len(), 2);
        assert_eq!(b.bars[0].h, "140.2");
        assert!(lines("t", &[], &[]).empty);
    }
}
