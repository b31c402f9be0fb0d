//! Ingress controller tests: the real controller against a fake API server over real HTTP.

mod support;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use support::fake_kube::FakeKube;

async fn eventually<F: FnMut() -> bool>(what: &str, mut f: F) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn service(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
           "spec": {"ports": [{"port": 80}]}})
}

#[tokio::test]
async fn fake_kube_serves_list_watch_and_writes() {
    let kube = FakeKube::start();
    kube.apply(service("a"));
    let client = kube.client();
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let task = tokio::spawn(async move {
        let mut w = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = w.next().await {
            let line = match ev {
                Ok(watcher::Event::InitApply(s)) => format!("init {}", s.metadata.name.unwrap()),
                Ok(watcher::Event::Apply(s)) => format!("apply {}", s.metadata.name.unwrap()),
                Ok(watcher::Event::Delete(s)) => format!("delete {}", s.metadata.name.unwrap()),
                Ok(watcher::Event::Init) => "init".into(),
                Ok(watcher::Event::InitDone) => "done".into(),
                Err(e) => format!("error {e}"),
            };
            s2.lock().unwrap().push(line);
        }
    });
    let has = |s: &str| seen.lock().unwrap().iter().any(|l| l == s);
    eventually("initial list", || has("init a") && has("done")).await;
    eventually("watch open", || kube.open_watches("v1", "Service") == 1).await;
    kube.apply(service("b"));
    eventually("apply b", || has("apply b")).await;
    // A clean end of stream: re-watch from the last rv, no re-list.
    let lists = kube.lists("v1", "Service");
    kube.end_watches();
    eventually("rewatch", || {
        kube.watch_starts("v1", "Service") == 2 && kube.open_watches("v1", "Service") == 1
    })
    .await;
    kube.apply(service("c"));
    eventually("apply c", || has("apply c")).await;
    assert_eq!(kube.lists("v1", "Service"), lists);
    // 410 Gone: re-list.
    kube.delete_silently("v1", "Service", Some("default"), "a");
    kube.expire_watches();
    eventually("relist", || kube.lists("v1", "Service") == lists + 1).await;
    eventually("relist done", || {
        seen.lock().unwrap().iter().filter(|l| *l == "done").count() == 2
    })
    .await;
    {
        let s = seen.lock().unwrap();
        let last_init = s.iter().rposition(|l| l == "init").unwrap();
        let after: Vec<_> = s[last_init..].to_vec();
        assert!(
            after.contains(&"init b".to_string()) && !after.contains(&"init a".to_string()),
            "{after:?}"
        );
    }
    // Writes: create conflict, status patch, stale replace, delete with body.
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    let err = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(service("b")).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let patched = api
        .patch_status(
            "b",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        patched
            .status
            .unwrap()
            .load_balancer
            .unwrap()
            .ingress
            .unwrap()[0]
            .ip
            .as_deref(),
        Some("1.2.3.4")
    );
    let mut stale = api.get("b").await.unwrap();
    stale.metadata.resource_version = Some("1".into());
    let err = api
        .replace("b", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Conflict") || err.to_string().contains("modified"),
        "{err}"
    );
    api.delete("b", &Default::default()).await.unwrap();
    assert!(api.get("c").await.is_ok());
    eventually("delete b", || has("delete b")).await;
    task.abort();
}
