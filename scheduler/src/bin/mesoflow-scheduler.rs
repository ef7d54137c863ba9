//! `mesoflow-scheduler`: the JobManager of a mesoflow session cluster, as a Mesos framework or
//! standalone (see `mesoflow_scheduler::entrypoint`).

fn main() -> std::process::ExitCode {
    mesoflow_scheduler::entrypoint::main_entry()
}
