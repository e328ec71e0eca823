//! The status the operator reports, as a pure function of what it observed.
//!
//! Conditions (a list-map keyed by `type`):
//! - `Ready`: every desired pod is a ring member and a router is ready;
//! - `Progressing`: pods or routers are still being created, removed or rolled;
//! - `Degraded`: the spec is invalid or a router did not take the ring.
//!
//! `lastTransitionTime` moves only when a condition's status flips, so an
//! unchanged cluster produces an identical status and no write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{WebSocketCluster, WebSocketClusterStatus};
use crate::resources::selector_string;

/// What one reconcile saw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Pods the StatefulSet has (its `status.replicas`).
    pub pods: i32,
    /// Ring members (ready pods), sorted names.
    pub members: Vec<String>,
    /// Published ring version.
    pub ring_version: u64,
    /// Ready router replicas.
    pub routers_ready: i32,
    /// Routers that did not take the ring in this reconcile.
    pub notify_failures: Vec<String>,
    /// Why the spec was refused, if it was.
    pub invalid_spec: Option<String>,
}

/// The full status to apply.
pub fn desired_status(
    wsc: &WebSocketCluster,
    observed: &Observed,
    now: &Time,
) -> WebSocketClusterStatus {
    let old = wsc.status.clone().unwrap_or_default();
    let generation = wsc.metadata.generation;
    let (members, ring_version, pods) = if observed.invalid_spec.is_some() {
        // Nothing was applied: keep reporting what is deployed.
        (old.members.clone(), old.ring_version, old.replicas)
    } else {
        (
            observed.members.clone(),
            observed.ring_version,
            observed.pods,
        )
    };
    WebSocketClusterStatus {
        replicas: pods,
        ready_replicas: i32::try_from(members.len()).unwrap_or(i32::MAX),
        selector: selector_string(wsc),
        ring_version,
        members,
        conditions: conditions(wsc, &old.conditions, observed, now),
        observed_generation: generation,
    }
}

/// The three conditions, keeping `lastTransitionTime` of unchanged ones.
pub fn conditions(
    wsc: &WebSocketCluster,
    old: &[Condition],
    o: &Observed,
    now: &Time,
) -> Vec<Condition> {
    let desired = wsc.spec.replicas;
    let routers_desired = wsc.spec.router.replicas;
    let ready_pods = i32::try_from(o.members.len()).unwrap_or(i32::MAX);
    let counts = format!(
        "{ready_pods}/{desired} pods in the ring, {}/{routers_desired} routers ready, ring version {}",
        o.routers_ready, o.ring_version
    );

    let ready = if let Some(why) = &o.invalid_spec {
        ("False", "InvalidSpec", why.clone())
    } else if desired == 0 {
        ("False", "ScaledToZero", "spec.replicas is 0".to_string())
    } else if ready_pods < desired {
        ("False", "MembersNotReady", counts.clone())
    } else if o.routers_ready == 0 {
        ("False", "NoRouterReady", counts.clone())
    } else {
        ("True", "AllMembersReady", counts.clone())
    };

    let progressing = if o.invalid_spec.is_some() {
        (
            "False",
            "InvalidSpec",
            "fix the spec to continue".to_string(),
        )
    } else if o.pods != desired || ready_pods != desired {
        let reason = if o.pods < desired {
            "ScalingUp"
        } else if o.pods > desired {
            "ScalingDown"
        } else {
            "PodsNotReady"
        };
        ("True", reason, counts.clone())
    } else if o.routers_ready != routers_desired {
        ("True", "RoutersRollingOut", counts.clone())
    } else {
        ("False", "Stable", counts.clone())
    };

    let degraded = if let Some(why) = &o.invalid_spec {
        ("True", "InvalidSpec", why.clone())
    } else if !o.notify_failures.is_empty() {
        (
            "True",
            "RouterNotifyFailed",
            format!(
                "routers {} did not take ring version {} (they converge through the ConfigMap; retrying)",
                o.notify_failures.join(", "),
                o.ring_version
            ),
        )
    } else {
        ("False", "AsExpected", "no problem found".to_string())
    };

    [
        ("Ready", ready),
        ("Progressing", progressing),
        ("Degraded", degraded),
    ]
    .into_iter()
    .map(|(type_, (status, reason, message))| {
        let previous = old.iter().find(|c| c.type_ == type_);
        let last_transition_time = match previous {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => now.clone(),
        };
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            last_transition_time,
            observed_generation: wsc.metadata.generation,
        }
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::time;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("chat-{i}")).collect()
    }

    fn cond<'a>(s: &'a WebSocketClusterStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    fn healthy(n: usize) -> Observed {
        Observed {
            pods: n as i32,
            members: names(n),
            ring_version: 4,
            routers_ready: 2,
            ..Observed::default()
        }
    }

    #[test]
    fn all_members_ready_is_ready_and_stable() {
        let wsc = WebSocketCluster::test().with_replicas(3);
        let s = desired_status(&wsc, &healthy(3), &time(100));
        assert_eq!(s.replicas, 3);
        assert_eq!(s.ready_replicas, 3);
        assert_eq!(s.ring_version, 4);
        assert_eq!(s.members, names(3));
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "Progressing").status, "False");
        assert_eq!(cond(&s, "Degraded").status, "False");
        assert!(s.selector.contains("app.kubernetes.io/instance=chat"));
    }

    #[test]
    fn scaling_up_is_progressing_not_ready() {
        let wsc = WebSocketCluster::test().with_replicas(5);
        let s = desired_status(&wsc, &healthy(3), &time(100));
        assert_eq!(cond(&s, "Ready").reason, "MembersNotReady");
        assert_eq!(cond(&s, "Progressing").reason, "ScalingUp");
        assert!(cond(&s, "Ready").message.starts_with("3/5 pods"));
    }

    #[test]
    fn a_pod_not_ready_is_not_a_member() {
        let wsc = WebSocketCluster::test().with_replicas(3);
        let mut o = healthy(3);
        o.members.pop();
        let s = desired_status(&wsc, &o, &time(100));
        assert_eq!(s.ready_replicas, 2);
        assert_eq!(cond(&s, "Progressing").reason, "PodsNotReady");
    }

    #[test]
    fn notify_failure_is_degraded() {
        let wsc = WebSocketCluster::test().with_replicas(3);
        let mut o = healthy(3);
        o.notify_failures = vec!["10.0.0.1:9090".into()];
        let s = desired_status(&wsc, &o, &time(100));
        assert_eq!(cond(&s, "Degraded").status, "True");
        assert_eq!(cond(&s, "Degraded").reason, "RouterNotifyFailed");
        assert_eq!(cond(&s, "Ready").status, "True");
    }

    #[test]
    fn invalid_spec_keeps_the_deployed_picture() {
        let wsc = WebSocketCluster::test()
            .with_replicas(3)
            .with_status(desired_status(
                &WebSocketCluster::test().with_replicas(3),
                &healthy(3),
                &time(1),
            ));
        let o = Observed {
            invalid_spec: Some("bad".into()),
            ..Observed::default()
        };
        let s = desired_status(&wsc, &o, &time(100));
        assert_eq!(s.ring_version, 4);
        assert_eq!(s.members, names(3));
        assert_eq!(cond(&s, "Degraded").reason, "InvalidSpec");
        assert_eq!(cond(&s, "Ready").status, "False");
    }

    #[test]
    fn transition_time_moves_only_on_a_flip() {
        let wsc = WebSocketCluster::test().with_replicas(3);
        let first = desired_status(&wsc, &healthy(3), &time(100));
        let wsc = wsc.with_status(first.clone());
        let again = desired_status(&wsc, &healthy(3), &time(200));
        assert_eq!(again, first, "unchanged cluster, identical status");
        let mut o = healthy(3);
        o.members.pop();
        let flipped = desired_status(&wsc, &o, &time(300));
        assert_eq!(cond(&flipped, "Ready").last_transition_time, time(300));
        assert_eq!(cond(&flipped, "Degraded").last_transition_time, time(100));
    }
}
