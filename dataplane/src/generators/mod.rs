//! Deterministic workload generators: each event is a pure function of `(seed, index)`.
