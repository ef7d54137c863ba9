package io.mesoflow.peers.gen;

import java.nio.charset.StandardCharsets;

/** The order-independent output checksum of docs/workloads.md: sum of FNV-1a-64 per line. */
public final class Checksum implements java.io.Serializable {
    private static final long FNV_OFFSET_BASIS = 0xcbf29ce484222325L;
    private static final long FNV_PRIME = 0x100000001b3L;

    public long records;
    public long sum;

    public static long fnv1a64(byte[] bytes, int len) {
        long h = FNV_OFFSET_BASIS;
        for (int i = 0; i < len; i++) {
            h ^= bytes[i] & 0xff;
            h *= FNV_PRIME;
        }
        return h;
    }

    /** FNV-1a-64 of an ASCII/Latin-1 char sequence without encoding it (the lines are ASCII). */
    public static long fnv1a64Ascii(CharSequence s) {
        long h = FNV_OFFSET_BASIS;
        for (int i = 0, n = s.length(); i < n; i++) {
            char c = s.charAt(i);
            if (c >= 0x80) {
                return fnv1a64Utf8(s);
            }
            h ^= c;
            h *= FNV_PRIME;
        }
        return h;
    }

    private static long fnv1a64Utf8(CharSequence s) {
        byte[] b = s.toString().getBytes(StandardCharsets.UTF_8);
        return fnv1a64(b, b.length);
    }

    public void addLine(CharSequence line) {
        records++;
        sum += fnv1a64Ascii(line);
    }

    public void addHash(long hash) {
        records++;
        sum += hash;
    }

    public void merge(Checksum other) {
        records += other.records;
        sum += other.sum;
    }

    /** {@code records=<N> checksum=<16 lower-case hex digits>}. */
    @Override
    public String toString() {
        return "records=" + Long.toUnsignedString(records) + " checksum=" + String.format("%016x", sum);
    }
}
