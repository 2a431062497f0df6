//! Durations (`"250ms"`, `"5s"`, `"24h"`) and sizes (`"16MiB"`, `"64KiB"`, `"1MB"`, `1000`).
//!
//! Parsing only: whether zero is acceptable is the caller's decision, since it depends on the key.

use std::time::Duration;

use crate::error::ConfigError;
use crate::raw::RawSize;

#[cfg(test)]
mod tests;

/// Parses a duration written as a number and a unit (`"250ms"`, `"5s"`, `"1h 30m"`).
pub(crate) fn parse_duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value.trim()).map_err(|_| ConfigError::InvalidDuration {
        key: key.to_owned(),
        value: value.to_owned(),
    })
}

/// Parses a duration that must not be zero.
pub(crate) fn parse_nonzero_duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    let duration = parse_duration(key, value)?;
    if duration.is_zero() {
        return Err(ConfigError::ZeroDuration {
            key: key.to_owned(),
        });
    }
    Ok(duration)
}

/// Units a size may carry, matched case-insensitively. Decimal units are powers of 1000, binary
/// ones (`KiB`...) powers of 1024, as their names say.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("kb", 1000),
    ("mb", 1000 * 1000),
    ("gb", 1000 * 1000 * 1000),
    ("tb", 1000 * 1000 * 1000 * 1000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

/// Parses a size into bytes: a bare integer, or a string of digits optionally followed by a unit.
pub(crate) fn parse_size(key: &str, value: &RawSize) -> Result<u64, ConfigError> {
    let invalid = || ConfigError::InvalidSize {
        key: key.to_owned(),
        value: value.to_string(),
    };
    match value {
        RawSize::Bytes(n) => u64::try_from(*n).map_err(|_| invalid()),
        RawSize::Text(text) => parse_size_str(text).ok_or_else(invalid),
    }
}

fn parse_size_str(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    // `_` groups digits ("16_000_000"), as in TOML integers, but cannot start the number.
    if digits.is_empty() || digits.starts_with('_') {
        return None;
    }
    let number: u64 = digits.replace('_', "").parse().ok()?;
    let unit = unit.trim_start();
    let multiplier = if unit.is_empty() {
        1
    } else {
        SIZE_UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|&(_, m)| m)?
    };
    number.checked_mul(multiplier)
}

/// Writes a size the way a user would: the largest binary unit that divides it exactly.
#[cfg(test)]
pub(crate) fn format_size(bytes: u64) -> String {
    for (unit, multiplier) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if bytes != 0 && bytes % multiplier == 0 {
            return format!("{}{unit}", bytes / multiplier);
        }
    }
    bytes.to_string()
}
