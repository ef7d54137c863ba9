package io.mesoflow.peers.gen;

/**
 * SplitMix64 evaluated at a position: {@code at(s, n)} is the n-th output of a SplitMix64
 * generator whose state starts at s. Twin of {@code generators::splitmix} (docs/generators.md).
 */
public final class SplitMix {
    /** The SplitMix64 state increment. */
    public static final long GOLDEN_GAMMA = 0x9e3779b97f4a7c15L;

    private SplitMix() {}

    /** SplitMix64's output function, a bijection on 64-bit words. */
    public static long mix64(long z) {
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }

    /** The n-th output (from 0) of SplitMix64 started from {@code state}. */
    public static long at(long state, long n) {
        return mix64(state + (n + 1) * GOLDEN_GAMMA);
    }
}
