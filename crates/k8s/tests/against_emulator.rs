//! The kube-rs client against the project's Kubernetes API emulator over TLS with a bearer
//! token: the Node watch (capacity, cordon), taint removal, pod annotations with the
//! only-if-unchanged rule, CNINode features patched again after a conflict, Events, and a
//! revoked token.

use std::time::{Duration, Instant};

use serde_json::json;
use vpc_cni_k8s::client::{KubeClient, Options};
use vpc_cni_k8s::{Kube, Regarding, Warning};

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_against_the_emulator() {
    let emu = vpc_cni_kubemu::start("127.0.0.1:0".parse().unwrap(), "t0ken")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    std::fs::write(&kc, emu.kubeconfig("t0ken")).unwrap();
    let s = emu.shared.clone();
    let res = |g: &str, v: &str, p: &str| s.store.lock().unwrap().find(g, v, p).unwrap();
    let (nodes, pods) = (res("", "v1", "nodes"), res("", "v1", "pods"));
    let cnd = res("vpcresources.k8s.aws", "v1alpha1", "cninodes");
    {
        let mut st = s.store.lock().unwrap();
        let taint = json!({"key": "node.vpc-cni.io/agent-not-ready", "effect": "NoSchedule"});
        let node = json!({"metadata": {"name": "n1"}, "spec": {"taints": [taint]},
                          "status": {"capacity": {"pods": "20"}}});
        st.create(&nodes, "", node).unwrap();
        let pod = json!({"metadata": {"name": "p1"}, "spec": {"nodeName": "n1"}});
        st.create(&pods, "default", pod).unwrap();
        let cn = json!({"metadata": {"name": "n1"},
                        "spec": {"features": [{"name": "Other", "value": "x"}]}});
        st.create(&cnd, "", cn).unwrap();
    }
    let c = KubeClient::new(Options {
        kubeconfig: Some(kc),
        node_name: "n1".into(),
        pod_name: Some("aws-node-0".into()),
        pod_namespace: "kube-system".into(),
        version: "test".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(c.version().await.unwrap().starts_with("v1.33"));
    c.start_watches();
    until("the Node watch", || c.synced()).await;
    let n = c.node().unwrap();
    assert_eq!(n.max_pods, Some(Ok(20)));
    assert!(!n.cordoned);

    // The Pod watch (spec.nodeName=n1): p1 exists; a pod of another node is not seen; a new
    // pod appears and a deleted one goes.
    until("the Pod watch", || c.pod_exists("default", "p1").is_some()).await;
    assert_eq!(c.pod_exists("default", "p1"), Some(true));
    {
        let mut st = s.store.lock().unwrap();
        let other = json!({"metadata": {"name": "elsewhere"}, "spec": {"nodeName": "n2"}});
        st.create(&pods, "default", other).unwrap();
        let p2 = json!({"metadata": {"name": "p2"}, "spec": {"nodeName": "n1"}});
        st.create(&pods, "default", p2).unwrap();
    }
    until("p2 seen", || c.pod_exists("default", "p2") == Some(true)).await;
    assert_eq!(c.pod_exists("default", "elsewhere"), Some(false));
    s.store
        .lock()
        .unwrap()
        .delete(&pods, "default", "p2")
        .unwrap();
    until("p2 gone", || c.pod_exists("default", "p2") == Some(false)).await;

    // Cordon as kubectl does (spec.unschedulable): the emulator adds the taint, the watch sees it.
    {
        let mut st = s.store.lock().unwrap();
        let mut node = st.get(&nodes, "", "n1").unwrap();
        node["spec"]["unschedulable"] = json!(true);
        st.update(&nodes, "", "n1", node, false).unwrap();
    }
    until("the cordon", || c.node().is_some_and(|n| n.cordoned)).await;

    let startup = "node.vpc-cni.io/agent-not-ready";
    assert!(c.remove_node_taint(startup).await.unwrap());
    assert!(!c.remove_node_taint(startup).await.unwrap());
    until("the taint gone", || {
        c.node()
            .is_some_and(|n| n.cordoned && !n.taints.iter().any(|t| t == startup))
    })
    .await;

    let key = "vpc.amazonaws.com/pod-ips";
    assert!(
        c.annotate_pod("default", "p1", key, "10.0.0.5", None)
            .await
            .unwrap()
    );
    // DEL clears it only while it still holds the released address.
    let other = c.annotate_pod("default", "p1", key, "", Some("10.0.0.9"));
    assert!(!other.await.unwrap());
    let same = c.annotate_pod("default", "p1", key, "", Some("10.0.0.5"));
    assert!(same.await.unwrap());
    let p = s.store.lock().unwrap().get(&pods, "default", "p1").unwrap();
    assert_eq!(p["metadata"]["annotations"][key], "");

    // The next write conflicts: the client reads again and patches again.
    s.faults.lock().unwrap().conflicts = 1;
    let want = vec![("CustomNetworking".to_string(), "us-east-1a".to_string())];
    assert!(c.patch_cninode_features(&want).await.unwrap());
    assert_eq!(
        s.faults.lock().unwrap().conflicts,
        0,
        "the conflict was met"
    );
    assert!(!c.patch_cninode_features(&want).await.unwrap());
    let o = s.store.lock().unwrap().get(&cnd, "", "n1").unwrap();
    let features = json!([{"name": "Other", "value": "x"},
                          {"name": "CustomNetworking", "value": "us-east-1a"}]);
    assert_eq!(o["spec"]["features"], features);

    c.warn(Warning {
        regarding: Regarding::OwnPod,
        reason: "MissingIAMPermissions".into(),
        action: "CreateNetworkInterface".into(),
        note: "Unauthorized operation: CreateNetworkInterface".into(),
    })
    .await
    .unwrap();
    let ev = res("events.k8s.io", "v1", "events");
    let events = s.store.lock().unwrap().list(&ev, Some("kube-system"));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["reason"], "MissingIAMPermissions");
    assert_eq!(events[0]["regarding"]["name"], "aws-node-0");

    // A revoked token: the error names the object and the 401, nothing panics.
    s.faults.lock().unwrap().unauthorized = true;
    let e = c
        .annotate_pod("default", "p1", key, "x", None)
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("Pod default/p1: 401"), "{e}");
}
