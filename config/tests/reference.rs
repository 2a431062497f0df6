//! docs/configuration.md documents every key the parser accepts, and nothing else: the parser is
//! asked for its keys (an unknown key's error lists the expected ones) and each one must have a
//! row in its section's table.

use lockstep_config::Config;

const BACKEND: &str =
    "[[backends]]\nname = \"a\"\nurl = \"http://127.0.0.1:9001\"\nrole = \"primary\"\n";

/// The keys the parser accepts where `probe` puts an unknown key `zzz`.
fn keys(probe: &str) -> Vec<String> {
    let err = Config::from_toml_str(probe)
        .expect_err("an unknown key is refused")
        .to_string();
    let list = err
        .split("expected one of ")
        .nth(1)
        .or_else(|| err.split("expected ").nth(1))
        .unwrap_or_else(|| panic!("no key list in: {err}"));
    // serde writes "`a`", "`a` or `b`", or "one of `a`, `b`, `c`".
    list.split(", ")
        .flat_map(|k| k.split(" or "))
        .map(|k| k.trim().trim_matches('`').to_owned())
        .collect()
}

/// The keys in the table of the doc section that starts with `heading`.
fn documented(doc: &str, heading: &str) -> Vec<String> {
    let start = doc
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("docs/configuration.md has no section {heading}"));
    let rest = &doc[start + heading.len() + 2..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    let end = rest[..end].find("\n### ").unwrap_or(end);
    rest[..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_key_of_the_parser_is_documented_and_every_documented_key_exists() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .unwrap();
    let sections = [
        ("## `[gateway]`", format!("[gateway]\nzzz = 1\n{BACKEND}")),
        ("## `[admin]`", format!("[admin]\nzzz = 1\n{BACKEND}")),
        ("## `[journal]`", format!("[journal]\nzzz = 1\n{BACKEND}")),
        (
            "## `[replication]`",
            format!("[replication]\nzzz = 1\n{BACKEND}"),
        ),
        (
            "## `[idempotency]`",
            format!("[idempotency]\nzzz = 1\n{BACKEND}"),
        ),
        ("## `[health]`", format!("[health]\nzzz = 1\n{BACKEND}")),
        ("## `[[backends]]`", format!("{BACKEND}zzz = 1\n")),
        (
            "## `[[routes]]`",
            format!("{BACKEND}[[routes]]\nmatch = \"POST /x\"\nzzz = 1\n"),
        ),
        (
            "### `compare`",
            format!("{BACKEND}[[routes]]\nmatch = \"POST /x\"\ncompare = {{ zzz = 1 }}\n"),
        ),
        (
            "### `translate`",
            format!("{BACKEND}[[routes]]\nmatch = \"POST /x\"\ntranslate = {{ zzz = 1 }}\n"),
        ),
        (
            "### `[[verify.probes]]`",
            format!("{BACKEND}[[verify.probes]]\nrequest = \"GET /x\"\nzzz = 1\n"),
        ),
        ("## `[catchup]`", format!("[catchup]\nzzz = 1\n{BACKEND}")),
        ("## `[events]`", format!("[events]\nzzz = 1\n{BACKEND}")),
        ("## `[log]`", format!("[log]\nzzz = 1\n{BACKEND}")),
        (
            "## `[checkpoint]`",
            format!("[checkpoint]\nzzz = 1\n{BACKEND}"),
        ),
    ];
    for (heading, probe) in sections {
        let mut parsed = keys(&probe);
        let mut doc_keys = documented(&doc, heading);
        parsed.sort();
        doc_keys.sort();
        assert_eq!(
            doc_keys, parsed,
            "{heading}: the table's keys (left) against the parser's (right)"
        );
    }
}

#[test]
fn every_section_of_the_parser_has_a_heading() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .unwrap();
    for section in keys(&format!("zzz = 1\n{BACKEND}")) {
        let table = format!("\n## `[{section}]`\n");
        let array = format!("\n## `[[{section}]]`\n");
        assert!(
            doc.contains(&table) || doc.contains(&array),
            "docs/configuration.md has no section for [{section}]"
        );
    }
}
