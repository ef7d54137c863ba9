package io.mesoflow.peers.flink;

import io.mesoflow.peers.flink.Events.DataEvent;
import io.mesoflow.peers.flink.Events.KeyValue;
import io.mesoflow.peers.flink.Events.WindowCount;
import io.mesoflow.peers.flink.Events.WordCount;
import io.mesoflow.peers.gen.DataGen;
import io.mesoflow.peers.gen.Nexmark;
import io.mesoflow.peers.gen.TextGen;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.SlidingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.assigners.WindowAssigner;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.CloseableIterator;
import org.apache.flink.util.Collector;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * The Apache Flink side of mesoflow's benchmarks: runs one workload of docs/workloads.md on a
 * local MiniCluster and prints exactly one line on stdout, {@code records=<N> checksum=<hex>}.
 *
 * <p>Usage: {@code java -jar mesoflow-flink-baseline.jar <job> [key=value ...]} with the job
 * parameters of docs/workloads.md plus {@code parallelism} (default 2), {@code checkpoint_ms}
 * (0 = off, the default), {@code state_backend} ({@code hashmap} or {@code rocksdb}),
 * {@code checkpoint_dir} (a directory to checkpoint into, created if missing and left in place;
 * default: a fresh temporary directory, deleted at exit).
 */
public final class BaselineMain {
    private static final Set<String> COMMON = Set.of(
            "events", "seed", "rate", "parallelism", "checkpoint_ms", "state_backend", "checkpoint_dir");
    private static final Set<String> DATAGEN = Set.of(
            "events", "seed", "rate", "parallelism", "checkpoint_ms", "state_backend", "checkpoint_dir",
            "keys", "payload", "events_per_ms", "window_ms", "slide_ms");
    private static final Set<String> KEYED_STATE = Set.of(
            "events", "seed", "rate", "parallelism", "checkpoint_ms", "state_backend", "checkpoint_dir",
            "keys", "payload");
    private static final List<String> JOBS = List.of(
            "stateless", "wordcount", "windowed-count", "sliding-count", "keyed-state",
            "nexmark-q0", "nexmark-q1", "nexmark-q2", "nexmark-q5");

    private BaselineMain() {}

    public static void main(String[] args) throws Exception {
        if (args.length < 1 || !JOBS.contains(args[0])) {
            System.err.println("usage: mesoflow-flink-baseline <job> [key=value ...]; jobs: " + JOBS);
            System.exit(2);
        }
        String job = args[0];
        Path checkpoints = null;
        boolean ownDir = false;
        DataStream<long[]> partials;
        try {
            Params p = new Params(args, 1, job.startsWith("nexmark") || job.equals("wordcount") ? COMMON
                    : job.equals("keyed-state") ? KEYED_STATE : DATAGEN);
            if (p.num("rate", 0) != 0 && !job.equals("keyed-state")) {
                throw new IllegalArgumentException("rate=" + p.num("rate", 0)
                        + " is not supported by the Flink baseline: it always runs as fast as possible");
            }
            if (p.num("events", 1_000_000) == 0) {
                System.out.println("records=0 checksum=0000000000000000");
                return;
            }
            String dir = p.str("checkpoint_dir", "");
            if (dir.isEmpty()) {
                checkpoints = Files.createTempDirectory("mesoflow-flink-checkpoints");
                ownDir = true;
            } else {
                checkpoints = Files.createDirectories(Path.of(dir).toAbsolutePath());
            }
            partials = buildJob(job, p, environment(p, checkpoints));
        } catch (IllegalArgumentException e) {
            if (ownDir) {
                deleteRecursively(checkpoints);
            }
            System.err.println("error: " + e.getMessage());
            System.exit(2);
            return;
        }
        long records = 0;
        long sum = 0;
        try (CloseableIterator<long[]> it = partials.executeAndCollect("mesoflow-baseline-" + job)) {
            while (it.hasNext()) {
                long[] part = it.next();
                records += part[0];
                sum += part[1];
            }
        } finally {
            if (ownDir) {
                deleteRecursively(checkpoints);
            }
        }
        System.out.println("records=" + records + " checksum=" + String.format("%016x", sum));
    }

    private static StreamExecutionEnvironment environment(Params p, Path checkpoints) {
        int parallelism = (int) Math.max(1, p.num("parallelism", 2));
        String backend = p.str("state_backend", "hashmap");
        if (!backend.equals("hashmap") && !backend.equals("rocksdb")) {
            throw new IllegalArgumentException("state_backend=" + backend + ": use hashmap or rocksdb");
        }
        Configuration conf = new Configuration();
        conf.setString("state.backend.type", backend);
        conf.setString("execution.checkpointing.dir", checkpoints.toUri().toString());
        conf.setString("execution.checkpointing.incremental", backend.equals("rocksdb") ? "true" : "false");
        StreamExecutionEnvironment env = StreamExecutionEnvironment.createLocalEnvironment(parallelism, conf);
        long checkpointMs = p.num("checkpoint_ms", 0);
        if (checkpointMs > 0) {
            env.enableCheckpointing(checkpointMs);
        }
        return env;
    }

    private static DataStream<long[]> buildJob(String job, Params p, StreamExecutionEnvironment env) {
        long events = p.num("events", 1_000_000);
        long seed = p.num("seed", 0);
        TypeInformation<long[]> partial = TypeInformation.of(long[].class);
        switch (job) {
            case "stateless": {
                DataStream<KeyValue> out = datagen(env, p, events, seed)
                        .filter(e -> e.value % 10 != 0)
                        .map(e -> new KeyValue(e.key, e.value * 3 + e.payload.length))
                        .returns(KeyValue.class);
                return out.transform("checksum", partial, new ChecksumOperator<KeyValue>(
                        kv -> LineHash.num(LineHash.ch(LineHash.num(LineHash.START, kv.key), ','), kv.value)));
            }
            case "wordcount": {
                TextGen text = new TextGen(seed);
                DataStream<WordCount> out = env.fromSequence(0, events - 1).name("text-source")
                        .flatMap((Long i, Collector<String> c) -> tokenize(text.line(i), c))
                        .returns(Types.STRING)
                        .keyBy(w -> w)
                        .process(new RollingCount())
                        .returns(WordCount.class);
                return out.transform("checksum", partial, new ChecksumOperator<WordCount>(
                        wc -> LineHash.num(LineHash.ch(LineHash.ascii(LineHash.START, wc.word), ' '), wc.count)));
            }
            case "windowed-count":
            case "sliding-count": {
                long windowMs = p.num("window_ms", 1000);
                long slideMs = p.num("slide_ms", job.equals("windowed-count") ? windowMs : Math.max(1, windowMs / 60));
                if (windowMs == 0 || slideMs == 0) {
                    throw new IllegalArgumentException("window_ms and slide_ms must be positive");
                }
                WindowAssigner<Object, TimeWindow> windows = job.equals("windowed-count")
                        ? TumblingEventTimeWindows.of(Duration.ofMillis(windowMs))
                        : SlidingEventTimeWindows.of(Duration.ofMillis(windowMs), Duration.ofMillis(slideMs));
                DataStream<WindowCount> out = datagen(env, p, events, seed)
                        .assignTimestampsAndWatermarks(WatermarkStrategy.<DataEvent>forMonotonousTimestamps()
                                .withTimestampAssigner((e, ts) -> e.tsMs))
                        .keyBy(e -> e.key)
                        .window(windows)
                        .aggregate(new CountAgg<DataEvent>(), new EmitWindowCount())
                        .returns(WindowCount.class);
                return out.transform("checksum", partial, new ChecksumOperator<WindowCount>(BaselineMain::windowLine));
            }
            case "keyed-state": {
                long keys = Math.max(1, p.num("keys", 100_000));
                int payload = (int) p.num("payload", 100);
                long rate = p.num("rate", 0);
                int parallelism = (int) Math.max(1, p.num("parallelism", 2));
                DataStream<KeyValue> out = env.fromSequence(0, events - 1).name("keyed-state-source")
                        .flatMap(new PacedKeyedRecords(keys, seed, rate / (double) parallelism, events, parallelism))
                        .returns(Events.KeyedRecord.class)
                        .keyBy(r -> r.key)
                        .process(new KeepState(payload))
                        .returns(KeyValue.class);
                return out.transform("checksum", partial, new ChecksumOperator<KeyValue>(
                        kv -> LineHash.num(LineHash.ch(LineHash.num(LineHash.START, kv.key), ' '), kv.value)));
            }
            case "nexmark-q0": {
                return bids(env, events, seed).transform("checksum", partial,
                        new ChecksumOperator<Nexmark.Bid>(b -> bidLine(b.auction, b.bidder, b.price, b.dateTime)));
            }
            case "nexmark-q1": {
                DataStream<Nexmark.Bid> out = bids(env, events, seed).map(b -> {
                    b.price = b.price * 908 / 1000;
                    return b;
                }).returns(Nexmark.Bid.class);
                return out.transform("checksum", partial,
                        new ChecksumOperator<Nexmark.Bid>(b -> bidLine(b.auction, b.bidder, b.price, b.dateTime)));
            }
            case "nexmark-q2": {
                DataStream<Nexmark.Bid> out = bids(env, events, seed).filter(b -> b.auction % 123 == 0);
                return out.transform("checksum", partial, new ChecksumOperator<Nexmark.Bid>(
                        b -> LineHash.num(LineHash.ch(LineHash.num(LineHash.START, b.auction), ','), b.price)));
            }
            case "nexmark-q5": {
                DataStream<WindowCount> counts = bids(env, events, seed)
                        .assignTimestampsAndWatermarks(WatermarkStrategy.<Nexmark.Bid>forMonotonousTimestamps()
                                .withTimestampAssigner((b, ts) -> b.dateTime))
                        .keyBy(b -> b.auction)
                        .window(SlidingEventTimeWindows.of(Duration.ofSeconds(10), Duration.ofSeconds(2)))
                        .aggregate(new CountAgg<Nexmark.Bid>(), new EmitWindowCount())
                        .returns(WindowCount.class);
                DataStream<WindowCount> hottest = counts.keyBy(c -> c.windowEnd)
                        .process(new HottestPerWindow())
                        .returns(WindowCount.class);
                return hottest.transform("checksum", partial, new ChecksumOperator<WindowCount>(BaselineMain::windowLine));
            }
            default:
                throw new IllegalArgumentException("unknown job " + job);
        }
    }

    private static DataStream<DataEvent> datagen(StreamExecutionEnvironment env, Params p, long events, long seed) {
        DataGen gen = new DataGen(seed, p.num("keys", 100_000), (int) p.num("payload", DataGen.DEFAULT_PAYLOAD_LEN),
                p.num("events_per_ms", DataGen.DEFAULT_EVENTS_PER_MS));
        return env.fromSequence(0, events - 1).name("datagen-source")
                .map(i -> DataEvent.of(gen, i))
                .returns(DataEvent.class);
    }

    /** The bids among Nexmark events {@code 0..events}; persons and auctions are skipped. */
    private static DataStream<Nexmark.Bid> bids(StreamExecutionEnvironment env, long events, long seed) {
        Nexmark nexmark = new Nexmark(seed);
        return env.fromSequence(0, events - 1).name("nexmark-source")
                .flatMap((Long i, Collector<Nexmark.Bid> c) -> {
                    Nexmark.Bid b = new Nexmark.Bid();
                    if (nexmark.bid(i, b)) {
                        c.collect(b);
                    }
                })
                .returns(Nexmark.Bid.class);
    }

    /** Maximal runs of letters and digits, lower-cased. */
    private static void tokenize(String line, Collector<String> out) {
        int start = -1;
        for (int i = 0, n = line.length(); i <= n; i++) {
            boolean alnum = i < n && Character.isLetterOrDigit(line.charAt(i));
            if (alnum && start < 0) {
                start = i;
            } else if (!alnum && start >= 0) {
                out.collect(line.substring(start, i).toLowerCase(java.util.Locale.ROOT));
                start = -1;
            }
        }
    }

    private static long windowLine(WindowCount c) {
        long h = LineHash.num(LineHash.START, c.key);
        h = LineHash.num(LineHash.ch(h, ','), c.windowEnd);
        return LineHash.num(LineHash.ch(h, ','), c.count);
    }

    private static long bidLine(long auction, long bidder, long price, long dateTime) {
        long h = LineHash.num(LineHash.START, auction);
        h = LineHash.num(LineHash.ch(h, ','), bidder);
        h = LineHash.num(LineHash.ch(h, ','), price);
        return LineHash.num(LineHash.ch(h, ','), dateTime);
    }

    /**
     * keyed-state's records: index i below {@code keys} loads key i, later ones update a random
     * key, paced to {@code ratePerSubtask} updates per second (0 = as fast as possible).
     */
    static final class PacedKeyedRecords
            extends org.apache.flink.api.common.functions.RichFlatMapFunction<Long, Events.KeyedRecord> {
        private final long keys;
        private final long seed;
        private final double ratePerSubtask;
        private final long events;
        private final int parallelism;
        private transient long started;
        private transient long updates;

        PacedKeyedRecords(long keys, long seed, double ratePerSubtask, long events, int parallelism) {
            this.keys = keys;
            this.seed = seed;
            this.ratePerSubtask = ratePerSubtask;
            this.events = events;
            this.parallelism = parallelism;
        }

        @Override
        public void flatMap(Long seq, Collector<Events.KeyedRecord> out) throws Exception {
            // fromSequence hands each subtask a contiguous range (one of `parallelism` equal
            // ones); record `local` of range s is index local * p + s, so that every subtask
            // loads its share of the keys before it updates, as mesoflow's sources do.
            long i = seq;
            if (events % parallelism == 0) {
                long range = events / parallelism;
                i = (seq % range) * parallelism + seq / range;
            }
            Events.KeyedRecord r = new Events.KeyedRecord();
            r.index = i;
            if (i < keys) {
                r.key = i;
            } else {
                r.key = Long.remainderUnsigned(io.mesoflow.peers.gen.SplitMix.at(seed, i), keys);
                r.update = true;
                if (ratePerSubtask > 0) {
                    if (updates == 0) {
                        started = System.nanoTime();
                    }
                    updates++;
                    long due = started + (long) (updates / ratePerSubtask * 1e9);
                    long wait = due - System.nanoTime();
                    if (wait > 1_000_000) {
                        Thread.sleep(wait / 1_000_000);
                    }
                }
            }
            out.collect(r);
        }
    }

    /** keyed-state's operator: per key, its update count and the latest record's payload. */
    static final class KeepState extends KeyedProcessFunction<Long, Events.KeyedRecord, KeyValue> {
        private final int payload;
        private transient ValueState<Long> updates;
        private transient ValueState<byte[]> bytes;

        KeepState(int payload) {
            this.payload = payload;
        }

        @Override
        public void open(OpenContext ctx) {
            updates = getRuntimeContext().getState(new ValueStateDescriptor<>("updates", Types.LONG));
            bytes = getRuntimeContext().getState(
                    new ValueStateDescriptor<>("payload",
                            org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO));
        }

        @Override
        public void processElement(Events.KeyedRecord r, Context ctx, Collector<KeyValue> out) throws Exception {
            byte[] b = new byte[payload];
            for (int i = 0; i < payload; i++) {
                b[i] = (byte) ((r.index >>> (8 * (i % 8))) ^ i);
            }
            bytes.update(b);
            if (r.update) {
                Long n = updates.value();
                long next = n == null ? 1 : n + 1;
                updates.update(next);
                out.collect(new KeyValue(r.key, next));
            }
        }
    }

    /** Counts a window's elements incrementally (no element buffering). */
    static final class CountAgg<T> implements AggregateFunction<T, Long, Long> {
        @Override
        public Long createAccumulator() {
            return 0L;
        }

        @Override
        public Long add(T value, Long acc) {
            return acc + 1;
        }

        @Override
        public Long getResult(Long acc) {
            return acc;
        }

        @Override
        public Long merge(Long a, Long b) {
            return a + b;
        }
    }

    /** Attaches the key and the window end to a window's count. */
    static final class EmitWindowCount extends ProcessWindowFunction<Long, WindowCount, Long, TimeWindow> {
        @Override
        public void process(Long key, Context ctx, Iterable<Long> counts, Collector<WindowCount> out) {
            out.collect(new WindowCount(key, ctx.window().getEnd(), counts.iterator().next()));
        }
    }

    /** Rolling count per word: one update per input word. */
    static final class RollingCount extends KeyedProcessFunction<String, String, WordCount> {
        private transient ValueState<Long> count;

        @Override
        public void open(OpenContext ctx) {
            count = getRuntimeContext().getState(new ValueStateDescriptor<>("count", Types.LONG));
        }

        @Override
        public void processElement(String word, Context ctx, Collector<WordCount> out) throws Exception {
            Long c = count.value();
            long next = c == null ? 1 : c + 1;
            count.update(next);
            out.collect(new WordCount(word, next));
        }
    }

    /**
     * Nexmark q5's second stage: per window end, the auction(s) with the highest count. Window
     * results carry the timestamp end - 1, so a timer there fires once all of them are in.
     */
    static final class HottestPerWindow extends KeyedProcessFunction<Long, WindowCount, WindowCount> {
        private transient ValueState<Long> max;
        private transient ListState<Long> auctions;

        @Override
        public void open(OpenContext ctx) {
            max = getRuntimeContext().getState(new ValueStateDescriptor<>("max", Types.LONG));
            auctions = getRuntimeContext().getListState(new ListStateDescriptor<>("auctions", Types.LONG));
        }

        @Override
        public void processElement(WindowCount c, Context ctx, Collector<WindowCount> out) throws Exception {
            Long best = max.value();
            if (best == null || c.count > best) {
                max.update(c.count);
                auctions.update(new ArrayList<>(List.of(c.key)));
                ctx.timerService().registerEventTimeTimer(c.windowEnd - 1);
            } else if (c.count == best) {
                auctions.add(c.key);
            }
        }

        @Override
        public void onTimer(long ts, OnTimerContext ctx, Collector<WindowCount> out) throws Exception {
            Long best = max.value();
            if (best != null) {
                for (Long auction : auctions.get()) {
                    out.collect(new WindowCount(auction, ctx.getCurrentKey(), best));
                }
            }
            max.clear();
            auctions.clear();
        }
    }

    private static void deleteRecursively(Path dir) {
        try (var paths = Files.walk(dir)) {
            paths.sorted(java.util.Comparator.reverseOrder()).forEach(path -> path.toFile().delete());
        } catch (java.io.IOException e) {
            System.err.println("warning: could not delete " + dir + ": " + e.getMessage());
        }
    }
}
