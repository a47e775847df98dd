//! From TOML text to a [`Dialplan`], reporting every mistake at once. The plan is only built
//! when there are none, so a running gateway never holds a half-checked plan.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::diagnostic::{Diagnostic, Problem, Source, SourceLocation, ValidationErrors};
use crate::ids::{DigitKey, Language, MenuId, PromptName, RouteId, is_dtmf};
use crate::model::{
    Centre, CertPin, Choice, Dialplan, Entry, Exit, LocationConveyance, Menu, Queue, Route,
    RouteDefinition, RouteVariant, Strategy, Target, TargetTls, Transport, TrustDomain,
    prompt_path,
};
use crate::raw::{
    RawCentre, RawEmergency, RawFile, RawGoto, RawMenu, RawQueue, RawRoute, RawTarget, Text,
};
use crate::sip_uri::SipUri;
use crate::time::{ClockTime, DaySet, TimeWindow, parse_duration};

mod classify_rules;
mod flood;
mod policies;

/// Defaults for keys a plan may leave out. Documented in `docs/dialplan.md`.
mod defaults {
    use std::time::Duration;

    pub const PROMPT_DIR: &str = "prompts";
    pub const FIRST_DIGIT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const INTER_DIGIT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const RETRIES: u32 = 2;
    pub const RING_TIMEOUT: Duration = Duration::from_secs(20);
    pub const QUEUE_MAX_WAIT: Duration = Duration::from_secs(60);
    pub const QUEUE_ANNOUNCE_EVERY: Duration = Duration::from_secs(30);
}

/// Hints too long to sit inside the code that reports them.
mod hint {
    pub const NUMBER_FORMAT: &str = "write the number as dialled, digits only (\"112\"); \
        separators and the +country prefix are removed when calls are classified";
    pub const SIP_URI_FORMAT: &str =
        "write the agency's address as sip:user@host:port, e.g. \"sip:polisi@10.0.0.5:5060\"";
    pub const SERVICE_URN_FORMAT: &str =
        "use urn:service:sos or a sub-service such as urn:service:sos.fire (RFC 5031)";
    pub const LANGUAGE_TAG_FORMAT: &str = "use a lower-case language tag such as \"id\" or \"en\"; \
        it is also the prompt sub-directory";
    pub const LAST_RESORT_WAITS: &str =
        "remove max_wait; callers on the last-resort route wait until a call-taker answers";
    pub const LAST_RESORT_ENDS_CHAINS: &str =
        "remove `fallback`; callers wait in the last-resort queue until a call-taker answers";
    pub const RECORD_PROMPT: &str = "record the prompt (8 kHz mono 16-bit WAV) in every language, \
        or run scripts/make-prompts.sh for the default prompts";
    pub const PROMPT_NAME_FORMAT: &str = "name the file without directory or extension: \
        \"main-menu\" plays <prompt_dir>/<language>/main-menu.wav";
    pub const LIST_WHAT_IS_DIALLED: &str =
        "list what callers dial, e.g. numbers = [\"112\"], urns = [\"urn:service:sos\"]";
    pub const EXIT_FORMAT: &str =
        "e.g. { route = \"calltakers\" }; leave it out to send the caller to the last-resort route";
    pub const TLS_TARGET: &str = "reach the target over TLS with a sips: URI (or transport = \"tls\") \
        and give tls_ca and/or tls_pin, and tls_cert with tls_key for mutual TLS";
    pub const TLS_PIN: &str = "write the SHA-256 of the target's certificate as \
        `openssl x509 -in cert.pem -noout -fingerprint -sha256` prints it";
    pub const ADD_TARGETS: &str = "add at least one [[routes.<name>.targets]] with a uri; \
        a route is only useful if a human can answer it";
}

/// Where a prompt is optional (the policies' and the flood's), this value means no prompt
/// rather than a file "none.wav".
const NO_PROMPT: &str = "none";

/// Less than this after the answer and a caller cannot hear the first option before being
/// handed on: `offer_after` would take the menu from everyone.
const MIN_OFFER_AFTER: Duration = Duration::from_secs(5);

/// More replays than this keep a frightened caller in a menu instead of with a human.
const MAX_RETRIES: u32 = 5;

/// Checks `sources` (a main plan and any number of per-agency files, merged) and builds the
/// plan. `prompt_exists` is asked about every prompt file the plan can play, with the path the
/// shell will later open (`<plan dir>/<prompt_dir>/<language>/<name>.wav`).
pub fn validate(
    sources: &[Source],
    prompt_exists: &dyn Fn(&Path) -> bool,
) -> Result<Dialplan, ValidationErrors> {
    let mut validator = Validator {
        sources,
        prompt_exists,
        diagnostics: Vec::new(),
        prompt_context: None,
    };
    let plan = validator.run();
    let mut diagnostics = validator.diagnostics;
    match plan {
        Some(plan) if diagnostics.is_empty() => Ok(plan),
        _ => {
            if diagnostics.is_empty() {
                // Not reachable: every path that drops a piece of the plan reports why.
                diagnostics.push((0, 0, diagnostic(None, Problem::MissingCentre, None)));
            }
            diagnostics.sort_by_key(|(file, line, _)| (*file, *line));
            Err(ValidationErrors {
                diagnostics: diagnostics.into_iter().map(|(_, _, d)| d).collect(),
            })
        }
    }
}

fn diagnostic(
    location: Option<SourceLocation>,
    problem: Problem,
    hint: Option<String>,
) -> Diagnostic {
    Diagnostic {
        location,
        problem,
        hint,
    }
}

/// Which source file a piece of raw plan came from.
type FileIndex = usize;

struct PromptContext {
    base_dir: PathBuf,
    prompt_dir: PathBuf,
    languages: Vec<Language>,
}

struct Validator<'a> {
    sources: &'a [Source],
    prompt_exists: &'a dyn Fn(&Path) -> bool,
    /// (file index, line, diagnostic) so the report can be sorted in file order.
    diagnostics: Vec<(FileIndex, u32, Diagnostic)>,
    /// Known once `[centre]` is read; without it prompt files cannot be located.
    prompt_context: Option<PromptContext>,
}

/// The raw pieces of all files, each remembering where it came from.
#[derive(Default)]
struct Merged {
    centre: Option<(FileIndex, Spanned<RawCentre>)>,
    entries: Vec<(FileIndex, Spanned<RawEmergency>)>,
    menus: BTreeMap<String, (FileIndex, Text, RawMenu)>,
    routes: BTreeMap<String, (FileIndex, Text, RawRoute)>,
    classify: Option<(FileIndex, Spanned<crate::raw::RawClassify>)>,
    policies: Option<(FileIndex, Spanned<crate::raw::RawPolicies>)>,
    flood: Option<(FileIndex, Spanned<crate::raw::RawFlood>)>,
}

/// Names that exist in the merged plan, for resolving references and for hints.
struct Known {
    routes: BTreeSet<String>,
    menus: BTreeSet<String>,
    languages: Vec<Language>,
    last_resort: Option<String>,
}

impl Validator<'_> {
    fn location(&self, file: FileIndex, span: Range<usize>) -> SourceLocation {
        let (path, line) = match self.sources.get(file) {
            Some(source) => (source.path.clone(), line_of(&source.text, span.start)),
            None => (PathBuf::new(), 0),
        };
        SourceLocation { file: path, line }
    }

    fn report(
        &mut self,
        file: FileIndex,
        span: Range<usize>,
        problem: Problem,
        hint: impl Into<String>,
    ) {
        let location = self.location(file, span);
        let line = location.line;
        let hint = Some(hint.into());
        self.diagnostics
            .push((file, line, diagnostic(Some(location), problem, hint)));
    }

    fn report_whole_plan(&mut self, problem: Problem, hint: impl Into<String>) {
        let hint = Some(hint.into());
        self.diagnostics
            .push((usize::MAX, 0, diagnostic(None, problem, hint)));
    }

    fn run(&mut self) -> Option<Dialplan> {
        if self.sources.is_empty() {
            self.report_whole_plan(
                Problem::NoSources,
                "pass the plan file, e.g. dialplans/default.toml",
            );
            return None;
        }
        let merged = self.parse_and_merge();
        if !self.diagnostics.is_empty() {
            // A file that does not parse leaves holes (its routes, menus, maybe [centre]); checking
            // references across the holes would only add noise. Syntax errors of every file are
            // reported; the rest once they are fixed.
            return None;
        }
        let known = Known {
            routes: merged.routes.keys().cloned().collect(),
            menus: merged.menus.keys().cloned().collect(),
            languages: Vec::new(),
            last_resort: None,
        };
        let (centre, known) = self.check_centre(&merged, known);

        let mut routes = BTreeMap::new();
        for (name, (file, key, raw)) in &merged.routes {
            if let Some(definition) = self.check_route(*file, name, key, raw, &known) {
                routes.insert(RouteId::new(name.as_str()), definition);
            }
        }
        let mut menus = BTreeMap::new();
        for (name, (file, _, raw)) in &merged.menus {
            if let Some(menu) = self.check_menu(*file, name, raw, &known) {
                menus.insert(MenuId::new(name.as_str()), menu);
            }
        }
        let (numbers, services) = self.check_entries(&merged, &known);
        self.check_fallback_cycles(&merged, &known);
        self.check_menu_loops(&merged);
        let classify = self.check_classify(merged.classify.as_ref());
        let policies = self.check_policies(&merged);
        let flood = self.check_flood(&merged);

        let (base_dir, centre) = centre?;
        let last_resort = routes.remove(&centre.last_resort)?;
        Some(Dialplan {
            centre,
            base_dir,
            numbers,
            services,
            menus,
            last_resort,
            routes,
            classify: classify?,
            policies: policies?,
            flood: flood?,
        })
    }

    fn parse_and_merge(&mut self) -> Merged {
        let mut merged = Merged::default();
        for (file, source) in self.sources.iter().enumerate() {
            let raw: RawFile = match toml::from_str(&source.text) {
                Ok(raw) => raw,
                Err(error) => {
                    let span = error.span().unwrap_or(0..0);
                    self.report(
                        file,
                        span,
                        Problem::Syntax {
                            message: error.message().trim().to_owned(),
                        },
                        "see docs/dialplan.md for every key the format knows",
                    );
                    continue;
                }
            };
            if let Some(centre) = raw.centre {
                match &merged.centre {
                    Some((first_file, first)) => {
                        let first = self.location(*first_file, first.span());
                        self.report(
                            file,
                            centre.span(),
                            Problem::DuplicateCentre { first },
                            "keep [centre] in the main plan file only",
                        );
                    }
                    None => merged.centre = Some((file, centre)),
                }
            }
            merged
                .entries
                .extend(raw.emergency.into_iter().map(|entry| (file, entry)));
            self.merge_table(&mut merged.policies, "[policies]", file, raw.policies);
            self.merge_table(&mut merged.flood, "[flood]", file, raw.flood);
            for (key, menu) in raw.menus {
                self.merge_definition(&mut merged.menus, "menu", file, key, menu);
            }
            for (key, route) in raw.routes {
                self.merge_definition(&mut merged.routes, "route", file, key, route);
            }
            self.merge_table(&mut merged.classify, "[classify]", file, raw.classify);
        }
        merged
    }

    /// A table that may appear in one plan file only: the first is kept, a second reported.
    fn merge_table<T>(
        &mut self,
        into: &mut Option<(FileIndex, Spanned<T>)>,
        name: &str,
        file: FileIndex,
        table: Option<Spanned<T>>,
    ) {
        let Some(table) = table else {
            return;
        };
        match into {
            Some((first_file, first)) => {
                let first = self.location(*first_file, first.span());
                self.report(
                    file,
                    table.span(),
                    Problem::DuplicateDefinition {
                        what: "table",
                        name: name.into(),
                        first,
                    },
                    format!("keep {name} in one plan file only"),
                );
            }
            None => *into = Some((file, table)),
        }
    }

    fn merge_definition<T>(
        &mut self,
        into: &mut BTreeMap<String, (FileIndex, Text, T)>,
        what: &'static str,
        file: FileIndex,
        key: Text,
        value: T,
    ) {
        if let Some((first_file, first_key, _)) = into.get(key.get_ref()) {
            let first = self.location(*first_file, first_key.span());
            self.report(
                file,
                key.span(),
                Problem::DuplicateDefinition {
                    what,
                    name: key.get_ref().clone(),
                    first,
                },
                format!(
                    "rename one of them, or delete the copy; \
                     each {what} is defined once across all plan files"
                ),
            );
        } else {
            into.insert(key.get_ref().clone(), (file, key, value));
        }
    }

    fn check_centre(
        &mut self,
        merged: &Merged,
        mut known: Known,
    ) -> (Option<(PathBuf, Centre)>, Known) {
        let Some((file, spanned)) = &merged.centre else {
            self.report_whole_plan(
                Problem::MissingCentre,
                "add [centre] with name, languages and last_resort to the main plan file",
            );
            return (None, known);
        };
        let file = *file;
        let raw = spanned.get_ref();
        let mut ok = true;

        let name = raw.name.get_ref().trim();
        if name.is_empty() {
            ok = false;
            self.report(
                file,
                raw.name.span(),
                Problem::Empty {
                    place: "[centre] name".into(),
                },
                "test callers hear this name; write the centre's name",
            );
        }

        let mut languages: Vec<Language> = Vec::new();
        for tag in raw.languages.get_ref() {
            if !Language::is_valid(tag.get_ref()) {
                ok = false;
                self.report(
                    file,
                    tag.span(),
                    Problem::BadLanguage {
                        tag: tag.get_ref().clone(),
                    },
                    hint::LANGUAGE_TAG_FORMAT,
                );
            } else if languages.iter().any(|l| l.as_str() == tag.get_ref()) {
                ok = false;
                self.report(
                    file,
                    tag.span(),
                    Problem::BadValue {
                        place: "[centre] languages".into(),
                        value: tag.get_ref().clone(),
                        allowed: "languages listed once each",
                    },
                    "remove the repeated language; it would make callers hear every prompt twice",
                );
            } else {
                languages.push(Language::new(tag.get_ref().as_str()));
            }
        }
        if raw.languages.get_ref().is_empty() {
            ok = false;
            self.report(
                file,
                raw.languages.span(),
                Problem::Empty {
                    place: "[centre] languages".into(),
                },
                "list the prompt languages in the order callers hear them, e.g. [\"id\", \"en\"]",
            );
        }

        let last_resort = raw.last_resort.get_ref();
        if !known.routes.contains(last_resort) {
            ok = false;
            let hint = unknown_name_hint(last_resort, &known.routes, "routes");
            self.report(
                file,
                raw.last_resort.span(),
                Problem::UnknownRoute {
                    place: "[centre] last_resort".into(),
                    route: last_resort.clone(),
                },
                hint,
            );
        }

        let prompt_dir = raw.prompt_dir.as_ref().map_or_else(
            || PathBuf::from(defaults::PROMPT_DIR),
            |dir| PathBuf::from(dir.get_ref()),
        );
        if raw
            .prompt_dir
            .as_ref()
            .is_some_and(|dir| dir.get_ref().trim().is_empty())
        {
            ok = false;
            if let Some(dir) = &raw.prompt_dir {
                self.report(
                    file,
                    dir.span(),
                    Problem::Empty {
                        place: "[centre] prompt_dir".into(),
                    },
                    format!("leave prompt_dir out to use \"{}\"", defaults::PROMPT_DIR),
                );
            }
        }

        let country_code = raw.country_code.as_ref().and_then(|code| {
            let digits = code.get_ref();
            if (1..=3).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
                Some(digits.clone())
            } else {
                ok = false;
                self.report(
                    file,
                    code.span(),
                    Problem::BadValue {
                        place: "[centre] country_code".into(),
                        value: digits.clone(),
                        allowed: "1–3 digits",
                    },
                    "write the country calling code without '+', e.g. \"62\"",
                );
                None
            }
        });

        let base_dir = self.base_dir(file);
        self.prompt_context = Some(PromptContext {
            base_dir: base_dir.clone(),
            prompt_dir: prompt_dir.clone(),
            languages: languages.clone(),
        });
        known.languages = languages.clone();
        known.last_resort = Some(last_resort.clone());

        let centre = ok.then(|| {
            (
                base_dir,
                Centre {
                    name: name.to_owned(),
                    languages,
                    last_resort: RouteId::new(last_resort.as_str()),
                    prompt_dir,
                    country_code,
                },
            )
        });
        (centre, known)
    }

    // ----- prompts and small values -----

    /// An optional prompt (the policies' and the flood's): absent or [`NO_PROMPT`] is no prompt,
    /// `Some(None)`; a bad name or missing files are reported and give `None`.
    fn check_optional_prompt(
        &mut self,
        file: FileIndex,
        place: &str,
        text: Option<&Text>,
    ) -> Option<Option<PromptName>> {
        match text {
            Some(text) if text.get_ref() != NO_PROMPT => {
                self.check_prompt(file, place, text).map(Some)
            }
            _ => Some(None),
        }
    }

    fn check_prompt(&mut self, file: FileIndex, place: &str, text: &Text) -> Option<PromptName> {
        let name = text.get_ref();
        if !PromptName::is_valid(name) {
            self.report(
                file,
                text.span(),
                Problem::BadPromptName {
                    place: place.to_owned(),
                    name: name.clone(),
                },
                hint::PROMPT_NAME_FORMAT,
            );
            return None;
        }
        let name = PromptName::new(name.as_str());
        self.check_prompt_files(file, place, text.span(), &name);
        Some(name)
    }

    fn check_prompt_files(
        &mut self,
        file: FileIndex,
        place: &str,
        span: Range<usize>,
        name: &PromptName,
    ) {
        let Some(context) = &self.prompt_context else {
            return;
        };
        let missing: Vec<PathBuf> = context
            .languages
            .iter()
            .map(|language| prompt_path(&context.base_dir, &context.prompt_dir, language, name))
            .filter(|path| !(self.prompt_exists)(path))
            .collect();
        for path in missing {
            self.report(
                file,
                span.clone(),
                Problem::MissingPrompt {
                    place: place.to_owned(),
                    path,
                },
                hint::RECORD_PROMPT,
            );
        }
    }

    fn check_timeout(
        &mut self,
        file: FileIndex,
        place: &str,
        text: Option<&Text>,
        default: Duration,
    ) -> Option<Duration> {
        let Some(text) = text else {
            return Some(default);
        };
        match parse_duration(text.get_ref()) {
            Ok(duration) if duration.is_zero() => {
                self.report(
                    file,
                    text.span(),
                    Problem::ZeroTimeout {
                        place: place.to_owned(),
                    },
                    format!(
                        "a zero wait gives nobody time to act; the default is \"{}\"",
                        crate::time::format_duration(default)
                    ),
                );
                None
            }
            Ok(duration) => Some(duration),
            Err(reason) => {
                self.report(
                    file,
                    text.span(),
                    Problem::BadDuration {
                        place: place.to_owned(),
                        reason,
                    },
                    "durations are strings with a unit: \"1500ms\", \"5s\", \"2min\"",
                );
                None
            }
        }
    }

    fn check_route_name(
        &mut self,
        file: FileIndex,
        place: &str,
        text: &Text,
        known: &Known,
    ) -> Option<RouteId> {
        if known.routes.contains(text.get_ref()) {
            return Some(RouteId::new(text.get_ref().as_str()));
        }
        let hint = unknown_name_hint(text.get_ref(), &known.routes, "routes");
        self.report(
            file,
            text.span(),
            Problem::UnknownRoute {
                place: place.to_owned(),
                route: text.get_ref().clone(),
            },
            hint,
        );
        None
    }

    fn check_menu_name(
        &mut self,
        file: FileIndex,
        place: &str,
        text: &Text,
        known: &Known,
    ) -> Option<MenuId> {
        if known.menus.contains(text.get_ref()) {
            return Some(MenuId::new(text.get_ref().as_str()));
        }
        let hint = unknown_name_hint(text.get_ref(), &known.menus, "menus");
        self.report(
            file,
            text.span(),
            Problem::UnknownMenu {
                place: place.to_owned(),
                menu: text.get_ref().clone(),
            },
            hint,
        );
        None
    }

    /// The directory of a plan file: relative paths in it start there.
    fn base_dir(&self, file: FileIndex) -> PathBuf {
        self.sources
            .get(file)
            .and_then(|source| source.path.parent())
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    fn check_keyword<T: Copy>(
        &mut self,
        file: FileIndex,
        place: &str,
        text: Option<&Text>,
        default: T,
        table: &[(&str, T)],
        allowed: &'static str,
    ) -> Option<T> {
        let Some(text) = text else {
            return Some(default);
        };
        let value = table
            .iter()
            .find(|(word, _)| *word == text.get_ref().as_str())
            .map(|(_, value)| *value);
        if value.is_none() {
            self.report(
                file,
                text.span(),
                Problem::BadValue {
                    place: place.to_owned(),
                    value: text.get_ref().clone(),
                    allowed,
                },
                format!("write one of {allowed}, in lower case"),
            );
        }
        value
    }

    // ----- routes -----

    fn check_route(
        &mut self,
        file: FileIndex,
        name: &str,
        key: &Text,
        raw: &RawRoute,
        known: &Known,
    ) -> Option<RouteDefinition> {
        let place = format!("route \"{name}\"");
        let is_last_resort = known.last_resort.as_deref() == Some(name);

        let strategy =
            self.check_strategy(file, &place, raw.strategy.as_ref(), Strategy::Sequential);
        let targets = self.check_targets(file, &place, key.span(), &raw.targets);

        let fallback = match (&raw.fallback, is_last_resort) {
            (Some(fallback), true) => {
                self.report(
                    file,
                    fallback.span(),
                    Problem::LastResortHasFallback {
                        route: RouteId::new(name),
                    },
                    hint::LAST_RESORT_ENDS_CHAINS,
                );
                None
            }
            (Some(fallback), false) => self
                .check_route_name(file, &format!("{place} fallback"), fallback, known)
                .map(Some),
            (None, true) => Some(None),
            (None, false) => {
                let hint = match &known.last_resort {
                    Some(last) => format!(
                        "add `fallback = \"{last}\"` (the centre's call-takers) \
                         or another route that ends there"
                    ),
                    None => "add `fallback = \"<route>\"`; \
                             every chain must end at the centre's call-takers"
                        .into(),
                };
                self.report(
                    file,
                    key.span(),
                    Problem::NoFallback {
                        route: RouteId::new(name),
                    },
                    hint,
                );
                None
            }
        };

        let connecting_prompt = match &raw.connecting_prompt {
            Some(text) => self
                .check_prompt(file, &format!("{place} connecting_prompt"), text)
                .map(Some),
            None => Some(None),
        };
        let queue = match &raw.queue {
            Some(queue) => self
                .check_queue(file, &place, queue, is_last_resort)
                .map(Some),
            None => Some(None),
        };

        let base = Route {
            id: RouteId::new(name),
            label: raw
                .name
                .as_ref()
                .map_or_else(|| name.to_owned(), |label| label.get_ref().clone()),
            targets: targets?,
            strategy: strategy?,
            fallback: fallback?,
            queue: queue?,
            connecting_prompt: connecting_prompt?,
            variant: None,
        };

        let mut variants = Vec::new();
        let mut variant_names = BTreeSet::new();
        for variant in &raw.variants {
            let variant_name = variant.get_ref().name.get_ref();
            if !variant_names.insert(variant_name.clone()) {
                self.report(
                    file,
                    variant.get_ref().name.span(),
                    Problem::BadValue {
                        place: format!("{place} variant name"),
                        value: variant_name.clone(),
                        allowed: "names used once per route",
                    },
                    "give each variant its own name; the call log records which one applied",
                );
            }
            if let Some(checked) = self.check_variant(file, &place, variant, &base) {
                variants.push(checked);
            }
        }
        (variants.len() == raw.variants.len()).then_some(RouteDefinition { base, variants })
    }

    fn check_strategy(
        &mut self,
        file: FileIndex,
        place: &str,
        text: Option<&Text>,
        default: Strategy,
    ) -> Option<Strategy> {
        self.check_keyword(
            file,
            &format!("{place} strategy"),
            text,
            default,
            &[
                ("sequential", Strategy::Sequential),
                ("parallel", Strategy::Parallel),
            ],
            "\"sequential\", \"parallel\"",
        )
    }

    fn check_targets(
        &mut self,
        file: FileIndex,
        place: &str,
        span: Range<usize>,
        raw: &[Spanned<RawTarget>],
    ) -> Option<Vec<Target>> {
        if raw.is_empty() {
            self.report(
                file,
                span,
                Problem::NoTargets {
                    place: place.to_owned(),
                },
                hint::ADD_TARGETS,
            );
            return None;
        }
        let checked: Vec<Option<Target>> = raw
            .iter()
            .enumerate()
            .map(|(index, target)| {
                self.check_target(
                    file,
                    &format!("{place} target {}", index + 1),
                    target.get_ref(),
                )
            })
            .collect();
        checked.into_iter().collect()
    }

    fn check_target(&mut self, file: FileIndex, place: &str, raw: &RawTarget) -> Option<Target> {
        let uri = match raw.uri.get_ref().parse::<SipUri>() {
            Ok(uri) => Some(uri),
            Err(reason) => {
                self.report(
                    file,
                    raw.uri.span(),
                    Problem::BadSipUri {
                        place: place.to_owned(),
                        uri: raw.uri.get_ref().clone(),
                        reason,
                    },
                    hint::SIP_URI_FORMAT,
                );
                None
            }
        };
        let ring_timeout = self.check_timeout(
            file,
            &format!("{place} ring_timeout"),
            raw.ring_timeout.as_ref(),
            defaults::RING_TIMEOUT,
        );
        // sips: and ;transport=tls mean TLS unless the key says otherwise (and it may not).
        let implied = match &uri {
            Some(u) if u.is_sips() || u.transport_param() == Some("tls") => Transport::Tls,
            _ => Transport::Udp,
        };
        let transport = self.check_keyword(
            file,
            &format!("{place} transport"),
            raw.transport.as_ref(),
            implied,
            &[
                ("udp", Transport::Udp),
                ("tcp", Transport::Tcp),
                ("tls", Transport::Tls),
            ],
            "\"udp\", \"tcp\", \"tls\"",
        );
        let tls = self.check_target_tls(file, place, raw, transport, implied);
        let location = self.check_keyword(
            file,
            &format!("{place} location"),
            raw.location.as_ref(),
            LocationConveyance::Value,
            &[
                ("value", LocationConveyance::Value),
                ("reference", LocationConveyance::Reference),
                ("none", LocationConveyance::Withheld),
            ],
            "\"value\", \"reference\", \"none\"",
        );
        let trust = if raw.trusted.unwrap_or(false) {
            TrustDomain::Inside
        } else {
            TrustDomain::Outside
        };
        Some(Target {
            uri: uri?,
            ring_timeout: ring_timeout?,
            transport: transport?,
            location: location?,
            trust,
            tls: tls?,
        })
    }

    /// A TLS target's certificate settings; on any other transport they are a mistake.
    fn check_target_tls(
        &mut self,
        file: FileIndex,
        place: &str,
        raw: &RawTarget,
        transport: Option<Transport>,
        implied: Transport,
    ) -> Option<Option<TargetTls>> {
        let keys = [
            ("tls_ca", &raw.tls_ca),
            ("tls_pin", &raw.tls_pin),
            ("tls_cert", &raw.tls_cert),
            ("tls_key", &raw.tls_key),
            ("tls_server_name", &raw.tls_server_name),
        ];
        let transport = transport?;
        if transport != Transport::Tls {
            if implied == Transport::Tls {
                let text = raw.transport.as_ref()?;
                let problem = Problem::BadChoice {
                    place: format!("{place} transport"),
                    reason: "is not \"tls\", but the URI is sips: or has ;transport=tls",
                };
                self.report(file, text.span(), problem, hint::TLS_TARGET);
                return None;
            }
            let mut ok = true;
            for (key, text) in keys {
                if let Some(text) = text {
                    let problem = Problem::BadChoice {
                        place: format!("{place} {key}"),
                        reason: "is set on a target that is not reached over TLS",
                    };
                    self.report(file, text.span(), problem, hint::TLS_TARGET);
                    ok = false;
                }
            }
            return ok.then_some(None);
        }
        let base_dir = self.base_dir(file);
        let path = |text: &Option<Text>| text.as_ref().map(|t| base_dir.join(t.get_ref()));
        let pin = match &raw.tls_pin {
            None => Some(None),
            Some(text) => match text.get_ref().parse::<CertPin>() {
                Ok(pin) => Some(Some(pin)),
                Err(reason) => {
                    let problem = Problem::BadChoice {
                        place: format!("{place} tls_pin"),
                        reason,
                    };
                    self.report(file, text.span(), problem, hint::TLS_PIN);
                    None
                }
            },
        };
        let pair_ok = match (&raw.tls_cert, &raw.tls_key) {
            (Some(_), Some(_)) | (None, None) => true,
            (Some(text), None) | (None, Some(text)) => {
                let problem = Problem::BadChoice {
                    place: format!("{place} tls_cert/tls_key"),
                    reason: "needs both: the client certificate and its private key",
                };
                self.report(file, text.span(), problem, hint::TLS_TARGET);
                false
            }
        };
        let tls = TargetTls {
            ca_file: path(&raw.tls_ca),
            pin: pin?,
            client_cert: path(&raw.tls_cert),
            client_key: path(&raw.tls_key),
            server_name: raw.tls_server_name.as_ref().map(|t| t.get_ref().clone()),
        };
        pair_ok.then_some(Some(tls))
    }

    fn check_queue(
        &mut self,
        file: FileIndex,
        place: &str,
        spanned: &Spanned<RawQueue>,
        is_last_resort: bool,
    ) -> Option<Queue> {
        let raw = spanned.get_ref();
        let place = format!("{place} queue");
        let max_wait = match (&raw.max_wait, is_last_resort) {
            (Some(text), true) => {
                let problem = Problem::BadChoice {
                    place: format!("{place} max_wait"),
                    reason: "is set on the last-resort route, \
                             which has nowhere further to send the caller",
                };
                self.report(file, text.span(), problem, hint::LAST_RESORT_WAITS);
                None
            }
            (None, true) => Some(None),
            (text, false) => self
                .check_timeout(
                    file,
                    &format!("{place} max_wait"),
                    text.as_ref(),
                    defaults::QUEUE_MAX_WAIT,
                )
                .map(Some),
        };
        let announce_every = self.check_timeout(
            file,
            &format!("{place} announce_every"),
            raw.announce_every.as_ref(),
            defaults::QUEUE_ANNOUNCE_EVERY,
        );
        let busy_prompt = match &raw.busy_prompt {
            Some(text) => self
                .check_prompt(file, &format!("{place} busy_prompt"), text)
                .map(Some),
            None => Some(None),
        };
        let position_prompt = match &raw.position_prompt {
            Some(text) => self
                .check_prompt(file, &format!("{place} position_prompt"), text)
                .map(Some),
            None => Some(None),
        };
        let number_prompt_prefix = match &raw.number_prompt_prefix {
            None => Some(None),
            Some(prefix) => {
                let first = format!("{}1", prefix.get_ref());
                if PromptName::is_valid(&first) {
                    for position in 1..=9 {
                        let name = PromptName::new(format!("{}{position}", prefix.get_ref()));
                        self.check_prompt_files(
                            file,
                            &format!("{place} number_prompt_prefix"),
                            prefix.span(),
                            &name,
                        );
                    }
                    Some(Some(prefix.get_ref().clone()))
                } else {
                    self.report(
                        file,
                        prefix.span(),
                        Problem::BadPromptName {
                            place: format!("{place} number_prompt_prefix"),
                            name: prefix.get_ref().clone(),
                        },
                        "use a prefix such as \"number-\": the prompts are number-1 … number-9",
                    );
                    None
                }
            }
        };
        if raw.position_prompt.is_some() != raw.number_prompt_prefix.is_some() {
            self.report(
                file,
                spanned.span(),
                Problem::BadChoice {
                    place: place.clone(),
                    reason: "needs both position_prompt and number_prompt_prefix, or neither",
                },
                "\"you are number\" is only said together with the number",
            );
            return None;
        }
        Some(Queue {
            max_wait: max_wait?,
            announce_every: announce_every?,
            busy_prompt: busy_prompt?,
            position_prompt: position_prompt?,
            number_prompt_prefix: number_prompt_prefix?,
        })
    }

    fn check_variant(
        &mut self,
        file: FileIndex,
        route_place: &str,
        spanned: &Spanned<crate::raw::RawVariant>,
        base: &Route,
    ) -> Option<RouteVariant> {
        let raw = spanned.get_ref();
        let name = raw.name.get_ref();
        let place = format!("{route_place} variant \"{name}\"");
        let mut ok = true;

        let mut days = DaySet::default();
        match &raw.days {
            None => days = DaySet::EVERY_DAY,
            Some(items) => {
                for item in items {
                    if let Err(reason) = days.insert_item(&item.get_ref().to_ascii_lowercase()) {
                        ok = false;
                        self.report(
                            file,
                            item.span(),
                            Problem::BadTime {
                                place: format!("{place} days"),
                                reason,
                            },
                            "list days as \"mon\" … \"sun\" or ranges such as \"mon-fri\"",
                        );
                    }
                }
                if items.is_empty() {
                    ok = false;
                    self.report(
                        file,
                        raw.name.span(),
                        Problem::Empty {
                            place: format!("{place} days"),
                        },
                        "leave `days` out for every day",
                    );
                }
            }
        }

        let from = raw
            .from
            .as_ref()
            .map(|text| (text, text.get_ref().parse::<ClockTime>()));
        let to = raw
            .to
            .as_ref()
            .map(|text| (text, text.get_ref().parse::<ClockTime>()));
        for (key, parsed) in [("from", &from), ("to", &to)] {
            if let Some((text, Err(reason))) = parsed {
                ok = false;
                self.report(
                    file,
                    text.span(),
                    Problem::BadTime {
                        place: format!("{place} {key}"),
                        reason: reason.clone(),
                    },
                    "write local time as \"HH:MM\", 24-hour",
                );
            }
        }
        let hours = match (from, to) {
            (None, None) => None,
            (Some((_, Ok(from))), Some((text, Ok(to)))) => {
                if from == to {
                    ok = false;
                    self.report(
                        file,
                        text.span(),
                        Problem::EmptyTimeWindow {
                            place: place.clone(),
                        },
                        "leave `from` and `to` out for the whole day",
                    );
                }
                Some((from, to))
            }
            (Some((text, _)), None) => {
                ok = false;
                self.report(
                    file,
                    text.span(),
                    Problem::HalfTimeWindow {
                        place: place.clone(),
                        given: "from",
                        missing: "to",
                    },
                    "give both `from` and `to` (\"22:00\" to \"06:00\" wraps past midnight)",
                );
                None
            }
            (None, Some((text, _))) => {
                ok = false;
                self.report(
                    file,
                    text.span(),
                    Problem::HalfTimeWindow {
                        place: place.clone(),
                        given: "to",
                        missing: "from",
                    },
                    "give both `from` and `to` (\"22:00\" to \"06:00\" wraps past midnight)",
                );
                None
            }
            _ => None, // an unreadable time, already reported
        };

        let strategy = self.check_strategy(file, &place, raw.strategy.as_ref(), base.strategy);
        let targets = self.check_targets(file, &place, raw.name.span(), &raw.targets);
        let route = Route {
            targets: targets?,
            strategy: strategy?,
            variant: Some(name.clone()),
            ..base.clone()
        };
        ok.then_some(RouteVariant {
            window: TimeWindow { days, hours },
            route,
        })
    }

    // ----- menus -----

    fn check_menu(
        &mut self,
        file: FileIndex,
        name: &str,
        raw: &RawMenu,
        known: &Known,
    ) -> Option<Menu> {
        let place = format!("menu \"{name}\"");
        let id = MenuId::new(name);
        let greeting = match &raw.greeting {
            Some(text) => self
                .check_prompt(file, &format!("{place} greeting"), text)
                .map(Some),
            None => Some(None),
        };
        let prompt = self.check_prompt(file, &format!("{place} prompt"), &raw.prompt);
        let invalid_prompt = match &raw.invalid_prompt {
            Some(text) => self
                .check_prompt(file, &format!("{place} invalid_prompt"), text)
                .map(Some),
            None => Some(None),
        };
        let first_digit_timeout = self.check_timeout(
            file,
            &format!("{place} first_digit_timeout"),
            raw.first_digit_timeout.as_ref(),
            defaults::FIRST_DIGIT_TIMEOUT,
        );
        let inter_digit_timeout = self.check_timeout(
            file,
            &format!("{place} inter_digit_timeout"),
            raw.inter_digit_timeout.as_ref(),
            defaults::INTER_DIGIT_TIMEOUT,
        );
        let retries = self.check_retries(
            file,
            &id,
            "retries",
            raw.retries.as_ref(),
            defaults::RETRIES,
        );
        let no_input_retries = self.check_retries(
            file,
            &id,
            "no_input_retries",
            raw.no_input_retries.as_ref(),
            retries.unwrap_or(defaults::RETRIES),
        );
        let offer_after = match &raw.offer_after {
            Some(text) => self.check_offer_after(file, &place, text).map(Some),
            None => Some(None),
        };
        let no_input = self.check_exit(
            file,
            &format!("{place} no_input"),
            raw.no_input.as_ref(),
            known,
        );
        let invalid = self.check_exit(
            file,
            &format!("{place} invalid"),
            raw.invalid.as_ref(),
            known,
        );

        let mut options = BTreeMap::new();
        let mut options_ok = true;
        for (key_text, goto) in &raw.options {
            let key_ok = self.check_digit_key(file, &id, key_text);
            let option_place = format!("{place} option \"{}\"", key_text.get_ref());
            let choice = self.check_choice(file, &option_place, goto, known);
            match (key_ok, choice) {
                (Some(digits), Some(choice)) => {
                    options.insert(digits, choice);
                }
                _ => options_ok = false,
            }
        }
        Some(Menu {
            id,
            greeting: greeting?,
            prompt: prompt?,
            invalid_prompt: invalid_prompt?,
            first_digit_timeout: first_digit_timeout?,
            inter_digit_timeout: inter_digit_timeout?,
            retries: retries?,
            no_input_retries: no_input_retries?,
            offer_after: offer_after?,
            barge_in: raw.barge_in.unwrap_or(true),
            no_input: no_input?,
            invalid: invalid?,
            options: options_ok.then_some(options)?,
        })
    }

    fn check_offer_after(&mut self, file: FileIndex, place: &str, text: &Text) -> Option<Duration> {
        let place = format!("{place} offer_after");
        let offer_after = self.check_timeout(file, &place, Some(text), MIN_OFFER_AFTER)?;
        if offer_after < MIN_OFFER_AFTER {
            self.report(
                file,
                text.span(),
                Problem::BadChoice {
                    place,
                    reason: "is under 5s: nobody can hear the first option and press it by then",
                },
                "count from the answer to just after the options callers need most, e.g. \"15s\"",
            );
            return None;
        }
        Some(offer_after)
    }

    fn check_retries(
        &mut self,
        file: FileIndex,
        menu: &MenuId,
        key: &'static str,
        value: Option<&Spanned<i64>>,
        default: u32,
    ) -> Option<u32> {
        let Some(value) = value else {
            return Some(default);
        };
        match u32::try_from(*value.get_ref()) {
            Ok(count) if count <= MAX_RETRIES => Some(count),
            Ok(_) => {
                self.report(
                    file,
                    value.span(),
                    Problem::TooManyRetries {
                        menu: menu.clone(),
                        key,
                        retries: *value.get_ref(),
                        max: MAX_RETRIES,
                    },
                    "after the retries the caller goes to the no_input or invalid exit: a human",
                );
                None
            }
            Err(_) => {
                self.report(
                    file,
                    value.span(),
                    Problem::BadValue {
                        place: format!("menu \"{menu}\" {key}"),
                        value: value.get_ref().to_string(),
                        allowed: "0 to 5",
                    },
                    format!("{key} counts replays after the first play"),
                );
                None
            }
        }
    }

    fn check_digit_key(&mut self, file: FileIndex, menu: &MenuId, key: &Text) -> Option<DigitKey> {
        let text = key.get_ref();
        let reason = if text.is_empty() {
            Some("it is empty")
        } else if text.contains('*') {
            Some("'*' is reserved: it repeats the menu")
        } else if text.chars().count() > DigitKey::MAX_LEN {
            Some("it is longer than 4 keys")
        } else if !text.chars().all(is_dtmf) {
            Some("keys are 0-9, # and A-D")
        } else {
            None
        };
        match reason {
            None => Some(DigitKey::new(text.as_str())),
            Some(reason) => {
                self.report(
                    file,
                    key.span(),
                    Problem::InvalidDigitKey {
                        menu: menu.clone(),
                        key: text.clone(),
                        reason,
                    },
                    "use what a phone keypad sends, e.g. \"1\" or \"55\"",
                );
                None
            }
        }
    }

    fn check_choice(
        &mut self,
        file: FileIndex,
        place: &str,
        goto: &Spanned<RawGoto>,
        known: &Known,
    ) -> Option<Choice> {
        let raw = goto.get_ref();
        let given = [
            raw.route.is_some(),
            raw.menu.is_some(),
            raw.language.is_some(),
        ]
        .into_iter()
        .filter(|given| *given)
        .count();
        if given != 1 {
            self.report(
                file,
                goto.span(),
                Problem::BadChoice {
                    place: place.to_owned(),
                    reason: "must have exactly one of `route`, `menu` or `language`",
                },
                "e.g. { route = \"police\" }, { menu = \"health\" } or { language = \"en\" }",
            );
            return None;
        }
        if raw.silent.is_some() && raw.route.is_none() {
            self.report(
                file,
                goto.span(),
                Problem::BadChoice {
                    place: place.to_owned(),
                    reason: "has `silent` without `route`",
                },
                "`silent = true` marks a route choice as the cannot-speak path",
            );
            return None;
        }
        if let Some(route) = &raw.route {
            let route = self.check_route_name(file, place, route, known)?;
            return Some(Choice::Route {
                route,
                silent: raw.silent.unwrap_or(false),
            });
        }
        if let Some(menu) = &raw.menu {
            return self
                .check_menu_name(file, place, menu, known)
                .map(Choice::Menu);
        }
        let language = raw.language.as_ref()?;
        if let Some(found) = known
            .languages
            .iter()
            .find(|l| l.as_str() == language.get_ref())
        {
            return Some(Choice::Language(found.clone()));
        }
        let listed: Vec<&str> = known.languages.iter().map(Language::as_str).collect();
        self.report(
            file,
            language.span(),
            Problem::UnknownLanguage {
                place: place.to_owned(),
                language: language.get_ref().clone(),
            },
            format!("the centre's languages are {}", listed.join(", ")),
        );
        None
    }

    fn check_exit(
        &mut self,
        file: FileIndex,
        place: &str,
        goto: Option<&Spanned<RawGoto>>,
        known: &Known,
    ) -> Option<Exit> {
        let Some(goto) = goto else {
            // Left out: the caller goes to the centre's call-takers.
            return known
                .last_resort
                .as_ref()
                .map(|route| Exit::Route(RouteId::new(route.as_str())));
        };
        let raw = goto.get_ref();
        if raw.language.is_some()
            || raw.silent.is_some()
            || raw.route.is_some() == raw.menu.is_some()
        {
            self.report(
                file,
                goto.span(),
                Problem::BadChoice {
                    place: place.to_owned(),
                    reason: "must have exactly one of `route` or `menu`",
                },
                hint::EXIT_FORMAT,
            );
            return None;
        }
        if let Some(route) = &raw.route {
            return self
                .check_route_name(file, place, route, known)
                .map(Exit::Route);
        }
        let menu = raw.menu.as_ref()?;
        self.check_menu_name(file, place, menu, known)
            .map(Exit::Menu)
    }

    // ----- emergency numbers and URNs -----

    fn check_entries(
        &mut self,
        merged: &Merged,
        known: &Known,
    ) -> (BTreeMap<String, Entry>, BTreeMap<String, Entry>) {
        let mut numbers = BTreeMap::new();
        let mut services = BTreeMap::new();
        let mut first_seen: BTreeMap<String, SourceLocation> = BTreeMap::new();
        for (file, spanned) in &merged.entries {
            let file = *file;
            let raw = spanned.get_ref();
            let label = raw.numbers.first().or(raw.urns.first()).map_or_else(
                || "an emergency entry".to_owned(),
                |first| format!("emergency entry {}", first.get_ref()),
            );
            if raw.numbers.is_empty() && raw.urns.is_empty() {
                self.report(
                    file,
                    spanned.span(),
                    Problem::Empty {
                        place: "[[emergency]] numbers and urns".into(),
                    },
                    hint::LIST_WHAT_IS_DIALLED,
                );
            }
            let entry = match (&raw.menu, &raw.route) {
                (Some(menu), None) => self
                    .check_menu_name(file, &label, menu, known)
                    .map(Entry::Menu),
                (None, Some(route)) => self
                    .check_route_name(file, &label, route, known)
                    .map(Entry::Route),
                _ => {
                    self.report(
                        file,
                        spanned.span(),
                        Problem::BadChoice {
                            place: label.clone(),
                            reason: "must have exactly one of `menu` or `route`",
                        },
                        "send 112 to the main menu and agency numbers straight to their route",
                    );
                    None
                }
            };
            for number in &raw.numbers {
                let digits = number.get_ref();
                if digits.is_empty()
                    || digits.len() > 15
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    self.report(
                        file,
                        number.span(),
                        Problem::BadNumber {
                            number: digits.clone(),
                        },
                        hint::NUMBER_FORMAT,
                    );
                    continue;
                }
                if self.first_mapping(
                    &mut first_seen,
                    format!("number {digits}"),
                    file,
                    number.span(),
                ) && let Some(entry) = &entry
                {
                    numbers.insert(digits.clone(), entry.clone());
                }
            }
            for urn in &raw.urns {
                let service = match service_of_urn(urn.get_ref()) {
                    Ok(service) => service,
                    Err(reason) => {
                        self.report(
                            file,
                            urn.span(),
                            Problem::BadServiceUrn {
                                urn: urn.get_ref().clone(),
                                reason,
                            },
                            hint::SERVICE_URN_FORMAT,
                        );
                        continue;
                    }
                };
                if self.first_mapping(
                    &mut first_seen,
                    format!("urn:service:{service}"),
                    file,
                    urn.span(),
                ) && let Some(entry) = &entry
                {
                    services.insert(service, entry.clone());
                }
            }
        }
        if !first_seen.contains_key("urn:service:sos") {
            match &merged.centre {
                Some((file, centre)) => self.report(
                    *file,
                    centre.span(),
                    Problem::SosNotMapped,
                    "add urn:service:sos to the entry of the main menu",
                ),
                None => self.report_whole_plan(
                    Problem::SosNotMapped,
                    "add urn:service:sos to the entry of the main menu",
                ),
            }
        }
        (numbers, services)
    }

    /// Records where `dialled` is first mapped; reports and returns false on a second mapping.
    fn first_mapping(
        &mut self,
        seen: &mut BTreeMap<String, SourceLocation>,
        dialled: String,
        file: FileIndex,
        span: Range<usize>,
    ) -> bool {
        if let Some(first) = seen.get(&dialled) {
            let first = first.clone();
            self.report(
                file,
                span,
                Problem::MappedTwice { dialled, first },
                "each number and URN leads to one place; remove one of the two",
            );
            return false;
        }
        let location = self.location(file, span);
        seen.insert(dialled, location);
        true
    }

    // ----- graph checks -----

    fn check_fallback_cycles(&mut self, merged: &Merged, known: &Known) {
        // The last resort's own fallback is already an error; leaving it out of the graph
        // keeps it from being reported a second time as a cycle.
        let edges: BTreeMap<&str, Vec<&str>> = merged
            .routes
            .iter()
            .filter(|(name, _)| known.last_resort.as_ref() != Some(*name))
            .map(|(name, (_, _, raw))| {
                (
                    name.as_str(),
                    raw.fallback.iter().map(|f| f.get_ref().as_str()).collect(),
                )
            })
            .collect();
        for cycle in find_cycles(&edges) {
            let Some((file, span)) = cycle
                .first()
                .and_then(|first| merged.routes.get(*first))
                .map(|(file, key, raw)| {
                    (
                        *file,
                        raw.fallback
                            .as_ref()
                            .map_or_else(|| key.span(), Spanned::span),
                    )
                })
            else {
                continue;
            };
            let cycle: Vec<RouteId> = cycle.into_iter().map(RouteId::new).collect();
            self.report(
                file,
                span,
                Problem::FallbackCycle { cycle },
                "let one route in the cycle fall back to the last-resort route",
            );
        }
    }

    fn check_menu_loops(&mut self, merged: &Merged) {
        let edges: BTreeMap<&str, Vec<&str>> = merged
            .menus
            .iter()
            .map(|(name, (_, _, raw))| {
                let exits = [&raw.no_input, &raw.invalid]
                    .into_iter()
                    .flatten()
                    .filter_map(|goto| goto.get_ref().menu.as_ref())
                    .map(|menu| menu.get_ref().as_str())
                    .collect();
                (name.as_str(), exits)
            })
            .collect();
        for cycle in find_cycles(&edges) {
            let Some((file, key)) = cycle
                .first()
                .and_then(|first| merged.menus.get(*first))
                .map(|(file, key, _)| (*file, key.span()))
            else {
                continue;
            };
            let cycle: Vec<MenuId> = cycle.into_iter().map(MenuId::new).collect();
            self.report(
                file,
                key,
                Problem::MenuLoop { cycle },
                "send `no_input` or `invalid` of one of these menus to a route",
            );
        }
    }
}

/// Every elementary cycle reachable through `edges`, each once, rotated to start at its
/// smallest name. Plans are small, so a depth-first search from every node is plenty.
fn find_cycles<'a>(edges: &BTreeMap<&'a str, Vec<&'a str>>) -> Vec<Vec<&'a str>> {
    fn walk<'a>(
        node: &'a str,
        edges: &BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        found: &mut BTreeSet<Vec<&'a str>>,
    ) {
        if let Some(position) = path.iter().position(|seen| *seen == node) {
            let mut cycle: Vec<&str> = path
                .get(position..)
                .map(<[&str]>::to_vec)
                .unwrap_or_default();
            if let Some(smallest) = cycle
                .iter()
                .enumerate()
                .min_by_key(|(_, name)| **name)
                .map(|(index, _)| index)
            {
                cycle.rotate_left(smallest);
            }
            found.insert(cycle);
            return;
        }
        path.push(node);
        for next in edges.get(node).into_iter().flatten() {
            walk(next, edges, path, found);
        }
        path.pop();
    }
    let mut found = BTreeSet::new();
    for node in edges.keys() {
        walk(node, edges, &mut Vec::new(), &mut found);
    }
    found.into_iter().collect()
}

/// `urn:service:sos.fire` → `sos.fire` (lower case), if it names an emergency service.
fn service_of_urn(urn: &str) -> Result<String, &'static str> {
    let lower = urn.to_ascii_lowercase();
    let service = lower
        .strip_prefix("urn:service:")
        .ok_or("it does not start with urn:service:")?;
    if !service.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    }) {
        return Err("service labels are letters, digits and '-', separated by '.'");
    }
    if service == "test" || service.starts_with("test.") {
        return Err(
            "test.sos calls are answered by the gateway itself (RFC 6881) and cannot be mapped",
        );
    }
    if service != "sos" && !service.starts_with("sos.") {
        return Err("only urn:service:sos and its sub-services are emergency services");
    }
    Ok(service.to_owned())
}

/// 1-based line of a byte offset; offsets at or past the end (an error "at end of input"
/// after the final newline) count as the last line, so a diagnostic always names a real line.
fn line_of(text: &str, offset: usize) -> u32 {
    let before = text.as_bytes().get(..offset).unwrap_or(text.as_bytes());
    let newlines = before.iter().filter(|b| **b == b'\n').count();
    let last_line = text.lines().count().max(1);
    u32::try_from((newlines + 1).min(last_line)).unwrap_or(u32::MAX)
}

/// "did you mean …? known routes are …".
fn unknown_name_hint(name: &str, known: &BTreeSet<String>, what: &str) -> String {
    if known.is_empty() {
        return format!("no {what} are defined; add [{what}.{name}]");
    }
    let listed: Vec<&str> = known.iter().map(String::as_str).collect();
    let closest = known
        .iter()
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.chars().count() / 3).max(1))
        .min_by_key(|(distance, _)| *distance);
    match closest {
        Some((_, candidate)) => format!(
            "did you mean \"{candidate}\"? known {what} are {}",
            listed.join(", ")
        ),
        None => format!("known {what} are {}", listed.join(", ")),
    }
}

/// Edit distance counting a swap of neighbours as one edit ("fier" → "fire"), the commonest
/// typo (optimal string alignment distance).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut table = vec![0usize; (a.len() + 1) * width];
    let at = |i: usize, j: usize| i * width + j;
    for i in 0..=a.len() {
        table[at(i, 0)] = i;
    }
    for j in 0..=b.len() {
        table[at(0, j)] = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (table[at(i - 1, j)] + 1)
                .min(table[at(i, j - 1)] + 1)
                .min(table[at(i - 1, j - 1)] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(table[at(i - 2, j - 2)] + 1);
            }
            table[at(i, j)] = best;
        }
    }
    table[at(a.len(), b.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_suggest_the_closest_name() {
        let known: BTreeSet<String> = ["fire", "police", "ambulance"].map(String::from).into();
        assert_eq!(
            unknown_name_hint("fier", &known, "routes"),
            "did you mean \"fire\"? known routes are ambulance, fire, police"
        );
        assert_eq!(
            unknown_name_hint("zzz", &known, "routes"),
            "known routes are ambulance, fire, police"
        );
    }

    #[test]
    fn swapped_letters_are_one_edit() {
        assert_eq!(edit_distance("fier", "fire"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("police", "police"), 0);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn cycles_are_found_once_each() {
        let edges: BTreeMap<&str, Vec<&str>> = [
            ("a", vec!["b"]),
            ("b", vec!["a"]),
            ("c", vec!["a"]),
            ("d", vec![]),
        ]
        .into();
        assert_eq!(find_cycles(&edges), vec![vec!["a", "b"]]);
    }

    #[test]
    fn lines_count_from_one() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
