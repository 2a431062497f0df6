//! Membership changes: adding a backend while traffic flows and removing one. Both persist the
//! topology before they return, so that a restart neither forgets an added backend nor brings a
//! removed one back.

use super::*;

/// Why a backend could not be added or removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("there is no backend named {0}")]
    UnknownBackend(String),
    #[error(
        "{0} is the primary and cannot be removed; promote another backend first (`lockstep backend promote NAME`)"
    )]
    IsPrimary(String),
    #[error("a backend named {0} already exists; pick another name or remove it first")]
    NameTaken(String),
    #[error("backend {existing} already has the URL {url}")]
    UrlTaken { existing: String, url: String },
    #[error(
        "invalid backend name {0:?}: use letters, digits, '-', '_' or '.' (at most 64 characters)"
    )]
    BadName(String),
    #[error(
        "invalid URL {url:?} for backend {name}: {reason} (write it like http://127.0.0.1:9001)"
    )]
    BadUrl {
        name: String,
        url: String,
        reason: String,
    },
    #[error("the journal could not persist the topology: {0}")]
    Journal(String),
}

impl Replicator {
    /// Adds an empty backend in state `joining`. It takes no part in replication until a
    /// catch-up admits it.
    pub async fn add_backend(
        &self,
        name: &str,
        url: &str,
        implementation: &str,
    ) -> Result<Arc<Backend>, MembershipError> {
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_name {
            return Err(MembershipError::BadName(name.to_owned()));
        }
        let parsed =
            lockstep_config::parse_backend_url(url).map_err(|reason| MembershipError::BadUrl {
                name: name.to_owned(),
                url: url.to_owned(),
                reason,
            })?;
        let implementation = if implementation.is_empty() {
            "default"
        } else {
            implementation
        };
        let _one_change = self.topology_change.lock().await;
        let backend = Arc::new(Backend::with_identity(name, parsed, implementation));
        backend.set_state(BackendState::Joining);
        if let Err(rejected) = self.pool.add(backend) {
            return Err(match self.pool.get(&rejected.name) {
                Some(_) => MembershipError::NameTaken(rejected.name.clone()),
                None => {
                    let existing = self
                        .pool
                        .all()
                        .into_iter()
                        .find(|b| b.url == rejected.url)
                        .map(|b| b.name.clone())
                        .unwrap_or_default();
                    MembershipError::UrlTaken {
                        existing,
                        url: rejected.url.to_string(),
                    }
                }
            });
        }
        self.removed.lock().retain(|r| r.name != name);
        let backend = self.pool.get(name).expect("just added");
        self.topology_changed(
            "backend-added",
            Some(name),
            &format!("{name} ({implementation}) at {}", backend.url),
        );
        self.persist_topology_now()
            .await
            .map_err(|e| MembershipError::Journal(e.to_string()))?;
        // A copy added again under this name starts from nothing: its old ids mean nothing.
        self.journal
            .forget_ids(name, 0)
            .await
            .map_err(|e| MembershipError::Journal(e.to_string()))?;
        Ok(backend)
    }

    /// Removes a backup. Admission is fenced and drained around the removal, so no request in
    /// flight counts on it.
    pub async fn remove_backend(&self, name: &str) -> Result<Arc<Backend>, MembershipError> {
        let _one_change = self.topology_change.lock().await;
        if self.pool.get(name).is_none() {
            return Err(MembershipError::UnknownBackend(name.to_owned()));
        }
        if self.pool.primary().name == name {
            return Err(MembershipError::IsPrimary(name.to_owned()));
        }
        let fenced_at = std::time::Instant::now();
        self.fence();
        self.drain().await;
        let removed = self.pool.remove(name);
        self.unfence();
        Replicator::record_pause("remove", fenced_at.elapsed());
        let backend = removed.ok_or_else(|| MembershipError::UnknownBackend(name.to_owned()))?;
        self.removed.lock().push(BackendRecord {
            name: backend.name.clone(),
            url: backend.url.to_string(),
            implementation: backend.implementation.clone(),
            state: "removed".to_owned(),
            acked_seq: backend.acked_seq(),
        });
        self.announce(
            "backend-removed",
            Some(name),
            Some(backend.implementation.clone()),
            &format!(
                "{name} was {} at request {}",
                backend.state(),
                backend.acked_seq()
            ),
        );
        self.persist_topology_now()
            .await
            .map_err(|e| MembershipError::Journal(e.to_string()))?;
        Ok(backend)
    }

    /// Remembers a backend removed before a restart (from the persisted topology).
    pub(crate) fn remember_removed(&self, record: &BackendRecord) {
        let mut removed = self.removed.lock();
        removed.retain(|r| r.name != record.name);
        removed.push(record.clone());
    }

    /// Whether `backend` is still the pool's backend of that name (not removed, not replaced).
    pub(crate) fn is_member(&self, backend: &Arc<Backend>) -> bool {
        self.pool
            .get(&backend.name)
            .is_some_and(|b| Arc::ptr_eq(&b, backend))
    }
}
