//! The `lockstep` binary's contract for configuration: exit 0 for a valid file, exit 64 with
//! `invalid configuration:` and the key for an invalid one.

use std::process::Command;

fn lockstep(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn check_config_accepts_the_sample() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../lockstep.example.toml");
    let (code, out, err) = lockstep(&["check-config", sample]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("valid"), "{out}");
}

#[test]
fn malformed_config_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[replication]\nbackup_timeout = \"5 parsecs\"\n[[backends]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\nrole = \"primary\"\n",
            "replication.backup_timeout",
        ),
        (
            "[gateway]\nlisten = \"127.0.0.1:8080\"\nlisten_typo = 1\n[[backends]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\nrole = \"primary\"\n",
            "listen_typo",
        ),
        (
            "[[backends]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\nrole = \"backup\"\n",
            "primary",
        ),
        (
            "[[routes]]\nmatch = \"POST /a/{id}\"\nlane = \"{nope}\"\n[[backends]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\nrole = \"primary\"\n",
            "routes[0].lane",
        ),
    ];
    for (text, key) in cases {
        let file = write(&dir, "bad.toml", text);
        for args in [
            vec!["check-config", file.as_str()],
            vec!["run", "--config", file.as_str()],
        ] {
            let (code, _, err) = lockstep(&args);
            assert_eq!(code, 64, "{args:?} on {text}: {err}");
            assert!(err.starts_with("invalid configuration: "), "{err}");
            assert!(err.contains(key), "the message names {key}: {err}");
        }
    }
}

#[test]
fn syntax_errors_show_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "broken.toml",
        "[gateway]\nlisten = \"127.0.0.1:8080\n",
    );
    let (code, _, err) = lockstep(&["check-config", &file]);
    assert_eq!(code, 64);
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn a_missing_file_is_a_configuration_error() {
    let (code, _, err) = lockstep(&["check-config", "/nonexistent/lockstep.toml"]);
    assert_eq!(code, 64);
    assert!(err.contains("/nonexistent/lockstep.toml"), "{err}");
}
