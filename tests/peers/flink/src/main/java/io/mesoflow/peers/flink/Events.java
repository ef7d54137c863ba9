package io.mesoflow.peers.flink;

import io.mesoflow.peers.gen.DataGen;

/** Record types that flow through the Flink jobs (public POJOs, so Flink avoids Kryo). */
public final class Events {
    private Events() {}

    /** A datagen record with its payload materialised, ~100 bytes like mesoflow's. */
    public static final class DataEvent {
        public long seq;
        public long key;
        public long value;
        public long tsMs;
        public byte[] payload;

        public DataEvent() {}

        static DataEvent of(DataGen gen, long index) {
            DataGen.Record r = gen.record(index);
            DataEvent e = new DataEvent();
            e.seq = r.seq;
            e.key = r.key;
            e.value = r.value;
            e.tsMs = r.tsMs;
            e.payload = new byte[r.payloadLen];
            r.writePayload(e.payload);
            return e;
        }
    }

    /** {@code {key},{mapped}} of the stateless job. */
    public static final class KeyValue {
        public long key;
        public long value;

        public KeyValue() {}

        KeyValue(long key, long value) {
            this.key = key;
            this.value = value;
        }
    }

    /** {@code {key},{window_end_ms},{count}}: one window result. */
    public static final class WindowCount {
        public long key;
        public long windowEnd;
        public long count;

        public WindowCount() {}

        WindowCount(long key, long windowEnd, long count) {
            this.key = key;
            this.windowEnd = windowEnd;
            this.count = count;
        }
    }

    /** {@code {word} {count}}: one rolling word-count update. */
    public static final class WordCount {
        public String word;
        public long count;

        public WordCount() {}

        WordCount(String word, long count) {
            this.word = word;
            this.count = count;
        }
    }

    /** A keyed-state record: the key, the record's index, and whether it updates (or loads). */
    public static final class KeyedRecord {
        public long key;
        public long index;
        public boolean update;

        public KeyedRecord() {}
    }
}
