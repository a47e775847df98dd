//! The console over HTTPS (`[http] cert` and `key`): curl speaks TLS to it, the session cookie
//! gets `Secure`, plain HTTP gets nothing; a key that does not fit stops the start with the
//! config file's line.

mod common;

use std::path::Path;
use std::process::Command;

use common::Gateway;
use common::console::{SUPERVISOR, add_user};

fn self_signed(dir: &Path) {
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-days", "2", "-subj", "/CN=localhost", "-keyout"])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl is installed");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sk", "-i", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first Set-Cookie of a `curl -i` answer, which must be Secure, HttpOnly and
/// SameSite=Strict.
fn first_cookie(answer: &str) -> &str {
    let cookie = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {answer}"));
    assert!(
        cookie.contains("Secure")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie
}

#[test]
fn the_console_speaks_https_with_secure_cookies() {
    let dir = tempfile::tempdir().expect("dir");
    self_signed(dir.path());
    let config = dir.path().join("siaga.toml");
    std::fs::write(&config, "[http]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n").expect("config");
    let gw = Gateway::start(&["--config", config.to_str().expect("utf8")]);
    let http = gw.http.expect("the listener's address");
    add_user(
        &gw,
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("dialplans/default.toml"),
        SUPERVISOR,
        "supervisor",
        None,
    );

    // The sign-in page's token cookie: `__Host-` and Secure over HTTPS.
    let jar = dir.path().join("cookies.txt");
    let jar = jar.to_str().expect("utf8");
    let page = curl(&["-c", jar, &format!("https://{http}/login")]);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("Sign in"));
    let login_cookie = first_cookie(&page);
    assert!(
        login_cookie.contains("__Host-siaga_login="),
        "{login_cookie}"
    );
    let token = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the form's token");
    let form = format!(
        "name={}&password={}&csrf={token}",
        SUPERVISOR.0, SUPERVISOR.1
    );
    let signed = curl(&["-b", jar, "-d", &form, &format!("https://{http}/login")]);
    let cookie = first_cookie(&signed);
    assert!(cookie.contains("siaga_session="), "{cookie}");
    assert!(curl(&[&format!("https://{http}/metrics")]).starts_with("HTTP/1.1 200"));
    // Plain HTTP on the HTTPS port: no page.
    let plain = curl(&[&format!("http://{http}/login")]);
    assert!(!plain.contains("Sign in"), "{plain}");

    // A key that does not fit the certificate: the start fails, naming the file and line.
    let other = tempfile::tempdir().expect("dir");
    self_signed(other.path());
    std::fs::copy(
        other.path().join("key.pem"),
        dir.path().join("other-key.pem"),
    )
    .expect("copy");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "# HTTPS\n[http]\ncert = \"cert.pem\"\nkey = \"other-key.pem\"\n",
    )
    .expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_siaga"))
        .args(["serve", "--config"])
        .arg(&bad)
        .output()
        .expect("siaga");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.toml:3") && err.contains("http.cert"),
        "{err}"
    );
}
