//! Entry points: a TOML string or a file in, a validated [`Config`] or the first error out.

use std::path::Path;

use crate::error::ConfigError;
use crate::raw::{
    RawAdmin, RawCatchup, RawCheckpoint, RawConfig, RawEvents, RawGateway, RawHealth,
    RawIdempotency, RawJournal, RawLog, RawReplication,
};
use crate::syntax::syntax_error;
use crate::types::{
    AdminConfig, BackendConfig, CatchupConfig, CheckpointConfig, Config, EventsConfig,
    GatewayConfig, HealthConfig, IdempotencyConfig, JournalConfig, LogConfig, ReplicationConfig,
    Role, TransactionsConfig,
};
use crate::validate;

#[cfg(test)]
mod tests;

impl Config {
    /// Parses and validates a configuration written in TOML.
    pub fn from_toml_str(input: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(input).map_err(|e| syntax_error(input, &e))?;
        validate::validate(raw)
    }

    /// Reads, parses and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let input = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml_str(&input)
    }

    /// The primary backend; validation guarantees there is exactly one.
    pub fn primary(&self) -> &BackendConfig {
        self.backends
            .iter()
            .find(|b| b.role == Role::Primary)
            .expect("a validated Config has exactly one primary")
    }

    /// The backups, in config order.
    pub fn backups(&self) -> impl Iterator<Item = &BackendConfig> {
        self.backends.iter().filter(|b| b.role == Role::Backup)
    }

    /// The backend called `name`, if any.
    pub fn backend(&self, name: &str) -> Option<&BackendConfig> {
        self.backends.iter().find(|b| b.name == name)
    }
}

// The typed defaults are the raw defaults run through validation, so there is one source of truth
// for every default value.

impl Default for GatewayConfig {
    fn default() -> Self {
        validate::gateway(&RawGateway::default()).expect("the default [gateway] is valid")
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        validate::admin(&RawAdmin::default()).expect("the default [admin] is valid")
    }
}

impl Default for JournalConfig {
    fn default() -> Self {
        validate::journal(&RawJournal::default()).expect("the default [journal] is valid")
    }
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        validate::replication(&RawReplication::default())
            .expect("the default [replication] is valid")
    }
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        validate::idempotency(&RawIdempotency::default())
            .expect("the default [idempotency] is valid")
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        validate::health(&RawHealth::default()).expect("the default [health] is valid")
    }
}

impl Default for CatchupConfig {
    fn default() -> Self {
        validate::catchup(&RawCatchup::default()).expect("the default [catchup] is valid")
    }
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        validate::checkpoint(&RawCheckpoint::default()).expect("the default [checkpoint] is valid")
    }
}

impl Default for TransactionsConfig {
    fn default() -> Self {
        validate::transactions(&crate::raw::RawTransactions::default())
            .expect("the default [transactions] is valid")
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        validate::events(&RawEvents::default()).expect("the default [events] is valid")
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        validate::log(&RawLog::default()).expect("the default [log] is valid")
    }
}
