//! The receiving side of a subtask: merges its input channels' control elements.
//!
//! A pure state machine (no channels, no clock): the runtime tells it what arrived on which input
//! channel and forwards what it returns. It keeps one watermark per channel and emits the minimum
//! over the active ones when it advances (idle channels are left out, ended channels too), aligns
//! checkpoint barriers (a channel that delivered barrier `n` is blocked until all have), and
//! turns "every channel ended" into a final watermark plus end of input.

use crate::element::{Barrier, ChannelEvent, Control, MAX_WATERMARK};

#[derive(Debug, Clone)]
struct ChannelState {
    watermark: i64,
    idle: bool,
    ended: bool,
    blocked: bool,
}

/// Watermark, idleness, barrier and end-of-input bookkeeping over a subtask's input channels.
#[derive(Debug, Clone)]
pub struct InputGate {
    channels: Vec<ChannelState>,
    /// Last watermark forwarded (never decreases).
    current: i64,
    /// Whether downstream was told the whole input is idle.
    idle_forwarded: bool,
    /// The checkpoint being aligned.
    aligning: Option<Barrier>,
    /// Block channels that delivered the barrier being aligned (exactly-once).
    block: bool,
}

impl InputGate {
    /// A gate over `channels` input channels.
    pub fn new(channels: usize) -> Self {
        Self {
            channels: vec![
                ChannelState {
                    watermark: i64::MIN,
                    idle: false,
                    ended: false,
                    blocked: false,
                };
                channels
            ],
            current: i64::MIN,
            idle_forwarded: false,
            aligning: None,
            block: true,
        }
    }

    /// Whether channels that delivered a barrier are blocked until all have (exactly-once,
    /// the default) or keep flowing (at-least-once: the barrier is still forwarded once it
    /// arrived everywhere).
    pub fn set_alignment(&mut self, block: bool) {
        self.block = block;
    }

    /// Number of input channels.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// True for a gate without inputs.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// The watermark last forwarded.
    pub fn current_watermark(&self) -> i64 {
        self.current
    }

    /// True while a channel must not be read (it delivered the barrier being aligned).
    pub fn is_blocked(&self, channel: usize) -> bool {
        self.reads_blocked(channel)
    }

    /// True once a channel delivered end of input.
    pub fn is_ended(&self, channel: usize) -> bool {
        self.channels[channel].ended
    }

    /// True once every channel ended.
    pub fn all_ended(&self) -> bool {
        self.channels.iter().all(|c| c.ended)
    }

    /// A batch arrived on `channel`: it is active again. Returns what to forward.
    pub fn on_records(&mut self, channel: usize) -> Vec<Control> {
        let c = &mut self.channels[channel];
        if c.idle {
            c.idle = false;
            self.idle_forwarded = false;
        }
        Vec::new()
    }

    /// Handles an event from `channel`; returns what to forward, in order. `Cancel` ends the
    /// channel like end of partition; the runtime decides what a cancelled upstream means.
    pub fn on_event(&mut self, channel: usize, event: ChannelEvent) -> Vec<Control> {
        let mut out = Vec::new();
        match event {
            ChannelEvent::Watermark(w) => {
                let c = &mut self.channels[channel];
                c.idle = false;
                if w > c.watermark {
                    c.watermark = w;
                }
                self.idle_forwarded = false;
                self.advance(&mut out);
            }
            ChannelEvent::Idle => {
                self.channels[channel].idle = true;
                self.advance(&mut out);
                let all_idle = self.channels.iter().all(|c| c.idle || c.ended);
                if all_idle && !self.all_ended() && !self.idle_forwarded {
                    self.idle_forwarded = true;
                    out.push(Control::Idle);
                }
            }
            ChannelEvent::Barrier(barrier) => self.on_barrier(channel, barrier, &mut out),
            ChannelEvent::EndOfPartition | ChannelEvent::Cancel => {
                self.channels[channel].ended = true;
                self.channels[channel].blocked = false;
                self.check_aligned(&mut out);
                if self.all_ended() {
                    if self.current < MAX_WATERMARK {
                        self.current = MAX_WATERMARK;
                        out.push(Control::Watermark(MAX_WATERMARK));
                    }
                    out.push(Control::EndOfInput);
                } else {
                    self.advance(&mut out);
                }
            }
        }
        out
    }

    fn advance(&mut self, out: &mut Vec<Control>) {
        let min = self
            .channels
            .iter()
            .filter(|c| !c.idle && !c.ended)
            .map(|c| c.watermark)
            .min();
        if let Some(min) = min
            && min > self.current
        {
            self.current = min;
            out.push(Control::Watermark(min));
        }
    }

    fn on_barrier(&mut self, channel: usize, barrier: Barrier, out: &mut Vec<Control>) {
        let id = barrier.checkpoint_id;
        match self.aligning {
            // A stale barrier of an aborted checkpoint.
            Some(current) if id < current.checkpoint_id => return,
            Some(current) if id > current.checkpoint_id => {
                // A newer checkpoint overtook the one being aligned: abandon the old one.
                for c in &mut self.channels {
                    c.blocked = false;
                }
                self.aligning = Some(barrier);
            }
            Some(_) => {}
            None => self.aligning = Some(barrier),
        }
        self.channels[channel].blocked = true;
        self.check_aligned(out);
    }

    /// True while `channel` must not be read.
    fn reads_blocked(&self, channel: usize) -> bool {
        self.block && self.channels[channel].blocked
    }

    fn check_aligned(&mut self, out: &mut Vec<Control>) {
        let Some(barrier) = self.aligning else {
            return;
        };
        if self.channels.iter().all(|c| c.blocked || c.ended) {
            for c in &mut self.channels {
                c.blocked = false;
            }
            self.aligning = None;
            out.push(Control::Barrier(barrier));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChannelEvent::{EndOfPartition, Idle, Watermark};

    fn barrier(id: u64) -> ChannelEvent {
        ChannelEvent::Barrier(Barrier::aligned(id, 0))
    }
    fn aligned(id: u64) -> Control {
        Control::Barrier(Barrier::aligned(id, 0))
    }
    fn wm(w: i64) -> Control {
        Control::Watermark(w)
    }

    #[test]
    fn watermark_is_minimum_over_inputs_and_monotonic() {
        let mut g = InputGate::new(3);
        assert_eq!(g.on_event(0, Watermark(10)), vec![]);
        assert_eq!(g.on_event(1, Watermark(5)), vec![]);
        assert_eq!(g.on_event(2, Watermark(7)), vec![wm(5)]);
        assert_eq!(g.on_event(1, Watermark(20)), vec![wm(7)]);
        // A channel's watermark going back is ignored.
        assert_eq!(g.on_event(2, Watermark(3)), vec![]);
        assert_eq!(g.on_event(2, Watermark(30)), vec![wm(10)]);
        assert_eq!(g.current_watermark(), 10);
    }

    #[test]
    fn idle_channel_does_not_hold_back_the_watermark() {
        let mut g = InputGate::new(2);
        g.on_event(0, Watermark(100));
        assert_eq!(g.on_event(1, Idle), vec![wm(100)]);
        assert_eq!(g.on_event(0, Watermark(200)), vec![wm(200)]);
        // Both idle: downstream learns the whole input is idle, once.
        assert_eq!(g.on_event(0, Idle), vec![Control::Idle]);
        assert_eq!(g.on_event(0, Idle), vec![]);
        // Channel 1 comes back with an older watermark: the output never goes back.
        assert_eq!(g.on_event(1, Watermark(150)), vec![]);
        assert_eq!(g.on_event(1, Watermark(250)), vec![wm(250)]);
    }

    #[test]
    fn end_of_input_emits_max_watermark_once_all_channels_end() {
        let mut g = InputGate::new(2);
        g.on_event(0, Watermark(5));
        g.on_event(1, Watermark(9));
        assert_eq!(g.on_event(0, EndOfPartition), vec![wm(9)]);
        assert_eq!(
            g.on_event(1, EndOfPartition),
            vec![wm(MAX_WATERMARK), Control::EndOfInput]
        );
    }

    #[test]
    fn at_least_once_forwards_the_barrier_without_blocking() {
        let mut g = InputGate::new(2);
        g.set_alignment(false);
        assert_eq!(g.on_event(0, barrier(1)), vec![]);
        assert!(!g.is_blocked(0));
        assert_eq!(g.on_event(1, barrier(1)), vec![aligned(1)]);
    }

    #[test]
    fn barriers_align_and_block_channels() {
        let mut g = InputGate::new(3);
        assert_eq!(g.on_event(0, barrier(1)), vec![]);
        assert!(g.is_blocked(0));
        assert_eq!(g.on_event(2, barrier(1)), vec![]);
        assert_eq!(g.on_event(1, barrier(1)), vec![aligned(1)]);
        assert!(!g.is_blocked(0) && !g.is_blocked(1) && !g.is_blocked(2));
        // An ended channel does not hold up alignment.
        g.on_event(0, barrier(2));
        g.on_event(1, EndOfPartition);
        assert_eq!(g.on_event(2, barrier(2)), vec![aligned(2)]);
        // A newer barrier overtakes an unfinished alignment.
        g.on_event(0, barrier(3));
        assert_eq!(g.on_event(2, barrier(4)), vec![]);
        assert!(!g.is_blocked(0));
        assert_eq!(g.on_event(0, barrier(4)), vec![aligned(4)]);
    }
}
