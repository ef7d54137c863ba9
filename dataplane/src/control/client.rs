//! The TaskManager's side: dials the JobManager, registers, then exchanges messages.
//!
//! [`ControlClient::split`] gives a cloneable [`ControlSender`] (heartbeats and state changes
//! from any task) and a [`ControlReceiver`] (the loop that handles deployments). Sends are
//! queued to a writer task and never wait on the network.

use super::codes;
use super::config::ControlConfig;
use super::error::ControlError;
use super::frame::encode_frame_within;
use super::stream::{self, FrameReader, Outbox, run_writer};
use crate::shuffle::tls::{ExecutorCredentials, server_name_for};
use mesoflow_proto::control::{
    JobManagerMessage, RegisterTaskManager, RegistrationAccepted, TaskManagerMessage,
    job_manager_message, task_manager_message,
};
use prost::Message as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// The connection, shared by both halves; closed when the last half is dropped.
struct Link {
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    server_id: String,
}

impl Drop for Link {
    fn drop(&mut self) {
        stream::close(
            &self.connection,
            codes::SHUTDOWN,
            "TaskManager closed the control connection",
        );
        self.endpoint.close(
            quinn::VarInt::from_u32(codes::SHUTDOWN),
            b"TaskManager shutting down",
        );
    }
}

/// A registered TaskManager's control connection to the JobManager.
pub struct ControlClient {
    sender: ControlSender,
    receiver: ControlReceiver,
}

impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlClient")
            .field("server_id", &self.sender.link.server_id)
            .field("remote", &self.sender.link.connection.remote_address())
            .finish_non_exhaustive()
    }
}

/// The sending half: cheap to clone, usable from any task.
#[derive(Clone)]
pub struct ControlSender {
    outbox: Outbox,
    link: Arc<Link>,
}

/// The receiving half.
pub struct ControlReceiver {
    reader: FrameReader,
    link: Arc<Link>,
}

/// The local address to dial from: loopback for a loopback JobManager (so local clusters and
/// tests never listen on every interface), otherwise any interface of the same family.
fn local_bind_addr(server: SocketAddr) -> SocketAddr {
    let ip = match (server.ip().is_loopback(), server.is_ipv4()) {
        (true, true) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (true, false) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        (false, true) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (false, false) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

impl ControlClient {
    /// Dials the JobManager at `server_addr`, checks that its certificate names `server_id`,
    /// registers with `register` and waits for the answer, all within
    /// [`ControlConfig::handshake_timeout`]. `register.task_manager_id` must be the id in
    /// `credentials`. Must be called inside a tokio runtime.
    pub async fn connect(
        server_addr: SocketAddr,
        server_id: &str,
        credentials: &ExecutorCredentials,
        register: RegisterTaskManager,
        config: ControlConfig,
    ) -> Result<(Self, RegistrationAccepted), ControlError> {
        config.validate()?;
        tokio::runtime::Handle::try_current().map_err(|_| ControlError::NoRuntime)?;
        let mut client_config =
            quinn::ClientConfig::new(Arc::new(credentials.quic_client_config()?));
        client_config.transport_config(Arc::new(config.transport(false)));
        let bind_addr = local_bind_addr(server_addr);
        let endpoint = quinn::Endpoint::client(bind_addr).map_err(|err| ControlError::Bind {
            addr: bind_addr,
            reason: err.to_string(),
        })?;
        let connect_error = |reason: String| ControlError::Connect {
            server_id: server_id.to_owned(),
            addr: server_addr,
            reason,
        };
        let server_name = server_name_for(server_id)?;
        let deadline = tokio::time::Instant::now() + config.handshake_timeout;
        let connecting = endpoint
            .connect_with(client_config, server_addr, &server_name)
            .map_err(|err| connect_error(err.to_string()))?;
        let connection = match tokio::time::timeout_at(deadline, connecting).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(err)) => return Err(connect_error(err.to_string())),
            Err(_) => {
                return Err(connect_error(format!(
                    "no handshake within {:?}",
                    config.handshake_timeout
                )));
            }
        };
        let link = Arc::new(Link {
            endpoint,
            connection: connection.clone(),
            server_id: server_id.to_owned(),
        });
        let (send, mut reader) =
            match tokio::time::timeout_at(deadline, register_on(&connection, register, &config))
                .await
            {
                Ok(Ok(halves)) => halves,
                Ok(Err(err)) => return Err(err),
                Err(_) => return Err(ControlError::RegistrationTimeout(config.handshake_timeout)),
            };
        let answer = match tokio::time::timeout_at(deadline, reader.next()).await {
            Ok(Ok(Some(frame))) => JobManagerMessage::decode(frame)?,
            Ok(Ok(None)) => {
                return Err(stream_ended_error(&connection).await);
            }
            Ok(Err(err)) => return Err(err),
            Err(_) => return Err(ControlError::RegistrationTimeout(config.handshake_timeout)),
        };
        let accepted = match answer.kind {
            Some(job_manager_message::Kind::Accepted(accepted)) => accepted,
            Some(job_manager_message::Kind::Refused(refused)) => {
                return Err(ControlError::Refused(refused.reason));
            }
            _ => {
                return Err(ControlError::Protocol(
                    "the JobManager's first message is not a registration answer".into(),
                ));
            }
        };
        let (outbox, frames) = Outbox::new(config.send_queue_messages, config.max_frame_bytes);
        tokio::spawn(run_writer(
            send,
            None,
            frames,
            connection,
            server_id.to_owned(),
        ));
        tracing::info!(server = %server_id, addr = %server_addr, "registered with the JobManager");
        let client = Self {
            sender: ControlSender {
                outbox,
                link: link.clone(),
            },
            receiver: ControlReceiver { reader, link },
        };
        Ok((client, accepted))
    }

    /// Queues a message for the JobManager without waiting.
    pub fn send(&self, message: TaskManagerMessage) -> Result<(), ControlError> {
        self.sender.send(message)
    }

    /// The next message from the JobManager; `Ok(None)` once it finished the stream, an error
    /// if the connection was lost.
    pub async fn recv(&mut self) -> Result<Option<JobManagerMessage>, ControlError> {
        self.receiver.recv().await
    }

    /// Separates the halves, e.g. to send heartbeats from one task and receive in another.
    pub fn split(self) -> (ControlSender, ControlReceiver) {
        (self.sender, self.receiver)
    }

    /// Closes the connection now (the JobManager sees the TaskManager disconnect).
    pub fn close(&self, reason: &str) {
        self.sender.close(reason);
    }

    /// The JobManager's address.
    pub fn remote_address(&self) -> SocketAddr {
        self.sender.link.connection.remote_address()
    }
}

impl ControlSender {
    /// Queues a message for the JobManager without waiting. Fails if the connection is gone,
    /// the message exceeds `max_frame_bytes`, or `send_queue_messages` are already queued.
    pub fn send(&self, message: TaskManagerMessage) -> Result<(), ControlError> {
        if let Some(task_manager_message::Kind::Register(_)) = message.kind {
            return Err(ControlError::Protocol(
                "already registered: a second Register would close the connection".into(),
            ));
        }
        self.outbox
            .push(&message, &self.link.server_id, &self.link.connection)
    }

    /// Closes the connection now.
    pub fn close(&self, reason: &str) {
        stream::close(&self.link.connection, codes::SHUTDOWN, reason);
    }
}

impl ControlReceiver {
    /// The next message from the JobManager; `Ok(None)` once it finished the stream, an error
    /// if the connection was lost.
    pub async fn recv(&mut self) -> Result<Option<JobManagerMessage>, ControlError> {
        match self.reader.next().await {
            Ok(Some(frame)) => Ok(Some(JobManagerMessage::decode(frame)?)),
            Ok(None) => Ok(None),
            Err(err @ ControlError::Frame(_)) => {
                stream::close(&self.link.connection, codes::PROTOCOL, &err.to_string());
                Err(err)
            }
            Err(err) => Err(err),
        }
    }
}

/// Opens the stream and sends the registration.
async fn register_on(
    connection: &quinn::Connection,
    register: RegisterTaskManager,
    config: &ControlConfig,
) -> Result<(quinn::SendStream, FrameReader), ControlError> {
    let (mut send, recv) = connection
        .open_bi()
        .await
        .map_err(|err| stream::connection_error(&err))?;
    let frame = encode_frame_within(
        &TaskManagerMessage {
            kind: Some(task_manager_message::Kind::Register(register)),
        },
        config.max_frame_bytes,
    )?;
    if let Err(err) = send.write_chunk(frame).await {
        return Err(match err {
            quinn::WriteError::ConnectionLost(err) => stream::connection_error(&err),
            other => ControlError::ConnectionLost(other.to_string()),
        });
    }
    Ok((send, FrameReader::new(recv, config.max_frame_bytes)))
}

/// The JobManager ended the stream without answering: report why the connection closed.
async fn stream_ended_error(connection: &quinn::Connection) -> ControlError {
    let wait = std::time::Duration::from_secs(1);
    match tokio::time::timeout(wait, connection.closed()).await {
        Ok(err) => stream::connection_error(&err),
        Err(_) => ControlError::ConnectionLost(
            "the JobManager ended the control stream without answering the registration".into(),
        ),
    }
}
