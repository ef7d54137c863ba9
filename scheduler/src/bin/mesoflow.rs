//! `mesoflow`: the user CLI (run built-in jobs, list them).

fn main() -> std::process::ExitCode {
    mesoflow_scheduler::cli::main_entry()
}
