//! Window operators driven directly with batches and watermarks (no threads, no clock).

use std::sync::Arc;

use mesoflow_dataplane::emitter::{Emitter, SharedVecEmitter};
use mesoflow_dataplane::keyed::Count;
use mesoflow_dataplane::timers::TimeDomain;
use mesoflow_dataplane::window::TimeWindow;
use mesoflow_dataplane::window::session::{SessionConfig, SessionWindowOp};
use mesoflow_dataplane::window::slicing::{SliceConfig, SliceWindowOp};
use mesoflow_dataplane::{Control, Rec, TaskContext};

type Out = (u32, i64, i64, u64); // key, start, end, count
type Sink = SharedVecEmitter<Out>;
type Late = SharedVecEmitter<(u32, i64)>;

fn key(v: &(u32, i64)) -> u32 {
    v.0
}

fn window_fn(k: &u32, w: TimeWindow, c: u64) -> Out {
    (*k, w.start, w.end, c)
}

type Op = SliceWindowOp<
    (u32, i64),
    u32,
    fn(&(u32, i64)) -> u32,
    Count,
    Out,
    fn(&u32, TimeWindow, u64) -> Out,
>;

fn slicing(size: i64, slide: i64, lateness: i64, domain: TimeDomain) -> (Op, Sink, Late) {
    let (out, late) = (Sink::default(), Late::default());
    let op = SliceWindowOp::new(
        key as fn(&(u32, i64)) -> u32,
        Count,
        Arc::new(window_fn as fn(&u32, TimeWindow, u64) -> Out),
        SliceConfig {
            size,
            slide,
            domain,
            lateness,
        },
        &TaskContext::for_test(),
        Box::new(out.clone()),
        Box::new(late.clone()),
    )
    .unwrap();
    (op, out, late)
}

fn recs(items: &[(u32, i64)]) -> Vec<Rec<(u32, i64)>> {
    items.iter().map(|&(k, ts)| Rec::new(ts, (k, ts))).collect()
}

fn take(sink: &Sink) -> Vec<(Out, i64)> {
    let mut g = sink.0.lock();
    let v = g.records.drain(..).map(|r| (r.value, r.ts)).collect();
    g.controls.clear();
    v
}

#[test]
fn tumbling_windows_are_half_open_and_fire_at_end_minus_one() {
    let (mut op, out, _) = slicing(10, 10, 0, TimeDomain::EventTime);
    op.batch(recs(&[(1, 0), (1, 9), (1, 10), (2, 19), (1, -1)]))
        .unwrap();
    op.control(Control::Watermark(8)).unwrap();
    assert_eq!(take(&out), vec![((1, -10, 0, 1), -1)]);
    // Watermark 9 = end - 1 of [0, 10): it fires, with the result timestamped 9.
    op.control(Control::Watermark(9)).unwrap();
    assert_eq!(take(&out), vec![((1, 0, 10, 2), 9)]);
    op.control(Control::Watermark(19)).unwrap();
    let mut got = take(&out);
    got.sort();
    assert_eq!(got, vec![((1, 10, 20, 1), 19), ((2, 10, 20, 1), 19)]);
    assert_eq!(
        op.key_count(),
        0,
        "fired windows without lateness leave no state"
    );
}

#[test]
fn watermark_is_forwarded_after_the_results_it_fires() {
    let (mut op, out, _) = slicing(10, 10, 0, TimeDomain::EventTime);
    op.batch(recs(&[(1, 3)])).unwrap();
    op.control(Control::Watermark(20)).unwrap();
    let g = out.0.lock();
    assert_eq!(g.records.len(), 1);
    assert_eq!(g.controls, vec![Control::Watermark(20)]);
}

#[test]
fn late_records_within_lateness_refire_and_later_ones_go_to_the_side_output() {
    let (mut op, out, late) = slicing(10, 10, 5, TimeDomain::EventTime);
    op.batch(recs(&[(1, 2), (1, 4)])).unwrap();
    op.control(Control::Watermark(9)).unwrap();
    assert_eq!(take(&out), vec![((1, 0, 10, 2), 9)]);
    // Within lateness (cleanup at 9 + 5 = 14): the window fires again with the update.
    op.control(Control::Watermark(12)).unwrap();
    op.batch(recs(&[(1, 7)])).unwrap();
    assert_eq!(take(&out), vec![((1, 0, 10, 3), 9)]);
    // Past the lateness: the record goes to the side output and changes nothing.
    op.control(Control::Watermark(14)).unwrap();
    op.batch(recs(&[(1, 8)])).unwrap();
    assert_eq!(take(&out), vec![]);
    assert_eq!(late.0.lock().records, vec![Rec::new(8, (1, 8))]);
    assert_eq!(op.late_records(), 1);
    assert_eq!(op.key_count(), 0);
}

#[test]
fn sliding_windows_share_slices_instead_of_copying_records() {
    // size 60 x slide: each record belongs to 60 windows but is stored once, in its slice.
    let (mut op, out, _) = slicing(600, 10, 0, TimeDomain::EventTime);
    let items: Vec<(u32, i64)> = (0..1000)
        .map(|i| ((i % 4) as u32, (i / 4) as i64))
        .collect();
    op.batch(recs(&items)).unwrap();
    // 250 ms of data per key -> 25 slices per key, 4 keys.
    assert_eq!(op.accumulator_count().unwrap(), 4 * 25);
    assert_eq!(
        op.slices_of(&0).unwrap(),
        (1..=25).map(|s| s * 10).collect::<Vec<_>>()
    );
    op.control(Control::Watermark(i64::MAX)).unwrap();
    let got = take(&out);
    // Windows ending 10, 20, ..., 840 contain data (-600 < start < 250).
    assert_eq!(got.len(), 4 * 84);
    for ((k, start, end, c), ts) in got {
        assert_eq!(end - start, 600);
        assert_eq!(ts, end - 1);
        // Reference: records of key k with start <= ts < end.
        let expected = items
            .iter()
            .filter(|&&(kk, t)| kk == k && t >= start && t < end)
            .count() as u64;
        assert_eq!(c, expected, "key {k} window [{start}, {end})");
    }
    assert_eq!(op.accumulator_count().unwrap(), 0);
}

#[test]
fn sliding_slices_expire_once_their_last_window_fired() {
    let (mut op, _out, _) = slicing(30, 10, 0, TimeDomain::EventTime);
    op.batch(recs(&[(1, 0), (1, 10), (1, 20)])).unwrap();
    assert_eq!(op.slices_of(&1).unwrap(), vec![10, 20, 30]);
    // Watermark 29 fires windows ending 10, 20, 30; the slice [0, 10) is in none after.
    op.control(Control::Watermark(29)).unwrap();
    assert_eq!(op.slices_of(&1).unwrap(), vec![20, 30]);
    op.control(Control::Watermark(49)).unwrap();
    assert_eq!(op.slices_of(&1).unwrap(), Vec::<i64>::new());
}

#[test]
fn processing_time_windows_use_the_ticked_clock() {
    let (mut op, out, _) = slicing(100, 100, 0, TimeDomain::ProcessingTime);
    op.control(Control::ProcessingTime(1_050)).unwrap();
    op.batch(recs(&[(1, 0), (2, 0)])).unwrap(); // event time is ignored
    op.control(Control::ProcessingTime(1_098)).unwrap();
    op.batch(recs(&[(1, 0)])).unwrap();
    op.control(Control::Watermark(5_000)).unwrap(); // watermarks do not fire it
    assert_eq!(take(&out), vec![]);
    op.control(Control::ProcessingTime(1_100)).unwrap();
    let mut got = take(&out);
    got.sort();
    assert_eq!(
        got,
        vec![((1, 1000, 1100, 2), 1099), ((2, 1000, 1100, 1), 1099)]
    );
}

#[test]
fn end_of_input_fires_every_open_window() {
    let (mut op, out, _) = slicing(10, 10, 0, TimeDomain::ProcessingTime);
    op.control(Control::ProcessingTime(5)).unwrap();
    op.batch(recs(&[(1, 0)])).unwrap();
    op.control(Control::EndOfInput).unwrap();
    assert_eq!(take(&out), vec![((1, 0, 10, 1), 9)]);
}

type SessionOp = SessionWindowOp<
    (u32, i64),
    u32,
    fn(&(u32, i64)) -> u32,
    Count,
    Out,
    fn(&u32, TimeWindow, u64) -> Out,
>;

fn session(gap: i64, lateness: i64) -> (SessionOp, Sink, Late) {
    let (out, late) = (Sink::default(), Late::default());
    let op = SessionWindowOp::new(
        key as fn(&(u32, i64)) -> u32,
        Count,
        Arc::new(window_fn as fn(&u32, TimeWindow, u64) -> Out),
        SessionConfig {
            gap,
            domain: TimeDomain::EventTime,
            lateness,
        },
        &TaskContext::for_test(),
        Box::new(out.clone()),
        Box::new(late.clone()),
    )
    .unwrap();
    (op, out, late)
}

#[test]
fn sessions_merge_when_a_record_bridges_the_gap() {
    let (mut op, out, _) = session(10, 0);
    op.batch(recs(&[(1, 0), (1, 5), (1, 20), (2, 3)])).unwrap();
    let mut s = op.sessions_of(&1).unwrap();
    s.sort();
    assert_eq!(
        s,
        vec![
            TimeWindow { start: 0, end: 15 },
            TimeWindow { start: 20, end: 30 }
        ]
    );
    // 12 reaches both [0, 15) and [20, 30): the three merge into [0, 30).
    op.batch(recs(&[(1, 12)])).unwrap();
    assert_eq!(
        op.sessions_of(&1).unwrap(),
        vec![TimeWindow { start: 0, end: 30 }]
    );
    op.control(Control::Watermark(28)).unwrap();
    assert_eq!(take(&out), vec![((2, 3, 13, 1), 12)]);
    op.control(Control::Watermark(29)).unwrap();
    assert_eq!(take(&out), vec![((1, 0, 30, 4), 29)]);
    assert!(op.sessions_of(&1).unwrap().is_empty());
}

#[test]
fn late_session_records_refire_within_lateness_else_go_to_side_output() {
    let (mut op, out, late) = session(10, 20);
    op.batch(recs(&[(1, 0)])).unwrap();
    op.control(Control::Watermark(9)).unwrap();
    assert_eq!(take(&out), vec![((1, 0, 10, 1), 9)]);
    // Late but within lateness: merges into the fired session, which now ends at 14 and
    // fires again when the watermark gets there.
    op.batch(recs(&[(1, 4)])).unwrap();
    assert_eq!(
        op.sessions_of(&1).unwrap(),
        vec![TimeWindow { start: 0, end: 14 }]
    );
    assert_eq!(take(&out), vec![]);
    op.control(Control::Watermark(13)).unwrap();
    assert_eq!(take(&out), vec![((1, 0, 14, 2), 13)]);
    // A late record whose own session is already past the watermark fires at once.
    op.batch(recs(&[(2, 1)])).unwrap();
    assert_eq!(take(&out), vec![((2, 1, 11, 1), 10)]);
    op.control(Control::Watermark(40)).unwrap();
    op.batch(recs(&[(1, 5)])).unwrap();
    assert_eq!(late.0.lock().records.len(), 1);
    assert!(op.sessions_of(&1).unwrap().is_empty());
}

/// Count without retraction: forces the merge-every-slice path.
#[derive(Clone, Copy)]
struct PlainCount;

impl mesoflow_dataplane::keyed::AggregateFunction<(u32, i64)> for PlainCount {
    type Acc = u64;
    type Out = u64;
    fn create(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, _v: &(u32, i64)) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, o: &u64) {
        *acc += o;
    }
    fn result(&self, acc: &u64) -> u64 {
        *acc
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, failure_persistence: None, ..Default::default() })]

    /// Out-of-order input with interleaved watermarks: the running-accumulator path (Count
    /// retracts) and the merge-every-slice path give identical results, late records included.
    #[test]
    fn incremental_sliding_equals_merging_every_slice(
        records in proptest::collection::vec((0u32..5, 0i64..400), 1..300),
        size_slices in 1i64..8,
        slide in 1i64..30,
        delay in 0i64..40,
        every in 1usize..20,
    ) {
        let size = slide * size_slices + (slide / 3);
        let (mut fast, fast_out, fast_late) = slicing(size, slide, 0, TimeDomain::EventTime);
        let (slow_out, slow_late) = (Sink::default(), Late::default());
        let mut slow = SliceWindowOp::new(
            key as fn(&(u32, i64)) -> u32,
            PlainCount,
            Arc::new(window_fn as fn(&u32, TimeWindow, u64) -> Out),
            SliceConfig { size, slide, domain: TimeDomain::EventTime, lateness: 0 },
            &TaskContext::for_test(),
            Box::new(slow_out.clone()),
            Box::new(slow_late.clone()),
        )
        .unwrap();
        let mut max_ts = i64::MIN;
        for (i, chunk) in records.chunks(every).enumerate() {
            fast.batch(recs(chunk)).unwrap();
            slow.batch(recs(chunk)).unwrap();
            max_ts = max_ts.max(chunk.iter().map(|r| r.1).max().unwrap());
            if i % 2 == 0 {
                let wm = Control::Watermark(max_ts - delay - 1);
                fast.control(wm).unwrap();
                slow.control(wm).unwrap();
            }
        }
        fast.control(Control::Watermark(i64::MAX)).unwrap();
        slow.control(Control::Watermark(i64::MAX)).unwrap();
        let (mut a, mut b) = (take(&fast_out), take(&slow_out));
        a.sort();
        b.sort();
        proptest::prop_assert_eq!(a, b);
        proptest::prop_assert_eq!(&fast_late.0.lock().records, &slow_late.0.lock().records);
        proptest::prop_assert_eq!(fast.accumulator_count().unwrap(), 0);
    }
}
