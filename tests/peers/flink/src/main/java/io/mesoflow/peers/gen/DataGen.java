package io.mesoflow.peers.gen;

/** Twin of {@code generators::datagen}: record i of a seed, all 64-bit arithmetic wrapping. */
public final class DataGen implements java.io.Serializable {
    public static final long START_TS_MS = 1_436_918_400_000L;
    public static final int DEFAULT_PAYLOAD_LEN = 76;
    public static final long DEFAULT_EVENTS_PER_MS = 1000;
    static final byte[] PAYLOAD_ALPHABET =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                    .getBytes(java.nio.charset.StandardCharsets.US_ASCII);

    public final long seed;
    public final long keys;
    public final int payloadLen;
    public final long eventsPerMs;

    public DataGen(long seed, long keys, int payloadLen, long eventsPerMs) {
        this.seed = seed;
        this.keys = keys == 0 ? 1 : keys;
        this.payloadLen = payloadLen;
        this.eventsPerMs = eventsPerMs == 0 ? 1 : eventsPerMs;
    }

    /** A record; fields as in the Rust DataRecord (u64s held in Java longs). */
    public static final class Record implements java.io.Serializable {
        public long seq;
        public long key;
        public long value;
        public long tsMs;
        public long payloadSeed;
        public int payloadLen;

        public Record() {}

        /** Writes the payload into out[0..payloadLen) (out must be long enough); returns the length. */
        public int writePayload(byte[] out) {
            int n = Math.min(payloadLen, out.length);
            for (int chunk = 0; chunk * 10 < n; chunk++) {
                long word = SplitMix.at(payloadSeed, chunk);
                int end = Math.min(n, chunk * 10 + 10);
                for (int j = chunk * 10; j < end; j++) {
                    out[j] = PAYLOAD_ALPHABET[(int) (word & 63)];
                    word >>>= 6;
                }
            }
            return n;
        }
    }

    public long tsMs(long index) {
        return START_TS_MS + Long.divideUnsigned(index, eventsPerMs);
    }

    /** Fills {@code r} with record {@code index} (reuse one Record to avoid allocation). */
    public Record record(long index, Record r) {
        long base = index * 4;
        r.seq = index;
        r.key = Long.remainderUnsigned(SplitMix.at(seed, base), keys);
        r.value = SplitMix.at(seed, base + 1) >>> 32;
        r.tsMs = tsMs(index);
        r.payloadSeed = SplitMix.at(seed, base + 2);
        r.payloadLen = payloadLen;
        return r;
    }

    public Record record(long index) {
        return record(index, new Record());
    }
}
