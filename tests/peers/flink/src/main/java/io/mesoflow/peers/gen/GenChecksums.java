package io.mesoflow.peers.gen;

/**
 * Prints checksums over the first N events of each generator, one {@code <name> <checksum line>}
 * per line, so that dataplane/tests/generators_java.rs can compare them with the Rust generators.
 * Usage: {@code java io.mesoflow.peers.gen.GenChecksums <events> <seed>}. The canonical lines
 * are the ones of docs/generators.md ("Cross-language check").
 */
public final class GenChecksums {
    private GenChecksums() {}

    public static void main(String[] args) {
        if (args.length != 2) {
            System.err.println("usage: GenChecksums <events> <seed>");
            System.exit(2);
        }
        long events = Long.parseLong(args[0]);
        long seed = Long.parseUnsignedLong(args[1]);
        selfCheckLcg();

        DataGen dg = new DataGen(seed, 100_000, DataGen.DEFAULT_PAYLOAD_LEN, DataGen.DEFAULT_EVENTS_PER_MS);
        DataGen.Record r = new DataGen.Record();
        byte[] payload = new byte[dg.payloadLen];
        StringBuilder sb = new StringBuilder(128);
        Checksum datagen = new Checksum();
        for (long i = 0; i < events; i++) {
            dg.record(i, r);
            r.writePayload(payload);
            sb.setLength(0);
            sb.append(r.seq).append(',').append(r.key).append(',').append(r.value).append(',')
                    .append(r.tsMs).append(',');
            for (byte b : payload) {
                sb.append((char) b);
            }
            datagen.addLine(sb);
        }
        System.out.println("datagen " + datagen);

        TextGen tg = new TextGen(seed);
        Checksum text = new Checksum();
        for (long i = 0; i < events; i++) {
            sb.setLength(0);
            tg.lineInto(i, sb);
            text.addLine(sb);
        }
        System.out.println("text " + text);

        Nexmark nx = new Nexmark(seed);
        Checksum nexmark = new Checksum();
        Nexmark.Bid bid = new Nexmark.Bid();
        for (long i = 0; i < events; i++) {
            sb.setLength(0);
            if (Nexmark.eventKind(i) == Nexmark.BID) {
                StringBuilder extra = new StringBuilder();
                nx.bidWithExtra(i, bid, extra);
                sb.append(bid).append(',').append(extra);
            } else {
                sb.append(nx.event(i));
            }
            nexmark.addLine(sb);
        }
        System.out.println("nexmark " + nexmark);
    }

    /** Fails loudly if Lcg48 ever drifts from java.util.Random. */
    private static void selfCheckLcg() {
        for (long s : new long[] {0, 42, -1, 1L << 50}) {
            java.util.Random ref = new java.util.Random(s);
            Lcg48 ours = new Lcg48(s);
            for (int i = 0; i < 1000; i++) {
                int bound = 1 + (i * 7919) % 1_000_003;
                if (ref.nextInt(bound) != ours.nextInt(bound) || ref.nextLong() != ours.nextLong()
                        || ref.nextDouble() != ours.nextDouble()) {
                    throw new IllegalStateException("Lcg48 differs from java.util.Random, seed " + s);
                }
            }
        }
    }
}
