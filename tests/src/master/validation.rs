//! The master's validation of scheduler `Call`s and of launched tasks, with the messages Mesos
//! 1.11 gives (`src/master/validation.cpp`), so that a scheduler failing here fails the same way
//! on a real cluster.

use mesoflow_proto::mesos::v1;
use v1::scheduler::call::Type as CallType;

use crate::wire::validate_id;

/// Validates the shape of a scheduler call (`validation::scheduler::call::validate`).
pub fn validate_call(call: &v1::scheduler::Call) -> Result<CallType, String> {
    let Some(raw) = call.r#type else {
        return Err("Expecting 'type' to be present".into());
    };
    // Unknown enum numbers are treated like UNKNOWN (501 later), as protobuf would map them.
    let kind = CallType::try_from(raw).unwrap_or(CallType::Unknown);
    if kind == CallType::Subscribe {
        let Some(subscribe) = &call.subscribe else {
            return Err("Expecting 'subscribe' to be present".into());
        };
        if let Some(id) = &call.framework_id
            && subscribe.framework_info.id.as_ref() != Some(id)
        {
            return Err("'framework_id' differs from 'subscribe.framework_info.id'".into());
        }
        return Ok(kind);
    }
    if kind == CallType::Unknown {
        return Ok(kind);
    }
    if call.framework_id.is_none() {
        return Err("Expecting 'framework_id' to be present".into());
    }
    let missing = |field: &str| Err(format!("Expecting '{field}' to be present"));
    match kind {
        CallType::Accept if call.accept.is_none() => missing("accept"),
        CallType::Decline if call.decline.is_none() => missing("decline"),
        CallType::AcceptInverseOffers if call.accept_inverse_offers.is_none() => {
            missing("accept_inverse_offers")
        }
        CallType::DeclineInverseOffers if call.decline_inverse_offers.is_none() => {
            missing("decline_inverse_offers")
        }
        CallType::Kill if call.kill.is_none() => missing("kill"),
        CallType::Shutdown if call.shutdown.is_none() => missing("shutdown"),
        CallType::Acknowledge => match &call.acknowledge {
            None => missing("acknowledge"),
            Some(ack) if ack.uuid.len() != 16 => Err(format!(
                "Failed to parse acknowledge 'uuid': expected 16 bytes, got {}",
                ack.uuid.len()
            )),
            Some(ack) => validate_id("Task", &ack.task_id.value).map(|_| kind),
        },
        CallType::AcknowledgeOperationStatus => match &call.acknowledge_operation_status {
            None => missing("acknowledge_operation_status"),
            Some(ack) if ack.uuid.len() != 16 => {
                Err("Failed to parse acknowledge_operation_status 'uuid'".into())
            }
            Some(_) => Ok(kind),
        },
        CallType::Reconcile if call.reconcile.is_none() => missing("reconcile"),
        CallType::ReconcileOperations if call.reconcile_operations.is_none() => {
            missing("reconcile_operations")
        }
        CallType::Message if call.message.is_none() => missing("message"),
        CallType::Request if call.request.is_none() => missing("request"),
        CallType::UpdateFramework => match &call.update_framework {
            None => missing("update_framework"),
            Some(update) if update.framework_info.id.as_ref() != call.framework_id.as_ref() => {
                Err("'framework_id' differs from 'update_framework.framework_info.id'".into())
            }
            Some(_) => Ok(kind),
        },
        _ => Ok(kind),
    }
}

/// Validates roles and MULTI_ROLE use of a FrameworkInfo (`validation::framework`).
pub fn validate_framework_info(
    info: &v1::FrameworkInfo,
    suppressed_roles: &[String],
) -> Result<Vec<String>, String> {
    use v1::framework_info::capability::Type as Cap;
    let multi_role = crate::wire::has_capability(info, Cap::MultiRole);
    let roles: Vec<String> = if multi_role {
        if info.role.is_some() {
            return Err("'FrameworkInfo.role' must not be set with the MULTI_ROLE capability: use 'FrameworkInfo.roles'".into());
        }
        info.roles.clone()
    } else {
        if !info.roles.is_empty() {
            return Err(
                "'FrameworkInfo.roles' is set but the MULTI_ROLE capability is missing".into(),
            );
        }
        vec![info.role.clone().unwrap_or_else(|| "*".to_string())]
    };
    let mut seen = std::collections::BTreeSet::new();
    for role in &roles {
        crate::resources::validate_role(role)?;
        if !seen.insert(role) {
            return Err(format!(
                "'FrameworkInfo.roles' contains duplicate role '{role}'"
            ));
        }
    }
    for role in suppressed_roles {
        if !roles.contains(role) {
            return Err(format!(
                "Suppressed role '{role}' is not contained in the list of roles"
            ));
        }
    }
    Ok(roles)
}

/// Checks a TaskInfo in isolation (IDs, agent, command/executor, resources present).
pub fn validate_task_shape(task: &v1::TaskInfo, offer_agent: &str) -> Result<(), String> {
    validate_id("Task", &task.task_id.value)?;
    if task.agent_id.value != offer_agent {
        return Err(format!(
            "Task uses invalid agent: {} (the offers are from agent {offer_agent})",
            task.agent_id.value
        ));
    }
    if task.executor.is_some() == task.command.is_some() {
        return Err(
            "Task should have at least one (but not both) of CommandInfo or ExecutorInfo present"
                .into(),
        );
    }
    if task.resources.is_empty() {
        return Err("Task uses no resources".into());
    }
    Ok(())
}

/// Checks an ExecutorInfo (IDs, framework id, command for a custom executor).
pub fn validate_executor(
    executor: &v1::ExecutorInfo,
    framework_id: &str,
    group: bool,
) -> Result<(), String> {
    use v1::executor_info::Type;
    validate_id("Executor", &executor.executor_id.value)?;
    if let Some(fw) = &executor.framework_id
        && fw.value != framework_id
    {
        return Err(format!(
            "ExecutorInfo has an invalid FrameworkID (Actual: {} vs Expected: {framework_id})",
            fw.value
        ));
    }
    let kind = executor.r#type.and_then(|t| Type::try_from(t).ok());
    if group {
        if executor.framework_id.is_none() {
            return Err("'ExecutorInfo.framework_id' must be set".into());
        }
        if kind.is_none() || kind == Some(Type::Unknown) {
            return Err("'ExecutorInfo.type' must be set".into());
        }
    }
    match kind {
        Some(Type::Default) => {
            if executor.command.is_some() {
                return Err("'ExecutorInfo.command' must not be set for 'DEFAULT' executor".into());
            }
            if !group {
                return Err("The test agent runs DEFAULT executors only through LAUNCH_GROUP, and has no built-in default executor".into());
            }
        }
        _ => {
            if executor.command.is_none() {
                return Err("'ExecutorInfo.command' must be set for 'CUSTOM' executor".into());
            }
        }
    }
    if let Some(grace) = &executor.shutdown_grace_period
        && grace.nanoseconds < 0
    {
        return Err("ExecutorInfo's 'shutdown_grace_period' must be non-negative".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(kind: CallType) -> v1::scheduler::Call {
        v1::scheduler::Call {
            r#type: Some(kind as i32),
            framework_id: Some(v1::FrameworkId { value: "f".into() }),
            ..Default::default()
        }
    }

    #[test]
    fn call_shape_errors_match_mesos() {
        let mut c = call(CallType::Accept);
        assert_eq!(
            validate_call(&c).unwrap_err(),
            "Expecting 'accept' to be present"
        );
        c.r#type = None;
        assert_eq!(
            validate_call(&c).unwrap_err(),
            "Expecting 'type' to be present"
        );
        let mut c = call(CallType::Teardown);
        c.framework_id = None;
        assert_eq!(
            validate_call(&c).unwrap_err(),
            "Expecting 'framework_id' to be present"
        );
        let mut c = call(CallType::Subscribe);
        c.subscribe = Some(Default::default());
        assert_eq!(
            validate_call(&c).unwrap_err(),
            "'framework_id' differs from 'subscribe.framework_info.id'"
        );
        let mut c = call(CallType::Acknowledge);
        c.acknowledge = Some(v1::scheduler::call::Acknowledge {
            uuid: bytes::Bytes::from_static(b"not-16"),
            ..Default::default()
        });
        assert!(validate_call(&c).unwrap_err().contains("16 bytes"));
        assert_eq!(
            validate_call(&call(CallType::Teardown)),
            Ok(CallType::Teardown)
        );
    }

    #[test]
    fn multi_role_rules() {
        use v1::framework_info::{Capability, capability::Type as Cap};
        let mut info = v1::FrameworkInfo {
            roles: vec!["a".into()],
            ..Default::default()
        };
        assert!(validate_framework_info(&info, &[]).is_err());
        info.capabilities.push(Capability {
            r#type: Some(Cap::MultiRole as i32),
        });
        assert_eq!(validate_framework_info(&info, &[]).unwrap(), vec!["a"]);
        assert!(validate_framework_info(&info, &["b".into()]).is_err());
        info.roles.push("a".into());
        assert!(validate_framework_info(&info, &[]).is_err());
        info.roles.pop();
        info.role = Some("a".into());
        assert!(validate_framework_info(&info, &[]).is_err());
        let plain = v1::FrameworkInfo::default();
        assert_eq!(validate_framework_info(&plain, &[]).unwrap(), vec!["*"]);
    }
}
