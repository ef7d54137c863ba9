package io.mesoflow.peers.gen;

/** 10^x from basic IEEE operations only, bit-identical to {@code generators::portable_math}. */
public final class PortableMath {
    private static final double LN_10 = 2.302585092994046;
    private static final double LN_2 = 0.6931471805599453;
    private static final double INV_LN_2 = 1.4426950408889634;

    private PortableMath() {}

    public static double exp10(double x) {
        double t = x * LN_10;
        double k = Math.floor(t * INV_LN_2);
        double r = t - k * LN_2;
        double p = 1.0;
        for (int n = 17; n >= 1; n--) {
            p = 1.0 + p * r / (double) n;
        }
        int ki = (int) Math.max(0.0, Math.min(1000.0, k));
        return p * Math.pow(2.0, ki);
    }

    public static long roundHalfUp(double x) {
        return (long) Math.floor(x + 0.5);
    }
}
