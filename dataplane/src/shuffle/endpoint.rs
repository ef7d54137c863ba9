//! One QUIC endpoint per executor: binds the UDP port, dials and accepts connections to other
//! executors (one per pair), opens a stream per outgoing channel and routes incoming streams to
//! the receivers registered for them.
//!
//! **Connections.** A connection is dialed lazily, when the first channel to that executor
//! opens; concurrent opens to the same executor wait for that one dial. When two executors dial
//! each other at the same time, both connections carry channels, and the one dialed by the
//! executor with the smaller id becomes the one both sides open new channels on, so they converge
//! on a single connection. (The other is not closed while channels may still use it; it carries
//! only keep-alives afterwards.)
//!
//! **Identity.** Both ends verify the peer's certificate against the cluster CA during the TLS 1.3
//! handshake; the executor id is read from the verified certificate, never from the peer's data.

use super::batch::ShuffleRecord;
use super::channel::{ChannelHeader, ChannelId, OPEN_PAYLOAD_LEN, record_type_fingerprint};
use super::config::ShuffleConfig;
use super::error::ShuffleError;
use super::frame::{FrameDecoder, FrameKind, HEADER_LEN};
use super::outbox::{Outbox, OutboxLimits};
use super::receiver::{ArrivalNotify, IncomingChannel, RemoteReceiver, run_reader};
use super::sender::{RemoteSender, SenderShared, codes, run_writer};
use super::tls::{ExecutorCredentials, executor_id_of_certificate, server_name_for};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use tokio::sync::{mpsc, oneshot};

/// The connection in use towards one peer.
#[derive(Default)]
struct PeerSlot {
    /// The connection new channels open on, and whether this executor dialed it.
    current: Option<(quinn::Connection, bool)>,
}

enum ChannelSlot {
    /// A receiver is registered; the stream has not arrived.
    Waiting(oneshot::Sender<IncomingChannel>),
    /// The stream arrived first.
    Parked(IncomingChannel),
    /// Receiver and stream are connected.
    Taken,
}

/// Bytes moved to and from one peer, counted per frame (the application's bytes, without QUIC's
/// own overhead).
#[derive(Default, Debug)]
pub(crate) struct TrafficCounters {
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
}

/// Traffic with one peer executor since the endpoint started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerTraffic {
    /// The peer's executor id.
    pub peer: String,
    /// Frame bytes this executor wrote to streams towards the peer.
    pub bytes_sent: u64,
    /// Frame bytes this executor read from the peer's streams.
    pub bytes_received: u64,
}

#[derive(Default)]
struct Registry {
    channels: HashMap<ChannelId, ChannelSlot>,
    parked: usize,
}

struct Inner {
    endpoint: quinn::Endpoint,
    executor_id: String,
    config: ShuffleConfig,
    client_config: quinn::ClientConfig,
    peers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<PeerSlot>>>>,
    registry: Mutex<Registry>,
    traffic: Mutex<HashMap<String, Arc<TrafficCounters>>>,
    runtime: tokio::runtime::Handle,
}

/// This executor's shuffle endpoint. Cheap to clone; dropping the last clone closes every
/// connection, like [`ShuffleEndpoint::close`].
#[derive(Clone)]
pub struct ShuffleEndpoint {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ShuffleEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShuffleEndpoint")
            .field("executor_id", &self.inner.executor_id)
            .field("local_addr", &self.inner.endpoint.local_addr().ok())
            .finish()
    }
}

/// A UDP socket with large kernel buffers (bulk QUIC traffic drops packets with the defaults).
fn udp_socket(addr: SocketAddr, buffer_bytes: usize) -> Result<std::net::UdpSocket, ShuffleError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let io = |what: &str, err: std::io::Error| ShuffleError::Io(format!("{what} {addr}: {err}"));
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|err| io("create UDP socket for", err))?;
    for (name, result) in [
        ("SO_SNDBUF", socket.set_send_buffer_size(buffer_bytes)),
        ("SO_RCVBUF", socket.set_recv_buffer_size(buffer_bytes)),
    ] {
        if let Err(err) = result {
            tracing::warn!(option = name, bytes = buffer_bytes, error = %err, "could not size the shuffle socket buffer");
        }
    }
    socket.bind(&addr.into()).map_err(|err| io("bind", err))?;
    socket
        .set_nonblocking(true)
        .map_err(|err| io("configure", err))?;
    Ok(socket.into())
}

impl ShuffleEndpoint {
    /// Binds the endpoint (one UDP port) and starts accepting peers. Must be called inside a
    /// tokio runtime, whose tasks then carry the shuffle's I/O.
    pub fn bind(
        addr: SocketAddr,
        credentials: &ExecutorCredentials,
        config: ShuffleConfig,
    ) -> Result<Self, ShuffleError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ShuffleError::Io("ShuffleEndpoint::bind must run inside a tokio runtime".into())
        })?;
        let transport = Arc::new(config.transport());
        let mut server_config =
            quinn::ServerConfig::with_crypto(Arc::new(credentials.quic_server_config()?));
        server_config.transport_config(transport.clone());
        let mut client_config =
            quinn::ClientConfig::new(Arc::new(credentials.quic_client_config()?));
        client_config.transport_config(transport);
        let socket = udp_socket(addr, config.socket_buffer_bytes)?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|err| ShuffleError::Io(format!("start QUIC endpoint on {addr}: {err}")))?;
        let inner = Arc::new(Inner {
            endpoint: endpoint.clone(),
            executor_id: credentials.executor_id.clone(),
            config,
            client_config,
            peers: Mutex::default(),
            registry: Mutex::default(),
            traffic: Mutex::default(),
            runtime,
        });
        inner
            .runtime
            .spawn(accept_connections(endpoint, Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, ShuffleError> {
        self.inner
            .endpoint
            .local_addr()
            .map_err(|err| ShuffleError::Io(err.to_string()))
    }

    /// This executor's id, as its certificate names it.
    pub fn executor_id(&self) -> &str {
        &self.inner.executor_id
    }

    /// Opens the sending end of `channel` towards executor `peer_id` listening at `peer_addr`.
    pub async fn open_sender<T: ShuffleRecord>(
        &self,
        peer_id: &str,
        peer_addr: SocketAddr,
        channel: ChannelId,
    ) -> Result<RemoteSender<T>, ShuffleError> {
        let connection = self.inner.connection_to(peer_id, peer_addr).await?;
        let stream = connection
            .open_uni()
            .await
            .map_err(|err| ShuffleError::ConnectionLost {
                peer: peer_id.to_owned(),
                reason: err.to_string(),
            })?;
        let config = &self.inner.config;
        let limits = OutboxLimits {
            batch_bytes: config.batch_bytes,
            max_frame_bytes: config.max_frame_bytes,
            queue_bytes: config.sender_queue_bytes,
            buffer_timeout: config.buffer_timeout,
        };
        let header = ChannelHeader {
            channel,
            record_type: record_type_fingerprint::<T>(),
        }
        .encode();
        let estimate = std::mem::size_of::<T::Archived>();
        let shared = Arc::new(SenderShared {
            outbox: Mutex::new(Outbox::new(limits, header, estimate)),
            changed: Default::default(),
            wake_writer: Default::default(),
        });
        let counters = self.inner.counters(peer_id);
        self.inner.runtime.spawn(run_writer(
            shared.clone(),
            stream,
            peer_id.to_owned(),
            counters,
        ));
        Ok(RemoteSender::new(shared, channel))
    }

    /// Registers the receiving end of `channel`. The producer may connect before or after.
    pub fn receiver<T: ShuffleRecord>(
        &self,
        channel: ChannelId,
    ) -> Result<RemoteReceiver<T>, ShuffleError> {
        self.receiver_notifying(channel, Box::new(|| {}))
    }

    /// Like [`ShuffleEndpoint::receiver`], calling `notify` whenever something arrives (and when
    /// the channel ends), so a consumer reading several channels with
    /// [`RemoteReceiver::try_recv`] can sleep until one has data.
    pub fn receiver_notifying<T: ShuffleRecord>(
        &self,
        channel: ChannelId,
        notify: ArrivalNotify,
    ) -> Result<RemoteReceiver<T>, ShuffleError> {
        let (stream_tx, stream_rx) = oneshot::channel();
        {
            let mut registry = self.inner.registry.lock();
            match registry.channels.remove(&channel) {
                None => {
                    registry
                        .channels
                        .insert(channel, ChannelSlot::Waiting(stream_tx));
                }
                Some(ChannelSlot::Parked(incoming)) => {
                    registry.parked -= 1;
                    registry.channels.insert(channel, ChannelSlot::Taken);
                    let _ = stream_tx.send(incoming);
                }
                Some(other) => {
                    registry.channels.insert(channel, other);
                    return Err(ShuffleError::DuplicateChannel {
                        channel: channel.to_string(),
                    });
                }
            }
        }
        let (tx, rx) = mpsc::channel(self.inner.config.receiver_queue_frames);
        self.inner.runtime.spawn(run_reader::<T>(
            stream_rx,
            tx,
            self.inner.config.max_frame_bytes,
            notify,
        ));
        let weak = Arc::downgrade(&self.inner);
        let release = Box::new(move || {
            if let Some(inner) = weak.upgrade() {
                inner.registry.lock().channels.remove(&channel);
            }
        });
        Ok(RemoteReceiver::new(rx, channel, release))
    }

    /// Which executor dialed the connection that new channels to `peer_id` use, if there is
    /// one (diagnostics; after a simultaneous dial both sides report the smaller id).
    pub async fn connection_initiator(&self, peer_id: &str) -> Option<String> {
        let slot = self.inner.peers.lock().get(peer_id).cloned()?;
        let slot = slot.lock().await;
        let (connection, dialed_by_me) = slot.current.as_ref()?;
        if connection.close_reason().is_some() {
            return None;
        }
        Some(if *dialed_by_me {
            self.inner.executor_id.clone()
        } else {
            peer_id.to_owned()
        })
    }

    /// Bytes exchanged with each peer so far.
    pub fn traffic(&self) -> Vec<PeerTraffic> {
        let mut all: Vec<PeerTraffic> = self
            .inner
            .traffic
            .lock()
            .iter()
            .map(|(peer, c)| PeerTraffic {
                peer: peer.clone(),
                bytes_sent: c.sent.load(Ordering::Relaxed),
                bytes_received: c.received.load(Ordering::Relaxed),
            })
            .collect();
        all.sort_by(|a, b| a.peer.cmp(&b.peer));
        all
    }

    /// Closes every connection at once (peers see their channels fail) and stops accepting.
    pub fn close(&self) {
        self.inner
            .endpoint
            .close(quinn::VarInt::from_u32(0), b"executor shutting down");
    }

    /// Waits until closed connections have told their peers.
    pub async fn wait_idle(&self) {
        self.inner.endpoint.wait_idle().await;
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: release the port and end the accept loop.
        self.endpoint
            .close(quinn::VarInt::from_u32(0), b"executor shutting down");
    }
}

impl Inner {
    /// The traffic counters of one peer.
    fn counters(&self, peer_id: &str) -> Arc<TrafficCounters> {
        self.traffic
            .lock()
            .entry(peer_id.to_owned())
            .or_default()
            .clone()
    }

    /// The connection to use for new channels to `peer_id`, dialing it if there is none.
    async fn connection_to(
        self: &Arc<Self>,
        peer_id: &str,
        peer_addr: SocketAddr,
    ) -> Result<quinn::Connection, ShuffleError> {
        let slot = self
            .peers
            .lock()
            .entry(peer_id.to_owned())
            .or_default()
            .clone();
        // Held across the dial, so concurrent opens towards one peer share a single dial.
        let mut slot = slot.lock().await;
        if let Some((connection, _)) = &slot.current
            && connection.close_reason().is_none()
        {
            return Ok(connection.clone());
        }
        let connect_error = |reason: String| ShuffleError::Connect {
            peer: peer_id.to_owned(),
            addr: peer_addr,
            reason,
        };
        let server_name = server_name_for(peer_id)?;
        let connecting = self
            .endpoint
            .connect_with(self.client_config.clone(), peer_addr, &server_name)
            .map_err(|err| connect_error(err.to_string()))?;
        let connection = connecting
            .await
            .map_err(|err| connect_error(err.to_string()))?;
        tracing::debug!(peer = peer_id, addr = %peer_addr, "shuffle connection dialed");
        self.runtime.spawn(serve_connection(
            connection.clone(),
            peer_id.to_owned(),
            Arc::downgrade(self),
        ));
        self.install(&mut slot, peer_id, connection.clone(), true);
        Ok(slot
            .current
            .as_ref()
            .map_or(connection, |(current, _)| current.clone()))
    }

    /// Decides which connection towards `peer_id` new channels use (see the module docs).
    fn install(
        &self,
        slot: &mut PeerSlot,
        peer_id: &str,
        connection: quinn::Connection,
        dialed_by_me: bool,
    ) {
        let replace = match &slot.current {
            None => true,
            Some((current, current_dialed_by_me)) => prefer_new_connection(
                &self.executor_id,
                peer_id,
                current.close_reason().is_some(),
                *current_dialed_by_me,
                dialed_by_me,
            ),
        };
        if replace {
            slot.current = Some((connection, dialed_by_me));
        }
    }

    /// Hands an incoming stream to its receiver, or parks it until the receiver registers.
    fn route(&self, incoming: IncomingChannel) {
        let channel = incoming.header.channel;
        let mut registry = self.registry.lock();
        let refuse = |mut incoming: IncomingChannel, code: u32, why: &str| {
            tracing::warn!(peer = %incoming.peer, channel = %channel, "refused shuffle stream: {why}");
            let _ = incoming.recv.stop(quinn::VarInt::from_u32(code));
        };
        match registry.channels.remove(&channel) {
            Some(ChannelSlot::Waiting(tx)) => {
                registry.channels.insert(channel, ChannelSlot::Taken);
                if let Err(incoming) = tx.send(incoming) {
                    refuse(incoming, codes::CONSUMER_GONE, "the receiver was dropped");
                }
            }
            Some(other) => {
                registry.channels.insert(channel, other);
                refuse(
                    incoming,
                    codes::DUPLICATE_CHANNEL,
                    "the channel is already open",
                );
            }
            None if registry.parked >= self.config.max_parked_streams => {
                refuse(
                    incoming,
                    codes::UNROUTABLE,
                    "too many streams wait for unregistered receivers",
                );
            }
            None => {
                registry.parked += 1;
                registry
                    .channels
                    .insert(channel, ChannelSlot::Parked(incoming));
            }
        }
    }
}

/// Should a new connection to `peer` replace the current one for new channels? Both executors
/// evaluate this with their roles swapped and reach the same answer, so they converge on the
/// connection dialed by the smaller executor id.
fn prefer_new_connection(
    me: &str,
    peer: &str,
    current_closed: bool,
    current_dialed_by_me: bool,
    new_dialed_by_me: bool,
) -> bool {
    if current_closed {
        return true;
    }
    let initiator = |by_me: bool| if by_me { me } else { peer };
    let (current, new) = (initiator(current_dialed_by_me), initiator(new_dialed_by_me));
    // The same side dialing again means it lost the old connection.
    current == new || new < current
}

/// The executor id in a connection's verified peer certificate.
fn peer_executor_id(connection: &quinn::Connection) -> Option<String> {
    let identity = connection.peer_identity()?;
    let chain = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    executor_id_of_certificate(chain.first()?)
}

async fn accept_connections(endpoint: quinn::Endpoint, inner: Weak<Inner>) {
    while let Some(incoming) = endpoint.accept().await {
        let inner = inner.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let connection = match incoming.await {
                Ok(connection) => connection,
                Err(err) => {
                    tracing::warn!(%remote, error = %err, "refused shuffle connection");
                    return;
                }
            };
            let Some(peer_id) = peer_executor_id(&connection) else {
                tracing::warn!(%remote, "refused shuffle connection: {}", ShuffleError::PeerIdentity);
                connection.close(
                    quinn::VarInt::from_u32(codes::BAD_HEADER),
                    b"no executor identity",
                );
                return;
            };
            tracing::debug!(peer = %peer_id, %remote, "shuffle connection accepted");
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let slot = strong
                .peers
                .lock()
                .entry(peer_id.clone())
                .or_default()
                .clone();
            strong.install(&mut *slot.lock().await, &peer_id, connection.clone(), false);
            drop(strong);
            serve_connection(connection, peer_id, inner).await;
        });
    }
}

/// Accepts the streams a peer opens on one connection and routes them by their header.
async fn serve_connection(connection: quinn::Connection, peer_id: String, inner: Weak<Inner>) {
    loop {
        let recv = match connection.accept_uni().await {
            Ok(recv) => recv,
            Err(err) => {
                tracing::debug!(peer = %peer_id, reason = %err, "shuffle connection ended");
                return;
            }
        };
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let timeout = strong.config.stream_header_timeout;
        drop(strong);
        let (inner, peer_id) = (inner.clone(), peer_id.clone());
        tokio::spawn(async move {
            let mut recv = recv;
            let reason = match tokio::time::timeout(timeout, read_channel_header(&mut recv)).await {
                Ok(Ok(header)) => {
                    if let Some(inner) = inner.upgrade() {
                        let counters = inner.counters(&peer_id);
                        counters
                            .received
                            .fetch_add((HEADER_LEN + OPEN_PAYLOAD_LEN) as u64, Ordering::Relaxed);
                        inner.route(IncomingChannel {
                            recv,
                            header,
                            peer: peer_id,
                            counters,
                        });
                    }
                    return;
                }
                Ok(Err(reason)) => reason,
                Err(_) => format!("no stream header within {timeout:?}"),
            };
            tracing::warn!(peer = %peer_id, "refused shuffle stream: {reason}");
            let _ = recv.stop(quinn::VarInt::from_u32(codes::BAD_HEADER));
        });
    }
}

/// Reads the fixed-size Open frame that starts every stream.
async fn read_channel_header(recv: &mut quinn::RecvStream) -> Result<ChannelHeader, String> {
    let mut bytes = [0u8; HEADER_LEN + OPEN_PAYLOAD_LEN];
    recv.read_exact(&mut bytes)
        .await
        .map_err(|err| err.to_string())?;
    let mut input = &bytes[..];
    let frame = FrameDecoder::new(OPEN_PAYLOAD_LEN)
        .decode(&mut input)
        .map_err(|err| err.to_string())?
        .ok_or_else(|| "incomplete header".to_owned())?;
    if frame.header.kind != FrameKind::Open {
        return Err(format!("first frame is {:?}, not Open", frame.header.kind));
    }
    ChannelHeader::decode(&frame.payload).map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::prefer_new_connection;

    #[test]
    fn simultaneous_dials_converge_on_the_smaller_ids_connection() {
        // "a" and "b" both dialed; each first installed its own connection.
        // On a: current = dialed by a; the incoming one was dialed by b: keep a's.
        assert!(!prefer_new_connection("a", "b", false, true, false));
        // On b: current = dialed by b; the incoming one was dialed by a: switch to it.
        assert!(prefer_new_connection("b", "a", false, true, false));
        // The incoming connection was installed first on a: a's own dial replaces it.
        assert!(prefer_new_connection("a", "b", false, false, true));
        // ... and on b, its own later dial does not replace a's.
        assert!(!prefer_new_connection("b", "a", false, false, true));
    }

    #[test]
    fn redials_and_dead_connections_are_replaced() {
        assert!(
            prefer_new_connection("b", "a", false, false, false),
            "a re-dialed b"
        );
        assert!(
            prefer_new_connection("a", "b", false, true, true),
            "a re-dialed b"
        );
        assert!(
            prefer_new_connection("b", "a", true, false, true),
            "current one is closed"
        );
    }
}
