//! Host-side veth names: `<vethPrefix>` + the first 11 hex digits of SHA-1 of
//! `"<namespace>.<podname>"` (upstream `GeneratePodHostVethName`).

use sha1::{Digest, Sha1};

/// The host veth name of interface `index` of a pod (index > 0 hashes `"<podname>.<index>"`).
pub fn host_veth_name(prefix: &str, namespace: &str, pod: &str, index: usize) -> String {
    let pod = if index == 0 {
        pod.to_string()
    } else {
        format!("{pod}.{index}")
    };
    let digest = Sha1::digest(format!("{namespace}.{pod}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{}", &hex[..11])
}

/// The name of the fake interface upstream records in results for DEL (`dummy` + hash).
pub fn dummy_name(namespace: &str, pod: &str, index: usize) -> String {
    host_veth_name("dummy", namespace, pod, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_example() {
        // spec e.3: kube-system/coredns-57ff979f67-qqbdh ⇒ enib5faff8a083.
        assert_eq!(
            host_veth_name("eni", "kube-system", "coredns-57ff979f67-qqbdh", 0),
            "enib5faff8a083"
        );
        let n = host_veth_name("abcd", "ns", "p", 1);
        assert_eq!(n.len(), 15, "fits IFNAMSIZ");
        assert_ne!(n, host_veth_name("abcd", "ns", "p", 0));
    }
}
