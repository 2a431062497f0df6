//! How account ids look at the HTTP interface (`--ids`).
//!
//! The stores number accounts 1, 2, 3... in creation order (`AccountId`), whatever the mode;
//! this module owns the form those numbers take on the wire. With sequential ids it is the
//! number itself. With random ids it is 16 lowercase hex digits: the number put through a keyed
//! permutation of the 64-bit integers (a Feistel network), so that two banks given the same
//! requests show different ids, as services that mint UUIDs do, while a string still maps back
//! to its number without a table. The key is part of the bank's state: the sqlite store keeps
//! it in its database, export and import carry it, a reset keeps it.
//!
//! Nothing here touches the stores or HTTP; the routes translate at the edge.

use std::fmt;
use std::hash::{BuildHasher, Hasher};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::account::AccountId;
use crate::request;

/// The `--ids` flag: the form account ids take over HTTP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Ids {
    /// 1, 2, 3... in creation order, as JSON numbers; the same on every instance.
    #[default]
    Sequential,
    /// 16 lowercase hex digits, as JSON strings, different on every instance (each draws a
    /// secret key; a sqlite bank keeps it in its data directory, export and import carry it).
    Random,
}

/// The secret of a bank's random id space: 128 bits that key the permutation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdKey {
    k0: u64,
    k1: u64,
}

/// Rounds of the Feistel network; with a well-mixing round function, four already make a
/// pseudorandom permutation, and these ids are looked at, not attacked.
const ROUNDS: u64 = 8;

/// The width of a random id in hex digits.
const HEX_DIGITS: usize = 16;

impl IdKey {
    /// A new key from the operating system's randomness (through the standard library's randomly
    /// keyed hasher, which draws it once per thread).
    pub fn generate() -> IdKey {
        let draw = |salt: u64| {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            hasher.write_u128(nanos);
            hasher.write_u32(std::process::id());
            hasher.write_u64(salt);
            hasher.finish()
        };
        IdKey {
            k0: draw(0),
            k1: draw(1),
        }
    }

    /// The key a seed stands for: the same seed gives the same ids, for simulations and tests
    /// that must replay exactly.
    pub fn from_seed(seed: u64) -> IdKey {
        IdKey {
            k0: mix(seed),
            k1: mix(seed ^ 0x5851_f42d_4c95_7f2d),
        }
    }

    /// The public form of `id`: 16 lowercase hex digits.
    pub fn encode(&self, id: AccountId) -> String {
        // Ids are at least 1, so the cast never sees a negative number.
        format!("{:016x}", self.permute(id as u64))
    }

    /// The id whose public form is `text`, or `None` when `text` is not 16 lowercase hex digits
    /// or stands for no possible id (0, or above the largest `i64`).
    pub fn decode(&self, text: &str) -> Option<AccountId> {
        // Only the canonical spelling: `ABC...` or `+...` would otherwise alias an id.
        if text.len() != HEX_DIGITS || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let n = self.unpermute(u64::from_str_radix(text, 16).ok()?);
        AccountId::try_from(n).ok().filter(|id| *id >= 1)
    }

    fn round_key(&self, round: u64) -> u64 {
        mix(self.k0 ^ mix(self.k1.wrapping_add(round)))
    }

    fn permute(&self, n: u64) -> u64 {
        let (mut left, mut right) = ((n >> 32) as u32, n as u32);
        for round in 0..ROUNDS {
            (left, right) = (right, left ^ self.scramble(round, right));
        }
        (u64::from(left) << 32) | u64::from(right)
    }

    fn unpermute(&self, n: u64) -> u64 {
        let (mut left, mut right) = ((n >> 32) as u32, n as u32);
        for round in (0..ROUNDS).rev() {
            (left, right) = (right ^ self.scramble(round, left), left);
        }
        (u64::from(left) << 32) | u64::from(right)
    }

    /// The round function: half a block mixed with the round's key.
    fn scramble(&self, round: u64, half: u32) -> u32 {
        (mix(u64::from(half) ^ self.round_key(round)) >> 32) as u32
    }

    fn to_hex(self) -> String {
        format!("{:016x}{:016x}", self.k0, self.k1)
    }

    fn from_hex(text: &str) -> Option<IdKey> {
        if text.len() != 2 * HEX_DIGITS
            || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        Some(IdKey {
            k0: u64::from_str_radix(&text[..HEX_DIGITS], 16).ok()?,
            k1: u64::from_str_radix(&text[HEX_DIGITS..], 16).ok()?,
        })
    }
}

/// splitmix64's finalizer: every input bit moves every output bit.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl fmt::Debug for IdKey {
    // A secret has no business in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdKey(..)")
    }
}

/// In a snapshot and in the sqlite database: 32 lowercase hex digits.
impl Serialize for IdKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for IdKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        IdKey::from_hex(&text).ok_or_else(|| {
            serde::de::Error::custom("id_key must be 32 lowercase hexadecimal digits")
        })
    }
}

impl std::str::FromStr for IdKey {
    type Err = InvalidIdKey;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        IdKey::from_hex(text).ok_or(InvalidIdKey)
    }
}

impl fmt::Display for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A stored id key that is not 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an id key is 32 lowercase hexadecimal digits")]
pub struct InvalidIdKey;

/// The id space a bank answers in: how the routes read and write account ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdSpace {
    Sequential,
    Random(IdKey),
}

impl IdSpace {
    /// The space of a store whose key is `key` (none: sequential).
    pub(crate) fn of(key: Option<IdKey>) -> IdSpace {
        key.map_or(IdSpace::Sequential, IdSpace::Random)
    }

    pub(crate) fn is_random(&self) -> bool {
        matches!(self, IdSpace::Random(_))
    }

    /// How `id` appears on the wire.
    pub(crate) fn public(&self, id: AccountId) -> PublicId {
        match self {
            IdSpace::Sequential => PublicId::Number(id),
            IdSpace::Random(key) => PublicId::Text(key.encode(id)),
        }
    }

    /// The id a client's text names (a path segment, a string in a body), or `None` when it
    /// names no account at all.
    pub(crate) fn parse(&self, text: &str) -> Option<AccountId> {
        match self {
            IdSpace::Sequential => request::parse_id(text),
            IdSpace::Random(key) => key.decode(text),
        }
    }
}

/// An account id as a client sees it: a JSON number or a JSON string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicId {
    Number(AccountId),
    Text(String),
}

impl Serialize for PublicId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            PublicId::Number(n) => serializer.serialize_i64(*n),
            PublicId::Text(s) => serializer.serialize_str(s),
        }
    }
}

impl fmt::Display for PublicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublicId::Number(n) => write!(f, "{n}"),
            PublicId::Text(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests;
