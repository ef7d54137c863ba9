package io.mesoflow.peers.flink;

/**
 * FNV-1a-64 of an output line, fed field by field so that the checksum sink never builds the
 * line as a String (docs/workloads.md defines the checksum over the line's UTF-8 bytes; all our
 * lines are ASCII).
 */
final class LineHash {
    static final long START = 0xcbf29ce484222325L;
    private static final long PRIME = 0x100000001b3L;

    private LineHash() {}

    static long ch(long h, char c) {
        return (h ^ c) * PRIME;
    }

    /** Appends the decimal digits of {@code v} (with a minus sign if negative). */
    static long num(long h, long v) {
        if (v < 0) {
            h = ch(h, '-');
            if (v == Long.MIN_VALUE) {
                return ascii(h, "9223372036854775808");
            }
            v = -v;
        }
        if (v < 10) {
            return ch(h, (char) ('0' + v));
        }
        char[] buf = new char[20];
        int pos = buf.length;
        while (v > 0) {
            buf[--pos] = (char) ('0' + (v % 10));
            v /= 10;
        }
        for (int i = pos; i < buf.length; i++) {
            h = ch(h, buf[i]);
        }
        return h;
    }

    static long ascii(long h, CharSequence s) {
        for (int i = 0, n = s.length(); i < n; i++) {
            h = ch(h, s.charAt(i));
        }
        return h;
    }
}
