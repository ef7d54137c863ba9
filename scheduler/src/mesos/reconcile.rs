//! Task reconciliation: which tasks to ask the master about, and when.
//!
//! After every SUBSCRIBED the master may not know (yet) about tasks on agents that are still
//! re-registering after a master failover, and simply does not answer for them. So the client
//! runs the loop Mesos recommends: put every non-terminal task in a set, send RECONCILE for the
//! set, wait with truncated exponential backoff, drop every task that got any update since the
//! loop started, and repeat until the set is empty. Independently it runs implicit
//! reconciliation (empty task list: "tell me everything you know") periodically, to discover
//! tasks the scheduler forgot.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use mesoflow_proto::mesos::v1::{AgentId, TaskId, is_terminal_state};

use mesoflow_dataplane::backoff::{Backoff, BackoffConfig};

/// A RECONCILE call to send: explicit (`tasks` listed) or implicit (`tasks` empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileRequest {
    /// Tasks with their agent when known; empty for implicit reconciliation.
    pub tasks: Vec<(TaskId, Option<AgentId>)>,
}

#[derive(Debug)]
struct Round {
    remaining: BTreeSet<String>,
    next_at: Instant,
    backoff: Backoff,
}

/// Tracks the framework's live tasks and drives explicit and implicit reconciliation.
#[derive(Debug)]
pub struct Reconciler {
    /// Non-terminal tasks we know: task id -> agent id (if known).
    tasks: BTreeMap<String, Option<AgentId>>,
    round: Option<Round>,
    backoff: BackoffConfig,
    implicit_interval: Duration,
    next_implicit: Option<Instant>,
    seed: u64,
}

impl Reconciler {
    /// A reconciler with the explicit loop's backoff and the implicit period.
    pub fn new(backoff: BackoffConfig, implicit_interval: Duration, seed: u64) -> Self {
        Self {
            tasks: BTreeMap::new(),
            round: None,
            backoff,
            implicit_interval,
            next_implicit: None,
            seed,
        }
    }

    /// Records a task we believe is live (restored from the owner's store, or just launched).
    pub fn track(&mut self, task_id: &TaskId, agent_id: Option<AgentId>) {
        let entry = self.tasks.entry(task_id.value.clone()).or_default();
        if agent_id.is_some() {
            *entry = agent_id;
        }
    }

    /// Stops tracking a task (the owner knows it is gone).
    pub fn forget(&mut self, task_id: &TaskId) {
        self.tasks.remove(&task_id.value);
        if let Some(round) = &mut self.round {
            round.remaining.remove(&task_id.value);
        }
    }

    /// Number of non-terminal tasks tracked.
    pub fn live_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// Whether an explicit reconciliation loop is running.
    pub fn in_progress(&self) -> bool {
        self.round.is_some()
    }

    /// Applies a status update. Returns `true` when it completed the explicit loop.
    pub fn on_update(&mut self, task_id: &TaskId, agent_id: Option<&AgentId>, state: i32) -> bool {
        if is_terminal_state(state) {
            self.tasks.remove(&task_id.value);
        } else {
            // A task we did not know about (e.g. found by implicit reconciliation) is tracked:
            // the owner decides whether to adopt or kill it.
            let entry = self.tasks.entry(task_id.value.clone()).or_default();
            if let Some(agent) = agent_id {
                *entry = Some(agent.clone());
            }
        }
        let Some(round) = &mut self.round else {
            return false;
        };
        round.remaining.remove(&task_id.value);
        if round.remaining.is_empty() {
            self.round = None;
            return true;
        }
        false
    }

    /// Starts (or restarts) the loop after a SUBSCRIBED. Returns the first explicit request, or
    /// `None` when there is nothing to reconcile (the loop is then already complete).
    pub fn start(&mut self, now: Instant) -> Option<ReconcileRequest> {
        self.next_implicit = Some(now + self.implicit_interval);
        if self.tasks.is_empty() {
            self.round = None;
            return None;
        }
        self.seed = self.seed.wrapping_add(1);
        let mut backoff = Backoff::new(self.backoff, self.seed);
        let next_at = now + backoff.next_delay();
        let remaining: BTreeSet<String> = self.tasks.keys().cloned().collect();
        let request = self.request_for(&remaining);
        self.round = Some(Round {
            remaining,
            next_at,
            backoff,
        });
        Some(request)
    }

    /// Stops both loops (the subscription was lost; they restart on the next SUBSCRIBED).
    pub fn stop(&mut self) {
        self.round = None;
        self.next_implicit = None;
    }

    /// When [`poll`](Self::poll) next has something to send.
    pub fn next_deadline(&self) -> Option<Instant> {
        let explicit = self.round.as_ref().map(|r| r.next_at);
        match (explicit, self.next_implicit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The request due at `now`, if any: an explicit retry first, then an implicit round.
    pub fn poll(&mut self, now: Instant) -> Option<ReconcileRequest> {
        if let Some(round) = &mut self.round
            && round.next_at <= now
        {
            round.next_at = now + round.backoff.next_delay();
            let remaining = round.remaining.clone();
            return Some(self.request_for(&remaining));
        }
        if let Some(at) = self.next_implicit
            && at <= now
        {
            self.next_implicit = Some(now + self.implicit_interval);
            return Some(ReconcileRequest { tasks: Vec::new() });
        }
        None
    }

    fn request_for(&self, ids: &BTreeSet<String>) -> ReconcileRequest {
        ReconcileRequest {
            tasks: ids
                .iter()
                .map(|id| {
                    (
                        TaskId { value: id.clone() },
                        self.tasks.get(id).cloned().flatten(),
                    )
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesoflow_proto::mesos::v1::TaskState;

    fn tid(s: &str) -> TaskId {
        TaskId { value: s.into() }
    }

    #[test]
    fn explicit_loop_retries_with_backoff_until_all_answered() {
        let t0 = Instant::now();
        let mut r = Reconciler::new(BackoffConfig::RECONCILE, Duration::from_secs(900), 1);
        r.track(
            &tid("a"),
            Some(AgentId {
                value: "ag1".into(),
            }),
        );
        r.track(&tid("b"), None);
        let first = r.start(t0).expect("two tasks to reconcile");
        assert_eq!(first.tasks.len(), 2);
        assert_eq!(
            first.tasks[0].1.as_ref().map(|a| a.value.as_str()),
            Some("ag1")
        );
        // Not yet due.
        assert_eq!(r.poll(t0 + Duration::from_millis(900)), None);
        let first_retry = r.next_deadline().expect("armed");
        assert!(
            first_retry >= t0 + Duration::from_secs(1) && first_retry < t0 + Duration::from_secs(2)
        );
        assert!(!r.on_update(&tid("a"), None, TaskState::TaskRunning as i32));
        let retry = r.poll(first_retry).expect("b unanswered");
        assert_eq!(retry.tasks, vec![(tid("b"), None)]);
        // The next retry waits longer (2 s base -> [2, 4) s).
        let second = r.next_deadline().expect("armed");
        assert!(second - first_retry >= Duration::from_secs(2));
        assert!(r.on_update(&tid("b"), None, TaskState::TaskLost as i32));
        assert!(!r.in_progress());
        assert_eq!(r.live_tasks(), 1, "b is terminal and forgotten");
        // Only the implicit timer is left, 15 min after the start.
        assert_eq!(r.next_deadline(), Some(t0 + Duration::from_secs(900)));
        assert_eq!(
            r.poll(t0 + Duration::from_secs(900)),
            Some(ReconcileRequest { tasks: vec![] })
        );
        assert_eq!(r.next_deadline(), Some(t0 + Duration::from_secs(1800)));
    }

    #[test]
    fn nothing_to_reconcile_completes_at_once() {
        let mut r = Reconciler::new(BackoffConfig::RECONCILE, Duration::from_secs(900), 1);
        assert_eq!(r.start(Instant::now()), None);
        assert!(!r.in_progress());
    }
}
