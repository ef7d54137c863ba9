//! The `mesoflow` command-line tool: `run`, `jobs`, and (later) `list`, `cancel`, `savepoint`, `stop`.
