package io.mesoflow.peers.gen;

/**
 * java.util.Random's 48-bit LCG without the atomic state (Random's seed is an AtomicLong, which
 * would slow the Flink sources for nothing). Bit-identical to java.util.Random; GenChecksums
 * verifies that on every run. Twin of {@code generators::java_random}.
 */
public final class Lcg48 {
    private static final long MULTIPLIER = 0x5DEECE66DL;
    private static final long ADDEND = 0xBL;
    private static final long MASK = (1L << 48) - 1;

    private long state;

    public Lcg48(long seed) {
        state = (seed ^ MULTIPLIER) & MASK;
    }

    public int next(int bits) {
        state = (state * MULTIPLIER + ADDEND) & MASK;
        return (int) (state >>> (48 - bits));
    }

    public int nextInt() {
        return next(32);
    }

    /** Same as Random.nextInt(bound), except that a non-positive bound yields 0. */
    public int nextInt(int bound) {
        if (bound <= 0) {
            return 0;
        }
        int r = next(31);
        int m = bound - 1;
        if ((bound & m) == 0) {
            return (int) ((bound * (long) r) >> 31);
        }
        for (int u = r; u - (r = u % bound) + m < 0; u = next(31)) {
            // rejection loop of java.util.Random
        }
        return r;
    }

    public long nextLong() {
        return ((long) next(32) << 32) + next(32);
    }

    public double nextDouble() {
        return (((long) next(26) << 27) + next(27)) * 0x1.0p-53;
    }

    /** Nexmark's LongGenerator.nextLong: nextInt(n) when n fits an int, else |nextLong() % n|. */
    public long nextLongBelow(long n) {
        if (n <= 0) {
            return 0;
        } else if (n < Integer.MAX_VALUE) {
            return nextInt((int) n);
        } else {
            return Math.abs(nextLong() % n);
        }
    }
}
