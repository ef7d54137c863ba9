//! Nexmark queries over bids: q0 (pass through), q1 (currency conversion), q2 (selection),
//! q5 (hot items: sliding-window counts, then the top auction per window) and q7 (highest bid
//! per tumbling window).

use crate::error::Result;
use crate::generators::{Bid, NexmarkConfig};
use crate::jobs::format::{push_i64, push_u64};
use crate::jobs::{JobSpec, ParamSpec, Params, events_bound};
use crate::keyed::{AggregateFunction, Count, KeyedProcessFunction, ProcessContext};
use crate::sources::{GeneratorBounds, GeneratorSource};
use crate::state::{ListState, ValueState};
use crate::stream::{DataStream, StreamEnvironment};
use crate::timers::TimeDomain;
use crate::watermarks::WatermarkStrategy;
use crate::window::WindowAssigner;

const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "events",
        default: "1000000",
        help: "Nexmark events 0..events, all kinds (bids are 46 of 50); 0 = unbounded",
    },
    ParamSpec {
        name: "seed",
        default: "0",
        help: "generator seed",
    },
    ParamSpec {
        name: "rate",
        default: "0",
        help: "events per second over all sources (0 = as fast as possible)",
    },
];

/// q0.
pub const Q0: JobSpec = JobSpec {
    name: "nexmark-q0",
    about: "Nexmark q0: bids passed through; lines auction,bidder,price,date_time",
    params: PARAMS,
    build: build_q0,
};
/// q1.
pub const Q1: JobSpec = JobSpec {
    name: "nexmark-q1",
    about: "Nexmark q1: price in euros (price * 908 / 1000); lines auction,bidder,price,date_time",
    params: PARAMS,
    build: build_q1,
};
/// q2.
pub const Q2: JobSpec = JobSpec {
    name: "nexmark-q2",
    about: "Nexmark q2: bids with auction % 123 == 0; lines auction,price",
    params: PARAMS,
    build: build_q2,
};
/// q5.
pub const Q5: JobSpec = JobSpec {
    name: "nexmark-q5",
    about: "Nexmark q5: per 10 s window sliding by 2 s, the auction(s) with most bids; lines auction,window_end_ms,count",
    params: PARAMS,
    build: build_q5,
};
/// q7.
pub const Q7: JobSpec = JobSpec {
    name: "nexmark-q7",
    about: "Nexmark q7: per 10 s tumbling window, the bid(s) with the highest price; lines auction,price,bidder,date_time",
    params: PARAMS,
    build: build_q7,
};

/// The bids among Nexmark events `0..events`.
pub fn bid_source(env: &mut StreamEnvironment, params: &Params) -> Result<DataStream<Bid>> {
    let config = NexmarkConfig {
        seed: params.u64_or("seed", 0)?,
        ..NexmarkConfig::default()
    };
    let bounds = GeneratorBounds {
        events: events_bound(params)?,
        rate: params.u64_or("rate", 0)?,
    };
    Ok(env.add_source("nexmark", move |ctx| {
        Ok(GeneratorSource::new(move |i| config.bid(i), bounds, ctx))
    }))
}

/// `auction,bidder,price,date_time`.
pub fn bid_line(b: &Bid, out: &mut String) {
    push_i64(out, b.auction);
    out.push(',');
    push_i64(out, b.bidder);
    out.push(',');
    push_i64(out, b.price);
    out.push(',');
    push_i64(out, b.date_time);
}

fn build_q0(env: &mut StreamEnvironment, params: &Params) -> Result<()> {
    bid_source(env, params)?.sink_lines("output", bid_line);
    Ok(())
}

fn build_q1(env: &mut StreamEnvironment, params: &Params) -> Result<()> {
    bid_source(env, params)?
        .map(|b| Bid {
            price: b.price.wrapping_mul(908) / 1000,
            ..b
        })
        .sink_lines("output", bid_line);
    Ok(())
}

fn build_q2(env: &mut StreamEnvironment, params: &Params) -> Result<()> {
    bid_source(env, params)?
        .filter(|b| b.auction % 123 == 0)
        .sink_lines("output", |b, out| {
            push_i64(out, b.auction);
            out.push(',');
            push_i64(out, b.price);
        });
    Ok(())
}

/// q5's second stage: per window end, the auction(s) with the highest count. Window results
/// carry the timestamp `end - 1`, so a timer there fires once all of them have arrived.
#[derive(Debug, Clone, Copy, Default)]
pub struct HottestPerWindow;

/// State of [`HottestPerWindow`] for one window end.
#[derive(Debug, Default, Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct HottestState {
    max: ValueState<u64>,
    auctions: ListState<i64>,
}

impl KeyedProcessFunction<i64, (i64, i64, u64)> for HottestPerWindow {
    type State = HottestState;
    type Out = (i64, i64, u64);

    fn process_element(
        &mut self,
        (auction, end, count): (i64, i64, u64),
        ctx: &mut ProcessContext<'_, i64, HottestState, (i64, i64, u64)>,
    ) {
        let best = ctx.state().max.value().copied();
        match best {
            Some(b) if count < b => {}
            Some(b) if count == b => ctx.state().auctions.add(auction),
            _ => {
                ctx.state().max.update(count);
                ctx.state().auctions.update(vec![auction]);
                ctx.register_event_time_timer(end - 1);
            }
        }
    }

    fn on_timer(
        &mut self,
        _ts: i64,
        _domain: TimeDomain,
        ctx: &mut ProcessContext<'_, i64, HottestState, (i64, i64, u64)>,
    ) {
        let end = *ctx.key();
        if let Some(best) = ctx.state().max.value().copied() {
            for a in ctx.state().auctions.take() {
                ctx.collect((a, end, best));
            }
        }
        ctx.clear_state();
    }
}

fn build_q5(env: &mut StreamEnvironment, params: &Params) -> Result<()> {
    bid_source(env, params)?
        .assign_timestamps_and_watermarks(|b| b.date_time, WatermarkStrategy::monotonous())
        .key_by(|b: &Bid| b.auction)
        .window(WindowAssigner::sliding_event_time(10_000, 2_000))
        .aggregate_with(Count, |a: &i64, w, c| (*a, w.end, c))?
        .key_by(|t: &(i64, i64, u64)| t.1)
        .process(HottestPerWindow)
        .sink_lines("output", |(a, end, c), out| {
            push_i64(out, *a);
            out.push(',');
            push_i64(out, *end);
            out.push(',');
            push_u64(out, *c);
        });
    Ok(())
}

/// Highest price and the bids that have it.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaxPriceBids;

impl AggregateFunction<Bid> for MaxPriceBids {
    type Acc = (i64, Vec<Bid>);
    type Out = (i64, Vec<Bid>);
    fn create(&self) -> Self::Acc {
        (i64::MIN, Vec::new())
    }
    fn add(&self, acc: &mut Self::Acc, b: &Bid) {
        if b.price > acc.0 {
            acc.0 = b.price;
            acc.1.clear();
            acc.1.push(*b);
        } else if b.price == acc.0 {
            acc.1.push(*b);
        }
    }
    fn merge(&self, acc: &mut Self::Acc, other: &Self::Acc) {
        for b in &other.1 {
            self.add(acc, b);
        }
    }
    fn result(&self, acc: &Self::Acc) -> Self::Out {
        acc.clone()
    }
}

/// q7's second stage: per window end, the bids with the highest price over all auctions.
#[derive(Debug, Clone, Copy, Default)]
pub struct HighestBids;

/// State of [`HighestBids`] for one window end.
#[derive(Debug, Default, Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct HighestState {
    max: ValueState<i64>,
    bids: ListState<Bid>,
}

impl KeyedProcessFunction<i64, (i64, i64, Vec<Bid>)> for HighestBids {
    type State = HighestState;
    type Out = Bid;

    fn process_element(
        &mut self,
        (end, price, bids): (i64, i64, Vec<Bid>),
        ctx: &mut ProcessContext<'_, i64, HighestState, Bid>,
    ) {
        let best = ctx.state().max.value().copied();
        match best {
            Some(b) if price < b => {}
            Some(b) if price == b => {
                for bid in bids {
                    ctx.state().bids.add(bid);
                }
            }
            _ => {
                ctx.state().max.update(price);
                ctx.state().bids.update(bids);
                ctx.register_event_time_timer(end - 1);
            }
        }
    }

    fn on_timer(
        &mut self,
        _ts: i64,
        _domain: TimeDomain,
        ctx: &mut ProcessContext<'_, i64, HighestState, Bid>,
    ) {
        for b in ctx.state().bids.take() {
            ctx.collect(b);
        }
        ctx.clear_state();
    }
}

fn build_q7(env: &mut StreamEnvironment, params: &Params) -> Result<()> {
    bid_source(env, params)?
        .assign_timestamps_and_watermarks(|b| b.date_time, WatermarkStrategy::monotonous())
        .key_by(|b: &Bid| b.auction)
        .window(WindowAssigner::tumbling_event_time(10_000))
        .aggregate_with(MaxPriceBids, |_a: &i64, w, (price, bids)| {
            (w.end, price, bids)
        })?
        .key_by(|t: &(i64, i64, Vec<Bid>)| t.0)
        .process(HighestBids)
        .sink_lines("output", |b, out| {
            push_i64(out, b.auction);
            out.push(',');
            push_i64(out, b.price);
            out.push(',');
            push_i64(out, b.bidder);
            out.push(',');
            push_i64(out, b.date_time);
        });
    Ok(())
}
