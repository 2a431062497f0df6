//! Lanes and turnstiles: how requests of one lane reach every backend in seq order while other
//! lanes proceed concurrently.
//!
//! At admission each request takes, for every backend that participates, the next position in
//! that backend's queue for the lane. A [`Ticket`] waits until every earlier position on the same
//! (lane, backend) has finished, and lets the next one go when it is dropped — whether the request
//! was sent, skipped or failed — so a failure can never wedge a lane.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

/// The per-lane positions, kept under the replicator's admission lock.
#[derive(Debug, Default)]
pub(crate) struct Lanes {
    lanes: HashMap<String, LaneQueues>,
}

#[derive(Debug, Default)]
struct LaneQueues {
    /// Requests admitted on this lane that have not finished everywhere.
    in_flight: usize,
    /// Per backend name: the next position to hand out and the turn it is at.
    queues: HashMap<String, Queue>,
}

#[derive(Debug)]
struct Queue {
    next: u64,
    turn: Arc<watch::Sender<u64>>,
}

impl Lanes {
    /// Admits one request on `lane` for the named backends; one ticket per backend, in the
    /// order given.
    pub(crate) fn admit(&mut self, lane: &str, backends: &[&str]) -> Vec<Ticket> {
        self.lanes.entry(lane.to_owned()).or_default().in_flight += 1;
        self.extend(lane, backends)
    }

    /// More places on `lane` for the named backends, for a request admitted earlier (a
    /// transaction's requests reach the backups at commit); the lane's request count is
    /// unchanged.
    pub(crate) fn extend(&mut self, lane: &str, backends: &[&str]) -> Vec<Ticket> {
        let entry = self.lanes.entry(lane.to_owned()).or_default();
        backends
            .iter()
            .map(|name| {
                let q = entry
                    .queues
                    .entry((*name).to_owned())
                    .or_insert_with(|| Queue {
                        next: 0,
                        turn: Arc::new(watch::Sender::new(0)),
                    });
                let position = q.next;
                q.next += 1;
                Ticket {
                    turn: q.turn.clone(),
                    position,
                }
            })
            .collect()
    }

    /// One request on `lane` has finished everywhere (all its tickets dropped).
    pub(crate) fn release(&mut self, lane: &str) {
        if let Some(entry) = self.lanes.get_mut(lane) {
            entry.in_flight -= 1;
            if entry.in_flight == 0 {
                self.lanes.remove(lane);
            }
        }
    }

    /// Lanes with requests in flight.
    #[cfg(test)]
    pub(crate) fn active(&self) -> usize {
        self.lanes.len()
    }
}

/// A place in one backend's queue for one lane.
#[derive(Debug)]
pub(crate) struct Ticket {
    turn: Arc<watch::Sender<u64>>,
    position: u64,
}

impl Ticket {
    /// Waits until every earlier request of this lane has finished on this backend.
    pub(crate) async fn wait_turn(&self) {
        let mut rx = self.turn.subscribe();
        // The sender lives in this ticket, so the channel cannot close while we wait.
        let _ = rx.wait_for(|turn| *turn >= self.position).await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let next = self.position + 1;
        self.turn.send_modify(|turn| *turn = (*turn).max(next));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn tickets_on_one_lane_run_in_admission_order() {
        let mut lanes = Lanes::default();
        let mut tickets: Vec<Ticket> = (0..5)
            .map(|_| lanes.admit("a", &["b1"]).pop().unwrap())
            .collect();
        let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        // Spawn in reverse so that the runtime would run them out of order if it could.
        while let Some(t) = tickets.pop() {
            let order = order.clone();
            handles.push(tokio::spawn(async move {
                t.wait_turn().await;
                order.lock().push(t.position);
                drop(t);
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn other_lanes_do_not_wait() {
        let mut lanes = Lanes::default();
        let first_a = lanes.admit("a", &["b1"]).pop().unwrap();
        let second_a = lanes.admit("a", &["b1"]).pop().unwrap();
        let first_b = lanes.admit("b", &["b1"]).pop().unwrap();
        first_a.wait_turn().await;
        // Lane b proceeds while lane a's first request is still holding its turn.
        tokio::time::timeout(Duration::from_secs(5), first_b.wait_turn())
            .await
            .unwrap();
        // Lane a's second request waits for the first.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), second_a.wait_turn())
                .await
                .is_err()
        );
        drop(first_a);
        tokio::time::timeout(Duration::from_secs(5), second_a.wait_turn())
            .await
            .unwrap();
    }

    #[test]
    fn lanes_are_forgotten_when_idle() {
        let mut lanes = Lanes::default();
        let t1 = lanes.admit("x", &["p", "b"]);
        let t2 = lanes.admit("x", &["p", "b"]);
        assert_eq!(lanes.active(), 1);
        drop((t1, t2));
        lanes.release("x");
        assert_eq!(lanes.active(), 1);
        lanes.release("x");
        assert_eq!(lanes.active(), 0);
    }
}
