//! What the scheduler client tells its owner: events to act on and the fatal errors that end
//! the client.

use bytes::Bytes;
use mesoflow_proto::mesos::v1::{
    AgentId, ExecutorId, FrameworkId, InverseOffer, MasterInfo, Offer, OfferId, OperationStatus,
    TaskId, TaskStatus,
};

/// Proof that a status update carried a uuid and may be acknowledged. Hand it back to
/// `acknowledge` **after** the new task state is persisted; updates without a uuid (from the
/// master: reconciliation, invalid launches, agent removal) get no token and are never acked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckToken {
    /// Agent the update came from.
    pub agent_id: AgentId,
    /// Task the update is about.
    pub task_id: TaskId,
    /// The update's uuid, copied back unchanged (16 bytes).
    pub uuid: Bytes,
}

/// Proof that an operation status update may be acknowledged (see [`AckToken`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationAckToken {
    /// Agent of the operation, if any.
    pub agent_id: Option<AgentId>,
    /// Resource provider of the operation, if any.
    pub resource_provider_id: Option<mesoflow_proto::mesos::v1::ResourceProviderId>,
    /// `status.uuid.value`, copied back unchanged.
    pub uuid: Bytes,
    /// The operation the status is about.
    pub operation_id: mesoflow_proto::mesos::v1::OperationId,
}

/// How an executor process ended, decoded from the raw POSIX `waitpid` status Mesos reports
/// in FAILURE events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited normally with this code (`WEXITSTATUS`).
    Exited(i32),
    /// Killed by this signal (`WTERMSIG`).
    Signaled(i32),
    /// A status that is neither (stopped/continued or not POSIX): the raw value.
    Other(i32),
}

impl ExitStatus {
    /// Decodes a raw `waitpid` status.
    pub fn from_wait_status(raw: i32) -> Self {
        let low = raw & 0x7f;
        if low == 0 {
            ExitStatus::Exited((raw >> 8) & 0xff)
        } else if low != 0x7f {
            ExitStatus::Signaled(low)
        } else {
            ExitStatus::Other(raw)
        }
    }
}

/// Why the subscription was lost (the client reconnects by itself after these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// No event (not even a heartbeat) for 5 heartbeat intervals.
    HeartbeatTimeout,
    /// The event stream ended or failed (EOF, reset, RecordIO error).
    StreamEnded(String),
    /// An event on the stream could not be decoded.
    MalformedEvent(String),
    /// The master redirected us to the leader, or answered that we are not subscribed.
    LeaderChanged,
    /// The subscription attempt failed (connection error, 5xx, timeout, bad response).
    SubscribeFailed(String),
    /// The owner asked for a reconnect.
    Requested,
}

/// Errors that end the client: it stops and never resubscribes by itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FatalError {
    /// The framework id is dead (torn down or failover timeout expired). Clear the stored
    /// framework id; a new SUBSCRIBE without id registers a new framework.
    #[error(
        "Mesos says the framework has been removed ({message}); its id can never be used again: \
         clear the stored framework id and start fresh"
    )]
    FrameworkRemoved {
        /// The master's ERROR message.
        message: String,
    },
    /// Another instance subscribed with our framework id and took over.
    #[error(
        "another scheduler instance subscribed with this framework id ({message}); this instance \
         stops so the two do not fight"
    )]
    FailedOver {
        /// The master's ERROR message.
        message: String,
    },
    /// The master refused our credentials (401).
    #[error(
        "the Mesos master rejected the framework's credentials (HTTP 401{}): check the \
         principal and secret",
        challenge.as_ref().map(|c| format!(", WWW-Authenticate: {c}")).unwrap_or_default()
    )]
    Unauthorized {
        /// The `WWW-Authenticate` challenge, if any.
        challenge: Option<String>,
    },
    /// The master answered SUBSCRIBE with an ERROR event (invalid FrameworkInfo, roles,
    /// unauthorized principal or role, ...).
    #[error("the Mesos master rejected the subscription: {message}")]
    SubscriptionRejected {
        /// The master's ERROR message.
        message: String,
    },
    /// The master refused the SUBSCRIBE request itself (4xx other than 401): a client bug or a
    /// proxy in the way.
    #[error("the Mesos master refused SUBSCRIBE with HTTP {status}: {message}")]
    SubscribeRefused {
        /// HTTP status.
        status: u16,
        /// Body text.
        message: String,
    },
    /// The framework was torn down at our request.
    #[error("the framework was torn down")]
    TornDown,
}

/// What the client reports to its owner, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum SchedulerEvent {
    /// Subscribed (again). Persist `framework_id` durably before acting on anything else: it
    /// is needed to fail over. Every offer from an earlier subscription is void.
    Subscribed {
        /// The framework's id (new on a first subscription).
        framework_id: FrameworkId,
        /// The leading master, if it said.
        master_info: Option<MasterInfo>,
        /// Heartbeat interval the master announced.
        heartbeat_interval_secs: f64,
    },
    /// The subscription was lost; the client is reconnecting. All offers are void.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
    /// New offers: answer each one promptly with accept or decline.
    Offers(Vec<Offer>),
    /// Maintenance requests.
    InverseOffers(Vec<InverseOffer>),
    /// An offer is gone; accepting it would fail.
    Rescinded(OfferId),
    /// An inverse offer is gone.
    InverseOfferRescinded(OfferId),
    /// A task status update. If `ack` is set, persist the new state, then call `acknowledge`.
    Update {
        /// The status.
        status: Box<TaskStatus>,
        /// Present when the update carries a uuid and must be acknowledged after persisting.
        ack: Option<AckToken>,
    },
    /// An offer operation status update (only for operations with an id).
    OperationUpdate {
        /// The status.
        status: Box<OperationStatus>,
        /// Present when the update must be acknowledged.
        ack: Option<OperationAckToken>,
    },
    /// Opaque bytes from one of our executors (best effort).
    Message {
        /// Sending agent.
        agent_id: AgentId,
        /// Sending executor.
        executor_id: ExecutorId,
        /// The bytes.
        data: Bytes,
    },
    /// An executor exited. Its tasks' terminal updates arrive separately.
    ExecutorExited {
        /// Agent it ran on.
        agent_id: AgentId,
        /// The executor.
        executor_id: ExecutorId,
        /// Exit status, decoded.
        status: Option<ExitStatus>,
    },
    /// An agent was removed. Its tasks' terminal updates arrive separately.
    AgentLost {
        /// The agent.
        agent_id: AgentId,
    },
    /// Every task of the explicit reconciliation started at the last subscription has been
    /// answered.
    ReconciliationComplete,
    /// A call the master did not queue (non-2xx, or the request failed). Calls are not retried:
    /// the result of the action still arrives (or not) through events.
    CallFailed {
        /// Id returned when the call was issued.
        call_id: u64,
        /// The call's type name (e.g. `ACCEPT`).
        call_type: &'static str,
        /// What went wrong.
        error: String,
    },
    /// The client stopped for good.
    Fatal(FatalError),
}
