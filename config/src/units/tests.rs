use std::time::Duration;

use proptest::prelude::*;

use super::{format_size, parse_duration, parse_nonzero_duration, parse_size};
use crate::error::ConfigError;
use crate::raw::RawSize;

fn size(text: &str) -> Result<u64, ConfigError> {
    parse_size("gateway.max_body", &RawSize::Text(text.to_owned()))
}

#[test]
fn parses_durations() {
    let d = |s| parse_duration("k", s).unwrap();
    assert_eq!(d("250ms"), Duration::from_millis(250));
    assert_eq!(d("5s"), Duration::from_secs(5));
    assert_eq!(d("24h"), Duration::from_secs(24 * 3600));
    assert_eq!(d("1h 30m"), Duration::from_secs(5400));
}

#[test]
fn rejects_duration_without_unit() {
    let err = parse_duration("replication.backup_timeout", "5").unwrap_err();
    assert!(
        matches!(err, ConfigError::InvalidDuration { ref key, ref value }
        if key == "replication.backup_timeout" && value == "5")
    );
}

#[test]
fn rejects_unknown_duration_unit() {
    let err = parse_duration("replication.backup_timeout", "5 parsecs").unwrap_err();
    assert!(matches!(err, ConfigError::InvalidDuration { .. }));
    assert_eq!(
        err.to_string(),
        "replication.backup_timeout = \"5 parsecs\" is not a duration; write a number and a \
         unit, like \"250ms\", \"5s\" or \"24h\""
    );
}

#[test]
fn rejects_zero_duration() {
    let err = parse_nonzero_duration("health.interval", "0s").unwrap_err();
    assert!(matches!(err, ConfigError::ZeroDuration { ref key } if key == "health.interval"));
}

#[test]
fn parses_sizes() {
    assert_eq!(size("16MiB").unwrap(), 16 << 20);
    assert_eq!(size("64KiB").unwrap(), 64 << 10);
    assert_eq!(size("1MB").unwrap(), 1_000_000);
    assert_eq!(size("1000").unwrap(), 1000);
    assert_eq!(size("16 mib").unwrap(), 16 << 20);
    assert_eq!(size("2GiB").unwrap(), 2 << 30);
    assert_eq!(size("10B").unwrap(), 10);
    assert_eq!(size("16_000_000").unwrap(), 16_000_000);
    assert_eq!(
        parse_size("k", &RawSize::Bytes(4096)).unwrap(),
        4096,
        "a bare TOML integer is a number of bytes"
    );
}

#[test]
fn rejects_unknown_size_unit() {
    for bad in ["16 parsecs", "MiB", "", "1.5MiB", "-1", "_1", "16MiBs"] {
        let err = size(bad).unwrap_err();
        assert!(
            matches!(err, ConfigError::InvalidSize { ref key, .. } if key == "gateway.max_body"),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn rejects_negative_size() {
    let err = parse_size("gateway.max_body", &RawSize::Bytes(-1)).unwrap_err();
    assert!(matches!(err, ConfigError::InvalidSize { ref value, .. } if value == "-1"));
}

#[test]
fn rejects_size_overflow() {
    let err = size("20000000TiB").unwrap_err();
    assert!(matches!(err, ConfigError::InvalidSize { .. }));
}

proptest! {
    #[test]
    fn size_round_trips(bytes in 0u64..(1 << 50)) {
        prop_assert_eq!(size(&format_size(bytes)).unwrap(), bytes);
    }

    #[test]
    fn size_in_binary_units_round_trips(n in 1u64..100_000, shift in prop::sample::select(vec![10u32, 20, 30])) {
        let bytes = n << shift;
        prop_assert_eq!(size(&format_size(bytes)).unwrap(), bytes);
    }

    #[test]
    fn duration_round_trips(millis in 0u64..(10 * 365 * 24 * 3600 * 1000)) {
        let duration = Duration::from_millis(millis);
        let text = humantime::format_duration(duration).to_string();
        prop_assert_eq!(parse_duration("k", &text).unwrap(), duration);
    }
}
