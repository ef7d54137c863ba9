//! The agent's status update manager: one ordered stream of updates per task, forwarded to the
//! master one at a time and retried with backoff until the scheduler acknowledges it.
//!
//! This is what makes Mesos status updates at-least-once: the next update of a task is held
//! back until the previous one is acknowledged, and an unacknowledged one is re-sent from
//! `retry_min` doubling up to `retry_max` (10 s and 10 min on a real agent).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mesoflow_proto::mesos::v1;

#[derive(Debug, Default)]
struct Stream {
    pending: VecDeque<v1::TaskStatus>,
    /// Every uuid seen on this stream, to drop duplicates the executor re-sends.
    seen: HashSet<Bytes>,
    next_retry: Option<Instant>,
    backoff: Duration,
}

/// Per-task update streams of one agent.
#[derive(Debug)]
pub struct StatusUpdateManager {
    streams: HashMap<(String, String), Stream>,
    retry_min: Duration,
    retry_max: Duration,
}

/// Why an acknowledgement was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("no pending status update for task {0}")]
    NoStream(String),
    #[error("unexpected acknowledgement for task {0}: uuid does not match the pending update")]
    Mismatch(String),
}

impl StatusUpdateManager {
    pub fn new(retry_min: Duration, retry_max: Duration) -> Self {
        Self {
            streams: HashMap::new(),
            retry_min,
            retry_max,
        }
    }

    /// Queues an update; returns it if it must be forwarded now (it is the stream's head).
    /// Updates without a uuid are not managed and are forwarded as they are.
    pub fn update(
        &mut self,
        now: Instant,
        framework_id: &str,
        status: v1::TaskStatus,
    ) -> Option<v1::TaskStatus> {
        let Some(uuid) = status.uuid.clone() else {
            return Some(status);
        };
        let key = (framework_id.to_string(), status.task_id.value.clone());
        let stream = self.streams.entry(key).or_default();
        if !stream.seen.insert(uuid) {
            return None;
        }
        stream.pending.push_back(status);
        if stream.pending.len() == 1 {
            stream.backoff = self.retry_min;
            stream.next_retry = Some(now + self.retry_min);
            return stream.pending.front().cloned();
        }
        None
    }

    /// Applies a scheduler acknowledgement; returns the next update to forward, if any.
    pub fn acknowledge(
        &mut self,
        now: Instant,
        framework_id: &str,
        task_id: &str,
        uuid: &[u8],
    ) -> Result<Option<v1::TaskStatus>, AckError> {
        let key = (framework_id.to_string(), task_id.to_string());
        let Some(stream) = self.streams.get_mut(&key) else {
            return Err(AckError::NoStream(task_id.to_string()));
        };
        match stream.pending.front() {
            Some(head) if head.uuid.as_deref() == Some(uuid) => {}
            Some(_) => return Err(AckError::Mismatch(task_id.to_string())),
            None => return Err(AckError::NoStream(task_id.to_string())),
        }
        let acked = stream.pending.pop_front();
        let terminal = acked.is_some_and(|s| v1::is_terminal_state(s.state));
        if let Some(next) = stream.pending.front().cloned() {
            stream.backoff = self.retry_min;
            stream.next_retry = Some(now + self.retry_min);
            return Ok(Some(next));
        }
        stream.next_retry = None;
        if terminal {
            self.streams.remove(&key);
        }
        Ok(None)
    }

    /// Updates whose retry time has come, with the backoff doubled (capped).
    pub fn due(&mut self, now: Instant) -> Vec<(String, v1::TaskStatus)> {
        let mut out = Vec::new();
        for ((fw, _), stream) in self.streams.iter_mut() {
            if let (Some(at), Some(head)) = (stream.next_retry, stream.pending.front())
                && now >= at
            {
                stream.backoff = (stream.backoff * 2).min(self.retry_max);
                stream.next_retry = Some(now + stream.backoff);
                out.push((fw.clone(), head.clone()));
            }
        }
        out
    }

    /// Every stream's head, to re-send after (re-)registering with a master.
    pub fn heads(&mut self, now: Instant) -> Vec<(String, v1::TaskStatus)> {
        let mut out = Vec::new();
        for ((fw, _), stream) in self.streams.iter_mut() {
            if let Some(head) = stream.pending.front() {
                stream.backoff = self.retry_min;
                stream.next_retry = Some(now + self.retry_min);
                out.push((fw.clone(), head.clone()));
            }
        }
        out
    }

    /// The earliest retry time.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.streams.values().filter_map(|s| s.next_retry).min()
    }

    /// Unacknowledged updates of a framework, over all its tasks (a test hook).
    pub fn pending_of(&self, framework_id: &str) -> usize {
        self.streams
            .iter()
            .filter(|((fw, _), _)| fw == framework_id)
            .map(|(_, s)| s.pending.len())
            .sum()
    }

    /// Whether the task still has unacknowledged updates.
    pub fn has_pending(&self, framework_id: &str, task_id: &str) -> bool {
        self.streams
            .get(&(framework_id.to_string(), task_id.to_string()))
            .is_some_and(|s| !s.pending.is_empty())
    }

    /// Drops every stream of a framework (it was removed).
    pub fn remove_framework(&mut self, framework_id: &str) {
        self.streams.retain(|(fw, _), _| fw != framework_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(task: &str, state: v1::TaskState) -> v1::TaskStatus {
        v1::TaskStatus {
            task_id: v1::TaskId { value: task.into() },
            state: state as i32,
            uuid: Some(crate::wire::new_uuid_bytes()),
            ..Default::default()
        }
    }

    #[test]
    fn holds_back_later_updates_until_the_head_is_acknowledged() {
        let t0 = Instant::now();
        let mut m = StatusUpdateManager::new(Duration::from_secs(10), Duration::from_secs(600));
        let running = status("t", v1::TaskState::TaskRunning);
        let finished = status("t", v1::TaskState::TaskFinished);
        assert_eq!(m.update(t0, "f", running.clone()), Some(running.clone()));
        assert_eq!(m.update(t0, "f", finished.clone()), None);
        // A duplicate (executor re-sent it on re-subscribe) is ignored.
        assert_eq!(m.update(t0, "f", running.clone()), None);
        assert_eq!(
            m.acknowledge(t0, "f", "t", finished.uuid.as_ref().unwrap()),
            Err(AckError::Mismatch("t".into()))
        );
        let next = m
            .acknowledge(t0, "f", "t", running.uuid.as_ref().unwrap())
            .unwrap();
        assert_eq!(next, Some(finished.clone()));
        assert_eq!(
            m.acknowledge(t0, "f", "t", finished.uuid.as_ref().unwrap()),
            Ok(None)
        );
        assert!(!m.has_pending("f", "t"));
    }

    #[test]
    fn retries_with_doubling_backoff_capped() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut m = StatusUpdateManager::new(s(10), s(25));
        let running = status("t", v1::TaskState::TaskRunning);
        m.update(t0, "f", running.clone());
        assert!(m.due(t0 + s(9)).is_empty());
        assert_eq!(m.due(t0 + s(10)), vec![("f".to_string(), running.clone())]);
        assert_eq!(m.poll_timeout(), Some(t0 + s(30)));
        assert_eq!(m.due(t0 + s(30)).len(), 1);
        assert_eq!(m.poll_timeout(), Some(t0 + s(55)));
    }
}
