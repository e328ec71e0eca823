//! Local mode's control API against a browser on another page, and the one
//! bearer rule, with a real `wsring dev` (findings of the security review).

mod support;

use support::Dev;
use wsring_core::harness::admin_http::Method;
use wsring_core::harness::AdminClient;

/// Found in the security review: the control API answered
/// `Access-Control-Allow-Origin: *`, even to an evil page's preflight,
/// though only the dashboard (served by the router's admin port) needs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_is_open_to_the_dashboard_origin_only() {
    let dev = Dev::start(1).await;
    let http = AdminClient::new();
    let dashboard = dev.admin.clone();
    for (origin, allowed) in [
        ("https://evil.example", false),
        ("http://127.0.0.1:1", false),
        ("null", false),
        (dashboard.as_str(), true),
    ] {
        let preflight = http
            .request(Method::OPTIONS, format!("{}/pods", dev.control))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization")
            .send()
            .await
            .unwrap();
        let allow = preflight
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(allow.is_some(), allowed, "{origin}: {allow:?}");
        if allowed {
            assert_eq!(allow.as_deref(), Some(origin));
        }
        let listed = http
            .get(format!("{}/pods", dev.control))
            .header("origin", origin)
            .bearer(&dev.token)
            .send()
            .await
            .unwrap();
        assert_eq!(listed.status(), 200);
        assert_eq!(
            listed.headers().contains_key("access-control-allow-origin"),
            allowed,
            "{origin}"
        );
    }
}

/// Found in the security review: the control API refused `bearer` (lowercase)
/// where the router accepted it. One rule now: the scheme is case-insensitive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bearer_rule_for_control_admin_and_push() {
    let dev = Dev::start(1).await;
    let http = AdminClient::new();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let auth = format!("{scheme} {}", dev.token);
        let control = http
            .get(format!("{}/pods", dev.control))
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(control.status(), 200, "control API, {scheme}");
        let admin = http
            .get(format!("{}/ring", dev.admin))
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(admin.status(), 200, "router admin, {scheme}");
    }
    for wrong in [format!("Basic {}", dev.token), "Bearer wrong".to_string()] {
        let control = http
            .get(format!("{}/pods", dev.control))
            .header("authorization", &wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(control.status(), 401, "{wrong}");
    }
}
