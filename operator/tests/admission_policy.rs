//! The chart's ValidatingAdmissionPolicy (charts/wsring/templates/admission-policy.yaml,
//! rendered into manifests/admission-policy.yaml)
//! may only judge requests that ask for new children: a create, or an update
//! that changes the spec. Every other update must pass untouched, above all the
//! garbage collector removing the `foregroundDeletion` finalizer: its identity
//! may not create pods, and when the policy judged that update a
//! `kubectl delete --cascade=foreground` of a WebSocketCluster never finished
//! (found on the test cluster). The match condition is evaluated here with a
//! real CEL interpreter, the way the API server evaluates it.

use std::path::PathBuf;

use cel::{Context, Program, Value as CelValue};
use serde::Deserialize;
use serde_json::{json, Value};

/// The policy as `kubectl` users apply it: manifests/admission-policy.yaml,
/// which manifests/render.sh renders from the chart template (its `--check`
/// in .ci/validate-k8s.sh fails when the two differ).
fn policy() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests/admission-policy.yaml");
    let text = std::fs::read_to_string(&path).expect("read manifests/admission-policy.yaml");
    let policy = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("the policy file is YAML"))
        .find(|doc| doc["kind"] == "ValidatingAdmissionPolicy")
        .expect("a ValidatingAdmissionPolicy");
    policy
}

fn match_conditions() -> Vec<Program> {
    let conditions = policy()["spec"]["matchConditions"]
        .as_array()
        .expect("the policy has matchConditions")
        .clone();
    assert!(!conditions.is_empty());
    conditions
        .iter()
        .map(|c| Program::compile(c["expression"].as_str().expect("an expression")).unwrap())
        .collect()
}

/// Does the policy judge this request? True when every match condition holds,
/// as the API server decides.
fn judged(operation: &str, object: &Value, old_object: &Value) -> bool {
    match_conditions().iter().all(|program| {
        let mut context = Context::default();
        context
            .add_variable("request", json!({ "operation": operation }))
            .unwrap();
        context.add_variable("object", object.clone()).unwrap();
        context
            .add_variable("oldObject", old_object.clone())
            .unwrap();
        match program.execute(&context).expect("the condition evaluates") {
            CelValue::Bool(holds) => holds,
            other => panic!("a match condition must be a bool, got {other:?}"),
        }
    })
}

fn cluster(replicas: u32) -> Value {
    json!({
        "apiVersion": "wsring.io/v1alpha1",
        "kind": "WebSocketCluster",
        "metadata": { "name": "chat", "namespace": "default", "labels": {} },
        "spec": { "replicas": replicas, "redis": { "url": "redis://redis:6379" } },
    })
}

#[test]
fn creates_are_judged() {
    assert!(judged("CREATE", &cluster(3), &Value::Null));
}

#[test]
fn updates_that_change_the_spec_are_judged() {
    assert!(judged("UPDATE", &cluster(5), &cluster(3)));
    let mut with_ingress = cluster(3);
    with_ingress["spec"]["ingress"] = json!({ "enabled": true, "host": "chat.example.com" });
    assert!(judged("UPDATE", &with_ingress, &cluster(3)));
}

#[test]
fn removing_the_foreground_deletion_finalizer_passes_untouched() {
    let mut deleting = cluster(3);
    deleting["metadata"]["deletionTimestamp"] = json!("2026-12-02T00:23:19Z");
    deleting["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
    let mut finalized = deleting.clone();
    finalized["metadata"]["finalizers"] = json!([]);
    assert!(!judged("UPDATE", &finalized, &deleting));
}

#[test]
fn metadata_only_updates_pass_untouched() {
    let mut labelled = cluster(3);
    labelled["metadata"]["labels"] = json!({ "team": "chat" });
    assert!(!judged("UPDATE", &labelled, &cluster(3)));
}
