//! The Pod Security "restricted" profile, checked on the pod template the
//! operator is about to apply.
//!
//! The operator writes the StatefulSet with its own, cluster-wide identity;
//! without this check anyone allowed to create a `WebSocketCluster` could
//! have it create privileged pods, hostPath mounts or host-network pods in
//! namespaces where the Pod Security admission is not enforced. So a
//! template must meet the restricted profile of the Kubernetes Pod Security
//! Standards (v1.34), unless the cluster opts out with
//! `spec.podSecurity: Unrestricted` (for trusted namespaces; the chart's
//! admission policy still requires its author to be allowed to create pods
//! there). Each rule below names the field it refuses.

use k8s_openapi::api::core::v1::{
    AppArmorProfile, Capabilities, PodSpec, SELinuxOptions, SeccompProfile, SecurityContext,
};

/// Volume types the restricted profile allows.
const ALLOWED_VOLUMES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Sysctls the baseline (and restricted) profile allows.
const SAFE_SYSCTLS: [&str; 10] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ping_group_range",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_syncookies",
];

/// SELinux types the baseline profile allows (besides none).
const SELINUX_TYPES: [&str; 4] = [
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// Why custom SELinux options are refused, at pod and at container level.
const CUSTOM_SELINUX: &str = "custom SELinux user, role or type";
/// Why an `Unconfined` seccomp or AppArmor profile is refused, at either level.
const UNCONFINED: &str = "Unconfined is not allowed";

/// Every way `spec` breaks the restricted profile, as `field: why` sentences;
/// empty when it meets it.
pub fn restricted_violations(spec: &PodSpec) -> Vec<String> {
    let mut out = Vec::new();
    let mut refuse = |field: String, why: &str| out.push(format!("{field}: {why}"));
    for (flag, name) in [
        (spec.host_network, "hostNetwork"),
        (spec.host_pid, "hostPID"),
        (spec.host_ipc, "hostIPC"),
    ] {
        if flag == Some(true) {
            refuse(
                format!("template.spec.{name}"),
                "host namespaces are not allowed",
            );
        }
    }
    for volume in spec.volumes.iter().flatten() {
        let value = serde_json::to_value(volume).unwrap_or_default();
        let kind = value
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .find(|k| *k != "name")
            .unwrap_or("");
        if !ALLOWED_VOLUMES.contains(&kind) {
            refuse(
                format!("template.spec.volumes[{}].{kind}", volume.name),
                "volume type not allowed (configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, projected, secret are)",
            );
        }
    }
    let pod = spec.security_context.as_ref();
    for sysctl in pod.and_then(|p| p.sysctls.as_ref()).into_iter().flatten() {
        if !SAFE_SYSCTLS.contains(&sysctl.name.as_str()) {
            refuse(
                format!("template.spec.securityContext.sysctls[{}]", sysctl.name),
                "only the namespaced safe sysctls are allowed",
            );
        }
    }
    let pod_non_root = pod.and_then(|p| p.run_as_non_root);
    let pod_seccomp = pod.and_then(|p| p.seccomp_profile.as_ref());
    if pod.and_then(|p| p.run_as_user) == Some(0) {
        refuse(
            "template.spec.securityContext.runAsUser".into(),
            "must not be 0 (root)",
        );
    }
    if custom_selinux(pod.and_then(|p| p.se_linux_options.as_ref())) {
        refuse(
            "template.spec.securityContext.seLinuxOptions".into(),
            CUSTOM_SELINUX,
        );
    }
    if unconfined_seccomp(pod_seccomp) {
        refuse(
            "template.spec.securityContext.seccompProfile".into(),
            UNCONFINED,
        );
    }
    if unconfined_app_armor(pod.and_then(|p| p.app_armor_profile.as_ref())) {
        refuse(
            "template.spec.securityContext.appArmorProfile".into(),
            UNCONFINED,
        );
    }

    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| ("initContainers", c))
        .chain(spec.containers.iter().map(|c| ("containers", c)));
    for (list, c) in containers {
        let at = |field: &str| format!("template.spec.{list}[{}].{field}", c.name);
        for port in c.ports.iter().flatten() {
            if port.host_port.is_some_and(|p| p != 0) {
                refuse(at("ports.hostPort"), "host ports are not allowed");
            }
        }
        let sc = c.security_context.as_ref();
        container_rules(sc, &mut |field, why| refuse(at(field), why));
        if sc.and_then(|s| s.run_as_non_root).or(pod_non_root) != Some(true) {
            refuse(
                at("securityContext.runAsNonRoot"),
                "must be true (here or in the pod's securityContext)",
            );
        }
        let seccomp = sc
            .and_then(|s| s.seccomp_profile.as_ref())
            .or(pod_seccomp)
            .map(|s| s.type_.as_str());
        if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
            refuse(
                at("securityContext.seccompProfile"),
                "must be RuntimeDefault or Localhost (here or in the pod's securityContext)",
            );
        }
    }
    out
}

/// The container-level rules of the profile.
fn container_rules(sc: Option<&SecurityContext>, refuse: &mut dyn FnMut(&str, &str)) {
    let Some(sc) = sc else {
        refuse(
            "securityContext",
            "must set allowPrivilegeEscalation: false and drop ALL capabilities",
        );
        return;
    };
    if sc.privileged == Some(true) {
        refuse(
            "securityContext.privileged",
            "privileged containers are not allowed",
        );
    }
    if sc.allow_privilege_escalation != Some(false) {
        refuse("securityContext.allowPrivilegeEscalation", "must be false");
    }
    let Capabilities { add, drop } = sc.capabilities.clone().unwrap_or_default();
    if !drop.iter().flatten().any(|c| c == "ALL") {
        refuse("securityContext.capabilities.drop", "must include ALL");
    }
    if add.iter().flatten().any(|c| c != "NET_BIND_SERVICE") {
        refuse(
            "securityContext.capabilities.add",
            "only NET_BIND_SERVICE may be added",
        );
    }
    if sc.run_as_user == Some(0) {
        refuse("securityContext.runAsUser", "must not be 0 (root)");
    }
    if sc.proc_mount.as_deref().is_some_and(|m| m != "Default") {
        refuse("securityContext.procMount", "must be Default");
    }
    if unconfined_seccomp(sc.seccomp_profile.as_ref()) {
        refuse("securityContext.seccompProfile", UNCONFINED);
    }
    if unconfined_app_armor(sc.app_armor_profile.as_ref()) {
        refuse("securityContext.appArmorProfile", UNCONFINED);
    }
    if custom_selinux(sc.se_linux_options.as_ref()) {
        refuse("securityContext.seLinuxOptions", CUSTOM_SELINUX);
    }
}

/// SELinux options with a user, a role or a type the baseline profile does
/// not allow (the same rule for pod and container).
fn custom_selinux(options: Option<&SELinuxOptions>) -> bool {
    options.is_some_and(|se| {
        se.type_
            .as_deref()
            .is_some_and(|t| !SELINUX_TYPES.contains(&t))
            || se.user.is_some()
            || se.role.is_some()
    })
}

/// A seccomp profile of type `Unconfined` (no filter at all).
fn unconfined_seccomp(profile: Option<&SeccompProfile>) -> bool {
    profile.is_some_and(|s| s.type_ == "Unconfined")
}

/// An AppArmor profile of type `Unconfined`.
fn unconfined_app_armor(profile: Option<&AppArmorProfile>) -> bool {
    profile.is_some_and(|a| a.type_ == "Unconfined")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> PodSpec {
        serde_json::from_value(value).unwrap()
    }

    fn hardened(name: &str) -> serde_json::Value {
        json!({"name": name, "image": "app", "securityContext": {
            "allowPrivilegeEscalation": false, "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}
        }})
    }

    #[test]
    fn a_hardened_pod_passes() {
        let ok = spec(json!({
            "containers": [hardened("app")],
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}],
            "securityContext": {"sysctls": [{"name": "net.ipv4.tcp_syncookies", "value": "1"}]}
        }));
        assert_eq!(restricted_violations(&ok), Vec::<String>::new());
    }

    /// Found in the security review: `spec.template.spec` went into the
    /// StatefulSet unchanged, so a WebSocketCluster could create privileged,
    /// hostPath, hostNetwork or hostPID pods under the operator's identity.
    #[test]
    fn every_escape_of_the_security_review_is_named() {
        let mut root = hardened("app");
        root["securityContext"]["privileged"] = json!(true);
        root["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"]);
        root["ports"] = json!([{"containerPort": 80, "hostPort": 80}]);
        let bad = spec(json!({
            "hostNetwork": true,
            "hostPID": true,
            "containers": [root, {"name": "lax", "image": "x"}],
            "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
            "securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}
        }));
        let found = restricted_violations(&bad).join("\n");
        for expected in [
            "template.spec.hostNetwork",
            "template.spec.hostPID",
            "template.spec.volumes[host].hostPath",
            "template.spec.securityContext.sysctls[kernel.msgmax]",
            "template.spec.containers[app].ports.hostPort",
            "template.spec.containers[app].securityContext.privileged",
            "template.spec.containers[app].securityContext.capabilities.add",
            "template.spec.containers[lax].securityContext: must set allowPrivilegeEscalation",
            "template.spec.containers[lax].securityContext.runAsNonRoot",
            "template.spec.containers[lax].securityContext.seccompProfile",
        ] {
            assert!(
                found.contains(expected),
                "{expected} missing from:\n{found}"
            );
        }
    }

    #[test]
    fn pod_level_settings_count_for_every_container() {
        let mut c = hardened("app");
        c["securityContext"]
            .as_object_mut()
            .unwrap()
            .remove("runAsNonRoot");
        c["securityContext"]
            .as_object_mut()
            .unwrap()
            .remove("seccompProfile");
        let pod = spec(json!({
            "containers": [c],
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}}
        }));
        assert_eq!(restricted_violations(&pod), Vec::<String>::new());
    }
}
