//! The pipeline's side of minted identifiers (see [`crate::IdMap`]): every request leaves for a
//! backend translated canonical → local, every answer is brought back local → canonical before
//! it is compared or reaches a client, and the pairs an answer teaches are journaled before the
//! backend's ack.

use std::sync::Arc;
use std::time::Duration;

use lockstep_config::{CompareRule, TranslateRule};
use lockstep_journal::{Header, JournalError, RequestRecord, ResponseRecord, Seq};
use tracing::{info, warn};

use super::Replicator;
use crate::ids::{IdConflict, Minted, minted_pairs};
use crate::pool::Backend;
use crate::transport::TransportError;

/// How a request's route translates it: the gateway's classifier, set with
/// [`Replicator::set_translation`].
pub type TranslationRules = Arc<dyn Fn(&RequestRecord) -> TranslateRule + Send + Sync>;

/// The translation rules as the replicator keeps them.
#[derive(Clone)]
pub(crate) struct Translation(TranslationRules);

impl std::fmt::Debug for Translation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Translation(per route)")
    }
}

impl Replicator {
    /// Sets how each request's translation rule is found (its route's `translate`); without it,
    /// every request uses the default rule.
    pub fn set_translation(&self, rules: TranslationRules) {
        *self.translation.lock() = Some(Translation(rules));
    }

    pub(crate) fn translate_rule(&self, request: &RequestRecord) -> TranslateRule {
        let rules = self.translation.lock().clone();
        rules.map_or_else(TranslateRule::default, |f| (f.0)(request))
    }

    /// Sends `request` to `backend` through the transport, translated to its local ids.
    pub async fn send_translated(
        &self,
        backend: &Backend,
        request: &RequestRecord,
        extra: &[Header],
        timeout: Duration,
    ) -> Result<ResponseRecord, TransportError> {
        let local = (!backend.ids.is_identity())
            .then(|| {
                backend
                    .ids
                    .request_to_local(&self.translate_rule(request), request)
            })
            .flatten();
        let request = local.as_ref().unwrap_or(request);
        self.transport.send(backend, request, extra, timeout).await
    }

    /// `backend`'s answer to a read (a probe, a read while it is the primary) as a client must
    /// see it.
    pub fn answer_to_canonical(
        &self,
        backend: &Backend,
        rule: &CompareRule,
        answer: ResponseRecord,
    ) -> ResponseRecord {
        backend
            .ids
            .response_to_canonical(&rule.translate, &rule.mint, &answer)
            .unwrap_or(answer)
    }

    /// The primary's answer to `seq` as the client sees it. A primary with no pairs (it minted
    /// the canonical values) answers as it is. One with pairs (a promoted copy) is translated,
    /// and each value it mints now becomes canonical as minted — unless a client already holds
    /// that value for another record, in which case the client gets a new canonical value
    /// (`VALUE~N`) that only ever means this one.
    pub(crate) async fn primary_to_canonical(
        &self,
        primary: &Backend,
        seq: Seq,
        rule: &CompareRule,
        answer: ResponseRecord,
    ) -> ResponseRecord {
        if primary.ids.is_empty() || rule.mint.is_empty() && primary.ids.is_identity() {
            return answer;
        }
        let mut pairs: Vec<(Minted, Minted)> = Vec::new();
        for (value, _) in minted_pairs(&rule.mint, &answer, &answer) {
            if primary.ids.canonical(&value.text).is_some()
                || pairs.iter().any(|(_, l)| l.text == value.text)
            {
                continue;
            }
            let canonical = if primary.ids.local(&value.text).is_none() {
                value.clone()
            } else {
                let alias = (1u32..)
                    .map(|n| format!("{}~{n}", value.text))
                    .find(|c| primary.ids.local(c).is_none())
                    .expect("an unused alias");
                metrics::counter!("lockstep_id_collisions_total", "backend" => primary.name.clone())
                    .increment(1);
                warn!(seq, backend = %primary.name, value = %value.text, alias, "the primary minted a value clients already hold for another record; clients get an alias for it");
                Minted::string(alias)
            };
            pairs.push((canonical, value));
        }
        if !pairs.is_empty() {
            match primary.ids.learn(seq, &pairs) {
                Ok(new) if !new.is_empty() => {
                    if let Err(e) = self.journal.record_ids(seq, &primary.name, new).await {
                        warn!(seq, backend = %primary.name, error = %e, "the journal could not record the values the primary minted");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(seq, backend = %primary.name, error = %e, "could not adopt minted values")
                }
            }
        }
        self.answer_to_canonical(primary, rule, answer)
    }

    /// Learns the pairs `local` (the backup's own answer to `seq`) teaches against `canonical`
    /// (what the client got), journals the new ones, and returns the backup's answer as a client
    /// would see it. A pair that contradicts a known one is an error (a divergence).
    pub(crate) async fn learn_and_translate<'a>(
        &self,
        backup: &Backend,
        seq: Seq,
        rule: &CompareRule,
        canonical: &ResponseRecord,
        local: &'a ResponseRecord,
    ) -> Result<std::borrow::Cow<'a, ResponseRecord>, LearnError> {
        let pairs = minted_pairs(&rule.mint, canonical, local);
        if !pairs.is_empty() {
            let new = backup.ids.learn(seq, &pairs)?;
            if !new.is_empty() {
                self.journal
                    .record_ids(seq, &backup.name, new)
                    .await
                    .map_err(LearnError::Journal)?;
            }
        }
        Ok(
            match backup
                .ids
                .response_to_canonical(&rule.translate, &rule.mint, local)
            {
                Some(translated) => std::borrow::Cow::Owned(translated),
                None => std::borrow::Cow::Borrowed(local),
            },
        )
    }

    /// `backend` is back at its state of `after` (a catch-up replays the rest): the pairs
    /// learned later are forgotten, in memory and in the journal.
    pub(crate) async fn forget_ids_after(
        &self,
        backend: &Backend,
        after: Seq,
    ) -> Result<(), JournalError> {
        if backend.ids.is_empty() {
            return Ok(());
        }
        backend.ids.forget_after(after);
        info!(backend = %backend.name, after, pairs = backend.ids.len(), "minted identifiers after this request are relearned by the replay");
        self.journal.forget_ids(&backend.name, after).await
    }

    /// `backend` was loaded from a checkpoint: it holds the checkpoint source's ids, so it
    /// takes the source's pairs, in memory and in the journal.
    pub async fn adopt_ids(
        &self,
        backend: &Backend,
        pairs: &[(Seq, Vec<(String, String)>)],
    ) -> Result<(), JournalError> {
        backend.ids.replace(pairs);
        self.journal.forget_ids(&backend.name, 0).await?;
        for (seq, group) in pairs {
            self.journal
                .record_ids(*seq, &backend.name, group.clone())
                .await?;
        }
        Ok(())
    }

    /// Loads every backend's pairs from the journal (at start, before any request).
    pub async fn restore_ids(&self) -> Result<usize, JournalError> {
        let mut restored = 0;
        for group in self.journal.load_ids().await? {
            if let Some(b) = self.pool.get(&group.backend) {
                restored += group.pairs.len();
                b.ids.restore(group.seq, &group.pairs);
            }
        }
        Ok(restored)
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LearnError {
    #[error("minted values disagree: {0}")]
    Conflict(#[from] IdConflict),
    #[error("the journal could not record the minted values: {0}")]
    Journal(JournalError),
}
