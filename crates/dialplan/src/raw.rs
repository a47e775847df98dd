//! The file format as serde reads it. Enumerations and durations are kept as strings here so
//! that the validator, not serde, judges them: serde stops at the first problem, the validator
//! reports them all. Unknown keys are rejected so that a typo (`fallbak`) is never ignored.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub(crate) type Text = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    pub centre: Option<Spanned<RawCentre>>,
    #[serde(default)]
    pub emergency: Vec<Spanned<RawEmergency>>,
    #[serde(default)]
    pub menus: BTreeMap<Text, RawMenu>,
    #[serde(default)]
    pub routes: BTreeMap<Text, RawRoute>,
    pub policies: Option<Spanned<RawPolicies>>,
    pub classify: Option<Spanned<RawClassify>>,
    pub flood: Option<Spanned<RawFlood>>,
}

/// `[classify]`: the thresholds of the call-class rules (`crate::call_class`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClassify {
    pub silent_speech_below_percent: Option<Spanned<f64>>,
    pub speech_run: Option<Text>,
    pub abandoned_within: Option<Text>,
    pub agency_talk_genuine: Option<Text>,
    pub repeat_in_10_min: Option<Spanned<i64>>,
    pub repeat_in_hour: Option<Spanned<i64>>,
    pub repeat_in_day: Option<Spanned<i64>>,
    pub location_is_genuine: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCentre {
    pub name: Text,
    pub languages: Spanned<Vec<Text>>,
    pub last_resort: Text,
    pub prompt_dir: Option<Text>,
    pub country_code: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEmergency {
    #[serde(default)]
    pub numbers: Vec<Text>,
    #[serde(default)]
    pub urns: Vec<Text>,
    pub menu: Option<Text>,
    pub route: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMenu {
    pub greeting: Option<Text>,
    pub prompt: Text,
    pub invalid_prompt: Option<Text>,
    pub first_digit_timeout: Option<Text>,
    pub inter_digit_timeout: Option<Text>,
    pub retries: Option<Spanned<i64>>,
    pub no_input_retries: Option<Spanned<i64>>,
    pub offer_after: Option<Text>,
    pub barge_in: Option<bool>,
    pub no_input: Option<Spanned<RawGoto>>,
    pub invalid: Option<Spanned<RawGoto>>,
    #[serde(default)]
    pub options: BTreeMap<Text, Spanned<RawGoto>>,
}

/// `{ route = "x" }`, `{ route = "x", silent = true }`, `{ menu = "y" }` or `{ language = "en" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGoto {
    pub route: Option<Text>,
    pub menu: Option<Text>,
    pub language: Option<Text>,
    pub silent: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub name: Option<Text>,
    pub strategy: Option<Text>,
    pub fallback: Option<Text>,
    pub connecting_prompt: Option<Text>,
    #[serde(default)]
    pub targets: Vec<Spanned<RawTarget>>,
    pub queue: Option<Spanned<RawQueue>>,
    #[serde(default)]
    pub variants: Vec<Spanned<RawVariant>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTarget {
    pub uri: Text,
    pub ring_timeout: Option<Text>,
    pub transport: Option<Text>,
    pub location: Option<Text>,
    pub trusted: Option<bool>,
    // TLS targets (`sips:`, `;transport=tls` or transport = "tls").
    pub tls_ca: Option<Text>,
    pub tls_pin: Option<Text>,
    pub tls_cert: Option<Text>,
    pub tls_key: Option<Text>,
    pub tls_server_name: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQueue {
    pub max_wait: Option<Text>,
    pub announce_every: Option<Text>,
    pub busy_prompt: Option<Text>,
    pub position_prompt: Option<Text>,
    pub number_prompt_prefix: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVariant {
    pub name: Text,
    pub days: Option<Vec<Text>>,
    pub from: Option<Text>,
    pub to: Option<Text>,
    pub strategy: Option<Text>,
    #[serde(default)]
    pub targets: Vec<Spanned<RawTarget>>,
}

/// `[policies]`: what repeat callers, watched and blocked numbers meet.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicies {
    /// `calls = 0` turns the repeat-caller path off.
    pub repeat_caller: Option<Spanned<RawRate>>,
    pub block_override: Option<Spanned<RawRate>>,
    pub warning_prompt: Option<Text>,
    pub blocked_prompt: Option<Text>,
    pub max_block: Option<Text>,
    pub max_watch: Option<Text>,
    pub tracked_numbers: Option<Spanned<i64>>,
}

/// `[flood]`: when the centre is under attack, and who is challenged then.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFlood {
    /// `calls = 0` turns detection by this rate off.
    pub attack_calls: Option<Spanned<RawRate>>,
    pub attack_silent: Option<Spanned<RawRate>>,
    pub calm_for: Option<Text>,
    pub number_limit: Option<Spanned<RawRate>>,
    pub source_limit: Option<Spanned<RawRate>>,
    /// `over_limit` or `all`.
    pub challenge: Option<Text>,
    pub challenge_prompt: Option<Text>,
    pub challenge_timeout: Option<Text>,
    pub tracked: Option<Spanned<i64>>,
}

/// `{ calls = 5, within = "10min" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRate {
    pub calls: Spanned<i64>,
    pub within: Text,
}
