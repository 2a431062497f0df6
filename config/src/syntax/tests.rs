use crate::{Config, ConfigError};

const PRIMARY: &str =
    "[[backends]]\nname = \"a\"\nurl = \"http://127.0.0.1:9001\"\nrole = \"primary\"\n";

fn syntax(input: &str) -> (usize, usize, Option<String>, String) {
    match Config::from_toml_str(input) {
        Err(ConfigError::Syntax {
            line,
            column,
            key,
            message,
        }) => (line, column, key, message),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn rejects_unknown_key() {
    let input = format!("{PRIMARY}[gateway]\nlisten = \"127.0.0.1:8080\"\nlistn = 3\n");
    let (line, column, key, message) = syntax(&input);
    assert_eq!((line, column), (7, 1));
    assert_eq!(key.as_deref(), Some("gateway.listn"));
    assert!(message.contains("unknown field `listn`"), "{message}");
    assert!(
        message.contains("`listen`") && message.contains("`lockstep_prefix`"),
        "{message}"
    );
}

#[test]
fn rejects_unknown_section() {
    let input = format!("[gatway]\nlisten = \"127.0.0.1:8080\"\n{PRIMARY}");
    let (line, column, key, message) = syntax(&input);
    assert_eq!((line, column), (1, 2));
    assert_eq!(key.as_deref(), Some("gatway"));
    assert!(message.contains("unknown field `gatway`"), "{message}");
}

#[test]
fn rejects_unknown_key_in_inline_table() {
    let input =
        format!("{PRIMARY}[[routes]]\nmatch = \"GET /\"\ncompare = {{ ignore_header = [] }}\n");
    let (line, column, key, message) = syntax(&input);
    assert_eq!((line, column), (7, 13));
    assert_eq!(key.as_deref(), Some("routes[0].compare.ignore_header"));
    assert!(message.contains("`ignore_headers`"), "{message}");
}

#[test]
fn rejects_wrong_type() {
    let input = format!("{PRIMARY}[gateway]\nthreads = \"two\"\n");
    let (line, column, key, message) = syntax(&input);
    assert_eq!((line, column), (6, 11));
    assert_eq!(key.as_deref(), Some("gateway.threads"));
    assert!(message.contains("invalid type"), "{message}");
}

#[test]
fn rejects_unknown_enum_value() {
    let input = format!("{PRIMARY}[journal]\nfsync = \"sometimes\"\n");
    let (line, column, key, message) = syntax(&input);
    assert_eq!((line, column), (6, 9));
    assert_eq!(key.as_deref(), Some("journal.fsync"));
    assert!(message.contains("`always`, `batch`, `never`"), "{message}");
}

#[test]
fn rejects_unknown_role() {
    let input = "[[backends]]\nname = \"a\"\nurl = \"http://127.0.0.1:9001\"\nrole = \"leader\"\n";
    let (line, _, key, message) = syntax(input);
    assert_eq!(line, 4);
    assert_eq!(key.as_deref(), Some("backends[0].role"));
    assert!(message.contains("`primary` or `backup`"), "{message}");
}

#[test]
fn rejects_missing_backend_url() {
    let input = format!("{PRIMARY}\n[[backends]]\nname = \"b\"\nrole = \"backup\"\n");
    let (line, column, key, message) = syntax(&input);
    assert_eq!((line, column), (6, 1));
    assert_eq!(key.as_deref(), Some("backends[1]"));
    assert!(message.contains("missing field `url`"), "{message}");
}

#[test]
fn rejects_broken_toml() {
    let input = format!("{PRIMARY}[gateway\nthreads = 2\n");
    let (line, column, key, _) = syntax(&input);
    assert_eq!((line, column), (5, 9));
    assert_eq!(key, None);
}

#[test]
fn rejects_duplicate_key() {
    let input = format!("{PRIMARY}[gateway]\nthreads = 2\nthreads = 3\n");
    let (line, column, _, message) = syntax(&input);
    assert_eq!((line, column), (7, 1));
    assert!(message.contains("duplicate"), "{message}");
}

#[test]
fn counts_columns_in_characters() {
    let input = format!("{PRIMARY}[gateway]\nlockstep_prefix = \"/é\"; threads = 2\n");
    let (line, column, _, _) = syntax(&input);
    assert_eq!((line, column), (6, 23));
}

#[test]
fn syntax_error_display_names_line_column_and_key() {
    let input = format!("{PRIMARY}[gateway]\nthreads = \"two\"\n");
    let err = Config::from_toml_str(&input).unwrap_err();
    assert_eq!(err.key(), Some("gateway.threads"));
    let text = err.to_string();
    assert!(
        text.starts_with("line 6, column 11 (gateway.threads): invalid type"),
        "{text}"
    );
}
