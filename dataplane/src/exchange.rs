//! The sending side of an exchange: partitions records into per-target batches and ships them.
//!
//! This is the one place where batches are built for shipping ([`ExchangeOutput::push`]) and the
//! one place where they are shipped ([`ChannelSender::send`]). A channel is anything that accepts
//! messages for one target subtask ([`crate::runtime::channel`]): a bounded crossbeam channel
//! inside a process (its capacity is the backpressure), or a QUIC stream to another executor.

use std::marker::PhantomData;

use crate::element::{Barrier, Batch, ChannelEvent, Control, Message, Rec};
use crate::emitter::Emitter;
use crate::error::Result;
use crate::key_groups::{Key, key_hash, subtask_for_key_group};
use crate::runtime::channel::BoxSender;

/// Chooses the target channel of each record.
pub trait Partitioner<T>: Send {
    /// Target channel of a record among `n` channels.
    fn target(&mut self, value: &T, n: usize) -> usize;
}

/// Round robin.
#[derive(Default)]
pub struct RoundRobin {
    next: usize,
}

impl<T> Partitioner<T> for RoundRobin {
    #[inline]
    fn target(&mut self, _value: &T, n: usize) -> usize {
        let t = self.next;
        self.next = if t + 1 >= n { 0 } else { t + 1 };
        t
    }
}

/// By key group of the key the selector extracts.
pub struct KeyGroupPartitioner<F, K> {
    selector: F,
    max_parallelism: u32,
    _k: PhantomData<fn() -> K>,
}

impl<F, K> KeyGroupPartitioner<F, K> {
    /// Partitions by `selector` with `max_parallelism` key groups.
    pub fn new(selector: F, max_parallelism: u32) -> Self {
        Self {
            selector,
            max_parallelism,
            _k: PhantomData,
        }
    }
}

impl<T, K: Key, F: Fn(&T) -> K + Send> Partitioner<T> for KeyGroupPartitioner<F, K> {
    #[inline]
    fn target(&mut self, value: &T, n: usize) -> usize {
        let kg = key_hash(&(self.selector)(value)) % self.max_parallelism;
        subtask_for_key_group(kg, n as u32, self.max_parallelism) as usize
    }
}

/// Sends records to several channels chosen per record by a [`Partitioner`], in batches of up
/// to `batch_size` per channel.
pub struct ExchangeOutput<T, P> {
    senders: Vec<BoxSender<T>>,
    buffers: Vec<Batch<T>>,
    partitioner: P,
    batch_size: usize,
}

impl<T: Send, P: Partitioner<T>> ExchangeOutput<T, P> {
    /// Ships to `senders` (index = target subtask).
    pub fn new(senders: Vec<BoxSender<T>>, partitioner: P, batch_size: usize) -> Self {
        let batch_size = batch_size.max(1);
        let buffers = senders
            .iter()
            .map(|_| Vec::with_capacity(batch_size))
            .collect();
        Self {
            senders,
            buffers,
            partitioner,
            batch_size,
        }
    }

    #[inline]
    fn push(&mut self, rec: Rec<T>) -> Result<()> {
        let t = self.partitioner.target(&rec.value, self.senders.len());
        let buf = &mut self.buffers[t];
        buf.push(rec);
        if buf.len() >= self.batch_size {
            let full = std::mem::replace(buf, Vec::with_capacity(self.batch_size));
            self.senders[t].send(Message::Batch(full))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        for (buf, tx) in self.buffers.iter_mut().zip(self.senders.iter_mut()) {
            if !buf.is_empty() {
                let b = std::mem::replace(buf, Vec::with_capacity(self.batch_size));
                tx.send(Message::Batch(b))?;
            }
        }
        Ok(())
    }
}

impl<T: Send, P: Partitioner<T>> Emitter<T> for ExchangeOutput<T, P> {
    fn batch(&mut self, batch: Batch<T>) -> Result<()> {
        if self.senders.len() == 1 {
            // One target: no need to re-batch, pass the batch through.
            self.flush()?;
            if !batch.is_empty() {
                self.senders[0].send(Message::Batch(batch))?;
            }
            return Ok(());
        }
        for rec in batch {
            self.push(rec)?;
        }
        Ok(())
    }

    fn control(&mut self, control: Control) -> Result<()> {
        match control {
            Control::ProcessingTime(_) => Ok(()),
            Control::Flush => self.flush(),
            Control::Barrier(b) if b.priority => {
                // Unaligned: the barrier overtakes everything queued (never blocking), the
                // buffered records follow as in-flight data, then the in-order marker.
                send_priority(&mut self.senders, b)?;
                self.flush()?;
                send_marker(&mut self.senders, b)
            }
            c => {
                self.flush()?;
                if let Some(event) = c.to_event() {
                    for tx in &mut self.senders {
                        tx.send(Message::Event(event))?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Sends every batch to every channel.
pub struct BroadcastOutput<T> {
    senders: Vec<BoxSender<T>>,
}

impl<T> BroadcastOutput<T> {
    /// Broadcasts to `senders`.
    pub fn new(senders: Vec<BoxSender<T>>) -> Self {
        Self { senders }
    }
}

impl<T: Clone + Send> Emitter<T> for BroadcastOutput<T> {
    fn batch(&mut self, batch: Batch<T>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        for tx in &mut self.senders {
            tx.send(Message::Batch(batch.clone()))?;
        }
        Ok(())
    }

    fn control(&mut self, control: Control) -> Result<()> {
        match control {
            Control::ProcessingTime(_) | Control::Flush => Ok(()),
            Control::Barrier(b) if b.priority => {
                send_priority(&mut self.senders, b)?;
                send_marker(&mut self.senders, b)
            }
            c => {
                if let Some(event) = c.to_event() {
                    for tx in &mut self.senders {
                        tx.send(Message::Event(event))?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Sends unaligned barrier `b` to every channel as a priority event.
fn send_priority<T>(senders: &mut [BoxSender<T>], b: Barrier) -> Result<()> {
    for tx in senders {
        tx.send_priority(ChannelEvent::Barrier(b))?;
    }
    Ok(())
}

/// Sends the in-order marker of unaligned barrier `b` to every channel: the same barrier
/// without the priority flag, queued behind the data. The receiver stops recording a channel's
/// in-flight data at its marker.
fn send_marker<T>(senders: &mut [BoxSender<T>], b: Barrier) -> Result<()> {
    let marker = Barrier {
        priority: false,
        ..b
    };
    for tx in senders {
        tx.send(Message::Event(ChannelEvent::Barrier(marker)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::ChannelEvent;
    use crate::runtime::channel::{InputParker, LocalReceiver, local_channel};

    fn drain<T>(rx: &LocalReceiver<T>) -> Vec<Message<T>> {
        rx.drain()
    }

    #[test]
    fn key_group_exchange_routes_each_key_to_its_owner_and_batches() {
        let p = 3usize;
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..p)
            .map(|_| {
                let (tx, rx) = local_channel::<u64>(1000, InputParker::new().1);
                (Box::new(tx) as BoxSender<u64>, rx)
            })
            .unzip();
        let mut out = ExchangeOutput::new(senders, KeyGroupPartitioner::new(|v: &u64| *v, 128), 4);
        out.batch((0..100u64).map(|v| Rec::new(v as i64, v)).collect())
            .unwrap();
        out.control(Control::Watermark(99)).unwrap();
        let mut total = 0;
        for (i, rx) in receivers.iter().enumerate() {
            let msgs = drain(rx);
            // Every message but the last is a batch; the last is the watermark after the flush.
            assert_eq!(
                msgs.last(),
                Some(&Message::Event(ChannelEvent::Watermark(99)))
            );
            for m in &msgs[..msgs.len() - 1] {
                let Message::Batch(b) = m else {
                    panic!("expected batch")
                };
                assert!(b.len() <= 4);
                for r in b {
                    let kg = crate::key_groups::key_group_of(&r.value, 128);
                    assert_eq!(subtask_for_key_group(kg, 3, 128) as usize, i);
                    total += 1;
                }
            }
        }
        assert_eq!(total, 100);
    }

    #[test]
    fn rebalance_spreads_round_robin() {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..2)
            .map(|_| {
                let (tx, rx) = local_channel::<u32>(100, InputParker::new().1);
                (Box::new(tx) as BoxSender<u32>, rx)
            })
            .unzip();
        let mut out = ExchangeOutput::new(senders, RoundRobin::default(), 1024);
        out.batch((0..10u32).map(Rec::untimed).collect()).unwrap();
        out.control(Control::Flush).unwrap();
        let got: Vec<Vec<u32>> = receivers
            .iter()
            .map(|rx| {
                drain(rx)
                    .into_iter()
                    .flat_map(|m| match m {
                        Message::Batch(b) => b.into_iter().map(|r| r.value).collect(),
                        Message::Event(_) => vec![],
                    })
                    .collect()
            })
            .collect();
        assert_eq!(got, vec![vec![0, 2, 4, 6, 8], vec![1, 3, 5, 7, 9]]);
    }
}
