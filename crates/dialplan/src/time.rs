//! Civil time and durations as the plan speaks them. The crate never reads a clock: the shell
//! passes the centre's local time in (it knows the time zone), and these types say which
//! time-of-day variant of a route applies.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

/// A day of the week, Monday first (ISO 8601).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    /// All days, Monday first.
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    fn index(self) -> u8 {
        self as u8
    }

    /// The day before: the after-midnight part of a `22:00`–`06:00` window belongs to it.
    pub fn previous(self) -> Weekday {
        match self {
            Weekday::Mon => Weekday::Sun,
            Weekday::Tue => Weekday::Mon,
            Weekday::Wed => Weekday::Tue,
            Weekday::Thu => Weekday::Wed,
            Weekday::Fri => Weekday::Thu,
            Weekday::Sat => Weekday::Fri,
            Weekday::Sun => Weekday::Sat,
        }
    }

    fn full_name(self) -> &'static str {
        match self {
            Weekday::Mon => "monday",
            Weekday::Tue => "tuesday",
            Weekday::Wed => "wednesday",
            Weekday::Thu => "thursday",
            Weekday::Fri => "friday",
            Weekday::Sat => "saturday",
            Weekday::Sun => "sunday",
        }
    }

    fn short_name(self) -> &'static str {
        match self {
            Weekday::Mon => "mon",
            Weekday::Tue => "tue",
            Weekday::Wed => "wed",
            Weekday::Thu => "thu",
            Weekday::Fri => "fri",
            Weekday::Sat => "sat",
            Weekday::Sun => "sun",
        }
    }
}

impl fmt::Display for Weekday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

/// Why a piece of civil time could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TimeParseError {
    #[error("\"{0}\" is not a day (use mon, tue, wed, thu, fri, sat, sun)")]
    Day(String),
    #[error("\"{0}\" is not a time of day (use 24-hour HH:MM, e.g. 06:30 or 22:00)")]
    ClockTime(String),
    #[error("\"{0}\" is not a local time (use a day and HH:MM, e.g. \"sat 23:15\")")]
    LocalTime(String),
}

impl FromStr for Weekday {
    type Err = TimeParseError;

    /// Accepts `mon` … `sun` and full English names, any case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let lower = text.trim().to_ascii_lowercase();
        Weekday::ALL
            .into_iter()
            .find(|day| lower == day.short_name() || lower == day.full_name())
            .ok_or_else(|| TimeParseError::Day(text.to_owned()))
    }
}

/// A time of day on the 24-hour clock, minute resolution (what a duty roster uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ClockTime {
    minutes_since_midnight: u16,
}

impl ClockTime {
    /// `None` unless `hour < 24` and `minute < 60`.
    pub fn new(hour: u8, minute: u8) -> Option<ClockTime> {
        (hour < 24 && minute < 60).then(|| ClockTime {
            minutes_since_midnight: u16::from(hour) * 60 + u16::from(minute),
        })
    }

    pub fn hour(self) -> u8 {
        // Always < 24 by construction, so the narrowing cannot truncate.
        u8::try_from(self.minutes_since_midnight / 60).unwrap_or(23)
    }

    pub fn minute(self) -> u8 {
        u8::try_from(self.minutes_since_midnight % 60).unwrap_or(0)
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour(), self.minute())
    }
}

impl FromStr for ClockTime {
    type Err = TimeParseError;

    /// Accepts `H:MM` and `HH:MM`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || TimeParseError::ClockTime(text.to_owned());
        let (hour, minute) = text.split_once(':').ok_or_else(error)?;
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(hour) || hour.len() > 2 || !all_digits(minute) || minute.len() != 2 {
            return Err(error());
        }
        let hour: u8 = hour.parse().map_err(|_| error())?;
        let minute: u8 = minute.parse().map_err(|_| error())?;
        ClockTime::new(hour, minute).ok_or_else(error)
    }
}

/// The centre's local civil time, as the shell computes it from the clock and the time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct LocalTime {
    pub weekday: Weekday,
    pub time: ClockTime,
}

impl LocalTime {
    pub fn new(weekday: Weekday, time: ClockTime) -> LocalTime {
        LocalTime { weekday, time }
    }

    /// The civil time `utc_offset_minutes` east of UTC (negative: west) at `unix_secs`
    /// seconds after 1970-01-01 00:00 UTC. The shell reads the clock and passes both in;
    /// a fixed offset, because a centre's plan is written for its own zone.
    pub fn from_unix(unix_secs: i64, utc_offset_minutes: i32) -> LocalTime {
        const DAY: i64 = 86_400;
        let secs = unix_secs.saturating_add(i64::from(utc_offset_minutes) * 60);
        // 1970-01-01 was a Thursday: day 0 is index 3 of a Monday-first week.
        let weekday_index = (secs.div_euclid(DAY) + 3).rem_euclid(7);
        let weekday = usize::try_from(weekday_index)
            .ok()
            .and_then(|i| Weekday::ALL.get(i).copied())
            .unwrap_or(Weekday::Mon);
        // Below 1,440 by the remainder, so the narrowing cannot truncate.
        let minutes = u16::try_from(secs.rem_euclid(DAY) / 60).unwrap_or(0);
        LocalTime {
            weekday,
            time: ClockTime {
                minutes_since_midnight: minutes,
            },
        }
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.weekday, self.time)
    }
}

impl FromStr for LocalTime {
    type Err = TimeParseError;

    /// Accepts `"<day> HH:MM"`, e.g. `"sat 23:15"` (what `siaga dialplan simulate --time` takes).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut words = text.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some(day), Some(time), None) => Ok(LocalTime {
                weekday: day.parse()?,
                time: time.parse()?,
            }),
            _ => Err(TimeParseError::LocalTime(text.to_owned())),
        }
    }
}

/// A set of weekdays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DaySet {
    bits: u8,
}

impl DaySet {
    pub const EVERY_DAY: DaySet = DaySet { bits: 0b111_1111 };

    pub fn contains(self, day: Weekday) -> bool {
        self.bits & (1 << day.index()) != 0
    }

    pub fn insert(&mut self, day: Weekday) {
        self.bits |= 1 << day.index();
    }

    pub fn is_empty(self) -> bool {
        self.bits == 0
    }

    /// Reads one item of a `days` list: a day (`sat`) or an inclusive range (`mon-fri`,
    /// `fri-mon` wraps over the weekend).
    pub(crate) fn insert_item(&mut self, item: &str) -> Result<(), TimeParseError> {
        match item.split_once('-') {
            None => {
                self.insert(item.parse()?);
                Ok(())
            }
            Some((first, last)) => {
                let first: Weekday = first.parse()?;
                let last: Weekday = last.parse()?;
                let mut day = first;
                self.insert(day);
                while day != last {
                    day = Weekday::ALL
                        .get(usize::from((day.index() + 1) % 7))
                        .copied()
                        .unwrap_or(Weekday::Mon);
                    self.insert(day);
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for DaySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == DaySet::EVERY_DAY {
            return f.write_str("every day");
        }
        let days: Vec<&str> = Weekday::ALL
            .into_iter()
            .filter(|day| self.contains(*day))
            .map(Weekday::short_name)
            .collect();
        f.write_str(&days.join(","))
    }
}

/// When a time-of-day variant of a route applies: some weekdays, optionally only between two
/// times. `from > to` wraps past midnight, and the part after midnight belongs to the day the
/// window started on (a Friday `22:00`–`06:00` window covers Saturday 03:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeWindow {
    pub days: DaySet,
    /// `[from, to)`; `None` means the whole day.
    pub hours: Option<(ClockTime, ClockTime)>,
}

impl TimeWindow {
    pub fn contains(&self, at: LocalTime) -> bool {
        match self.hours {
            None => self.days.contains(at.weekday),
            Some((from, to)) if from < to => {
                self.days.contains(at.weekday) && from <= at.time && at.time < to
            }
            Some((from, to)) => {
                (self.days.contains(at.weekday) && at.time >= from)
                    || (self.days.contains(at.weekday.previous()) && at.time < to)
            }
        }
    }
}

impl fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.hours {
            None => write!(f, "{}", self.days),
            Some((from, to)) => write!(f, "{} {from}–{to}", self.days),
        }
    }
}

/// Why a duration in the plan could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    #[error(
        "\"{0}\" is not a duration (write a whole number and a unit: \"1500ms\", \"5s\", \"2min\")"
    )]
    Syntax(String),
    #[error("\"{0}\" is longer than a day")]
    TooLong(String),
}

/// The longest duration a plan may state; anything longer is a typo.
const LONGEST_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Reads a plan duration: a whole number followed by `ms`, `s` or `min` (`"1500ms"`, `"5s"`,
/// `"2min"`). Strings rather than bare integers, so that nobody has to guess the unit.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let syntax = || DurationError::Syntax(text.to_owned());
    let digits_end = text
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .ok_or_else(syntax)?;
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() || number.len() > 9 {
        return if number.len() > 9 {
            Err(DurationError::TooLong(text.to_owned()))
        } else {
            Err(syntax())
        };
    }
    let value: u64 = number.parse().map_err(|_| syntax())?;
    let duration = match unit {
        "ms" => Duration::from_millis(value),
        "s" => Duration::from_secs(value),
        "min" => Duration::from_secs(value.saturating_mul(60)),
        _ => return Err(syntax()),
    };
    if duration > LONGEST_DURATION {
        return Err(DurationError::TooLong(text.to_owned()));
    }
    Ok(duration)
}

/// Writes a duration the way the plan does (`1500ms`, `5s`, `2min`), the largest exact unit.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(60_000) && millis != 0 {
        format!("{}min", millis / 60_000)
    } else if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

/// A duration for people reading traces: `2.5s`, `1min 5s`.
pub(crate) fn human_duration(duration: Duration) -> String {
    let tenths = duration.as_millis() / 100;
    let seconds = tenths / 10;
    if seconds >= 60 {
        format!("{}min {}s", seconds / 60, seconds % 60)
    } else {
        format!("{seconds}.{}s", tenths % 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(text: &str) -> LocalTime {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    /// 2026-12-05 00:00 UTC, a Saturday.
    const SAT_MIDNIGHT_UTC: i64 = 1_796_428_800;

    #[test]
    fn unix_time_gives_the_weekday_and_the_clock() {
        assert_eq!(LocalTime::from_unix(0, 0), at("thu 00:00"));
        assert_eq!(LocalTime::from_unix(SAT_MIDNIGHT_UTC, 0), at("sat 00:00"));
        // Seconds do not round up.
        assert_eq!(
            LocalTime::from_unix(SAT_MIDNIGHT_UTC + 13 * 3600 + 59 * 60 + 59, 0),
            at("sat 13:59")
        );
        for (days, weekday) in (0..7).zip(["sat", "sun", "mon", "tue", "wed", "thu", "fri"]) {
            let t = LocalTime::from_unix(SAT_MIDNIGHT_UTC + days * 86_400 + 60, 0);
            assert_eq!(t, at(&format!("{weekday} 00:01")));
        }
    }

    #[test]
    fn an_offset_east_can_cross_midnight_into_the_next_day() {
        // Friday 20:30 UTC is Saturday 04:30 in Bali and Makassar (UTC+8, WITA).
        let fri_2030 = SAT_MIDNIGHT_UTC - 3 * 3600 - 30 * 60;
        assert_eq!(LocalTime::from_unix(fri_2030, 0), at("fri 20:30"));
        assert_eq!(LocalTime::from_unix(fri_2030, 8 * 60), at("sat 04:30"));
        // Sunday 23:00 UTC + 7 h (WIB) is Monday: the week wraps too.
        let sun_2300 = SAT_MIDNIGHT_UTC + 86_400 + 23 * 3600;
        assert_eq!(LocalTime::from_unix(sun_2300, 7 * 60), at("mon 06:00"));
    }

    #[test]
    fn a_negative_offset_can_cross_midnight_into_the_day_before() {
        // Saturday 02:15 UTC is Friday 21:15 at UTC-5, and 22:45 at UTC-3:30.
        let sat_0215 = SAT_MIDNIGHT_UTC + 2 * 3600 + 15 * 60;
        assert_eq!(LocalTime::from_unix(sat_0215, -5 * 60), at("fri 21:15"));
        assert_eq!(
            LocalTime::from_unix(sat_0215, -(3 * 60 + 30)),
            at("fri 22:45")
        );
        // Before 1970: Wednesday 1969-12-31 23:59 UTC.
        assert_eq!(LocalTime::from_unix(-60, 0), at("wed 23:59"));
        assert_eq!(LocalTime::from_unix(0, -1), at("wed 23:59"));
    }

    #[test]
    fn night_window_wraps_into_the_next_morning() {
        let mut fridays = DaySet::default();
        fridays.insert(Weekday::Fri);
        let night = TimeWindow {
            days: fridays,
            hours: Some((at("fri 22:00").time, at("fri 06:00").time)),
        };
        assert!(night.contains(at("fri 22:00")));
        assert!(night.contains(at("sat 05:59")));
        assert!(!night.contains(at("sat 06:00")));
        assert!(
            !night.contains(at("fri 05:00")),
            "Thursday night is not in a Friday window"
        );
        assert!(!night.contains(at("sat 22:30")));
    }

    #[test]
    fn day_ranges_include_both_ends_and_wrap() {
        let mut days = DaySet::default();
        assert_eq!(days.insert_item("fri-mon"), Ok(()));
        assert_eq!(days.to_string(), "mon,fri,sat,sun");
        assert!(days.insert_item("someday").is_err());
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("2days").is_err());
        assert!(matches!(
            parse_duration("2000min"),
            Err(DurationError::TooLong(_))
        ));
    }

    proptest! {
        #[test]
        fn duration_parser_is_total(text in "\\PC{0,12}") {
            let _ = parse_duration(&text);
        }

        #[test]
        fn durations_round_trip(millis in 0u64..86_400_000) {
            let duration = Duration::from_millis(millis);
            prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }

        #[test]
        fn local_time_parser_is_total(text in "\\PC{0,16}") {
            let _ = text.parse::<LocalTime>();
        }

        #[test]
        fn local_times_round_trip(day in 0usize..7, hour in 0u8..24, minute in 0u8..60) {
            let time = LocalTime::new(Weekday::ALL[day], ClockTime::new(hour, minute).unwrap_or_else(|| unreachable!()));
            prop_assert_eq!(time.to_string().parse::<LocalTime>(), Ok(time));
        }
    }
}
