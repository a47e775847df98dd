//! Every kind of plan mistake is reported with its file, line, message and a hint; all
//! mistakes are reported at once; the shipped default plan is valid.
#![allow(clippy::disallowed_methods)] // tests may read the shipped plan from disk

mod common;

use std::path::Path;

use common::{PLAN_PATH, SMALL_PLAN, check, edit, errors, line_of, only_error};
use siaga_dialplan::{Diagnostic, Problem, Source, validate};

/// Asserts file, line and the `error:` line of a diagnostic, and that it has a hint.
fn assert_reported(diagnostic: &Diagnostic, line: u32, message: &str) {
    let location = diagnostic.location.as_ref().expect("a location");
    assert_eq!(location.file, Path::new(PLAN_PATH));
    assert_eq!(location.line, line, "wrong line for: {diagnostic}");
    assert_eq!(diagnostic.problem.to_string(), message);
    assert!(diagnostic.hint.is_some(), "no hint for: {diagnostic}");
}

#[test]
fn the_small_plan_is_valid() {
    check(SMALL_PLAN).unwrap_or_else(|errors| panic!("{errors}"));
}

#[test]
fn unknown_route_names_the_menu_option_and_suggests_the_closest_route() {
    let plan = edit(
        SMALL_PLAN,
        "\"2\" = { route = \"fire\" }",
        "\"2\" = { route = \"fire\" }\n\"3\" = { route = \"fier\" }",
    );
    let error = only_error(&plan);
    assert_eq!(
        error.to_string(),
        format!(
            "{PLAN_PATH}:{}: error: menu \"main\" option \"3\" goes to unknown route \"fier\"\n  hint: did you mean \"fire\"? known routes are calltakers, fire, police",
            line_of(&plan, "fier")
        )
    );
}

#[test]
fn unknown_menu() {
    let plan = edit(SMALL_PLAN, "menu = \"main\"", "menu = \"mian\"");
    let error = only_error(&plan);
    assert_reported(
        &error,
        line_of(&plan, "mian"),
        "emergency entry 112 goes to unknown menu \"mian\"",
    );
    assert!(
        error
            .hint
            .as_deref()
            .unwrap_or("")
            .contains("did you mean \"main\"")
    );
}

#[test]
fn unknown_language_in_a_language_option() {
    let plan = edit(
        SMALL_PLAN,
        "\"2\" = { route = \"fire\" }",
        "\"2\" = { route = \"fire\" }\n\"9\" = { language = \"fr\" }",
    );
    let error = only_error(&plan);
    assert_reported(
        &error,
        line_of(&plan, "\"fr\""),
        "menu \"main\" option \"9\" names language \"fr\", which [centre] languages does not list",
    );
}

#[test]
fn missing_prompt_file_is_reported_per_language_with_its_path() {
    let english_missing = |path: &Path| !path.ends_with("en/main-menu.wav");
    let result = validate(&[Source::new(PLAN_PATH, SMALL_PLAN)], &english_missing);
    let errors = result
        .expect_err("a missing prompt is an error")
        .diagnostics;
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_reported(
        &errors[0],
        line_of(SMALL_PLAN, "prompt = \"main-menu\""),
        "menu \"main\" prompt: prompt file dialplans/prompts/en/main-menu.wav does not exist",
    );
}

#[test]
fn prompt_names_cannot_leave_the_prompt_directory() {
    let plan = edit(
        SMALL_PLAN,
        "prompt = \"main-menu\"",
        "prompt = \"../../etc/passwd\"",
    );
    let error = only_error(&plan);
    assert_reported(
        &error,
        line_of(&plan, "passwd"),
        "menu \"main\" prompt: \"../../etc/passwd\" is not a prompt name (letters, digits, '-' and '_' only)",
    );
}

#[test]
fn bad_language_tag() {
    let plan = edit(
        SMALL_PLAN,
        "languages = [\"id\", \"en\"]",
        "languages = [\"id\", \"EN!\"]",
    );
    let error = only_error(&plan);
    assert_reported(
        &error,
        line_of(&plan, "EN!"),
        "\"EN!\" is not a language tag",
    );
}

#[test]
fn no_languages() {
    let plan = edit(SMALL_PLAN, "languages = [\"id\", \"en\"]", "languages = []");
    let error = only_error(&plan);
    assert_reported(
        &error,
        line_of(&plan, "languages"),
        "[centre] languages is empty",
    );
}

#[test]
fn route_without_fallback() {
    let plan = edit(
        SMALL_PLAN,
        "[routes.police]\nfallback = \"calltakers\"\n",
        "[routes.police]\n",
    );
    let error = only_error(&plan);
    assert_reported(
        &error,
        line_of(&plan, "[routes.police]"),
        "route \"police\" has no fallback",
    );
    assert_eq!(
        error.hint.as_deref(),
        Some(
            "add `fallback = \"calltakers\"` (the centre's call-takers) or another route that ends there"
        )
    );
}

#[test]
fn last_resort_with_a_fallback() {
    let plan = edit(
        SMALL_PLAN,
        "[routes.calltakers]\n",
        "[routes.calltakers]\nfallback = \"police\"\n",
    );
    let error = only_error(&plan);
    assert_reported(
        &error,
        line_of(&plan, "fallback = \"police\""),
        "the last-resort route \"calltakers\" has a fallback, but it must end every chain",
    );
}

#[test]
fn number_mapped_twice_points_at_both_places() {
    let plan =
        format!("{SMALL_PLAN}\n[[emergency]]\nnumbers = [\"110\", \"112\"]\nroute = \"police\"\n");
    let error = only_error(&plan);
    let first = line_of(SMALL_PLAN, "numbers = [\"112\"]");
    assert_reported(
        &error,
        line_of(&plan, "\"110\", \"112\""),
        &format!("number 112 is mapped a second time (first at {PLAN_PATH}:{first})"),
    );
}

#[test]
fn urn_mapped_twice_ignores_case() {
    let plan =
        format!("{SMALL_PLAN}\n[[emergency]]\nurns = [\"URN:SERVICE:SOS\"]\nroute = \"police\"\n");
    let error = only_error(&plan);
    assert!(
        matches!(error.problem, Problem::MappedTwice { ref dialled, .. } if dialled == "urn:service:sos"),
        "{error}"
    );
    assert_eq!(
        error.location.map(|l| l.line),
        Some(line_of(&plan, "URN:SERVICE:SOS"))
    );
}

#[test]
fn fallback_cycle() {
    let plan = edit(
        SMALL_PLAN,
        "[routes.police]\nfallback = \"calltakers\"",
        "[routes.police]\nfallback = \"fire\"",
    );
    let plan = edit(
        &plan,
        "[routes.fire]\nfallback = \"calltakers\"",
        "[routes.fire]\nfallback = \"police\"",
    );
    let error = only_error(&plan);
    assert_reported(
        &error,
        line_of(&plan, "fallback = \"police\""),
        "fallback routes form a cycle: fire → police → fire",
    );
}

#[test]
fn menu_loop_without_a_human() {
    let submenu = "\n[menus.help]\nprompt = \"main-menu\"\nno_input = { menu = \"main\" }\n[menus.help.options]\n\"1\" = { route = \"police\" }\n";
    let plan = edit(
        SMALL_PLAN,
        "prompt = \"main-menu\"\n",
        "prompt = \"main-menu\"\nno_input = { menu = \"help\" }\n",
    );
    let plan = format!("{plan}{submenu}");
    let error = only_error(&plan);
    assert_reported(
        &error,
        line_of(&plan, "[menus.help]"),
        "menus form a loop that a caller who makes no valid choice never leaves: help → main → help",
    );
}

#[test]
fn menus_may_link_back_through_options() {
    // "0 = back to the main menu" is a choice, not a trap: it validates.
    let submenu = "\n[menus.help]\nprompt = \"main-menu\"\n[menus.help.options]\n\"0\" = { menu = \"main\" }\n";
    let plan = edit(
        SMALL_PLAN,
        "\"2\" = { route = \"fire\" }",
        "\"2\" = { route = \"fire\" }\n\"8\" = { menu = \"help\" }",
    );
    check(&format!("{plan}{submenu}")).unwrap_or_else(|errors| panic!("{errors}"));
}

#[test]
fn invalid_digit_keys() {
    let plan = edit(
        SMALL_PLAN,
        "\"2\" = { route = \"fire\" }",
        "\"2\" = { route = \"fire\" }\n\"*1\" = { route = \"fire\" }\n\"x\" = { route = \"fire\" }\n\"12345\" = { route = \"fire\" }",
    );
    let all = errors(&plan);
    assert_eq!(all.len(), 3, "{all:#?}");
    assert_reported(
        &all[0],
        line_of(&plan, "\"*1\""),
        "menu \"main\" has an invalid key \"*1\": '*' is reserved: it repeats the menu",
    );
    assert_reported(
        &all[1],
        line_of(&plan, "\"x\""),
        "menu \"main\" has an invalid key \"x\": keys are 0-9, # and A-D",
    );
    assert_reported(
        &all[2],
        line_of(&plan, "\"12345\""),
        "menu \"main\" has an invalid key \"12345\": it is longer than 4 keys",
    );
}

#[test]
fn bad_sip_uri() {
    let plan = edit(
        SMALL_PLAN,
        "sip:polisi@127.0.0.1:5081",
        "sip:polisi@127.0.0.1:99999",
    );
    let error = only_error(&plan);
    assert_reported(
        &error,
        line_of(&plan, "99999"),
        "route \"police\" target 1 has a bad SIP URI \"sip:polisi@127.0.0.1:99999\": \"99999\" is not a port (1–65535)",
    );
}

#[test]
fn zero_timeouts() {
    let plan = edit(
        SMALL_PLAN,
        "prompt = \"main-menu\"\n",
        "prompt = \"main-menu\"\nfirst_digit_timeout = \"0s\"\n",
    );
    let plan = edit(
        &plan,
        "uri = \"sip:damkar@127.0.0.1:5083\"",
        "uri = \"sip:damkar@127.0.0.1:5083\"\nring_timeout = \"0ms\"",
    );
    let all = errors(&plan);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_reported(
        &all[0],
        line_of(&plan, "first_digit_timeout"),
        "menu \"main\" first_digit_timeout is zero",
    );
    assert_reported(
        &all[1],
        line_of(&plan, "ring_timeout"),
        "route \"fire\" target 1 ring_timeout is zero",
    );
}

#[test]
fn offer_after_must_leave_time_to_press_a_key() {
    for (value, message) in [
        (
            "\"3s\"",
            "menu \"main\" offer_after is under 5s: nobody can hear the first option and press it by then",
        ),
        ("\"0s\"", "menu \"main\" offer_after is zero"),
        (
            "\"15\"",
            "menu \"main\" offer_after: \"15\" is not a duration (write a whole number and a unit: \"1500ms\", \"5s\", \"2min\")",
        ),
    ] {
        let plan = edit(
            SMALL_PLAN,
            "prompt = \"main-menu\"\n",
            &format!("prompt = \"main-menu\"\noffer_after = {value}\n"),
        );
        let error = only_error(&plan);
        assert_reported(&error, line_of(&plan, "offer_after"), message);
    }
    let plan = edit(
        SMALL_PLAN,
        "prompt = \"main-menu\"\n",
        "prompt = \"main-menu\"\noffer_after = 15\n",
    );
    let error = only_error(&plan);
    assert!(
        matches!(error.problem, Problem::Syntax { .. }),
        "a number without a unit is a type error: {error}"
    );
    assert_eq!(
        error.location.map(|l| l.line),
        Some(line_of(&plan, "offer_after"))
    );
    let plan = edit(
        SMALL_PLAN,
        "prompt = \"main-menu\"\n",
        "prompt = \"main-menu\"\noffer_after = \"15s\"\n",
    );
    check(&plan).unwrap_or_else(|errors| panic!("{errors}"));
}

#[test]
fn durations_need_a_unit() {
    let plan = edit(
        SMALL_PLAN,
        "prompt = \"main-menu\"\n",
        "prompt = \"main-menu\"\ninter_digit_timeout = \"2\"\n",
    );
    let error = only_error(&plan);
    assert_reported(
        &error,
        line_of(&plan, "inter_digit_timeout"),
        "menu \"main\" inter_digit_timeout: \"2\" is not a duration (write a whole number and a unit: \"1500ms\", \"5s\", \"2min\")",
    );
}

const NIGHT_VARIANT: &str = "\n[[routes.police.variants]]\nname = \"night\"\nfrom = \"22:00\"\nto = \"06:00\"\n[[routes.police.variants.targets]]\nuri = \"sip:polisi-malam@127.0.0.1:5082\"\n";

#[test]
fn a_valid_time_variant() {
    check(&format!("{SMALL_PLAN}{NIGHT_VARIANT}")).unwrap_or_else(|errors| panic!("{errors}"));
}

#[test]
fn bad_time_of_day() {
    let plan = edit(
        &format!("{SMALL_PLAN}{NIGHT_VARIANT}"),
        "\"22:00\"",
        "\"25:00\"",
    );
    let error = only_error(&plan);
    assert_reported(
        &error,
        line_of(&plan, "25:00"),
        "route \"police\" variant \"night\" from: \"25:00\" is not a time of day (use 24-hour HH:MM, e.g. 06:30 or 22:00)",
    );
}

#[test]
fn bad_day_name() {
    let plan = edit(
        &format!("{SMALL_PLAN}{NIGHT_VARIANT}"),
        "name = \"night\"",
        "name = \"night\"\ndays = [\"mon-fry\"]",
    );
    let error = only_error(&plan);
    assert_reported(
        &error,
        line_of(&plan, "mon-fry"),
        "route \"police\" variant \"night\" days: \"fry\" is not a day (use mon, tue, wed, thu, fri, sat, sun)",
    );
}

#[test]
fn empty_and_half_time_windows() {
    let empty = edit(
        &format!("{SMALL_PLAN}{NIGHT_VARIANT}"),
        "\"06:00\"",
        "\"22:00\"",
    );
    let error = only_error(&empty);
    assert_reported(
        &error,
        line_of(&empty, "to = "),
        "route \"police\" variant \"night\" has the same start and end time",
    );

    let half = edit(
        &format!("{SMALL_PLAN}{NIGHT_VARIANT}"),
        "to = \"06:00\"\n",
        "",
    );
    let error = only_error(&half);
    assert_reported(
        &error,
        line_of(&half, "from = "),
        "route \"police\" variant \"night\" has `from` but not `to`",
    );
}

#[test]
fn a_route_without_targets_ends_without_a_human() {
    let plan = edit(
        SMALL_PLAN,
        "[[routes.fire.targets]]\nuri = \"sip:damkar@127.0.0.1:5083\"\n",
        "",
    );
    let error = only_error(&plan);
    assert_reported(
        &error,
        line_of(&plan, "[routes.fire]"),
        "route \"fire\" has no targets: a call that ends here reaches no human",
    );
}

#[test]
fn a_night_variant_without_targets_ends_without_a_human() {
    let plan = edit(
        &format!("{SMALL_PLAN}{NIGHT_VARIANT}"),
        "[[routes.police.variants.targets]]\nuri = \"sip:polisi-malam@127.0.0.1:5082\"\n",
        "",
    );
    let error = only_error(&plan);
    assert_reported(
        &error,
        line_of(&plan, "name = \"night\""),
        "route \"police\" variant \"night\" has no targets: a call that ends here reaches no human",
    );
}

#[test]
fn the_last_resort_must_have_targets() {
    let plan = edit(
        SMALL_PLAN,
        "[[routes.calltakers.targets]]\nuri = \"sip:calltaker@127.0.0.1:5080\"\n",
        "",
    );
    let error = only_error(&plan);
    assert_reported(
        &error,
        line_of(&plan, "[routes.calltakers]"),
        "route \"calltakers\" has no targets: a call that ends here reaches no human",
    );
}

#[test]
fn bad_emergency_number() {
    let plan = edit(
        SMALL_PLAN,
        "numbers = [\"112\"]",
        "numbers = [\"112\", \"11a\"]",
    );
    let error = only_error(&plan);
    assert_reported(
        &error,
        line_of(&plan, "11a"),
        "\"11a\" is not an emergency number (digits only, 1–15 of them)",
    );
}

#[test]
fn bad_service_urns() {
    let plan = edit(
        SMALL_PLAN,
        "urns = [\"urn:service:sos\"]",
        "urns = [\"urn:service:sos\", \"urn:service:test.sos\", \"urn:service:counseling\"]",
    );
    let all = errors(&plan);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(
        all[0].problem.to_string(),
        "\"urn:service:test.sos\" is not an emergency service URN: test.sos calls are answered by the gateway itself (RFC 6881) and cannot be mapped"
    );
    assert_eq!(
        all[1].problem.to_string(),
        "\"urn:service:counseling\" is not an emergency service URN: only urn:service:sos and its sub-services are emergency services"
    );
}

#[test]
fn sos_must_be_mapped() {
    let plan = edit(SMALL_PLAN, "urns = [\"urn:service:sos\"]\n", "");
    let error = only_error(&plan);
    assert_reported(
        &error,
        line_of(&plan, "[centre]"),
        "urn:service:sos is not mapped, but every unknown urn:service:sos.* falls back to it",
    );
}

#[test]
fn a_choice_must_go_exactly_one_way() {
    let plan = edit(
        SMALL_PLAN,
        "\"2\" = { route = \"fire\" }",
        "\"2\" = { route = \"fire\", menu = \"main\" }",
    );
    let error = only_error(&plan);
    assert_reported(
        &error,
        line_of(&plan, "menu = \"main\" }"),
        "menu \"main\" option \"2\" must have exactly one of `route`, `menu` or `language`",
    );
}

#[test]
fn bad_keyword_values() {
    let plan = edit(
        SMALL_PLAN,
        "[routes.fire]\n",
        "[routes.fire]\nstrategy = \"random\"\n",
    );
    let plan = edit(
        &plan,
        "uri = \"sip:damkar@127.0.0.1:5083\"",
        "uri = \"sip:damkar@127.0.0.1:5083\"\nlocation = \"always\"",
    );
    let all = errors(&plan);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_reported(
        &all[0],
        line_of(&plan, "random"),
        "route \"fire\" strategy is \"random\", which is not one of \"sequential\", \"parallel\"",
    );
    assert_reported(
        &all[1],
        line_of(&plan, "always"),
        "route \"fire\" target 1 location is \"always\", which is not one of \"value\", \"reference\", \"none\"",
    );
}

#[test]
fn too_many_retries() {
    let plan = edit(
        SMALL_PLAN,
        "prompt = \"main-menu\"\n",
        "prompt = \"main-menu\"\nretries = 9\n",
    );
    let error = only_error(&plan);
    assert_reported(
        &error,
        line_of(&plan, "retries"),
        "menu \"main\" has retries = 9; more than 5 keeps a frightened caller waiting",
    );
}

#[test]
fn typos_in_keys_are_not_ignored() {
    let plan = edit(
        SMALL_PLAN,
        "[routes.police]\nfallback",
        "[routes.police]\nfallbak",
    );
    let error = only_error(&plan);
    let location = error.location.as_ref().expect("a location");
    assert_eq!(location.line, line_of(&plan, "fallbak"));
    assert!(
        error
            .problem
            .to_string()
            .contains("unknown field `fallbak`"),
        "{error}"
    );
}

#[test]
fn toml_syntax_errors_have_a_line() {
    let plan = edit(SMALL_PLAN, "name = \"Test centre\"", "name = \"Test centre");
    let error = only_error(&plan);
    assert!(matches!(error.problem, Problem::Syntax { .. }), "{error}");
    assert_eq!(
        error.location.map(|l| l.line),
        Some(line_of(&plan, "Test centre"))
    );
}

#[test]
fn no_centre_and_no_files() {
    let plan = edit(
        SMALL_PLAN,
        "[centre]\nname = \"Test centre\"\nlanguages = [\"id\", \"en\"]\nlast_resort = \"calltakers\"\n",
        "",
    );
    let all = errors(&plan);
    assert!(
        all.iter()
            .any(|e| e.problem == Problem::MissingCentre && e.location.is_none()),
        "{all:#?}"
    );

    let none = validate(&[], &common::every_prompt_exists).expect_err("no files is an error");
    assert_eq!(none.diagnostics.len(), 1);
    assert_eq!(none.diagnostics[0].problem, Problem::NoSources);
}

#[test]
fn three_planted_mistakes_are_all_reported_with_their_lines() {
    let plan = edit(
        SMALL_PLAN,
        "\"2\" = { route = \"fire\" }",
        "\"2\" = { route = \"fier\" }",
    );
    let plan = edit(
        &plan,
        "sip:polisi@127.0.0.1:5081",
        "sip:polisi@127.0.0.1:5081:9",
    );
    let plan = edit(
        &plan,
        "[routes.fire]\nfallback = \"calltakers\"\n",
        "[routes.fire]\n",
    );
    let report = check(&plan).expect_err("three mistakes");
    let found: Vec<(u32, String)> = report
        .diagnostics
        .iter()
        .map(|d| {
            (
                d.location.as_ref().map_or(0, |l| l.line),
                d.problem.to_string(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (line_of(&plan, "fier"), "menu \"main\" option \"2\" goes to unknown route \"fier\"".to_owned()),
            (line_of(&plan, "5081:9"), "route \"police\" target 1 has a bad SIP URI \"sip:polisi@127.0.0.1:5081:9\": \"5081:9\" is not a port (1–65535)".to_owned()),
            (line_of(&plan, "[routes.fire]"), "route \"fire\" has no fallback".to_owned()),
        ]
    );
    let printed = report.to_string();
    assert!(
        printed.ends_with("3 errors in the dial plan; it was not loaded"),
        "{printed}"
    );
    assert_eq!(printed.matches("  hint: ").count(), 3, "{printed}");
}

#[test]
fn several_files_merge_and_clashes_name_both_files() {
    let main = edit(
        SMALL_PLAN,
        "\"2\" = { route = \"fire\" }",
        "\"2\" = { route = \"fire\" }\n\"4\" = { route = \"disaster\" }",
    );
    let agency = "[routes.disaster]\nfallback = \"calltakers\"\n[[routes.disaster.targets]]\nuri = \"sip:bpbd@127.0.0.1:5086\"\n\n[[emergency]]\nurns = [\"urn:service:sos.disaster\"]\nroute = \"disaster\"\n";
    let merged = validate(
        &[
            Source::new("main.toml", main.as_str()),
            Source::new("agencies/bpbd.toml", agency),
        ],
        &common::every_prompt_exists,
    )
    .unwrap_or_else(|errors| panic!("{errors}"));
    assert!(merged.route_definition(&"disaster".into()).is_some());

    let clash = "[routes.police]\nfallback = \"calltakers\"\n[[routes.police.targets]]\nuri = \"sip:other@127.0.0.1:5099\"\n";
    let report = validate(
        &[
            Source::new("main.toml", main.as_str()),
            Source::new("agencies/bpbd.toml", agency),
            Source::new("agencies/police.toml", clash),
        ],
        &common::every_prompt_exists,
    )
    .expect_err("route police is defined twice");
    assert_eq!(report.diagnostics.len(), 1, "{report}");
    assert_eq!(
        report.diagnostics[0].to_string().lines().next(),
        Some(format!("agencies/police.toml:1: error: route \"police\" is defined a second time (first at main.toml:{})", line_of(&main, "[routes.police]")).as_str())
    );

    let second_centre = validate(
        &[
            Source::new("main.toml", main.as_str()),
            Source::new("agencies/bpbd.toml", agency),
            Source::new(
                "other.toml",
                "[centre]\nname = \"x\"\nlanguages = [\"id\"]\nlast_resort = \"calltakers\"\n",
            ),
        ],
        &common::every_prompt_exists,
    )
    .expect_err("two centres");
    assert_eq!(second_centre.diagnostics.len(), 1, "{second_centre}");
    assert!(
        matches!(
            second_centre.diagnostics[0].problem,
            Problem::DuplicateCentre { .. }
        ),
        "{second_centre}"
    );
}

#[test]
fn the_default_plan_validates_with_its_real_prompt_files() {
    let plan = common::default_plan().unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(plan.centre().name, "Siaga 112 Kota Samarinda");
    assert_eq!(plan.last_resort().as_str(), "calltakers");
    for definition in plan.routes() {
        assert!(!definition.base.targets.is_empty());
        assert_eq!(
            plan.fallback_chain(&definition.base.id).last(),
            Some(plan.last_resort())
        );
    }
}

#[test]
fn the_default_plan_reports_missing_prompts_when_they_are_gone() {
    let path = common::dialplans_dir().join("default.toml");
    let text = std::fs::read_to_string(&path).expect("readable");
    let report =
        validate(&[Source::new(path, text)], &|_: &Path| false).expect_err("no prompts exist");
    assert!(
        report
            .diagnostics
            .iter()
            .all(|d| matches!(d.problem, Problem::MissingPrompt { .. })),
        "{report}"
    );
    // welcome, main-menu, invalid, 6 connecting prompts, silent-confirm, all-busy,
    // you-are-number, number-1..9, the policies' misuse-warning and number-blocked, the flood
    // challenge — each in id and en (all-busy is referenced twice).
    assert_eq!(
        report.diagnostics.len(),
        2 * (3 + 6 + 1 + 2 + 1 + 9 + 2 + 1)
    );
}

/// `sips:` and `;transport=tls` targets are TLS targets with their certificate settings
/// (paths from the plan's directory); the TLS keys anywhere else, a half client pair, a bad
/// pin or a sips: target forced onto UDP are mistakes with their lines.
#[test]
fn tls_targets_take_their_certificate_settings_and_nothing_else_does() {
    let pin = "AB:".repeat(31) + "AB";
    let plan = edit(
        SMALL_PLAN,
        "uri = \"sip:polisi@127.0.0.1:5081\"",
        &format!(
            "uri = \"sips:polisi@127.0.0.1:5081\"\ntls_pin = \"{pin}\"\n\
             tls_cert = \"certs/siaga.pem\"\ntls_key = \"certs/siaga.key\""
        ),
    );
    let plan = edit(
        &plan,
        "uri = \"sip:damkar@127.0.0.1:5083\"",
        "uri = \"sip:damkar@127.0.0.1;transport=tls\"\ntls_ca = \"/etc/siaga/agency-ca.pem\"",
    );
    let checked = check(&plan).unwrap_or_else(|errors| panic!("{errors}"));
    let targets: Vec<_> = checked.targets().filter(|t| t.tls.is_some()).collect();
    assert_eq!(targets.len(), 2);
    let police = targets
        .iter()
        .find(|t| t.uri.as_str().starts_with("sips:"))
        .expect("the police target");
    assert_eq!(police.transport, siaga_dialplan::Transport::Tls);
    let tls = police.tls.as_ref().expect("tls");
    assert_eq!(tls.pin.map(|p| p.to_string()), Some(pin.clone()));
    let plan_dir = Path::new(PLAN_PATH).parent().expect("dir");
    assert_eq!(
        tls.client_cert.as_deref(),
        Some(plan_dir.join("certs/siaga.pem").as_path())
    );
    let fire = targets
        .iter()
        .find(|t| t.uri.as_str().contains("damkar"))
        .expect("the fire target");
    assert_eq!(
        fire.tls.as_ref().and_then(|t| t.ca_file.as_deref()),
        Some(Path::new("/etc/siaga/agency-ca.pem"))
    );

    let on_udp = edit(
        SMALL_PLAN,
        "uri = \"sip:polisi@127.0.0.1:5081\"",
        "uri = \"sip:polisi@127.0.0.1:5081\"\ntls_ca = \"ca.pem\"",
    );
    assert_reported(
        &only_error(&on_udp),
        line_of(&on_udp, "tls_ca"),
        "route \"police\" target 1 tls_ca is set on a target that is not reached over TLS",
    );
    let half = edit(
        SMALL_PLAN,
        "uri = \"sip:polisi@127.0.0.1:5081\"",
        "uri = \"sips:polisi@127.0.0.1:5081\"\ntls_cert = \"siaga.pem\"",
    );
    assert_reported(
        &only_error(&half),
        line_of(&half, "tls_cert"),
        "route \"police\" target 1 tls_cert/tls_key needs both: the client certificate and its private key",
    );
    let bad_pin = edit(
        SMALL_PLAN,
        "uri = \"sip:polisi@127.0.0.1:5081\"",
        "uri = \"sips:polisi@127.0.0.1:5081\"\ntls_pin = \"AB:CD\"",
    );
    assert_reported(
        &only_error(&bad_pin),
        line_of(&bad_pin, "tls_pin"),
        "route \"police\" target 1 tls_pin is not 64 hex digits (a SHA-256 fingerprint)",
    );
    let forced = edit(
        SMALL_PLAN,
        "uri = \"sip:polisi@127.0.0.1:5081\"",
        "uri = \"sips:polisi@127.0.0.1:5081\"\ntransport = \"udp\"",
    );
    assert_reported(
        &only_error(&forced),
        line_of(&forced, "transport = \"udp\""),
        "route \"police\" target 1 transport is not \"tls\", but the URI is sips: or has ;transport=tls",
    );
}
