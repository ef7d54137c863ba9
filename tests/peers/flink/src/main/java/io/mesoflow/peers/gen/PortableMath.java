package io.mesoflow.peers.gen;

/** 10^x from basic IEEE operations only, bit-identical to {@code generators::portable_math}. */
public final class PortableMath {
    private static final double LN_10 = 2.302585092994046;
    private static final double LN_2 = 0.6931471805599453;
    private static final double INV_LN_2 = 1.4426950408889634;

    private PortableMath() {}

    private static final int TERMS = 17;
    /** 1/n!, each entry the previous one divided by n, exactly as the Rust table. */
    private static final double[] INV_FACTORIAL = new double[TERMS + 1];

    static {
        INV_FACTORIAL[0] = 1.0;
        for (int n = 1; n <= TERMS; n++) {
            INV_FACTORIAL[n] = INV_FACTORIAL[n - 1] / (double) n;
        }
    }

    public static double exp10(double x) {
        double t = x * LN_10;
        long k = Math.max(0, Math.min(1000, (long) (t * INV_LN_2)));
        double r = t - (double) k * LN_2;
        double p = INV_FACTORIAL[TERMS];
        for (int n = TERMS - 1; n >= 0; n--) {
            p = p * r + INV_FACTORIAL[n];
        }
        return p * Math.pow(2.0, (double) k);
    }

    public static long roundHalfUp(double x) {
        double y = x + 0.5;
        return y >= 0.0 ? (long) y : (long) Math.floor(y);
    }
}
