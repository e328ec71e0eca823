//! Reading `spec.template`, which the CRD stores as raw JSON (see the field's
//! docs), as a typed PodTemplateSpec, strictly: a field the type does not have
//! is an error instead of being dropped. Validation and the StatefulSet builder
//! both read the template through here.

use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};

use super::WebSocketClusterSpec;
use crate::error::Error;

impl WebSocketClusterSpec {
    /// The app pod template, parsed. A field the PodTemplateSpec type does not
    /// have is an error, not silently dropped: a template with `container:`
    /// for `containers:` would otherwise become pods without the app (found
    /// on a real cluster; the API server never sees the template as written).
    pub fn pod_template(&self) -> Result<Option<PodTemplateSpec>, Error> {
        let Some(raw) = &self.template else {
            return Ok(None);
        };
        let template: PodTemplateSpec = serde_json::from_value(raw.clone()).map_err(|e| {
            Error::InvalidSpec(format!("template is not a valid PodTemplateSpec: {e}"))
        })?;
        let kept = serde_json::to_value(&template)
            .map_err(|e| Error::Serialization(format!("template: {e}")))?;
        let unknown = unknown_fields(raw, &kept, "template");
        if !unknown.is_empty() {
            return Err(Error::InvalidSpec(format!(
                "template is not a valid PodTemplateSpec: unknown field(s) {}",
                unknown.join(", ")
            )));
        }
        Ok(Some(template))
    }

    /// App containers of the template; empty means the built-in echo app.
    pub fn app_containers(&self) -> Vec<Container> {
        self.pod_template()
            .ok()
            .flatten()
            .and_then(|t| t.spec)
            .map(|s| s.containers)
            .unwrap_or_default()
    }
}

/// Paths of the fields of `written` that did not survive a typed round trip
/// (`kept`): fields the type does not have. Nulls count as absent.
fn unknown_fields(
    written: &serde_json::Value,
    kept: &serde_json::Value,
    path: &str,
) -> Vec<String> {
    use serde_json::Value;
    match (written, kept) {
        (Value::Object(w), Value::Object(k)) => w
            .iter()
            .filter(|(_, v)| !v.is_null())
            .flat_map(|(key, v)| match k.get(key) {
                Some(kv) => unknown_fields(v, kv, &format!("{path}.{key}")),
                None => vec![format!("{path}.{key}")],
            })
            .collect(),
        (Value::Array(w), Value::Array(k)) => w
            .iter()
            .zip(k)
            .enumerate()
            .flat_map(|(i, (wv, kv))| unknown_fields(wv, kv, &format!("{path}[{i}]")))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use crate::crd::{WebSocketCluster, WebSocketClusterSpec};

    #[test]
    fn malformed_template_is_an_invalid_spec_not_a_decode_error() {
        let wsc: WebSocketCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "wsring.io/v1alpha1", "kind": "WebSocketCluster",
            "metadata": {"name": "x"},
            "spec": {"template": {"spec": {"containers": "app"}}}
        }))
        .expect("the object itself always decodes");
        let err = wsc.spec.validate().unwrap_err();
        assert!(err.to_string().contains("PodTemplateSpec"), "{err}");
    }

    #[test]
    fn unknown_template_fields_are_refused_not_dropped() {
        let typo = WebSocketClusterSpec {
            template: Some(serde_json::json!({"spec": {
                "container": [{"name": "app", "image": "a"}]
            }})),
            ..WebSocketClusterSpec::default()
        };
        let err = typo.validate().unwrap_err().to_string();
        assert!(err.contains("template.spec.container"), "{err}");
        let nested = WebSocketClusterSpec {
            template: Some(serde_json::json!({"spec": {
                "containers": [{"name": "app", "image": "a", "imagePullPolicy": "Always", "portz": []}]
            }})),
            ..WebSocketClusterSpec::default()
        };
        let err = nested.validate().unwrap_err().to_string();
        assert!(err.contains("template.spec.containers[0].portz"), "{err}");
        let fine = WebSocketClusterSpec {
            template: Some(serde_json::json!({
                "metadata": {"labels": {"team": "rt"}, "annotations": null},
                "spec": {"containers": [{"name": "app", "image": "a", "env": [], "resources": {}}]}
            })),
            ..WebSocketClusterSpec::default()
        };
        fine.validate().unwrap();
    }
}
