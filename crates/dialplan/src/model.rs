//! The validated plan. Immutable once built: the shell shares it as `Arc<Dialplan>`, swaps the
//! whole `Arc` on reload, and every call keeps the plan it started with.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::ids::{DigitKey, Language, MenuId, PromptName, RouteId};
use crate::policy::Policies;
use crate::sip_uri::SipUri;
use crate::time::{LocalTime, TimeWindow, format_duration};

/// A validated dial plan. Built only by [`crate::validate`], so every route it names exists,
/// every fallback chain ends at the last-resort route, and every route has targets.
#[derive(Debug, Clone)]
pub struct Dialplan {
    pub(crate) centre: Centre,
    /// Directory of the file that declares `[centre]`; prompts are found relative to it.
    pub(crate) base_dir: PathBuf,
    /// Emergency numbers, digits only.
    pub(crate) numbers: BTreeMap<String, Entry>,
    /// Service URNs, lower case, without the `urn:service:` prefix (`sos`, `sos.fire`).
    pub(crate) services: BTreeMap<String, Entry>,
    pub(crate) menus: BTreeMap<MenuId, Menu>,
    /// Kept apart from `routes` so that a lookup can always fall back to it without a panic path.
    pub(crate) last_resort: RouteDefinition,
    /// Every route except the last resort.
    pub(crate) routes: BTreeMap<RouteId, RouteDefinition>,
    /// Thresholds of the call-class rules (`[classify]`, defaults when absent).
    pub(crate) classify: crate::call_class::ClassifyRules,
    /// `[policies]` (its defaults when the plan has none).
    pub(crate) policies: Policies,
    /// `[flood]` (its defaults when the plan has none).
    pub(crate) flood: crate::flood::FloodRules,
}

/// The centre the plan belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Centre {
    /// Said in replies to RFC 6881 test calls, and shown by the simulator.
    pub name: String,
    /// Prompt languages in the order callers hear them; never empty.
    pub languages: Vec<Language>,
    /// The centre's own call-takers: the end of every fallback chain.
    pub last_resort: RouteId,
    /// Prompt directory relative to the plan file; prompts are `<dir>/<language>/<name>.wav`.
    pub prompt_dir: PathBuf,
    /// Country calling code without `+` (`62`): `+62112` is then read as `112`.
    pub country_code: Option<String>,
}

/// Where an emergency call goes first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum Entry {
    Menu(MenuId),
    Route(RouteId),
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Menu(menu) => write!(f, "menu \"{menu}\""),
            Entry::Route(route) => write!(f, "route \"{route}\""),
        }
    }
}

/// An IVR menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Menu {
    pub id: MenuId,
    /// Played once when the caller enters the menu, before `prompt`; not on retries.
    pub greeting: Option<PromptName>,
    /// The menu itself; replayed on retries, `*` and language switches.
    pub prompt: PromptName,
    /// Played before the replay that follows an invalid choice.
    pub invalid_prompt: Option<PromptName>,
    /// Silence allowed after the prompts end before a retry.
    pub first_digit_timeout: Duration,
    /// Wait after a digit that could still grow into a longer key (`5` vs `55`).
    pub inter_digit_timeout: Duration,
    /// Replays after the first play. Every replay (no input, invalid choice, `*`) uses one.
    pub retries: u32,
    /// Of those, how many a silent caller gets. Lower it to reach a human sooner: a caller
    /// who says and presses nothing may be unable to.
    pub no_input_retries: u32,
    /// A caller who has pressed no key this long after the answer goes to `no_input` at once,
    /// even while the prompts still play: a caller who cannot speak reaches a person in time.
    /// A caller who pressed any key before then keeps the menu. Counted from the answer.
    pub offer_after: Option<Duration>,
    /// Whether a key press stops the prompt that is playing.
    pub barge_in: bool,
    /// Where a silent caller goes when the retries are used up.
    pub no_input: Exit,
    /// Where a caller goes whose last attempt was an invalid choice or `*`.
    pub invalid: Exit,
    pub options: BTreeMap<DigitKey, Choice>,
}

/// What a menu option does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Choice {
    /// Route the call. `silent` marks the "press 55 if you cannot speak" path: the call is routed
    /// as urgent and the call-taker is told the caller may not be able to talk.
    Route {
        route: RouteId,
        silent: bool,
    },
    Menu(MenuId),
    /// Play every prompt from now on in this language only, and replay the menu.
    Language(Language),
}

/// Where a menu sends a caller who did not choose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Exit {
    Route(RouteId),
    Menu(MenuId),
}

/// A route with all its time-of-day variants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDefinition {
    /// Used when no variant's window contains the local time.
    pub base: Route,
    /// Checked in plan order; the first whose window contains the local time wins.
    pub variants: Vec<RouteVariant>,
}

impl RouteDefinition {
    pub fn at(&self, local_time: LocalTime) -> &Route {
        self.variants
            .iter()
            .find(|variant| variant.window.contains(local_time))
            .map_or(&self.base, |variant| &variant.route)
    }
}

/// A route that applies in a time window, e.g. a night shift with other targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteVariant {
    pub window: TimeWindow,
    /// Complete: the base route with this variant's targets (and strategy) put in.
    pub route: Route,
}

/// What the bridging engine needs to reach an agency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub id: RouteId,
    /// Human name of the agency (`Polresta Samarinda`), for logs and the console.
    pub label: String,
    /// Never empty.
    pub targets: Vec<Target>,
    pub strategy: Strategy,
    /// Tried when every target failed (and the queue, if any, timed out). `None` only on the
    /// last-resort route.
    pub fallback: Option<RouteId>,
    pub queue: Option<Queue>,
    /// Played to the caller while the targets ring ("please hold, connecting you to …").
    pub connecting_prompt: Option<PromptName>,
    /// Name of the time-of-day variant in force, `None` for the base route.
    pub variant: Option<String>,
}

/// How the targets of a route are rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Strategy {
    /// One after another in plan order, each for its ring timeout.
    Sequential,
    /// All at once; the first to answer gets the call, each stops at its ring timeout.
    Parallel,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Sequential => "sequential",
            Strategy::Parallel => "parallel",
        })
    }
}

/// One agency endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub uri: SipUri,
    pub ring_timeout: Duration,
    pub transport: Transport,
    /// How the caller's location is passed on (RFC 6442).
    pub location: LocationConveyance,
    /// Whether the target is inside the trust domain. Outside it, caller privacy
    /// (`Privacy: id`, RFC 3325) is honoured and asserted identity is stripped.
    pub trust: TrustDomain,
    /// How the target's certificate is checked and ours presented; `Some` exactly when the
    /// transport is TLS.
    pub tls: Option<TargetTls>,
}

/// A TLS target's certificate checks and client certificate. Paths are resolved against the
/// plan file's directory; the shell reads them (at load and on every reload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetTls {
    /// PEM CA certificates the target's chain must end at (instead of the system's).
    pub ca_file: Option<PathBuf>,
    /// The SHA-256 of the target's own certificate (DER). Without `ca_file` the pin alone
    /// decides (a self-signed SBC certificate); with it, both must hold.
    pub pin: Option<CertPin>,
    /// Our certificate chain and key (PEM) for mutual TLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// The name the certificate must carry (and SNI); the URI's host when absent.
    pub server_name: Option<String>,
}

/// A SHA-256 certificate fingerprint, written as 64 hex digits (colons allowed), as
/// `openssl x509 -noout -fingerprint -sha256` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertPin(pub [u8; 32]);

impl std::str::FromStr for CertPin {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let text = text
            .strip_prefix("sha256:")
            .or_else(|| text.strip_prefix("SHA256:"))
            .or_else(|| text.strip_prefix("sha256 Fingerprint="))
            .unwrap_or(text);
        let hex: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
        if hex.len() != 64 {
            return Err("is not 64 hex digits (a SHA-256 fingerprint)");
        }
        let mut out = [0u8; 32];
        for (slot, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            let digit = |b: u8| {
                (b as char)
                    .to_digit(16)
                    .ok_or("has a character that is not hex")
            };
            let (Some(&high), Some(&low)) = (pair.first(), pair.get(1)) else {
                return Err("is not 64 hex digits (a SHA-256 fingerprint)");
            };
            *slot = u8::try_from(digit(high)? * 16 + digit(low)?).unwrap_or_default();
        }
        Ok(CertPin(out))
    }
}

impl fmt::Display for CertPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl Serialize for CertPin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, ring {}, location {}, {})",
            self.uri,
            self.transport,
            format_duration(self.ring_timeout),
            self.location,
            self.trust
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        })
    }
}

/// What location the B-leg INVITE carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LocationConveyance {
    /// The PIDF-LO in the body (`Geolocation: <cid:…>`).
    Value,
    /// Only a URI the agency dereferences itself.
    Reference,
    /// No location at all.
    Withheld,
}

impl fmt::Display for LocationConveyance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LocationConveyance::Value => "by value",
            LocationConveyance::Reference => "by reference",
            LocationConveyance::Withheld => "withheld",
        })
    }
}

/// Whether a target may see what a caller asked to keep private.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TrustDomain {
    Inside,
    Outside,
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrustDomain::Inside => "trusted",
            TrustDomain::Outside => "untrusted: privacy honoured",
        })
    }
}

/// Holding callers when every target is busy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Queue {
    /// How long a caller waits before the fallback route is tried. `None` on the last-resort
    /// route: there is nowhere further, so callers wait until a call-taker answers.
    pub max_wait: Option<Duration>,
    /// How often the announcement is repeated while waiting.
    pub announce_every: Duration,
    /// "All lines are busy, please stay on the line."
    pub busy_prompt: Option<PromptName>,
    /// "You are number" — followed by the number prompt for positions 1–9.
    pub position_prompt: Option<PromptName>,
    /// `number-` → `number-1` … `number-9`.
    pub number_prompt_prefix: Option<String>,
}

/// A prompt file resolved for one language.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PromptRef {
    pub name: PromptName,
    pub language: Language,
    /// `<plan dir>/<prompt_dir>/<language>/<name>.wav`: the path the shell opens. Relative
    /// when the plan's source path was relative.
    pub path: PathBuf,
}

impl fmt::Display for PromptRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

impl Dialplan {
    /// The thresholds the call-class rules use with this plan.
    pub fn classify_rules(&self) -> &crate::call_class::ClassifyRules {
        &self.classify
    }

    pub fn centre(&self) -> &Centre {
        &self.centre
    }

    /// What repeat callers, watched and blocked numbers meet.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// When the centre is under attack and who is challenged then (`[flood]`).
    pub fn flood(&self) -> &crate::flood::FloodRules {
        &self.flood
    }

    /// The last-resort route's name.
    pub fn last_resort(&self) -> &RouteId {
        &self.last_resort.base.id
    }

    /// The route to use at `local_time`, its time-of-day variant applied. An unknown name
    /// (e.g. one kept from an older plan) fails open to the last-resort route, never to nothing.
    pub fn route(&self, id: &RouteId, local_time: LocalTime) -> &Route {
        self.route_definition(id)
            .unwrap_or_else(|| {
                tracing::warn!(route = %id, "unknown route; using the last resort");
                &self.last_resort
            })
            .at(local_time)
    }

    pub fn route_definition(&self, id: &RouteId) -> Option<&RouteDefinition> {
        if id == self.last_resort() {
            Some(&self.last_resort)
        } else {
            self.routes.get(id)
        }
    }

    /// Every route, the last resort first.
    pub fn routes(&self) -> impl Iterator<Item = &RouteDefinition> {
        std::iter::once(&self.last_resort).chain(self.routes.values())
    }

    /// Every target of every route and variant (a target in several routes comes once each).
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.routes().flat_map(|def| {
            std::iter::once(&def.base)
                .chain(def.variants.iter().map(|v| &v.route))
                .flat_map(|r| r.targets.iter())
        })
    }

    pub fn menu(&self, id: &MenuId) -> Option<&Menu> {
        self.menus.get(id)
    }

    pub fn menus(&self) -> impl Iterator<Item = &Menu> {
        self.menus.values()
    }

    /// The order in which routes are tried for a call sent to `id`: `id` itself, its fallback,
    /// that route's fallback, …, ending at the last resort (always included, even for an
    /// unknown `id`). Fallbacks do not vary by time of day.
    pub fn fallback_chain(&self, id: &RouteId) -> Vec<RouteId> {
        let mut chain = Vec::new();
        let mut next = self.route_definition(id).map(|_| id.clone());
        while let Some(current) = next {
            if chain.contains(&current) {
                break; // cannot happen in a validated plan; never loop
            }
            next = self
                .route_definition(&current)
                .and_then(|definition| definition.base.fallback.clone());
            chain.push(current);
        }
        if chain.last() != Some(self.last_resort()) {
            chain.push(self.last_resort().clone());
        }
        chain
    }

    /// The file for `name` in `language`.
    pub fn prompt(&self, name: &PromptName, language: &Language) -> PromptRef {
        PromptRef {
            name: name.clone(),
            language: language.clone(),
            path: prompt_path(&self.base_dir, &self.centre.prompt_dir, language, name),
        }
    }

    /// `name` once per language, in the given order (what a bilingual caller hears).
    pub fn prompts(&self, name: &PromptName, languages: &[Language]) -> Vec<PromptRef> {
        languages
            .iter()
            .map(|language| self.prompt(name, language))
            .collect()
    }

    /// What a caller waiting at `position` (1 = next) in `route`'s queue hears: the busy
    /// prompt, then "you are number" and the number for positions 1–9, per language. Past 9
    /// the number is left out rather than read wrongly.
    pub fn queue_announcement(
        &self,
        route: &Route,
        position: u32,
        languages: &[Language],
    ) -> Vec<PromptRef> {
        let Some(queue) = &route.queue else {
            return Vec::new();
        };
        let number = queue
            .number_prompt_prefix
            .as_ref()
            .filter(|_| (1..=9).contains(&position))
            .map(|prefix| PromptName::new(format!("{prefix}{position}")));
        let mut prompts = Vec::new();
        for language in languages {
            if let Some(busy) = &queue.busy_prompt {
                prompts.push(self.prompt(busy, language));
            }
            if let (Some(intro), Some(number)) = (&queue.position_prompt, &number) {
                prompts.push(self.prompt(intro, language));
                prompts.push(self.prompt(number, language));
            }
        }
        prompts
    }
}

pub(crate) fn prompt_path(
    base_dir: &Path,
    prompt_dir: &Path,
    language: &Language,
    name: &PromptName,
) -> PathBuf {
    base_dir
        .join(prompt_dir)
        .join(language.as_str())
        .join(format!("{name}.wav"))
}
