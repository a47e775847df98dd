//! Siaga's dial plan: which numbers are emergency numbers, which menu a caller hears, and which
//! agency each choice reaches. Pure (sans-IO): the shell reads the files and the clock and
//! passes text and time in.
//!
//! - [`validate`] turns plan files into a [`Dialplan`], reporting every mistake at once with
//!   `file:line` and a hint. A plan with any error is not used.
//! - [`Dialplan::classify`] says what a Request-URI dialled and where the call enters the plan.
//! - [`IvrSession`] is the IVR state machine driven by the call engine and the simulator alike.
//! - [`Dialplan::route`] and [`Dialplan::fallback_chain`] give the bridging engine its targets.
//! - [`classify_call`] gives an ended call its class (genuine, silent, …) and the reasons.
//! - [`Policies`] (`[policies]`) with [`NumberLists`] and [`RepeatCounter`] decide what a call
//!   from a watched, blocked or repeating number meets; [`CallerNumber`] gives a number one form.
//! - [`simulate`] runs a call through the plan in virtual time and prints its path.
//!
//! A [`Dialplan`] is immutable and `Send + Sync`: share it as `Arc<Dialplan>`, swap the `Arc`
//! on reload, and let calls in flight keep the plan they started with.
//!
//! The format is documented in `docs/dialplan.md`.

mod call_class;
mod classify;
mod diagnostic;
mod flood;
mod ids;
mod ivr;
mod model;
mod policy;
mod raw;
mod simulate;
mod sip_uri;
mod time;
mod validate;

pub use call_class::{
    CallClass, CallFacts, ClassifyRules, DialledKind, EarlierCalls, EndedBy, RULES_VERSION, Reason,
    Rule, UnknownClass, Verdict, Voice, classify_call,
};
pub use classify::{Classified, Dialled};
pub use diagnostic::{Diagnostic, Problem, Source, SourceLocation, ValidationErrors};
pub use flood::{
    AttackChange, ChallengeReason, ChallengeScope, FloodGuard, FloodRules, FloodVerdict,
    NewCallFacts,
};
pub use ids::{DigitKey, Language, MenuId, PromptName, RouteId};
pub use ivr::{
    IvrAction, IvrInput, IvrSession, PROMPT_WATCHDOG, PlaybackId, RouteReason, TimelineEvent,
    TimelineKind, TimeoutKind,
};
pub use model::{
    Centre, CertPin, Choice, Dialplan, Entry, Exit, LocationConveyance, Menu, PromptRef, Queue,
    Route, RouteDefinition, RouteVariant, Strategy, Target, TargetTls, Transport, TrustDomain,
};
pub use policy::{
    Applied, CallRate, CallerNumber, Decision, ListEntry, ListKind, NumberError, NumberLists,
    Override, Policies, PolicyAction, PolicyFacts, RepeatCounter, format_list_duration,
    parse_list_duration,
};
pub use simulate::{
    CALLER_REACTION, CallerKeys, KEY_GAP, MenuPath, MenuPaths, RoutedCall, SimulateRequest,
    SimulationOutcome, SimulationTrace, TraceStep, simulate, simulate_paths,
};
pub use sip_uri::{SipUri, SipUriError};
pub use time::{
    ClockTime, DaySet, DurationError, LocalTime, TimeParseError, TimeWindow, Weekday,
    format_duration, parse_duration,
};
pub use validate::validate;
