//! The JobManager's side: accepts TaskManager connections, checks their registration, and turns
//! what they send into [`ControlEvent`]s.
//!
//! Events of one TaskManager arrive in order: `Registered`, its messages, then `Disconnected`.
//! Membership changes and event delivery are serialised, so once a connection was replaced or
//! dropped no event of it follows, and a `Disconnected` never overtakes the `Registered` of
//! the connection that replaced it.

use super::codes;
use super::config::ControlConfig;
use super::error::ControlError;
use super::frame::encode_frame;
use super::stream::{self, FrameReader, Outbox, run_writer};
use crate::shuffle::tls::ExecutorCredentials;
use mesoflow_proto::control::{
    JobManagerMessage, PROTOCOL_VERSION, RegisterTaskManager, RegistrationAccepted,
    RegistrationRefused, TaskManagerMessage, job_manager_message, task_manager_message,
};
use prost::Message as _;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a refused peer gets to receive the refusal before its connection is closed.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// What happened on the control channel.
#[derive(Clone, Debug, PartialEq)]
pub enum ControlEvent {
    /// A TaskManager registered (its id is the one in its verified certificate). If it was
    /// already connected, the old connection was closed and `Disconnected` reported first.
    Registered {
        task_manager_id: String,
        register: RegisterTaskManager,
        remote: SocketAddr,
    },
    /// A message from a registered TaskManager.
    Message {
        task_manager_id: String,
        message: TaskManagerMessage,
    },
    /// A registered TaskManager's connection ended (closed, timed out, protocol error, replaced).
    Disconnected {
        task_manager_id: String,
        reason: String,
    },
}

struct Session {
    /// Tells this connection apart from an earlier or later one of the same TaskManager.
    serial: u64,
    connection: quinn::Connection,
    outbox: Outbox,
}

struct Shared {
    config: ControlConfig,
    sessions: parking_lot::Mutex<HashMap<String, Session>>,
    /// Held while membership changes and while events are delivered (see the module docs).
    membership: tokio::sync::Mutex<()>,
    events: mpsc::Sender<ControlEvent>,
    next_serial: AtomicU64,
}

/// The JobManager's control endpoint. Dropping it closes every connection.
pub struct ControlServer {
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    events: tokio::sync::Mutex<mpsc::Receiver<ControlEvent>>,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl ControlServer {
    /// Binds the control port and starts accepting TaskManagers. Must be called inside a tokio
    /// runtime, whose tasks then carry the connections. `credentials` is the JobManager's
    /// certificate from the cluster CA; TaskManagers dial it by its id.
    pub fn bind(
        addr: SocketAddr,
        credentials: &ExecutorCredentials,
        config: ControlConfig,
    ) -> Result<Self, ControlError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ControlError::NoRuntime)?;
        let mut server_config =
            quinn::ServerConfig::with_crypto(Arc::new(credentials.quic_server_config()?));
        server_config.transport_config(Arc::new(config.transport(true)));
        let endpoint = {
            let _guard = runtime.enter();
            quinn::Endpoint::server(server_config, addr).map_err(|err| ControlError::Bind {
                addr,
                reason: err.to_string(),
            })?
        };
        let local_addr = endpoint.local_addr().map_err(|err| ControlError::Bind {
            addr,
            reason: err.to_string(),
        })?;
        let (events_tx, events_rx) = mpsc::channel(config.event_queue_messages);
        let shared = Arc::new(Shared {
            config,
            sessions: parking_lot::Mutex::default(),
            membership: tokio::sync::Mutex::new(()),
            events: events_tx,
            next_serial: AtomicU64::new(1),
        });
        runtime.spawn(accept_connections(endpoint.clone(), shared.clone()));
        tracing::info!(addr = %local_addr, "control server listening");
        Ok(Self {
            endpoint,
            local_addr,
            shared,
            events: tokio::sync::Mutex::new(events_rx),
        })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next event; `None` once the server is closed and every connection has ended.
    pub async fn next_event(&self) -> Option<ControlEvent> {
        self.events.lock().await.recv().await
    }

    /// Queues `message` for a registered TaskManager without waiting. Fails if it is not
    /// connected, the message exceeds `max_frame_bytes`, or its queue is full.
    pub fn send(
        &self,
        task_manager_id: &str,
        message: JobManagerMessage,
    ) -> Result<(), ControlError> {
        // Encode outside the lock: a large deployment should not stall other senders.
        let (outbox, connection) = {
            let sessions = self.shared.sessions.lock();
            let session = sessions
                .get(task_manager_id)
                .ok_or_else(|| ControlError::UnknownTaskManager(task_manager_id.to_owned()))?;
            (session.outbox.clone(), session.connection.clone())
        };
        outbox.push(&message, task_manager_id, &connection)
    }

    /// The TaskManagers currently registered, sorted.
    pub fn connected(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.shared.sessions.lock().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Closes one TaskManager's connection (a `Disconnected` event follows). Returns whether it
    /// was connected.
    pub fn disconnect(&self, task_manager_id: &str, reason: &str) -> bool {
        match self.shared.sessions.lock().get(task_manager_id) {
            Some(session) => {
                stream::close(&session.connection, codes::SHUTDOWN, reason);
                true
            }
            None => false,
        }
    }

    /// Closes every connection and stops accepting new ones.
    pub fn close(&self) {
        self.endpoint.close(
            quinn::VarInt::from_u32(codes::SHUTDOWN),
            b"JobManager shutting down",
        );
    }

    /// Waits until closed connections have told their peers (call after [`close`](Self::close)
    /// before exiting the process).
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    /// Delivers an event from connection `serial` of `id` if that connection is still the
    /// registered one. `false` if it is not (or nobody listens any more): stop reading it.
    async fn emit_if_current(&self, id: &str, serial: u64, event: ControlEvent) -> bool {
        let _membership = self.membership.lock().await;
        if !self.is_current(id, serial) {
            return false;
        }
        self.events.send(event).await.is_ok()
    }

    fn is_current(&self, id: &str, serial: u64) -> bool {
        self.sessions
            .lock()
            .get(id)
            .is_some_and(|session| session.serial == serial)
    }
}

async fn accept_connections(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(serve_connection(incoming, shared.clone()));
        if shared.events.is_closed() {
            break;
        }
    }
    tracing::debug!("control server stopped accepting connections");
}

/// A connection that passed the handshake but whose registration was not accepted.
struct Refusal {
    reason: String,
    /// The stream to send `RegistrationRefused` on, if the peer opened one.
    send: Option<quinn::SendStream>,
}

impl Refusal {
    fn new(reason: impl Into<String>, send: Option<quinn::SendStream>) -> Self {
        Self {
            reason: reason.into(),
            send,
        }
    }
}

/// A registration that passed every check.
struct Registration {
    register: RegisterTaskManager,
    send: quinn::SendStream,
    reader: FrameReader,
}

async fn serve_connection(incoming: quinn::Incoming, shared: Arc<Shared>) {
    let remote = incoming.remote_address();
    let deadline = tokio::time::Instant::now() + shared.config.handshake_timeout;
    let connection = match tokio::time::timeout_at(deadline, incoming).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(err)) => {
            tracing::warn!(%remote, error = %err, "refused control connection in the TLS handshake");
            return;
        }
        Err(_) => {
            tracing::warn!(%remote, "refused control connection: no TLS handshake within the handshake timeout");
            return;
        }
    };
    let Some(peer_id) = stream::peer_id(&connection) else {
        tracing::warn!(%remote, "refused control connection: its certificate names no mesoflow TaskManager");
        stream::close(
            &connection,
            codes::REFUSED,
            "the certificate names no mesoflow TaskManager",
        );
        return;
    };
    let registration = match tokio::time::timeout_at(
        deadline,
        read_registration(&connection, &peer_id, &shared.config),
    )
    .await
    {
        Ok(Ok(registration)) => registration,
        Ok(Err(refusal)) => return refuse(connection, remote, &peer_id, refusal).await,
        Err(_) => {
            let refusal = Refusal::new(
                format!(
                    "no Register message within the handshake timeout of {:?}",
                    shared.config.handshake_timeout
                ),
                None,
            );
            return refuse(connection, remote, &peer_id, refusal).await;
        }
    };
    let Registration {
        register,
        send,
        mut reader,
    } = registration;

    let Some(serial) = install(&shared, &connection, send, remote, &peer_id, register).await else {
        return;
    };

    let reason = loop {
        let failure = match reader.next().await {
            Ok(Some(frame)) => match TaskManagerMessage::decode(frame) {
                Ok(TaskManagerMessage {
                    kind: Some(task_manager_message::Kind::Register(_)),
                }) => ControlError::Protocol("a second Register on the same connection".into()),
                Ok(message) => {
                    let event = ControlEvent::Message {
                        task_manager_id: peer_id.clone(),
                        message,
                    };
                    if shared.emit_if_current(&peer_id, serial, event).await {
                        continue;
                    }
                    // Replaced, or the server is gone: nobody wants this connection any more.
                    return;
                }
                Err(err) => ControlError::Decode(err),
            },
            Ok(None) => {
                stream::close(&connection, codes::SHUTDOWN, "control stream finished");
                break "the TaskManager finished its control stream".to_owned();
            }
            Err(err @ ControlError::Frame(_)) => err,
            Err(err) => break err.to_string(),
        };
        // The peer broke the protocol: tell it why and drop it, keep serving the others.
        let reason = failure.to_string();
        tracing::warn!(task_manager = %peer_id, %remote, %reason, "closing control connection");
        stream::close(&connection, codes::PROTOCOL, &reason);
        break reason;
    };

    let _membership = shared.membership.lock().await;
    let removed = {
        let mut sessions = shared.sessions.lock();
        match sessions.get(&peer_id) {
            Some(session) if session.serial == serial => sessions.remove(&peer_id).is_some(),
            _ => false,
        }
    };
    if removed {
        tracing::info!(task_manager = %peer_id, %remote, %reason, "TaskManager disconnected");
        let _ = shared
            .events
            .send(ControlEvent::Disconnected {
                task_manager_id: peer_id,
                reason,
            })
            .await;
    }
}

/// Accepts the stream and checks the first frame: a `Register` of this protocol version that
/// names the certificate's id.
async fn read_registration(
    connection: &quinn::Connection,
    peer_id: &str,
    config: &ControlConfig,
) -> Result<Registration, Refusal> {
    let (send, recv) = connection
        .accept_bi()
        .await
        .map_err(|err| Refusal::new(format!("no control stream: {err}"), None))?;
    let mut reader = FrameReader::new(recv, config.max_frame_bytes);
    let first = match reader.next().await {
        Ok(Some(frame)) => frame,
        Ok(None) => {
            return Err(Refusal::new(
                "the stream ended before a Register message",
                Some(send),
            ));
        }
        Err(err) => return Err(Refusal::new(err.to_string(), Some(send))),
    };
    let message = match TaskManagerMessage::decode(first) {
        Ok(message) => message,
        Err(err) => {
            let err = ControlError::Decode(err);
            return Err(Refusal::new(format!("first message: {err}"), Some(send)));
        }
    };
    let register = match message.kind {
        Some(task_manager_message::Kind::Register(register)) => register,
        other => {
            return Err(Refusal::new(
                format!(
                    "the first message must be Register, got {}",
                    kind_name(other.as_ref())
                ),
                Some(send),
            ));
        }
    };
    if register.protocol_version != PROTOCOL_VERSION {
        return Err(Refusal::new(
            format!(
                "control protocol version {} is not supported (this JobManager speaks {PROTOCOL_VERSION}): run the same mesoflow release on the JobManager and TaskManagers",
                register.protocol_version
            ),
            Some(send),
        ));
    }
    if register.task_manager_id != peer_id {
        return Err(Refusal::new(
            format!(
                "the registration names TaskManager '{}' but its certificate names '{peer_id}'",
                register.task_manager_id
            ),
            Some(send),
        ));
    }
    Ok(Registration {
        register,
        send,
        reader,
    })
}

fn kind_name(kind: Option<&task_manager_message::Kind>) -> &'static str {
    match kind {
        None => "an empty message",
        Some(task_manager_message::Kind::Register(_)) => "Register",
        Some(task_manager_message::Kind::Heartbeat(_)) => "Heartbeat",
        Some(task_manager_message::Kind::SubtaskState(_)) => "SubtaskStateChange",
        Some(task_manager_message::Kind::AcknowledgeCheckpoint(_)) => "AcknowledgeCheckpoint",
        Some(task_manager_message::Kind::DeclineCheckpoint(_)) => "DeclineCheckpoint",
    }
}

/// Sends `RegistrationRefused` (best effort, bounded wait) and closes with the reason.
async fn refuse(
    connection: quinn::Connection,
    remote: SocketAddr,
    peer_id: &str,
    refusal: Refusal,
) {
    tracing::warn!(task_manager = %peer_id, %remote, reason = %refusal.reason, "refused TaskManager registration");
    if let Some(mut send) = refusal.send {
        let frame = encode_frame(&JobManagerMessage {
            kind: Some(job_manager_message::Kind::Refused(RegistrationRefused {
                reason: refusal.reason.clone(),
            })),
        });
        let delivered = async {
            send.write_chunk(frame).await.ok()?;
            send.finish().ok()?;
            send.stopped().await.ok()
        };
        let _ = tokio::time::timeout(REFUSAL_LINGER, delivered).await;
    }
    stream::close(&connection, codes::REFUSED, &refusal.reason);
}

/// Makes this connection the TaskManager's current one (closing an older one), starts its
/// writer with `RegistrationAccepted` first, and reports it. Returns the session's serial.
async fn install(
    shared: &Shared,
    connection: &quinn::Connection,
    send: quinn::SendStream,
    remote: SocketAddr,
    peer_id: &str,
    register: RegisterTaskManager,
) -> Option<u64> {
    let serial = shared.next_serial.fetch_add(1, Ordering::Relaxed);
    let (outbox, frames) = Outbox::new(
        shared.config.send_queue_messages,
        shared.config.max_frame_bytes,
    );
    let heartbeat_interval_ms =
        u64::try_from(shared.config.heartbeat_interval.as_millis()).unwrap_or(u64::MAX);
    let accepted = encode_frame(&JobManagerMessage {
        kind: Some(job_manager_message::Kind::Accepted(RegistrationAccepted {
            heartbeat_interval_ms,
        })),
    });
    tokio::spawn(run_writer(
        send,
        Some(accepted),
        frames,
        connection.clone(),
        peer_id.to_owned(),
    ));

    let _membership = shared.membership.lock().await;
    let replaced = shared.sessions.lock().insert(
        peer_id.to_owned(),
        Session {
            serial,
            connection: connection.clone(),
            outbox,
        },
    );
    if let Some(old) = replaced {
        let old_remote = old.connection.remote_address();
        stream::close(
            &old.connection,
            codes::REPLACED,
            "replaced by a newer registration of the same TaskManager",
        );
        tracing::info!(task_manager = %peer_id, %old_remote, %remote, "TaskManager re-registered; closed its previous connection");
        let event = ControlEvent::Disconnected {
            task_manager_id: peer_id.to_owned(),
            reason: format!("replaced by a new registration from {remote}"),
        };
        if shared.events.send(event).await.is_err() {
            return None;
        }
    }
    tracing::info!(task_manager = %peer_id, %remote, slots = register.slots, "TaskManager registered");
    let event = ControlEvent::Registered {
        task_manager_id: peer_id.to_owned(),
        register,
        remote,
    };
    shared.events.send(event).await.ok()?;
    Some(serial)
}
