package io.mesoflow.peers.flink;

import java.util.HashMap;
import java.util.Map;
import java.util.Set;

/** {@code key=value} job parameters, validated: unknown keys and bad numbers are refused. */
final class Params {
    private final Map<String, String> values = new HashMap<>();

    Params(String[] args, int from, Set<String> allowed) {
        for (int i = from; i < args.length; i++) {
            String arg = args[i];
            if (arg.equals("-p")) {
                continue;
            }
            int eq = arg.indexOf('=');
            if (eq <= 0) {
                throw new IllegalArgumentException(
                        "parameter '" + arg + "' is not key=value (for example events=1000000)");
            }
            String key = arg.substring(0, eq);
            if (!allowed.contains(key)) {
                throw new IllegalArgumentException(
                        "unknown parameter '" + key + "'; this job accepts " + allowed);
            }
            values.put(key, arg.substring(eq + 1));
        }
    }

    long num(String key, long dflt) {
        String v = values.get(key);
        if (v == null) {
            return dflt;
        }
        try {
            long n = Long.parseLong(v.replace("_", ""));
            if (n < 0) {
                throw new NumberFormatException();
            }
            return n;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(
                    "parameter " + key + "=" + v + " is not a non-negative integer");
        }
    }

    String str(String key, String dflt) {
        return values.getOrDefault(key, dflt);
    }
}
