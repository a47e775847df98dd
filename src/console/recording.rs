//! A call's recording over HTTP: found by the call's id (the path comes from the log, never
//! from the request, and must lie inside the recordings directory), streamed in chunks,
//! seekable with `Range: bytes=…` (206), `?download=1` for a file to keep.

use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Console, Fail, signed_in, store};
use crate::calllog::access::AccessAction;

const CHUNK: usize = 64 * 1024;

#[derive(Deserialize)]
pub struct RecordingQuery {
    download: Option<String>,
}

/// The byte range asked for, clamped to the file; `None`: the whole file. `Err`: unsatisfiable.
fn parse_range(value: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    // One range only (a browser's seek); a list is answered with its first.
    let first = spec.split(',').next().unwrap_or("").trim();
    let (start, end) = first.split_once('-').ok_or(())?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", "") => return Err(()),
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len.saturating_sub(1))
        }
        (s, "") => (s.parse().map_err(|_| ())?, len.saturating_sub(1)),
        (s, e) => {
            let (s, e): (u64, u64) = (s.parse().map_err(|_| ())?, e.parse().map_err(|_| ())?);
            (s, e.min(len.saturating_sub(1)))
        }
    };
    if start >= len || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// The recording's file, if it lies inside the recordings directory.
pub fn resolve(recordings: &FsPath, stored: &str) -> Option<PathBuf> {
    let file = std::fs::canonicalize(stored).ok()?;
    let dir = std::fs::canonicalize(recordings).ok()?;
    (file.starts_with(&dir) && file.is_file()).then_some(file)
}

pub async fn serve(
    State(console): State<Arc<Console>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<RecordingQuery>,
) -> Response {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    signed_in(console, &headers, addr, false, move |c, ctx| {
        let id = ctx.visible_call(&id)?;
        let (stored, _) = store::recording_of(&ctx.conn, id)?.ok_or(Fail::NotFound)?;
        let path = resolve(&c.settings.recordings, &stored).ok_or(Fail::NotFound)?;
        let mut file = std::fs::File::open(&path).map_err(|_| Fail::NotFound)?;
        let len = file.metadata().map_err(|e| Fail::Internal(e.into()))?.len();
        let download = query.download.is_some();
        let range = match range.as_deref().map(|r| parse_range(r, len)) {
            Some(Err(())) => {
                let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(r);
            }
            Some(Ok(r)) => r,
            None => None,
        };
        // A player fetches many ranges while seeking: the trail has one entry per play (the
        // first request), and one per download.
        let first = range.is_none_or(|(start, _)| start == 0);
        if download {
            ctx.trail(AccessAction::RecordingDownload, Some(id), &stored)?;
        } else if first {
            ctx.trail(AccessAction::RecordingPlay, Some(id), &stored)?;
        }
        let (start, end) = range.unwrap_or((0, len.saturating_sub(1)));
        let count = if len == 0 { 0 } else { end - start + 1 };
        file.seek(SeekFrom::Start(start))
            .map_err(|e| Fail::Internal(e.into()))?;
        let mut response = Response::new(file_body(file, count, ()));
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
        if download
            && let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"call-{id}.wav\""))
        {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        if range.is_some() {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
        }
        Ok(response)
    })
    .await
}

/// `count` bytes of `file` from where it stands, read in chunks off the runtime's threads;
/// `hold` lives until the body is done or dropped (e.g. a slot that bounds the work).
pub fn file_body(file: std::fs::File, count: u64, hold: impl Send + 'static) -> Body {
    let stream =
        futures_util::stream::unfold((file, count, hold), |(mut file, left, hold)| async move {
            if left == 0 {
                return None;
            }
            let want = (left as usize).min(CHUNK);
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; want];
                let n = file.read(&mut buf)?;
                buf.truncate(n);
                Ok::<_, std::io::Error>((file, buf))
            })
            .await;
            match read {
                Ok(Ok((_, buf))) if buf.is_empty() => None,
                Ok(Ok((file, buf))) => {
                    let n = buf.len() as u64;
                    Some((
                        Ok::<_, std::io::Error>(bytes::Bytes::from(buf)),
                        (file, left - n, hold),
                    ))
                }
                Ok(Err(e)) => Some((Err(e), (std::fs::File::open("/dev/null").ok()?, 0, hold))),
                Err(_) => None,
            }
        });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_are_clamped_or_refused() {
        assert_eq!(parse_range("bytes=0-99", 1000), Ok(Some((0, 99))));
        assert_eq!(parse_range("bytes=900-", 1000), Ok(Some((900, 999))));
        assert_eq!(parse_range("bytes=-100", 1000), Ok(Some((900, 999))));
        assert_eq!(parse_range("bytes=990-5000", 1000), Ok(Some((990, 999))));
        assert_eq!(parse_range("bytes=1000-", 1000), Err(()));
        assert_eq!(parse_range("bytes=5-2", 1000), Err(()));
        assert_eq!(parse_range("bytes=x-2", 1000), Err(()));
        assert_eq!(parse_range("items=0-1", 1000), Ok(None));
    }
}
