//! The sender side of one channel as a pure state machine: records and events go in, frames to
//! write come out, time is passed in. The tokio shell (`sender`) only moves frames to QUIC.
//!
//! Memory is bounded: the producer may add records only while the sealed-but-unwritten bytes
//! are below `sender_queue_bytes` ([`Outbox::has_room`]), and one call adds at most one frame.
//! So the bytes buffered here never exceed `sender_queue_bytes + 2 * batch_bytes` for records
//! smaller than a batch (see [`Outbox::high_water_bytes`]); QUIC's own send buffer is bounded by
//! its send window and the peer's flow control.

use super::batch::{DataFrameBuilder, ShuffleRecord};
use super::error::ShuffleError;
use super::event::ChannelEvent;
use super::frame::{FrameKind, HEADER_LEN};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Bounds and timing of one outbox.
#[derive(Clone, Copy, Debug)]
pub struct OutboxLimits {
    pub batch_bytes: usize,
    pub max_frame_bytes: usize,
    pub queue_bytes: usize,
    pub buffer_timeout: Duration,
}

/// Where the channel stands.
#[derive(Clone, Debug, PartialEq)]
enum Phase {
    Open,
    /// A terminal event is queued: no more input, drain then finish the stream.
    Closing,
    /// The stream is finished and the peer has read everything.
    Done,
    Failed(String),
}

/// Sender-side state of one channel.
#[derive(Debug)]
pub struct Outbox {
    limits: OutboxLimits,
    pending: Option<DataFrameBuilder>,
    pending_since: Option<Instant>,
    /// Sealed frames in send order; the first `priority_prefix` are priority frames.
    ready: VecDeque<Bytes>,
    priority_prefix: usize,
    ready_bytes: usize,
    /// Taken by the writer, not yet accepted by QUIC.
    in_flight_bytes: usize,
    high_water_bytes: usize,
    bytes_per_record: usize,
    phase: Phase,
    failure: Option<ShuffleError>,
    frames_sealed: u64,
}

impl Outbox {
    /// A new outbox whose first frame is `open` (the stream header).
    pub fn new(limits: OutboxLimits, open: Bytes, first_record_estimate: usize) -> Self {
        let mut outbox = Self {
            limits,
            pending: None,
            pending_since: None,
            ready: VecDeque::new(),
            priority_prefix: 0,
            ready_bytes: 0,
            in_flight_bytes: 0,
            high_water_bytes: 0,
            bytes_per_record: first_record_estimate.max(1),
            phase: Phase::Open,
            failure: None,
            frames_sealed: 0,
        };
        outbox.enqueue_back(open);
        outbox
    }

    /// May the producer add records now? (Otherwise it waits: backpressure.)
    pub fn has_room(&self) -> bool {
        self.ready_bytes + self.in_flight_bytes < self.limits.queue_bytes
    }

    /// Bytes held by this channel's sender: pending, queued and being written.
    pub fn buffered_bytes(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.payload_len())
            + self.ready_bytes
            + self.in_flight_bytes
    }

    /// The most bytes ever buffered at once.
    pub fn high_water_bytes(&self) -> usize {
        self.high_water_bytes
    }

    /// Data frames sealed so far.
    pub fn frames_sealed(&self) -> u64 {
        self.frames_sealed
    }

    /// The failure, if the channel failed.
    pub fn failure(&self) -> Option<&ShuffleError> {
        self.failure.as_ref()
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Is a frame pending (so the writer must arm the buffer timeout)?
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    fn check_open(&self) -> Result<(), ShuffleError> {
        if let Some(err) = &self.failure {
            return Err(err.clone());
        }
        match self.phase {
            Phase::Open => Ok(()),
            _ => Err(ShuffleError::ChannelClosed),
        }
    }

    fn note_high_water(&mut self) {
        self.high_water_bytes = self.high_water_bytes.max(self.buffered_bytes());
    }

    fn enqueue_back(&mut self, frame: Bytes) {
        self.ready_bytes += frame.len();
        self.ready.push_back(frame);
        self.note_high_water();
    }

    fn seal_pending(&mut self) {
        if let Some(builder) = self.pending.take() {
            self.pending_since = None;
            if !builder.is_empty() {
                self.frames_sealed += 1;
                self.enqueue_back(builder.seal());
            }
        }
    }

    /// Adds a prefix of `records` to the pending frame and returns how many were taken (at least
    /// one unless a frame had to be sealed first; call again with the rest). Seals the frame when
    /// it reaches `batch_bytes`, or at once when the buffer timeout is zero.
    pub fn push_records<T: ShuffleRecord>(
        &mut self,
        records: &[T],
        now: Instant,
    ) -> Result<usize, ShuffleError> {
        self.check_open()?;
        if records.is_empty() {
            return Ok(0);
        }
        let limits = self.limits;
        let builder = self.pending.get_or_insert_with(|| {
            DataFrameBuilder::with_capacity(limits.batch_bytes + limits.batch_bytes / 4)
        });
        if self.pending_since.is_none() {
            self.pending_since = Some(now);
        }
        let room = limits
            .batch_bytes
            .saturating_sub(builder.payload_len())
            .max(1);
        let mut take = (room / self.bytes_per_record).clamp(1, records.len());
        let taken = loop {
            match builder.push(&records[..take], limits.max_frame_bytes) {
                Ok(Some(segment_bytes)) => {
                    self.bytes_per_record = (segment_bytes / take).max(1);
                    break take;
                }
                Ok(None) if !builder.is_empty() => {
                    // Does not fit behind what is pending: ship that, retry in an empty frame.
                    self.seal_pending();
                    return Ok(0);
                }
                Ok(None) if take > 1 => take /= 2,
                Ok(None) => {
                    return Err(ShuffleError::RecordTooLarge {
                        max: limits.max_frame_bytes,
                    });
                }
                Err(err) => return Err(ShuffleError::Serialize(err.to_string())),
            }
        };
        let full = builder.payload_len() >= limits.batch_bytes;
        if full || limits.buffer_timeout.is_zero() {
            self.seal_pending();
        }
        self.note_high_water();
        Ok(taken)
    }

    /// Ships what is pending now (Flink's `flush`).
    pub fn flush(&mut self) -> Result<(), ShuffleError> {
        self.check_open()?;
        self.seal_pending();
        Ok(())
    }

    /// Adds an in-band event. Returns the data frames a priority barrier overtook (copies share
    /// the buffers), which an unaligned checkpoint stores as in-flight channel state; empty
    /// otherwise. `EndOfPartition` and `Cancel` close the channel for input; `Cancel` also drops
    /// queued data, which nobody will need.
    pub fn push_event(&mut self, event: ChannelEvent) -> Result<Vec<Bytes>, ShuffleError> {
        self.check_open()?;
        let frame = event.encode();
        let mut overtaken = Vec::new();
        match event {
            ChannelEvent::Cancel => {
                self.pending = None;
                self.pending_since = None;
                let keep = self.priority_prefix;
                let dropped: usize = self.ready.drain(keep..).map(|f| f.len()).sum();
                self.ready_bytes -= dropped;
                self.insert_priority(frame);
                self.phase = Phase::Closing;
            }
            _ if event.is_priority() => {
                self.seal_pending();
                overtaken = self
                    .ready
                    .iter()
                    .skip(self.priority_prefix)
                    .filter(|f| f.len() > HEADER_LEN && f[3] == FrameKind::Data as u8)
                    .cloned()
                    .collect();
                self.insert_priority(frame);
            }
            _ => {
                self.seal_pending();
                self.enqueue_back(frame);
                if event.is_terminal() {
                    self.phase = Phase::Closing;
                }
            }
        }
        Ok(overtaken)
    }

    fn insert_priority(&mut self, frame: Bytes) {
        self.ready_bytes += frame.len();
        self.ready.insert(self.priority_prefix, frame);
        self.priority_prefix += 1;
        self.note_high_water();
    }

    /// When the writer must call [`Outbox::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending_since
            .map(|since| since + self.limits.buffer_timeout)
    }

    /// Seals the pending frame if it has waited for the buffer timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|deadline| deadline <= now) && self.phase == Phase::Open
        {
            self.seal_pending();
        }
    }

    /// The next frame to write, if any; counted as in flight until [`Outbox::on_written`].
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        self.handle_timeout(now);
        let frame = self.ready.pop_front()?;
        self.priority_prefix = self.priority_prefix.saturating_sub(1);
        self.ready_bytes -= frame.len();
        self.in_flight_bytes += frame.len();
        Some(frame)
    }

    /// QUIC accepted a frame of `len` bytes.
    pub fn on_written(&mut self, len: usize) {
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(len);
    }

    /// Everything is written and no more input will come: time to finish the stream.
    pub fn is_drained(&self) -> bool {
        self.phase == Phase::Closing && self.ready.is_empty() && self.in_flight_bytes == 0
    }

    /// The peer read the whole stream.
    pub fn on_finished(&mut self) {
        if self.failure.is_none() {
            self.phase = Phase::Done;
        }
    }

    /// The channel failed; queued data is dropped.
    pub fn fail(&mut self, err: ShuffleError) {
        if self.failure.is_none() && self.phase != Phase::Done {
            self.phase = Phase::Failed(err.to_string());
            self.failure = Some(err);
        }
        self.pending = None;
        self.pending_since = None;
        self.ready.clear();
        self.ready_bytes = 0;
        self.priority_prefix = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shuffle::event::Barrier;
    use crate::shuffle::frame::FrameDecoder;

    const OPEN: &[u8] = b"open";

    fn limits(batch: usize, queue: usize, timeout_ms: u64) -> OutboxLimits {
        OutboxLimits {
            batch_bytes: batch,
            max_frame_bytes: 1 << 20,
            queue_bytes: queue,
            buffer_timeout: Duration::from_millis(timeout_ms),
        }
    }

    fn outbox(batch: usize, queue: usize, timeout_ms: u64) -> Outbox {
        let mut outbox = Outbox::new(
            limits(batch, queue, timeout_ms),
            Bytes::from_static(OPEN),
            8,
        );
        assert_eq!(&outbox.poll_transmit(Instant::now()).unwrap()[..], OPEN);
        outbox.on_written(OPEN.len());
        outbox
    }

    fn kinds(frames: &[Bytes]) -> Vec<u8> {
        frames.iter().map(|f| f[3]).collect()
    }

    fn push_all(outbox: &mut Outbox, records: &[u64], now: Instant) {
        let mut sent = 0;
        while sent < records.len() {
            sent += outbox.push_records(&records[sent..], now).unwrap();
        }
    }

    fn drain(outbox: &mut Outbox, now: Instant) -> Vec<Bytes> {
        let mut frames = Vec::new();
        while let Some(frame) = outbox.poll_transmit(now) {
            outbox.on_written(frame.len());
            frames.push(frame);
        }
        frames
    }

    fn records_in(frames: &[Bytes]) -> Vec<u64> {
        let mut out = Vec::new();
        for frame in frames {
            let mut input = &frame[..];
            let frame = FrameDecoder::new(1 << 20)
                .decode(&mut input)
                .unwrap()
                .unwrap();
            if frame.header.kind == FrameKind::Data {
                let batch =
                    crate::shuffle::batch::RecordBatch::<u64>::validate(frame.payload).unwrap();
                out.extend(batch.iter().map(|v| v.to_native()));
            }
        }
        out
    }

    #[test]
    fn frames_fill_to_batch_size_then_ship() {
        let now = Instant::now();
        let mut outbox = outbox(1024, 1 << 20, 1000);
        let records: Vec<u64> = (0..1000).collect();
        let mut sent = 0;
        while sent < records.len() {
            sent += outbox.push_records(&records[sent..], now).unwrap();
        }
        let frames = drain(&mut outbox, now);
        // 8-byte records, 1 KiB batches: every sealed frame is close to 1 KiB.
        assert!(frames.len() >= 7, "{} frames", frames.len());
        for frame in &frames {
            assert!(frame.len() <= HEADER_LEN + 1024 + 64, "{}", frame.len());
        }
        outbox.flush().unwrap();
        let rest = drain(&mut outbox, now);
        let all: Vec<Bytes> = frames.into_iter().chain(rest).collect();
        assert_eq!(records_in(&all), records);
    }

    #[test]
    fn buffer_timeout_ships_a_partial_frame() {
        let start = Instant::now();
        let mut outbox = outbox(64 * 1024, 1 << 20, 5);
        assert_eq!(outbox.push_records(&[1u64, 2, 3], start).unwrap(), 3);
        assert!(
            outbox
                .poll_transmit(start + Duration::from_millis(4))
                .is_none()
        );
        assert_eq!(
            outbox.poll_timeout(),
            Some(start + Duration::from_millis(5))
        );
        let frame = outbox
            .poll_transmit(start + Duration::from_millis(5))
            .unwrap();
        assert_eq!(records_in(&[frame]), vec![1, 2, 3]);
        assert_eq!(outbox.poll_timeout(), None);
    }

    #[test]
    fn zero_timeout_ships_every_send() {
        let now = Instant::now();
        let mut outbox = outbox(64 * 1024, 1 << 20, 0);
        outbox.push_records(&[7u64], now).unwrap();
        outbox.push_records(&[8u64], now).unwrap();
        assert_eq!(drain(&mut outbox, now).len(), 2);
    }

    #[test]
    fn room_bounds_buffered_bytes() {
        let now = Instant::now();
        let mut outbox = outbox(1024, 4096, 1000);
        let records: Vec<u64> = (0..100_000).collect();
        let mut sent = 0;
        while outbox.has_room() {
            sent += outbox.push_records(&records[sent..], now).unwrap();
        }
        assert!(
            outbox.buffered_bytes() <= 4096 + 2 * 1024,
            "{}",
            outbox.buffered_bytes()
        );
        assert!(outbox.high_water_bytes() <= 4096 + 2 * 1024);
        // Writing a frame frees room again.
        let frame = outbox.poll_transmit(now).unwrap();
        assert!(!outbox.has_room());
        outbox.on_written(frame.len());
        assert!(outbox.has_room());
    }

    #[test]
    fn events_stay_in_order_with_data() {
        let now = Instant::now();
        let mut outbox = outbox(1 << 16, 1 << 20, 1000);
        push_all(&mut outbox, &[1, 2], now);
        outbox.push_event(ChannelEvent::Watermark(10)).unwrap();
        push_all(&mut outbox, &[3], now);
        outbox.push_event(ChannelEvent::EndOfPartition).unwrap();
        assert!(matches!(
            outbox.push_records(&[4u64], now),
            Err(ShuffleError::ChannelClosed)
        ));
        let frames = drain(&mut outbox, now);
        assert_eq!(kinds(&frames), vec![2, 3, 2, 5]);
        assert!(outbox.is_drained());
    }

    #[test]
    fn priority_barrier_overtakes_queued_data_and_reports_it() {
        let now = Instant::now();
        let mut outbox = outbox(16, 1 << 20, 1000);
        push_all(&mut outbox, &[1, 2], now);
        push_all(&mut outbox, &[3, 4], now);
        outbox.push_event(ChannelEvent::Watermark(5)).unwrap();
        let aligned = Barrier {
            checkpoint_id: 1,
            timestamp_ms: 0,
            priority: false,
        };
        assert!(
            outbox
                .push_event(ChannelEvent::Barrier(aligned))
                .unwrap()
                .is_empty()
        );
        let unaligned = Barrier {
            checkpoint_id: 2,
            timestamp_ms: 0,
            priority: true,
        };
        let overtaken = outbox.push_event(ChannelEvent::Barrier(unaligned)).unwrap();
        assert_eq!(records_in(&overtaken), vec![1, 2, 3, 4]);
        let frames = drain(&mut outbox, now);
        assert_eq!(frames[0][3], FrameKind::Barrier as u8);
        assert_eq!(&kinds(&frames)[frames.len() - 2..], &[3, 4]);
        assert_eq!(records_in(&frames), vec![1, 2, 3, 4]);
        assert_eq!(frames[0][4], 1, "priority flag");
    }

    #[test]
    fn cancel_drops_queued_data() {
        let now = Instant::now();
        let mut outbox = outbox(16, 1 << 20, 1000);
        push_all(&mut outbox, &[1, 2, 3, 4, 5, 6], now);
        outbox.push_event(ChannelEvent::Cancel).unwrap();
        assert_eq!(outbox.buffered_bytes(), HEADER_LEN);
        let frames = drain(&mut outbox, now);
        assert_eq!(kinds(&frames), vec![6]);
        assert!(outbox.is_drained());
    }

    #[test]
    fn oversized_record_is_an_error() {
        let now = Instant::now();
        let mut outbox = Outbox::new(
            OutboxLimits {
                max_frame_bytes: 64,
                ..limits(32, 1024, 1)
            },
            Bytes::from_static(OPEN),
            8,
        );
        let big = vec![vec![0u8; 100]];
        assert!(matches!(
            outbox.push_records(&big, now),
            Err(ShuffleError::RecordTooLarge { max: 64 })
        ));
    }

    #[test]
    fn failure_is_sticky() {
        let now = Instant::now();
        let mut outbox = outbox(16, 1 << 20, 1000);
        outbox.push_records(&[1u64], now).unwrap();
        outbox.fail(ShuffleError::UnexpectedEnd);
        assert_eq!(outbox.buffered_bytes(), 0);
        assert!(matches!(
            outbox.push_records(&[1u64], now),
            Err(ShuffleError::UnexpectedEnd)
        ));
        assert!(matches!(
            outbox.push_event(ChannelEvent::EndOfPartition),
            Err(ShuffleError::UnexpectedEnd)
        ));
    }
}
