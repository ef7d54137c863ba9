package io.mesoflow.peers.gen;

/** Twin of {@code generators::text}: line i of a seed, words with a log-uniform rank law. */
public final class TextGen implements java.io.Serializable {
    public static final int LEVELS = 12;
    public static final long VOCABULARY = (1L << LEVELS) - 1;
    static final String[] SYLLABLES = {
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ba", "de", "fu", "ga", "hi", "jo", "pe", "zu"
    };
    private static final long DRAWS_PER_LINE = 16;

    public final long seed;

    public TextGen(long seed) {
        this.seed = seed;
    }

    public long wordsOnLine(long index) {
        return 4 + Long.remainderUnsigned(SplitMix.at(seed, index * DRAWS_PER_LINE), 9);
    }

    static long rankOf(long draw) {
        long level = Long.remainderUnsigned(draw, LEVELS);
        long span = 1L << level;
        return span - 1 + Long.remainderUnsigned(draw >>> 8, span);
    }

    static void pushWord(long rank, StringBuilder out) {
        long m = rank + 1;
        int shift = 60;
        while (shift > 0 && (m >>> shift) == 0) {
            shift -= 4;
        }
        while (true) {
            out.append(SYLLABLES[(int) ((m >>> shift) & 15)]);
            if (shift == 0) {
                break;
            }
            shift -= 4;
        }
    }

    /** Appends line {@code index} (no newline) to {@code out}. */
    public void lineInto(long index, StringBuilder out) {
        long words = wordsOnLine(index);
        for (long j = 0; j < words; j++) {
            long draw = SplitMix.at(seed, index * DRAWS_PER_LINE + 1 + j);
            int start = out.length();
            pushWord(rankOf(draw), out);
            if (j == 0) {
                out.setCharAt(start, Character.toUpperCase(out.charAt(start)));
            }
            if (j + 1 < words) {
                if (((draw >>> 40) & 7) == 0) {
                    out.append(',');
                }
                out.append(' ');
            } else {
                out.append('.');
            }
        }
    }

    public String line(long index) {
        StringBuilder sb = new StringBuilder(64);
        lineInto(index, sb);
        return sb.toString();
    }
}
