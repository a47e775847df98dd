//! Drawings made on the server as SVG (no script, no tiles, nothing fetched): the recording's
//! two-lane waveform, the location map, the SIP ladder, bar charts. Every text drawn is
//! escaped by maud.

use maud::{Markup, html};

use super::store::LadderMessage;

/// Peaks of a stereo recording: per column, (min, max) of each channel, as -1.0..1.0.
pub struct Peaks {
    pub columns: Vec<[(f32, f32); 2]>,
    pub duration_ms: i64,
}

/// Most frames read per column: a long recording is sampled at each column's start, so
/// drawing a four-hour call reads no more than a short one.
const FRAMES_PER_COLUMN: usize = 2048;

/// Reads a 16-bit PCM WAV and keeps `columns` peaks per channel (mono: the one lane twice).
/// Bounded work: at most `columns` × [`FRAMES_PER_COLUMN`] frames are read.
pub fn peaks(path: &std::path::Path, columns: usize) -> anyhow::Result<Peaks> {
    let mut reader = hound::WavReader::open(path)?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let frames = reader.duration() as usize;
    let per_column = frames.div_ceil(columns.max(1)).max(1);
    let mut out = vec![[(0f32, 0f32); 2]; frames.div_ceil(per_column)];
    for (c, col) in out.iter_mut().enumerate() {
        let first = c * per_column;
        if per_column > FRAMES_PER_COLUMN {
            reader.seek(first as u32)?;
        }
        let take = per_column.min(FRAMES_PER_COLUMN).min(frames - first) * channels;
        for (i, sample) in reader.samples::<i16>().take(take).enumerate() {
            let Ok(sample) = sample else { break };
            let lane = (i % channels).min(1);
            let v = f32::from(sample) / 32768.0;
            let (lo, hi) = &mut col[lane];
            *lo = lo.min(v);
            *hi = hi.max(v);
        }
        if channels == 1 {
            col[1] = col[0];
        }
    }
    Ok(Peaks {
        columns: out,
        duration_ms: (frames as i64 * 1000) / i64::from(spec.sample_rate.max(1)),
    })
}

/// A mark on the waveform: where (ms from the recording's start) and what.
pub struct Mark {
    pub at_ms: i64,
    pub label: String,
}

pub const WAVE_WIDTH: usize = 1000;
const LANE: f32 = 70.0;

/// Two lanes (caller above, what the caller heard below) with the timeline's events as marks.
pub fn waveform(peaks: &Peaks, marks: &[Mark]) -> Markup {
    let width = WAVE_WIDTH as f32;
    let x_of = |i: usize| i as f32 * width / peaks.columns.len().max(1) as f32;
    let lane_path = |lane: usize, top: f32| -> String {
        let mid = top + LANE / 2.0;
        let mut d = String::new();
        for (i, col) in peaks.columns.iter().enumerate() {
            let (lo, hi) = col[lane];
            let x = x_of(i);
            d.push_str(&format!(
                "M{x:.1} {:.1}V{:.1}",
                mid - hi * LANE / 2.0,
                mid - lo * LANE / 2.0 + 0.5
            ));
        }
        d
    };
    let total = peaks.duration_ms.max(1) as f32;
    html! {
        svg.wave #waveform viewBox={ "0 0 " (WAVE_WIDTH) " 170" } preserveAspectRatio="none"
            data-duration-ms=(peaks.duration_ms) role="img" aria-label="waveform: caller above, what the caller heard below" {
            rect x="0" y="0" width=(WAVE_WIDTH) height="170" class="wave-bg" {}
            text x="4" y="12" class="lane-label" { "caller" }
            path class="lane lane-caller" d=(lane_path(0, 10.0)) {}
            text x="4" y="96" class="lane-label" { "heard by the caller" }
            path class="lane lane-heard" d=(lane_path(1, 95.0)) {}
            @for m in marks {
                @let x = (m.at_ms.max(0) as f32 / total).min(1.0) * width;
                g.mark {
                    title { (m.label) }
                    line x1=(format!("{x:.1}")) x2=(format!("{x:.1}")) y1="0" y2="170" {}
                }
            }
            line #playhead x1="0" x2="0" y1="0" y2="170" {}
        }
    }
}

/// A shape to draw on the map, read from a location report's JSON.
#[derive(Debug, Clone)]
enum MapShape {
    Point(f64, f64),
    Circle(f64, f64, f64),
    Polygon(Vec<(f64, f64)>),
}

/// Every geodetic shape in a location report (any object with a `shape` key), wherever it sits.
fn shapes_in(value: &serde_json::Value, out: &mut Vec<MapShape>) {
    match value {
        serde_json::Value::Object(map) => {
            let coord = |v: Option<&serde_json::Value>| -> Option<(f64, f64)> {
                let v = v?;
                Some((v.get("lat")?.as_f64()?, v.get("lon")?.as_f64()?))
            };
            let shape = map.get("shape").and_then(|s| s.as_str());
            match shape {
                Some("point") => {
                    out.extend(coord(map.get("pos")).map(|(a, b)| MapShape::Point(a, b)))
                }
                Some("circle" | "sphere" | "ellipse" | "ellipsoid" | "arc_band") => {
                    let r = ["radius", "semi_major", "outer_radius"]
                        .iter()
                        .find_map(|k| map.get(*k).and_then(|v| v.as_f64()))
                        .unwrap_or(0.0);
                    out.extend(coord(map.get("center")).map(|(a, b)| MapShape::Circle(a, b, r)));
                }
                Some("polygon" | "prism") => {
                    let list = map.get("vertices").or_else(|| map.get("base"));
                    let points: Vec<(f64, f64)> = list
                        .and_then(|l| l.as_array())
                        .map(|l| l.iter().filter_map(|v| coord(Some(v))).collect())
                        .unwrap_or_default();
                    if !points.is_empty() {
                        out.push(MapShape::Polygon(points));
                    }
                }
                _ => {}
            }
            for v in map.values() {
                shapes_in(v, out);
            }
        }
        serde_json::Value::Array(list) => list.iter().for_each(|v| shapes_in(v, out)),
        _ => {}
    }
}

const METRES_PER_DEGREE: f64 = 111_320.0;

/// A small map of the shapes in the call's location reports: a graticule with a scale, the
/// shapes drawn to scale (equirectangular around their centre), no tiles. `None` without shapes.
pub fn map(reports: &[serde_json::Value]) -> Option<Markup> {
    let mut shapes = Vec::new();
    for r in reports {
        shapes_in(r, &mut shapes);
    }
    // Near-identical shapes appear in several places of a report (all, chosen): draw each once.
    let mut seen: Vec<String> = Vec::new();
    shapes.retain(|s| {
        let key = format!("{s:?}");
        let new = !seen.contains(&key);
        seen.push(key);
        new
    });
    if shapes.is_empty() {
        return None;
    }
    // Bounds in metres around the first shape's latitude.
    let lat0 = match &shapes[0] {
        MapShape::Point(a, _) | MapShape::Circle(a, _, _) => *a,
        MapShape::Polygon(p) => p[0].0,
    };
    let kx = METRES_PER_DEGREE * lat0.to_radians().cos().max(0.01);
    let ky = METRES_PER_DEGREE;
    let (mut min_x, mut max_x, mut min_y, mut max_y) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    let mut grow = |x: f64, y: f64, r: f64| {
        min_x = min_x.min(x - r);
        max_x = max_x.max(x + r);
        min_y = min_y.min(y - r);
        max_y = max_y.max(y + r);
    };
    for s in &shapes {
        match s {
            MapShape::Point(lat, lon) => grow(lon * kx, lat * ky, 0.0),
            MapShape::Circle(lat, lon, r) => grow(lon * kx, lat * ky, *r),
            MapShape::Polygon(p) => p
                .iter()
                .for_each(|(lat, lon)| grow(lon * kx, lat * ky, 0.0)),
        }
    }
    // At least 1 km across, with a margin.
    let span = (max_x - min_x).max(max_y - min_y).max(1000.0) * 1.3;
    let (cx, cy) = ((min_x + max_x) / 2.0, (min_y + max_y) / 2.0);
    const SIZE: f64 = 320.0;
    let scale = SIZE / span;
    let px = |lat: f64, lon: f64| {
        (
            (lon * kx - cx) * scale + SIZE / 2.0,
            SIZE / 2.0 - (lat * ky - cy) * scale,
        )
    };
    // A scale bar of a round length near a quarter of the map.
    let bar_m = [
        100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10_000.0, 20_000.0, 50_000.0,
    ]
    .into_iter()
    .rfind(|m| m * scale <= SIZE / 3.0)
    .unwrap_or(100.0);
    let grid_m = bar_m;
    let first_gx = ((cx - span / 2.0) / grid_m).ceil() as i64;
    let first_gy = ((cy - span / 2.0) / grid_m).ceil() as i64;
    let lines = (span / grid_m).ceil() as i64;
    Some(html! {
        svg.map viewBox="0 0 320 320" role="img" aria-label="location map" {
            rect x="0" y="0" width="320" height="320" class="map-bg" {}
            @for i in 0..=lines.min(40) {
                @let gx = (((first_gx + i) as f64) * grid_m - cx) * scale + SIZE / 2.0;
                @let gy = SIZE / 2.0 - (((first_gy + i) as f64) * grid_m - cy) * scale;
                line.grid x1=(format!("{gx:.1}")) x2=(format!("{gx:.1}")) y1="0" y2="320" {}
                line.grid y1=(format!("{gy:.1}")) y2=(format!("{gy:.1}")) x1="0" x2="320" {}
            }
            @for s in &shapes {
                @match s {
                    MapShape::Point(lat, lon) => {
                        @let (x, y) = px(*lat, *lon);
                        circle.pin cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="5" {
                            title { (format!("{lat:.6}, {lon:.6}")) }
                        }
                    }
                    MapShape::Circle(lat, lon, r) => {
                        @let (x, y) = px(*lat, *lon);
                        circle.area cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r=(format!("{:.1}", (r * scale).max(2.0))) {
                            title { (format!("{lat:.6}, {lon:.6} ± {r:.0} m")) }
                        }
                        circle.pin cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="3" {}
                    }
                    MapShape::Polygon(points) => {
                        @let pts: Vec<String> = points.iter().map(|(lat, lon)| { let (x, y) = px(*lat, *lon); format!("{x:.1},{y:.1}") }).collect();
                        polygon.area points=(pts.join(" ")) {}
                    }
                }
            }
            line.scale x1="10" y1="305" x2=(format!("{:.1}", 10.0 + bar_m * scale)) y2="305" {}
            text.scale-label x="10" y="298" {
                (if bar_m >= 1000.0 { format!("{} km", bar_m / 1000.0) } else { format!("{bar_m} m") })
            }
            text.scale-label x="250" y="14" { "N ↑" }
        }
    })
}

/// The SIP ladder of both legs: a column for the caller, the gateway and each agency leg;
/// one arrow per message, each a link to its verbatim text (`#msg-N`).
pub fn ladder(messages: &[LadderMessage], label_time: impl Fn(i64) -> String) -> Markup {
    // Columns: caller (leg A), Siaga, then agency legs in order of appearance.
    let mut legs: Vec<String> = Vec::new();
    for m in messages {
        if m.leg != "A" && !legs.contains(&m.leg) {
            legs.push(m.leg.clone());
        }
    }
    // A time column, then the caller, the gateway and each agency leg, 260 apart.
    const SPACING: f32 = 260.0;
    const CALLER: f32 = 110.0 + SPACING / 2.0 - 20.0;
    const GW: f32 = CALLER + SPACING;
    let col_x = |leg: &str| -> f32 {
        if leg == "A" {
            CALLER
        } else {
            let i = legs.iter().position(|l| l == leg).unwrap_or(0);
            GW + (i + 1) as f32 * SPACING
        }
    };
    const ROW: f32 = 26.0;
    let width = GW + legs.len().max(1) as f32 * SPACING + SPACING / 2.0;
    let height = 50.0 + messages.len() as f32 * ROW + 10.0;
    let remote_of = |leg: &str| {
        messages
            .iter()
            .find(|m| m.leg == leg)
            .map(|m| m.remote.clone())
            .unwrap_or_default()
    };
    html! {
        svg.ladder viewBox={ "0 0 " (width) " " (height) } width=(width) height=(height) role="img" aria-label="SIP ladder" {
            @let heads: Vec<(f32, String, String)> = std::iter::once((col_x("A"), "caller (A)".to_owned(), remote_of("A")))
                .chain(std::iter::once((GW, "Siaga".to_owned(), String::new())))
                .chain(legs.iter().map(|l| (col_x(l), format!("agency ({l})"), remote_of(l))))
                .collect();
            @for (x, name, addr) in &heads {
                text.col-head x=(x) y="16" text-anchor="middle" { (name) }
                text.col-addr x=(x) y="30" text-anchor="middle" { (addr) }
                line.life x1=(x) x2=(x) y1="36" y2=(height) {}
            }
            @for (i, m) in messages.iter().enumerate() {
                @let y = 50.0 + i as f32 * ROW;
                @let peer = col_x(&m.leg);
                @let (x1, x2) = if m.incoming { (peer, GW) } else { (GW, peer) };
                @let label_x = (x1 + x2) / 2.0;
                a.msg href=(format!("#msg-{i}")) data-msg=(i) {
                    title { (label_time(m.at)) " " (m.first_line) }
                    line.arrow x1=(x1) x2=(x2) y1=(y) y2=(y) marker-end="url(#arrowhead)" {}
                    text.arrow-label x=(label_x) y=(y - 4.0) text-anchor="middle" { (crate::calllog::text::fit(&m.first_line, 38)) }
                    text.arrow-time x="4" y=(y + 4.0) { (label_time(m.at)) }
                }
            }
            defs {
                marker #arrowhead markerWidth="8" markerHeight="8" refX="8" refY="4" orient="auto" {
                    path d="M0,0 L8,4 L0,8 z" {}
                }
            }
        }
    }
}

/// A bar chart: one bar per (label, value), labels under the bars.
pub fn bars(items: &[(String, i64)], label_every: usize) -> Markup {
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1) as f32;
    let n = items.len().max(1) as f32;
    let width = 1200.0;
    let bar_w = width / n;
    html! {
        svg.chart viewBox="0 0 1200 180" role="img" {
            @for (i, (label, v)) in items.iter().enumerate() {
                @let h = *v as f32 / max * 140.0;
                @let x = i as f32 * bar_w;
                rect.bar x=(format!("{:.1}", x + 1.0)) y=(format!("{:.1}", 150.0 - h)) width=(format!("{:.1}", (bar_w - 2.0).max(1.0))) height=(format!("{h:.1}")) {
                    title { (label) ": " (v) }
                }
                @if *v > 0 && bar_w >= 14.0 {
                    text.bar-value x=(format!("{:.1}", x + bar_w / 2.0)) y=(format!("{:.1}", 146.0 - h)) text-anchor="middle" { (v) }
                }
                @if i % label_every.max(1) == 0 {
                    text.bar-label x=(format!("{:.1}", x + bar_w / 2.0)) y="166" text-anchor="middle" { (label) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::peaks;

    /// A stereo WAV: the caller loud in the first half, the other lane loud in the second.
    fn wav(path: &std::path::Path, frames: u32) {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).expect("wav");
        for i in 0..frames {
            let (left, right) = if i < frames / 2 {
                (16384, 0)
            } else {
                (0, -8192)
            };
            let sign = if i % 2 == 0 { 1 } else { -1 };
            w.write_sample(sign * left as i16).expect("sample");
            w.write_sample(sign * right as i16).expect("sample");
        }
        w.finalize().expect("finalize");
    }

    #[test]
    fn peaks_follow_each_lane_short_and_sampled() {
        let dir = tempfile::tempdir().expect("dir");
        // Short: every frame read; long: 3000 frames per column, sampled after a seek.
        for frames in [8000, 30_000] {
            let path = dir.path().join(format!("{frames}.wav"));
            wav(&path, frames);
            let p = peaks(&path, 10).expect("peaks");
            assert_eq!(p.columns.len(), 10);
            assert_eq!(p.duration_ms, i64::from(frames) * 1000 / 8000);
            let (first, last) = (p.columns[0], p.columns[9]);
            assert_eq!(first[0], (-0.5, 0.5), "{frames}: the caller talks first");
            assert_eq!(first[1], (0.0, 0.0));
            assert_eq!(last[0], (0.0, 0.0));
            assert_eq!(last[1], (-0.25, 0.25), "{frames}: then the other lane");
        }
    }
}
