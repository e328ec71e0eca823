//! The checked-in CRD and the manifests people apply, checked against the
//! generated schema without a cluster.
//!
//! - `crds/websocketcluster.yaml` must equal what `crdgen` generates now;
//! - every `WebSocketCluster` in `manifests/examples/*.yaml` must pass the CRD's
//!   OpenAPI schema (validated as JSON Schema draft 4, the dialect OpenAPI 3.0
//!   and Kubernetes' `exclusiveMinimum: true` follow) and the operator's own
//!   `validate()`;
//! - `tests/fixtures/valid` must pass, every file in `tests/fixtures/invalid` must
//!   be refused by the schema;
//! - the CEL rules (`x-kubernetes-validations`), evaluated here the way the API
//!   server does, refuse every file in `manifests/tests/invalid-cel` and pass the
//!   examples (tests/cluster checks the same files against a real API server).

use std::path::{Path, PathBuf};

use kube::CustomResourceExt;
use serde::Deserialize;
use serde_json::Value;
use wsring_operator::crd::{crd_yaml, WebSocketCluster};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn validator() -> jsonschema::Validator {
    let crd = serde_json::to_value(WebSocketCluster::crd()).unwrap();
    let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    jsonschema::draft4::new(&schema).expect("the CRD schema is a valid draft-4 schema")
}

/// Every YAML document of a file that is a WebSocketCluster, as JSON.
fn clusters_in(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| v["kind"] == "WebSocketCluster")
        .collect()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    files
}

fn errors(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn assert_accepted(validator: &jsonschema::Validator, path: &Path, doc: &Value) {
    let errs = errors(validator, doc);
    assert!(
        errs.is_empty(),
        "{} refused by the CRD schema: {errs:?}",
        path.display()
    );
    let wsc: WebSocketCluster = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{} does not deserialize: {e}", path.display()));
    wsc.spec
        .validate()
        .unwrap_or_else(|e| panic!("{} refused by the operator: {e}", path.display()));
}

#[test]
fn checked_in_crd_is_up_to_date() {
    let path = repo_root().join("crds/websocketcluster.yaml");
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == crd_yaml().unwrap(),
        "{} is stale: run `cargo run -p wsring-operator --bin crdgen crds/websocketcluster.yaml`",
        path.display()
    );
}

#[test]
fn example_manifests_pass_the_schema() {
    let validator = validator();
    let mut seen = 0;
    for path in yaml_files(&repo_root().join("manifests/examples")) {
        for doc in clusters_in(&path) {
            assert_accepted(&validator, &path, &doc);
            seen += 1;
        }
    }
    assert!(
        seen >= 1,
        "no WebSocketCluster found in manifests/examples/*.yaml"
    );
}

#[test]
fn valid_fixtures_pass_the_schema() {
    let validator = validator();
    let files = yaml_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid"));
    assert!(!files.is_empty());
    for path in files {
        for doc in clusters_in(&path) {
            assert_accepted(&validator, &path, &doc);
        }
    }
}

#[test]
fn invalid_fixtures_are_refused_by_the_schema() {
    let validator = validator();
    let files = yaml_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid"));
    for required in [
        "negative-replicas",
        "vnodes-zero",
        "vnodes-5000",
        "key-from-body",
    ] {
        assert!(
            files.iter().any(|f| f.file_stem().unwrap() == required),
            "fixture {required}.yaml missing"
        );
    }
    for path in files {
        let docs = clusters_in(&path);
        assert_eq!(docs.len(), 1, "{}", path.display());
        assert!(
            !errors(&validator, &docs[0]).is_empty(),
            "{} should be refused by the CRD schema",
            path.display()
        );
    }
}

#[test]
fn schema_errors_point_at_the_field() {
    let validator = validator();
    let doc = serde_json::json!({
        "apiVersion": "wsring.io/v1alpha1", "kind": "WebSocketCluster",
        "metadata": {"name": "x"},
        "spec": {"routing": {"virtualNodes": 5000}}
    });
    let errs = errors(&validator, &doc);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].ends_with("/spec/routing/virtualNodes"), "{errs:?}");
}

#[test]
fn cel_rules_refuse_the_cel_fixtures_and_pass_the_examples() {
    let refused = yaml_files(&repo_root().join("manifests/tests/invalid-cel"));
    assert!(refused.len() >= 3, "CEL fixtures missing");
    for path in refused {
        for doc in clusters_in(&path) {
            let wsc: WebSocketCluster = serde_json::from_value(doc)
                .unwrap_or_else(|e| panic!("{} does not deserialize: {e}", path.display()));
            assert!(
                kube::core::cel::validate_cel(&wsc).is_err(),
                "{} passes the CEL rules",
                path.display()
            );
        }
    }
    for path in yaml_files(&repo_root().join("manifests/examples")) {
        for doc in clusters_in(&path) {
            let wsc: WebSocketCluster = serde_json::from_value(doc).unwrap();
            kube::core::cel::validate_cel(&wsc)
                .unwrap_or_else(|e| panic!("{} refused by a CEL rule: {e:?}", path.display()));
        }
    }
}

#[test]
fn operator_fixtures_pass_the_api_server_checks_and_fail_validate() {
    let validator = validator();
    let files = yaml_files(&repo_root().join("manifests/tests/invalid-operator"));
    assert!(!files.is_empty(), "operator fixtures missing");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: no `# expect:` line", path.display()));
        for doc in clusters_in(&path) {
            let errs = errors(&validator, &doc);
            assert!(
                errs.is_empty(),
                "{}: the schema refuses it: {errs:?}",
                path.display()
            );
            let wsc: WebSocketCluster = serde_json::from_value(doc).unwrap();
            kube::core::cel::validate_cel(&wsc)
                .unwrap_or_else(|e| panic!("{}: a CEL rule refuses it: {e:?}", path.display()));
            let err = wsc.spec.validate().unwrap_err().to_string();
            assert!(
                err.contains(expect),
                "{}: {err} does not name {expect}",
                path.display()
            );
        }
    }
}
