//! `siaga dialplan check|simulate` as an engineer runs them.

use std::process::Command;

fn siaga(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_siaga"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run siaga")
}

#[test]
fn the_default_plan_checks_clean() {
    let out = siaga(&["dialplan", "check", "dialplans/default.toml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: \"Siaga 112 Kota Samarinda\""));
}

#[test]
fn three_planted_mistakes_are_all_reported_with_file_line_and_hint() {
    let dir = tempfile::tempdir().expect("dir");
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/dialplans/default.toml")).expect("plan");
    let broken = text
        .replacen(
            "\"2\" = { route = \"fire\" }",
            "\"2\" = { route = \"fier\" }",
            1,
        )
        .replacen("sip:damkar@127.0.0.1:5083", "sip:damkar@127.0.0.1:99999", 1)
        .replacen(
            "prompt = \"main-menu\"",
            "prompt = \"main-menu-missing\"",
            1,
        )
        .replacen(
            "prompt_dir = \"prompts\"",
            &format!("prompt_dir = \"{root}/dialplans/prompts\""),
            1,
        );
    let plan = dir.path().join("plan.toml");
    std::fs::write(&plan, &broken).expect("write");
    let out = siaga(&["dialplan", "check", plan.to_str().expect("path")]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a plan with errors fails the check"
    );
    let errors = String::from_utf8_lossy(&out.stderr).into_owned();
    let line = |needle: &str| {
        broken
            .lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .expect("needle")
    };
    for (needle, what) in [
        ("\"fier\"", "unknown route \"fier\""),
        ("99999", "is not a port"),
        ("main-menu-missing", "main-menu-missing"),
    ] {
        let at = format!("{}:{}: error:", plan.display(), line(needle));
        assert!(errors.contains(&at), "{at} in:\n{errors}");
        assert!(errors.contains(what), "{what} in:\n{errors}");
    }
    assert!(errors.matches("hint:").count() >= 3, "{errors}");
}

#[test]
fn the_simulator_prints_the_path_of_a_call() {
    let out = siaga(&[
        "dialplan",
        "simulate",
        "--to",
        "112",
        "--digits",
        "2",
        "--time",
        "mon 10:00",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("play dialplans/prompts/id/welcome.wav"),
        "{text}"
    );
    assert!(text.contains("→ route \"fire\""), "{text}");
    assert!(text.contains("fallback chain: fire → calltakers"), "{text}");
}
