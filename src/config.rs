//! Gateway settings: embedded defaults, overridden by a TOML config file, overridden by
//! command-line flags. Config errors name the file, the line and what to change.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use toml::Spanned;

use siaga_engine::io::Transport;

use crate::transport::TransportLimits;

/// One SIP listener: transport and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (transport, addr) = s.split_once(':').ok_or_else(|| {
            format!("{s:?}: expected udp:ADDR:PORT, tcp:ADDR:PORT or tls:ADDR:PORT")
        })?;
        let transport = match transport.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            other => {
                return Err(format!(
                    "{s:?}: unknown transport {other:?} (use udp, tcp or tls)"
                ));
            }
        };
        let addr = addr
            .parse()
            .map_err(|_| format!("{s:?}: {addr:?} is not IP:PORT (IPv6 as [::1]:5060)"))?;
        Ok(Listen { transport, addr })
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.transport.as_str(), self.addr)
    }
}

/// An inclusive UDP port range for RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl std::str::FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?}: expected FIRST-LAST, e.g. 40000-49999"))?;
        let first: u16 = a
            .trim()
            .parse()
            .map_err(|_| format!("{a:?} is not a port"))?;
        let last: u16 = b
            .trim()
            .parse()
            .map_err(|_| format!("{b:?} is not a port"))?;
        if first == 0 || last < first {
            return Err(format!("{s:?}: need 1 <= FIRST <= LAST"));
        }
        Ok(PortRange { first, last })
    }
}

/// The resolved settings the gateway runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: Vec<Listen>,
    pub dialplans: Vec<PathBuf>,
    pub db: PathBuf,
    pub recordings: PathBuf,
    pub rtp_ports: PortRange,
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    pub ring_delay: Duration,
    pub max_call_duration: Option<Duration>,
    pub media_timeout: Duration,
    pub drain_timeout: Duration,
    /// How often the gateway re-reads the watch and block lists (also at once on SIGHUP).
    pub number_lists_every: Duration,
    /// CSV of cell ID → approximate location (`cell_id,lat,lon,radius_m,area`).
    pub cell_table: Option<PathBuf>,
    /// The trunk's default location for calls that carry none: (lat, lon, radius in m).
    pub default_location: Option<(f64, f64, f64)>,
    /// The domain in NENA i3 call and incident identifiers sent to agencies.
    pub element_domain: String,
    /// The centre's offset from UTC, for time-of-day route variants (Samarinda: WITA, +08:00).
    pub utc_offset_minutes: i32,
    /// Counting, sampling and reply budget for traffic outside every call (`[limits]
    /// noncall_*`).
    pub noncall: siaga_engine::noncall::NonCallLimits,
    /// How often a silent caller who answered our OPTIONS is asked again (`None`: no probing).
    pub probe_every: Option<Duration>,
    /// Whether INFO console lines may name the caller (personal data).
    pub log_personal_data: bool,
    /// Spill directory, memory bound and free-space thresholds of the call log.
    pub log: crate::calllog::LogOptions,
    /// The process's umask: files 0640, directories 0750 by default (the log and the
    /// recordings hold callers' numbers, locations and voices).
    pub umask: u32,
    /// Where each file setting came from (`location.cell_table` → `siaga.toml:31`, or the
    /// flag), so an error about the file can say what to change.
    pub origins: Vec<(&'static str, String)>,
    /// Per-source and TCP limits of the transport (`[limits]` keys `source_*`,
    /// `trusted_sources`, `tcp_*`, `fd_reserve`).
    pub transport_limits: TransportLimits,
    /// `[sip] load_balancers`: whose OPTIONS hear that this node's storage fails.
    pub load_balancers: siaga_engine::source_limits::Trusted,
    /// The HTTP listener (metrics, health): `None` when turned off.
    pub http: Option<SocketAddr>,
    /// `[http] cert` and `key`: the listener speaks HTTPS (the console's cookies get Secure).
    pub http_tls: Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>,
    // --- issue 14: SIP capture (HEP) and the console log's format ---
    /// `[capture]`: HEP v3 to a Homer or sngrep collector.
    pub capture: crate::capture::CaptureSettings,
    /// `[log] console_format`: text for people, JSON lines for log shippers.
    pub log_format: crate::logging::LogFormat,
    // --- issue 14: SIP over TLS ---
    /// `[sip] tls_cert`, `tls_key`: the TLS listeners' certificate chain and key (PEM).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    // --- issue 11: retention and evidence ---
    pub retention: crate::calllog::retention::RetentionPeriods,
    /// The centre's signing key directory (`[evidence] key_dir`).
    pub key_dir: PathBuf,
}

impl Default for Settings {
    fn default() -> Self {
        let all = |t: &str| -> Vec<Listen> {
            ["0.0.0.0:5060", "[::]:5060"]
                .iter()
                .filter_map(|a| format!("{t}:{a}").parse().ok())
                .collect()
        };
        let mut listen = all("udp");
        listen.extend(all("tcp"));
        Self {
            listen,
            dialplans: vec![PathBuf::from("dialplans/default.toml")],
            db: PathBuf::from("siaga.db"),
            recordings: PathBuf::from("recordings"),
            rtp_ports: PortRange {
                first: 40000,
                last: 49999,
            },
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            ring_delay: Duration::ZERO,
            max_call_duration: Some(Duration::from_secs(4 * 3600)),
            media_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(60),
            number_lists_every: crate::numbers::LIST_REFRESH,
            cell_table: None,
            default_location: None,
            element_domain: "siaga.invalid".to_owned(),
            utc_offset_minutes: 8 * 60,
            noncall: siaga_engine::noncall::NonCallLimits::default(),
            probe_every: Some(Duration::from_secs(60)),
            log_personal_data: false,
            log: crate::calllog::LogOptions::default(),
            umask: 0o027,
            origins: Vec::new(),
            transport_limits: TransportLimits::default(),
            load_balancers: siaga_engine::source_limits::Trusted::default(),
            http: Some(SocketAddr::from(([127, 0, 0, 1], 8112))),
            http_tls: None,
            capture: crate::capture::CaptureSettings::default(),
            log_format: crate::logging::LogFormat::Text,
            tls_cert: None,
            tls_key: None,
            retention: Default::default(),
            key_dir: PathBuf::from("keys"),
        }
    }
}

impl Settings {
    /// Where a file setting came from, for an error about its file: `siaga.toml:31:
    /// location.cell_table`, `--cell-table`, or the default.
    pub fn origin(&self, key: &'static str) -> String {
        match self.origins.iter().rev().find(|(k, _)| *k == key) {
            Some((_, from)) if from.starts_with("--") => from.clone(),
            Some((_, from)) => format!("{from}: {key}"),
            None => format!("{key} (default)"),
        }
    }

    pub fn set_origin(&mut self, key: &'static str, from: String) {
        self.origins.push((key, from));
    }
}

/// The config file, every key optional. Unknown keys are errors: a typo in an emergency
/// gateway's config must not be silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub sip: SipSection,
    #[serde(default)]
    pub calls: CallsSection,
    #[serde(default)]
    pub media: MediaSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub dialplan: DialplanSection,
    #[serde(default)]
    pub location: LocationSection,
    #[serde(default)]
    pub files: FilesSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub capture: CaptureSection,
    #[serde(default)]
    pub retention: RetentionSection,
    #[serde(default)]
    pub evidence: EvidenceSection,
    #[serde(default)]
    pub node: NodeSection,
}

/// `[retention]` (issue 11 item 6): days to keep recordings and verbatim SIP messages; 0 or
/// absent keeps them for ever.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    pub recordings_days: Option<u32>,
    pub sip_bodies_days: Option<u32>,
}

/// `[evidence]`: where the centre's signing key lives (`siaga keys init`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceSection {
    pub key_dir: Option<Spanned<PathBuf>>,
}

/// `[node]`: this gateway among several on one shared call log (issue 13).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Its name, on every call row it logs [default: the host name].
    pub name: Option<Spanned<String>>,
}

/// The HTTP listener: `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// `IP:PORT`, or `off` [default: 127.0.0.1:8112].
    pub listen: Option<Spanned<String>>,
    /// Allow a non-loopback address without TLS (the pages carry callers' data).
    pub insecure_http: Option<bool>,
    /// HTTPS: the PEM certificate chain and private key.
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
}

/// Parses the HTTP listener setting (`IP:PORT` or `off`); a non-loopback address needs
/// `insecure` (HTTPS configured, or plain HTTP explicitly allowed).
pub fn parse_http_listen(text: &str, insecure: bool) -> Result<Option<SocketAddr>, String> {
    if text.trim() == "off" {
        return Ok(None);
    }
    let addr: SocketAddr = text
        .trim()
        .parse()
        .map_err(|_| format!("\"{text}\" is not IP:PORT or off (e.g. 127.0.0.1:8112)"))?;
    if !addr.ip().is_loopback() && !insecure {
        return Err(format!(
            "{addr} is not a loopback address, and the console and the metrics carry callers' \
             data: listen on 127.0.0.1, or set http.cert and http.key (HTTPS), or set \
             http.insecure_http = true"
        ));
    }
    Ok(Some(addr))
}

/// SIP capture (issue 14): `hep = "udp:HOST:PORT"` sends every SIP message to a collector.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSection {
    pub hep: Option<Spanned<String>>,
    pub hep_agent_id: Option<u32>,
    pub hep_password: Option<String>,
}

/// Per-source limits. The `noncall_*` keys bound traffic that belongs to no call.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub noncall_window_s: Option<Spanned<u64>>,
    pub noncall_max_sources: Option<usize>,
    pub noncall_samples_per_window: Option<u32>,
    pub noncall_sample_max_bytes: Option<usize>,
    pub noncall_replies_per_s: Option<u32>,
    pub noncall_reply_burst: Option<u32>,
    // Transport limits, per source address and on TCP (see transport::TransportLimits).
    pub source_messages_per_s: Option<Spanned<u64>>,
    pub source_burst: Option<Spanned<u64>>,
    pub source_call_messages_per_s: Option<Spanned<u64>>,
    pub source_invites_per_s: Option<Spanned<u64>>,
    pub source_invite_burst: Option<Spanned<u64>>,
    pub source_queue_share: Option<Spanned<u64>>,
    pub source_table_size: Option<Spanned<u64>>,
    /// Networks exempt from the per-source limits, e.g. ["10.20.0.0/16"].
    pub trusted_sources: Option<Spanned<Vec<String>>>,
    pub tcp_per_source: Option<Spanned<u64>>,
    pub tcp_max_connections: Option<Spanned<u64>>,
    pub tcp_message_timeout_ms: Option<Spanned<u64>>,
    pub tcp_idle_s: Option<Spanned<u64>>,
    pub tcp_idle_with_call_s: Option<Spanned<u64>>,
    pub fd_reserve: Option<Spanned<u64>>,
    pub tls_handshakes_per_source: Option<Spanned<u64>>,
    pub tls_max_handshakes: Option<Spanned<u64>>,
    pub tls_handshake_timeout_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSection {
    /// Octal, e.g. "027" (files 0640, directories 0750).
    pub umask: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationSection {
    pub cell_table: Option<Spanned<PathBuf>>,
    pub default: Option<Spanned<DefaultLocationConfig>>,
}

/// A circle in WGS 84: the area the trunk serves.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultLocationConfig {
    pub lat: f64,
    pub lon: f64,
    pub radius_m: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipSection {
    pub listen: Option<Spanned<Vec<String>>>,
    pub element_domain: Option<String>,
    pub t1_ms: Option<Spanned<u64>>,
    pub t2_ms: Option<Spanned<u64>>,
    pub t4_ms: Option<Spanned<u64>>,
    /// The load balancers in front of this node (CIDRs): their OPTIONS get 503 while the call
    /// log or the recordings cannot be written; they are trusted sources too.
    pub load_balancers: Option<Spanned<Vec<String>>>,
    /// The TLS listeners' certificate chain and private key (PEM), read again on SIGHUP.
    pub tls_cert: Option<Spanned<PathBuf>>,
    pub tls_key: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallsSection {
    pub ring_delay_ms: Option<Spanned<u64>>,
    /// 0 disables the limit.
    pub max_duration_s: Option<Spanned<u64>>,
    pub drain_timeout_s: Option<Spanned<u64>>,
    /// The watch and block lists are re-read this often (1–3600 s); SIGHUP re-reads at once.
    pub number_lists_every_s: Option<Spanned<u64>>,
    /// A silent caller that answered our OPTIONS is asked again after this; 0: no probing.
    pub probe_every_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSection {
    pub rtp_ports: Option<Spanned<String>>,
    pub recordings: Option<Spanned<PathBuf>>,
    pub timeout_s: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// Caller numbers in INFO console lines (personal data): off unless set.
    pub personal_data: Option<bool>,
    pub db: Option<Spanned<PathBuf>>,
    /// A shared PostgreSQL (`postgres://user:password@host/db`) instead of `db`.
    pub url: Option<Spanned<String>>,
    /// Where records wait when the database cannot be written [default: /var/tmp/siaga-spill].
    pub spill_dir: Option<Spanned<PathBuf>>,
    /// Memory for waiting records before they are spilled, MiB [default: 64].
    pub queue_memory_mb: Option<Spanned<u64>>,
    /// Free space under which sampled messages of no call are not stored, MiB [default:
    /// 1024; 0: never].
    pub low_space_mb: Option<Spanned<u64>>,
    /// Free space under which an alarm is raised, MiB [default: 256; 0: never].
    pub alarm_space_mb: Option<Spanned<u64>>,
    /// "text" (default) or "json" (one JSON object per line, for log shippers).
    pub console_format: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialplanSection {
    pub files: Option<Spanned<Vec<PathBuf>>>,
    /// "+08:00" (WITA), "+07:00" (WIB), "+09:00" (WIT).
    pub utc_offset: Option<Spanned<String>>,
}

/// A setting out of range, with the config key it comes from.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SettingError {
    /// The config file key (`t1_ms`, `ring_delay_ms`, …), so a file error can name its line.
    pub key: &'static str,
    pub message: String,
}

impl Settings {
    /// Rejects values that make no sense for a gateway (and would overflow timers).
    pub fn validate(&self) -> Result<(), SettingError> {
        let ms = |d: Duration| d.as_millis();
        let wrong = |key, message: String| Err(SettingError { key, message });
        if !(10..=10_000).contains(&ms(self.t1)) {
            return wrong(
                "t1_ms",
                format!(
                    "T1 of {} ms: use 10–10000 ms (RFC 3261 default 500)",
                    ms(self.t1)
                ),
            );
        }
        if self.t2 < self.t1 || ms(self.t2) > 60_000 {
            return wrong(
                "t2_ms",
                format!(
                    "T2 of {} ms: use T1 ({} ms)..60000 ms (default 4000)",
                    ms(self.t2),
                    ms(self.t1)
                ),
            );
        }
        if ms(self.t4) > 60_000 {
            return wrong(
                "t4_ms",
                format!(
                    "T4 of {} ms: use at most 60000 ms (default 5000)",
                    ms(self.t4)
                ),
            );
        }
        if self.ring_delay > Duration::from_secs(60) {
            return wrong(
                "ring_delay_ms",
                format!(
                    "ring delay of {} ms: an emergency call is answered within a minute; use 0–60000",
                    ms(self.ring_delay)
                ),
            );
        }
        if self
            .max_call_duration
            .is_some_and(|d| d > Duration::from_secs(7 * 24 * 3600))
        {
            return wrong(
                "max_duration_s",
                "maximum call duration over 7 days: use 0 (no limit) or at most 604800 s".into(),
            );
        }
        if self.media_timeout > Duration::from_secs(3600) {
            return wrong("timeout_s", "media timeout over 3600 s".into());
        }
        if self.drain_timeout > Duration::from_secs(24 * 3600) {
            return wrong("drain_timeout_s", "drain timeout over 86400 s".into());
        }
        let lists = self.number_lists_every;
        if lists.is_zero() || lists > Duration::from_secs(3600) {
            return wrong(
                "number_lists_every_s",
                "use 1–3600 s (default 5): a new block or watch takes up to this long".into(),
            );
        }
        self.validate_transport_limits()
    }

    fn validate_transport_limits(&self) -> Result<(), SettingError> {
        let l = &self.transport_limits;
        // (out of range, key, what to write instead), first match reported.
        let checks: [(bool, &'static str, &str); 14] = [
            (
                l.source_messages_per_s == 0,
                "source_messages_per_s",
                "0 would drop every message but INVITEs; use at least 1 (default 1000)",
            ),
            (
                l.source_call_messages_per_s == 0,
                "source_call_messages_per_s",
                "0 would drop every ACK and BYE; use at least 1 (default 20000)",
            ),
            (
                l.source_burst == 0,
                "source_burst",
                "use at least 1 (default 2000)",
            ),
            (
                l.source_invite_burst == 0,
                "source_invite_burst",
                "use at least 1 (default 300)",
            ),
            (
                l.source_queue_share == 0,
                "source_queue_share",
                "0 would send all call traffic the bulk way; use at least 1 (default 512)",
            ),
            (
                l.max_sources == 0 || l.max_sources > 10_000_000,
                "source_table_size",
                "use 1–10000000 (default 16384)",
            ),
            (
                l.tcp_per_source == 0,
                "tcp_per_source",
                "0 would refuse every TCP connection; use at least 1 (default 128)",
            ),
            (
                l.tcp_max_connections == 0,
                "tcp_max_connections",
                "use at least 1 (default 4096)",
            ),
            (
                !(100..=600_000).contains(&l.tcp.message.as_millis()),
                "tcp_message_timeout_ms",
                "use 100–600000 ms (default 10000)",
            ),
            (
                l.tcp.idle.is_zero() || l.tcp.idle > l.tcp.idle_with_call,
                "tcp_idle_s",
                "use at least 1 s and at most tcp_idle_with_call_s (default 30)",
            ),
            (
                l.tcp.idle_with_call > Duration::from_secs(24 * 3600),
                "tcp_idle_with_call_s",
                "use at most 86400 s (default 3600)",
            ),
            (
                l.tls_handshakes_per_source == 0,
                "tls_handshakes_per_source",
                "0 would refuse every TLS connection; use at least 1 (default 16)",
            ),
            (
                l.tls_max_handshakes == 0,
                "tls_max_handshakes",
                "use at least 1 (default 256)",
            ),
            (
                !(100..=60_000).contains(&l.tls_handshake_timeout.as_millis()),
                "tls_handshake_timeout_ms",
                "use 100–60000 ms (default 5000)",
            ),
        ];
        match checks.into_iter().find(|(bad, _, _)| *bad) {
            Some((_, key, message)) => Err(SettingError {
                key,
                message: format!("limits.{key}: {message}"),
            }),
            None => Ok(()),
        }
    }
}

pub fn parse_utc_offset(s: &str) -> Option<i32> {
    let (sign, rest) = match s.trim().split_at_checked(1)? {
        ("+", r) => (1, r),
        ("-", r) => (-1, r),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    ((0..=14).contains(&h) && (0..60).contains(&m)).then_some(sign * (h * 60 + m))
}

/// The `[capture]` keys and `[log] console_format` (issue 14).
fn apply_capture_and_format(
    settings: &mut Settings,
    capture: &CaptureSection,
    console_format: Option<Spanned<String>>,
    at: &dyn Fn(std::ops::Range<usize>) -> String,
) -> anyhow::Result<()> {
    if let Some(hep) = &capture.hep {
        let where_ = at(hep.span());
        settings.capture.hep = Some(
            hep.get_ref()
                .parse()
                .map_err(|e| anyhow::anyhow!("{where_}: capture.hep: {e}"))?,
        );
    }
    if let Some(id) = capture.hep_agent_id {
        settings.capture.agent_id = id;
    }
    if let Some(password) = &capture.hep_password {
        settings.capture.password = Some(password.clone());
    }
    if let Some(format) = console_format {
        let where_ = at(format.span());
        settings.log_format = format
            .get_ref()
            .parse()
            .map_err(|e| anyhow::anyhow!("{where_}: log.console_format: {e}"))?;
    }
    Ok(())
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map_or(1, |s| s.bytes().filter(|&b| b == b'\n').count() + 1)
}

/// Reads and applies a config file on top of `settings`. Relative paths in the file are
/// relative to the file's directory.
pub fn apply_file(settings: &mut Settings, path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    apply_text(settings, path, &text)
}

/// Applies config `text` read from `path` (named in errors, base of relative paths).
fn apply_text(settings: &mut Settings, path: &Path, text: &str) -> anyhow::Result<()> {
    let file: FileConfig = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(text, s.start));
        anyhow::anyhow!(
            "{}:{line}: {}\n  hint: see the [sip], [calls], [media], [log], [dialplan], [location], [limits], [files], [capture], [http], [node], [retention] and [evidence] keys in README.md",
            path.display(),
            e.message()
        )
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let rel = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    // Where each checked value sits in the file, for errors that name its line.
    let mut lines: Vec<(&'static str, usize)> = Vec::new();
    let mut take = |key: &'static str, value: Spanned<u64>| {
        lines.push((key, line_of(text, value.span().start)));
        value.into_inner()
    };
    let t1 = file.sip.t1_ms.map(|v| take("t1_ms", v));
    let t2 = file.sip.t2_ms.map(|v| take("t2_ms", v));
    let t4 = file.sip.t4_ms.map(|v| take("t4_ms", v));
    let ring_delay = file.calls.ring_delay_ms.map(|v| take("ring_delay_ms", v));
    let max_duration = file.calls.max_duration_s.map(|v| take("max_duration_s", v));
    let drain = file
        .calls
        .drain_timeout_s
        .map(|v| take("drain_timeout_s", v));
    let media_timeout = file.media.timeout_s.map(|v| take("timeout_s", v));
    let lists_every = file
        .calls
        .number_lists_every_s
        .map(|v| take("number_lists_every_s", v));
    let limits = &mut settings.transport_limits;
    let lim = file.limits;
    let clamp32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    if let Some(v) = lim.source_messages_per_s {
        limits.source_messages_per_s = clamp32(take("source_messages_per_s", v));
    }
    if let Some(v) = lim.source_burst {
        limits.source_burst = clamp32(take("source_burst", v));
    }
    if let Some(v) = lim.source_call_messages_per_s {
        limits.source_call_messages_per_s = clamp32(take("source_call_messages_per_s", v));
    }
    if let Some(v) = lim.source_invites_per_s {
        limits.source_invites_per_s = clamp32(take("source_invites_per_s", v));
    }
    if let Some(v) = lim.source_invite_burst {
        limits.source_invite_burst = clamp32(take("source_invite_burst", v));
    }
    if let Some(v) = lim.source_queue_share {
        limits.source_queue_share = clamp32(take("source_queue_share", v));
    }
    if let Some(v) = lim.source_table_size {
        limits.max_sources = usize::try_from(take("source_table_size", v)).unwrap_or(usize::MAX);
    }
    if let Some(v) = lim.tcp_per_source {
        limits.tcp_per_source = clamp32(take("tcp_per_source", v));
    }
    if let Some(v) = lim.tcp_max_connections {
        limits.tcp_max_connections =
            usize::try_from(take("tcp_max_connections", v)).unwrap_or(usize::MAX);
    }
    if let Some(v) = lim.tcp_message_timeout_ms {
        limits.tcp.message = Duration::from_millis(take("tcp_message_timeout_ms", v));
    }
    if let Some(v) = lim.tcp_idle_s {
        limits.tcp.idle = Duration::from_secs(take("tcp_idle_s", v));
    }
    if let Some(v) = lim.tcp_idle_with_call_s {
        limits.tcp.idle_with_call = Duration::from_secs(take("tcp_idle_with_call_s", v));
    }
    if let Some(v) = lim.fd_reserve {
        limits.fd_reserve = take("fd_reserve", v);
    }
    if let Some(v) = lim.tls_handshakes_per_source {
        limits.tls_handshakes_per_source = clamp32(take("tls_handshakes_per_source", v));
    }
    if let Some(v) = lim.tls_max_handshakes {
        limits.tls_max_handshakes =
            usize::try_from(take("tls_max_handshakes", v)).unwrap_or(usize::MAX);
    }
    if let Some(v) = lim.tls_handshake_timeout_ms {
        limits.tls_handshake_timeout = Duration::from_millis(take("tls_handshake_timeout_ms", v));
    }
    let line = |key: &str| lines.iter().find(|(k, _)| *k == key).map(|&(_, l)| l);
    let at =
        |span: std::ops::Range<usize>| format!("{}:{}", path.display(), line_of(text, span.start));
    match (&file.http.cert, &file.http.key) {
        (Some(cert), Some(key)) => {
            let tls = crate::console::https::server_config(
                &base.join(cert.get_ref()),
                &base.join(key.get_ref()),
            )
            .map_err(|e| anyhow::anyhow!("{}: http.cert / http.key: {e:#}", at(cert.span())))?;
            settings.http_tls = Some(tls);
        }
        (Some(one), None) | (None, Some(one)) => anyhow::bail!(
            "{}: HTTPS needs both http.cert and http.key (PEM files)",
            at(one.span())
        ),
        (None, None) => {}
    }
    if let Some(listen) = file.http.listen {
        let where_ = at(listen.span());
        let insecure = file.http.insecure_http.unwrap_or(false) || settings.http_tls.is_some();
        settings.http = parse_http_listen(listen.get_ref(), insecure)
            .map_err(|e| anyhow::anyhow!("{where_}: http.listen: {e}"))?;
    }
    if let Some(nets) = file.sip.load_balancers {
        let where_ = at(nets.span());
        let nets: Vec<_> = nets
            .into_inner()
            .iter()
            .map(|n| n.parse())
            .collect::<Result<_, _>>()
            .map_err(|e| {
                anyhow::anyhow!(
                    "{where_}: sip.load_balancers: {e}: write CIDRs such as \"10.0.0.5/32\""
                )
            })?;
        settings.load_balancers = siaga_engine::source_limits::Trusted(nets);
    }
    if let Some(listen) = file.sip.listen {
        let where_ = at(listen.span());
        settings.listen = listen
            .into_inner()
            .iter()
            .map(|l| l.parse::<Listen>())
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("{where_}: sip.listen: {e}"))?;
    }
    for (key, value, slot) in [
        ("t1_ms", t1, &mut settings.t1),
        ("t2_ms", t2, &mut settings.t2),
        ("t4_ms", t4, &mut settings.t4),
    ] {
        if let Some(ms) = value {
            if ms == 0 {
                let line = line(key).unwrap_or(1);
                bail!("{}:{line}: sip.{key} must be above 0 ms", path.display());
            }
            *slot = Duration::from_millis(ms);
        }
    }
    if let Some(ms) = ring_delay {
        settings.ring_delay = Duration::from_millis(ms);
    }
    if let Some(s) = max_duration {
        settings.max_call_duration = (s > 0).then(|| Duration::from_secs(s));
    }
    if let Some(s) = drain {
        settings.drain_timeout = Duration::from_secs(s);
    }
    if let Some(s) = lists_every {
        settings.number_lists_every = Duration::from_secs(s);
    }
    if let Some(r) = file.media.rtp_ports {
        let where_ = at(r.span());
        settings.rtp_ports = r
            .into_inner()
            .parse()
            .map_err(|e| anyhow::anyhow!("{where_}: media.rtp_ports: {e}"))?;
    }
    if let Some(p) = file.media.recordings {
        settings.set_origin("media.recordings", at(p.span()));
        settings.recordings = rel(p.into_inner());
    }
    if let Some(s) = media_timeout {
        settings.media_timeout = Duration::from_secs(s.max(1));
    }
    if let Some(p) = file.log.db {
        settings.set_origin("log.db", at(p.span()));
        settings.db = rel(p.into_inner());
    }
    if let Some(url) = file.log.url {
        let where_ = at(url.span());
        let url = url.into_inner();
        if !crate::calllog::store::is_postgres_url(&url) {
            anyhow::bail!(
                "{where_}: log.url must be a PostgreSQL URL, postgres://user:password@host:port/database \
                 (for the SQLite file, set log.db instead)"
            );
        }
        settings.set_origin("log.url", where_);
        settings.log.url = Some(url);
    }
    if let Some(name) = file.node.name {
        let where_ = at(name.span());
        let name = name.into_inner();
        if name.is_empty()
            || name.len() > 64
            || name.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            anyhow::bail!(
                "{where_}: node.name must be 1 to 64 characters without spaces, e.g. \"siaga-a\""
            );
        }
        settings.log.node = name;
    }
    if let Some(p) = file.log.spill_dir {
        settings.set_origin("log.spill_dir", at(p.span()));
        settings.log.spill_dir = rel(p.into_inner());
    }
    let mib = |v: Spanned<u64>, key: &str| -> anyhow::Result<u64> {
        let where_ = at(v.span());
        let v = v.into_inner();
        v.checked_mul(1 << 20)
            .filter(|_| v <= 1 << 20)
            .ok_or_else(|| anyhow::anyhow!("{where_}: log.{key} of {v} MiB: use at most 1048576"))
    };
    if let Some(v) = file.log.queue_memory_mb {
        settings.log.queue_memory_bytes = mib(v, "queue_memory_mb")? as usize;
    }
    if let Some(v) = file.log.low_space_mb {
        settings.log.low_space_bytes = mib(v, "low_space_mb")?;
    }
    if let Some(v) = file.log.alarm_space_mb {
        settings.log.alarm_space_bytes = mib(v, "alarm_space_mb")?;
    }
    if let Some(u) = file.files.umask {
        let where_ = at(u.span());
        let u = u.into_inner();
        settings.umask = u32::from_str_radix(u.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                anyhow::anyhow!("{where_}: files.umask {u:?}: write it in octal, e.g. \"027\"")
            })?;
    }
    if let Some(on) = file.log.personal_data {
        settings.log_personal_data = on;
    }
    if let Some(s) = file.calls.probe_every_s {
        settings.probe_every = (s > 0).then(|| Duration::from_secs(s));
    }
    let noncall = &mut settings.noncall;
    if let Some(w) = lim.noncall_window_s {
        let where_ = at(w.span());
        let w = w.into_inner();
        if !(1..=3600).contains(&w) {
            bail!("{where_}: limits.noncall_window_s of {w}: use 1–3600 s (default 60)");
        }
        noncall.window = Duration::from_secs(w);
    }
    if let Some(n) = lim.noncall_max_sources {
        noncall.max_sources = n;
    }
    if let Some(n) = lim.noncall_samples_per_window {
        noncall.samples_per_window = n;
    }
    if let Some(n) = lim.noncall_sample_max_bytes {
        noncall.sample_max_bytes = n;
    }
    if let Some(n) = lim.noncall_replies_per_s {
        noncall.replies_per_second = n;
    }
    if let Some(n) = lim.noncall_reply_burst {
        noncall.reply_burst = n;
    }
    if let Some(p) = file.location.cell_table {
        settings.set_origin("location.cell_table", at(p.span()));
        settings.cell_table = Some(rel(p.into_inner()));
    }
    if let Some(d) = file.location.default {
        let where_ = at(d.span());
        let d = d.into_inner();
        if !(-90.0..=90.0).contains(&d.lat)
            || !(-180.0..=180.0).contains(&d.lon)
            || d.radius_m <= 0.0
        {
            bail!(
                "{where_}: location.default needs lat in -90..90, lon in -180..180 and radius_m > 0"
            );
        }
        settings.default_location = Some((d.lat, d.lon, d.radius_m));
    }
    for (key, value, slot) in [
        ("sip.tls_cert", file.sip.tls_cert, &mut settings.tls_cert),
        ("sip.tls_key", file.sip.tls_key, &mut settings.tls_key),
    ] {
        if let Some(p) = value {
            settings.origins.push((key, at(p.span())));
            *slot = Some(rel(p.into_inner()));
        }
    }
    if let Some(d) = file.sip.element_domain {
        settings.element_domain = d;
    }
    if let Some(o) = file.dialplan.utc_offset {
        let where_ = at(o.span());
        let o = o.into_inner();
        settings.utc_offset_minutes = parse_utc_offset(&o).ok_or_else(|| {
            anyhow::anyhow!("{where_}: dialplan.utc_offset {o:?}: write it as +08:00")
        })?;
    }
    if let Some(nets) = lim.trusted_sources {
        let where_ = at(nets.span());
        settings.transport_limits.trusted = siaga_engine::source_limits::Trusted(
            nets.into_inner()
                .iter()
                .map(|n| n.parse())
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("{where_}: limits.trusted_sources: {e}"))?,
        );
    }
    // A balancer concentrates every caller's traffic on one address: per-source limits must
    // not ration it.
    let balancers = settings.load_balancers.0.clone();
    settings.transport_limits.trusted.0.extend(balancers);
    apply_capture_and_format(settings, &file.capture, file.log.console_format, &at)?;
    if let Some(d) = file.retention.recordings_days {
        settings.retention.recordings_days = d;
    }
    if let Some(d) = file.retention.sip_bodies_days {
        settings.retention.sip_bodies_days = d;
    }
    if let Some(dir) = file.evidence.key_dir {
        settings.set_origin("evidence.key_dir", at(dir.span()));
        settings.key_dir = rel(dir.into_inner());
    }
    if let Some(files) = file.dialplan.files {
        settings.set_origin("dialplan.files", at(files.span()));
        settings.dialplans = files.into_inner().into_iter().map(rel).collect();
    }
    // Ranges are checked here too, so that a bad value in the file names its line (flags,
    // applied later, are checked again as a whole).
    settings.validate().map_err(|e| match line(e.key) {
        Some(line) => anyhow::anyhow!("{}:{line}: {e}", path.display()),
        None => anyhow::anyhow!("{}: {e} (with the file's other values)", path.display()),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_and_the_key_directory_are_read_relative_to_the_file() {
        let mut s = Settings::default();
        assert!(s.retention.is_off());
        let text = "[retention]\nrecordings_days = 365\nsip_bodies_days = 90\n\n[evidence]\nkey_dir = \"keys\"\n";
        apply_text(&mut s, Path::new("/etc/siaga/siaga.toml"), text).expect("valid");
        assert_eq!(
            (s.retention.recordings_days, s.retention.sip_bodies_days),
            (365, 90)
        );
        assert_eq!(s.key_dir, PathBuf::from("/etc/siaga/keys"));
        let err = apply_text(
            &mut Settings::default(),
            Path::new("s.toml"),
            "[retention]\nrecording_days = 30\n",
        )
        .expect_err("a typo");
        assert!(err.to_string().starts_with("s.toml:2:"), "{err}");
    }

    #[test]
    fn listen_specs_parse_v4_and_v6_and_reject_nonsense() {
        let l: Listen = "udp:[::1]:5060".parse().expect("v6");
        assert_eq!(l.addr, "[::1]:5060".parse().expect("addr"));
        assert!("sctp:1.2.3.4:5060".parse::<Listen>().is_err());
        assert!("udp:localhost".parse::<Listen>().is_err());
    }

    #[test]
    fn every_bad_value_names_its_own_line() {
        let cases = [
            ("[sip]\nt2_ms = 4000\n\nt1_ms = 5\n", 4, "T1 of 5 ms"),
            (
                "[calls]\n\n[sip]\n# a comment\nt4_ms = 90000\n",
                5,
                "T4 of 90000 ms",
            ),
            (
                "sip.t1_ms = 500\n\n\n\ncalls.ring_delay_ms = 70000\n",
                5,
                "ring delay",
            ),
            ("[calls]\nmax_duration_s = 99999999\n", 2, "7 days"),
            (
                "[media]\nrecordings = \"r\"\ntimeout_s = 7200\n",
                3,
                "media timeout",
            ),
            ("[calls]\ndrain_timeout_s = 100000\n", 2, "drain timeout"),
            ("[calls]\n\nnumber_lists_every_s = 0\n", 3, "1–3600 s"),
            (
                "[media]\n\nrtp_ports = \"50000-40000\"\n",
                3,
                "media.rtp_ports",
            ),
            (
                "[sip]\nelement_domain = \"x\"\nlisten = [\"sctp:1.2.3.4:5060\"]\n",
                3,
                "sip.listen",
            ),
            ("[dialplan]\n\nutc_offset = \"WITA\"\n", 3, "utc_offset"),
            ("[files]\n\numask = \"999\"\n", 3, "files.umask"),
            (
                "[log]\nspill_dir = \"s\"\nqueue_memory_mb = 99999999\n",
                3,
                "log.queue_memory_mb",
            ),
            (
                "[location]\ncell_table = \"c.csv\"\n\n[location.default]\nlat = 95.0\nlon = 1.0\nradius_m = 5.0\n",
                4,
                "location.default",
            ),
        ];
        for (text, line, what) in cases {
            let err = apply_text(&mut Settings::default(), Path::new("s.toml"), text)
                .expect_err(text)
                .to_string();
            assert!(
                err.starts_with(&format!("s.toml:{line}: ")) && err.contains(what),
                "{text:?} gave {err:?}"
            );
        }
    }

    #[test]
    fn limits_probe_and_personal_data_keys_are_read() {
        let text = "[limits]\nnoncall_window_s = 30\nnoncall_max_sources = 10\n\
            noncall_samples_per_window = 5\nnoncall_sample_max_bytes = 512\n\
            noncall_replies_per_s = 7\nnoncall_reply_burst = 9\n\
            [calls]\nprobe_every_s = 0\n[log]\npersonal_data = true\n";
        let mut settings = Settings::default();
        assert!(
            !settings.log_personal_data,
            "personal data is off by default"
        );
        assert_eq!(settings.probe_every, Some(Duration::from_secs(60)));
        apply_text(&mut settings, Path::new("s.toml"), text).expect("valid");
        let n = settings.noncall;
        assert_eq!(n.window, Duration::from_secs(30));
        assert_eq!(
            (n.max_sources, n.samples_per_window, n.sample_max_bytes),
            (10, 5, 512)
        );
        assert_eq!((n.replies_per_second, n.reply_burst), (7, 9));
        assert_eq!(settings.probe_every, None);
        assert!(settings.log_personal_data);
        let err = apply_text(
            &mut Settings::default(),
            Path::new("s.toml"),
            "[limits]\n\nnoncall_window_s = 0\n",
        )
        .expect_err("a zero window")
        .to_string();
        assert!(
            err.starts_with("s.toml:3: limits.noncall_window_s"),
            "{err}"
        );
    }

    #[test]
    fn the_log_and_file_settings_are_read_with_where_they_came_from() {
        let text = "[log]\ndb = \"/var/lib/siaga/siaga.db\"\nspill_dir = \"spill\"\n\
                    queue_memory_mb = 8\nlow_space_mb = 0\nalarm_space_mb = 100\n\
                    [files]\numask = \"077\"\n";
        let mut s = Settings::default();
        apply_text(&mut s, Path::new("/etc/siaga/siaga.toml"), text).expect("valid");
        assert_eq!(s.log.spill_dir, Path::new("/etc/siaga/spill"));
        assert_eq!(s.log.queue_memory_bytes, 8 << 20);
        assert_eq!(
            (s.log.low_space_bytes, s.log.alarm_space_bytes),
            (0, 100 << 20)
        );
        assert_eq!(s.umask, 0o077);
        assert_eq!(s.origin("log.db"), "/etc/siaga/siaga.toml:2: log.db");
        assert_eq!(
            s.origin("location.cell_table"),
            "location.cell_table (default)"
        );
    }

    /// Issue 14: a tls: listener with its certificate and key (relative to the config file,
    /// with where they were set) and the TLS handshake limits.
    #[test]
    fn tls_listener_keys_and_limits_are_read() {
        let text = "[sip]\nlisten = [\"udp:0.0.0.0:5060\", \"tls:0.0.0.0:5061\"]\n\
                    tls_cert = \"tls/siaga.pem\"\ntls_key = \"/etc/ssl/private/siaga.key\"\n\
                    [limits]\ntls_handshakes_per_source = 4\ntls_max_handshakes = 64\n\
                    tls_handshake_timeout_ms = 2000\n";
        let mut s = Settings::default();
        apply_text(&mut s, Path::new("/etc/siaga/siaga.toml"), text).expect("valid");
        assert_eq!(
            s.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["udp:0.0.0.0:5060", "tls:0.0.0.0:5061"]
        );
        assert_eq!(
            s.tls_cert.as_deref(),
            Some(Path::new("/etc/siaga/tls/siaga.pem"))
        );
        assert_eq!(
            s.tls_key.as_deref(),
            Some(Path::new("/etc/ssl/private/siaga.key"))
        );
        assert_eq!(
            s.origin("sip.tls_cert"),
            "/etc/siaga/siaga.toml:3: sip.tls_cert"
        );
        let l = &s.transport_limits;
        assert_eq!((l.tls_handshakes_per_source, l.tls_max_handshakes), (4, 64));
        assert_eq!(l.tls_handshake_timeout, Duration::from_secs(2));
    }

    #[test]
    fn load_balancers_are_trusted_sources_and_a_bad_one_names_its_line() {
        let mut s = Settings::default();
        let text = "[sip]\nload_balancers = [\"10.0.0.5/32\"]\n[limits]\ntrusted_sources = [\"192.0.2.0/24\"]\n";
        apply_text(&mut s, Path::new("s.toml"), text).expect("valid");
        let balancer = "10.0.0.5".parse().expect("ip");
        assert!(s.load_balancers.contains(balancer));
        assert!(s.transport_limits.trusted.contains(balancer));
        assert!(
            s.transport_limits
                .trusted
                .contains("192.0.2.7".parse().expect("ip"))
        );
        let err = apply_text(
            &mut Settings::default(),
            Path::new("s.toml"),
            "[sip]\n\nload_balancers = [\"kamailio\"]\n",
        )
        .expect_err("not a CIDR")
        .to_string();
        assert!(err.starts_with("s.toml:3: sip.load_balancers"), "{err}");
        assert!(err.contains("10.0.0.5/32"), "says what to write: {err}");
    }

    #[test]
    fn transport_limits_are_read_and_a_bad_one_names_its_line() {
        let mut s = Settings::default();
        let text = "[limits]\nsource_messages_per_s = 50\nsource_burst = 100\n\
                    trusted_sources = [\"10.0.0.0/8\", \"2001:db8::/32\"]\n\
                    tcp_per_source = 4\ntcp_message_timeout_ms = 1500\ntcp_idle_s = 5\n\
                    fd_reserve = 100\nsource_invites_per_s = 10\nsource_invite_burst = 20\n\
                    source_queue_share = 64\n";
        apply_text(&mut s, Path::new("s.toml"), text).expect("valid limits");
        let l = &s.transport_limits;
        assert_eq!((l.source_messages_per_s, l.source_burst), (50, 100));
        assert_eq!(
            (
                l.source_invites_per_s,
                l.source_invite_burst,
                l.source_queue_share
            ),
            (10, 20, 64)
        );
        assert!(l.trusted.contains("10.9.8.7".parse().expect("ip")));
        assert!(!l.trusted.contains("11.0.0.1".parse().expect("ip")));
        assert_eq!(l.tcp_per_source, 4);
        assert_eq!(l.tcp.message, Duration::from_millis(1500));
        assert_eq!(l.tcp.idle, Duration::from_secs(5));
        assert_eq!(l.fd_reserve, 100);
        for (text, line, what) in [
            (
                "[limits]\n\ntcp_per_source = 0\n",
                3,
                "limits.tcp_per_source",
            ),
            (
                "[limits]\ntrusted_sources = [\"10.0.0.0/33\"]\n",
                2,
                "limits.trusted_sources",
            ),
            ("[limits]\ntcp_idle_s = 7200\n", 2, "limits.tcp_idle_s"),
            (
                "[limits]\n\n\ntcp_message_timeout_ms = 5\n",
                4,
                "tcp_message_timeout_ms",
            ),
        ] {
            let err = apply_text(&mut Settings::default(), Path::new("s.toml"), text)
                .expect_err(text)
                .to_string();
            assert!(
                err.starts_with(&format!("s.toml:{line}: ")) && err.contains(what),
                "{text:?} gave {err:?}"
            );
        }
    }

    #[test]
    fn a_shared_call_log_and_the_node_name_are_read_and_checked() {
        let mut s = Settings::default();
        let text =
            "[log]\nurl = \"postgres://siaga:pw@db:5432/siaga\"\n[node]\nname = \"siaga-a\"\n";
        apply_text(&mut s, Path::new("siaga.toml"), text).expect("valid");
        assert_eq!(
            s.log.url.as_deref(),
            Some("postgres://siaga:pw@db:5432/siaga")
        );
        assert_eq!(s.log.node, "siaga-a");
        for (text, key) in [
            (
                "[log]\nurl = \"mysql://db/siaga\"\n",
                "siaga.toml:2: log.url",
            ),
            ("[node]\n\nname = \"siaga a\"\n", "siaga.toml:3: node.name"),
        ] {
            let err = apply_text(&mut Settings::default(), Path::new("siaga.toml"), text)
                .expect_err("rejected")
                .to_string();
            assert!(err.starts_with(key), "{err}");
        }
    }

    #[test]
    fn a_zero_timer_names_its_own_line() {
        let text = "[media]\ntimeout_s = 5\n\n[sip]\nt2_ms = 4000\nt1_ms = 0\n";
        let err = apply_text(&mut Settings::default(), Path::new("siaga.toml"), text)
            .expect_err("zero timer rejected")
            .to_string();
        assert!(err.starts_with("siaga.toml:6: sip.t1_ms"), "{err}");
    }

    use proptest::strategy::Strategy;

    proptest::proptest! {
        /// Any text, TOML-like or not, gives settings or an error naming a line of the file.
        #[test]
        fn any_config_text_gives_settings_or_a_line_of_the_file(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(vec![
                        "[sip]", "[calls]", "[media]", "[log]", "[dialplan]", "[location]",
                        "[location.default]", "t1_ms = 0", "t2_ms = 4000", "listen = [\"udp:[::1]:5060\"]",
                        "listen = [\"sctp:x\"]", "rtp_ports = \"40000-30000\"", "rtp_ports = \"1-2\"",
                        "utc_offset = \"+8\"", "utc_offset = \"+08:00\"", "lat = 95.0", "lon = 1.0",
                        "radius_m = -1.0", "max_duration_s = 0", "timeout_s = 18446744073709551615",
                        "files = [\"a.toml\"]", "db = \"/x.db\"", "ring_delay_ms = 1", "",
                    ]).prop_map(str::to_owned),
                    "[ -~]{0,30}",
                ],
                0..12,
            )
        ) {
            let text = lines.join("\n");
            let line_count = text.lines().count().max(1);
            if let Err(e) = apply_text(&mut Settings::default(), Path::new("c.toml"), &text) {
                let message = e.to_string();
                if message.starts_with("c.toml: ") {
                    // A range broken only together with a default (T2 below a file's T1).
                    proptest::prop_assert!(message.ends_with("(with the file's other values)"), "{message:?}");
                    return Ok(());
                }
                let line: usize = message
                    .strip_prefix("c.toml:")
                    .and_then(|rest| rest.split(':').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("no file:line in {message:?}"));
                proptest::prop_assert!((1..=line_count).contains(&line), "{message:?} in {text:?}");
            }
        }
    }

    #[test]
    fn a_config_typo_names_file_and_line() {
        let dir = std::env::temp_dir().join(format!("siaga-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("siaga.toml");
        std::fs::write(&path, "[sip]\nt1_ms = 500\n\n[calls]\nring_delay = 3\n").expect("write");
        let err = apply_file(&mut Settings::default(), &path)
            .expect_err("typo rejected")
            .to_string();
        assert!(err.contains("siaga.toml:5"), "{err}");
        assert!(err.contains("ring_delay"), "{err}");
    }
}
