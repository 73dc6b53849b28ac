//! Wire cross-check: the backend's EC2 calls against `moto_server` (an independent EC2
//! implementation, PyPI `moto[server]`) on 127.0.0.1, for the actions moto supports: create
//! with tags and counts, attach at a free index, DeleteOnTermination, assign / unassign,
//! detach-then-delete, and the leak sweep's describe/tag.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vpc_cni_aws::{AwsCloud, AwsOptions};
use vpc_cni_cloud::Cloud;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python() -> std::path::PathBuf {
    std::env::var("VPC_CNI_PYTHON").expect("VPC_CNI_PYTHON must name a Python with moto[server] and boto3 (scripts/check sets it up)").into()
}

fn moto() -> (Kill, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bin = python().with_file_name("moto_server");
    assert!(
        bin.exists(),
        "{} missing: pip install 'moto[server]'",
        bin.display()
    );
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (Kill(child), format!("http://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_calls_succeed_against_moto() {
    let (_moto, url) = moto();
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/python/moto_setup.py");
    let out = Command::new(python())
        .arg(script)
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .endpoint_url(&url)
        .load()
        .await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let opts = AwsOptions {
        cluster_name: Some("moto".into()),
        max_attempts: 3,
        subnet_discovery: true,
        ..Default::default()
    };
    let instance = ids["instance"].as_str().unwrap();
    let placement = Some((
        ids["vpc"].as_str().unwrap().to_string(),
        "us-east-1a".to_string(),
    ));
    let cloud = AwsCloud::from_parts(
        ec2.clone(),
        instance,
        ids["subnet"].as_str().unwrap(),
        vec![ids["sg"].as_str().unwrap().into()],
        placement,
        opts,
    );
    assert_eq!(
        cloud.candidate_subnets().await,
        [
            ids["extra_subnet"].as_str().unwrap(),
            ids["subnet"].as_str().unwrap()
        ],
        "the tagged subnet (more free addresses) first"
    );

    let (eni, mac) = cloud
        .create_and_attach(4, 0, None)
        .await
        .expect("create + attach + DeleteOnTermination");
    assert!(mac.contains(':'), "{mac}");
    let d = ec2
        .describe_network_interfaces()
        .network_interface_ids(&eni)
        .send()
        .await
        .unwrap();
    let ni = &d.network_interfaces()[0];
    assert_eq!(
        ni.attachment().and_then(|a| a.device_index()),
        Some(1),
        "lowest free index"
    );
    assert_eq!(
        ni.subnet_id(),
        ids["extra_subnet"].as_str(),
        "subnet discovery placed it"
    );
    // moto accepts ModifyNetworkInterfaceAttribute(Attachment.DeleteOnTermination) but ignores
    // it (a known moto gap); the emulator tests check the value itself.
    assert_eq!(ni.private_ip_addresses().len(), 5, "primary + 4");
    let tags: Vec<(&str, &str)> = ni
        .tag_set()
        .iter()
        .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or("")))
        .collect();
    assert!(
        tags.contains(&("node.k8s.amazonaws.com/instance_id", instance)),
        "{tags:?}"
    );
    assert!(
        tags.contains(&("cluster.k8s.amazonaws.com/name", "moto")),
        "{tags:?}"
    );

    let addrs = |d: &aws_sdk_ec2::operation::describe_network_interfaces::DescribeNetworkInterfacesOutput| -> std::collections::BTreeSet<String> {
        d.network_interfaces()[0].private_ip_addresses().iter().filter_map(|a| a.private_ip_address()).map(str::to_string).collect()
    };
    let before = addrs(
        &ec2.describe_network_interfaces()
            .network_interface_ids(&eni)
            .send()
            .await
            .unwrap(),
    );
    let (ips, _) = cloud
        .assign(&eni, 3, 0)
        .await
        .expect("AssignPrivateIpAddresses");
    let after = addrs(
        &ec2.describe_network_interfaces()
            .network_interface_ids(&eni)
            .send()
            .await
            .unwrap(),
    );
    let new: Vec<&String> = after.difference(&before).collect();
    assert_eq!(new.len(), 3, "three more addresses");
    // moto answers with every address of the ENI where EC2 lists only the new ones.
    assert!(
        new.iter()
            .all(|n| ips.iter().any(|ip| ip.to_string() == **n)),
        "{ips:?} ⊇ {new:?}"
    );
    let cidrs: Vec<ipnet::Ipv4Net> = new
        .iter()
        .map(|ip| ipnet::Ipv4Net::new(ip.parse().unwrap(), 32).unwrap())
        .collect();
    cloud
        .unassign(&eni, &cidrs)
        .await
        .expect("UnassignPrivateIpAddresses");
    let d = ec2
        .describe_network_interfaces()
        .network_interface_ids(&eni)
        .send()
        .await
        .unwrap();
    assert_eq!(d.network_interfaces()[0].private_ip_addresses().len(), 5);

    // IPv6 on the wire: moto parses AssignIpv6Addresses(Ipv6PrefixCount) and
    // UnassignIpv6Addresses(Ipv6Prefix.N) but hands out no prefix (a moto gap: it implements
    // address counts only); the emulator tests check the prefixes themselves.
    let v6 = cloud
        .assign_ipv6_prefixes(&eni, 1)
        .await
        .expect("AssignIpv6Addresses");
    assert!(v6.len() <= 1, "{v6:?}");
    cloud
        .unassign_ipv6_prefixes(&eni, &v6)
        .await
        .expect("UnassignIpv6Addresses");
    assert!(
        tags.iter()
            .any(|(k, v)| *k == "node.k8s.amazonaws.com/createdAt" && v.ends_with('Z')),
        "{tags:?}"
    );

    // TagENI: the instance's primary ENI (untagged) gets this node's tags; the new ENI has them.
    let inst = ec2
        .describe_instances()
        .instance_ids(instance)
        .send()
        .await
        .unwrap();
    let primary = inst.reservations()[0].instances()[0].network_interfaces()[0]
        .network_interface_id()
        .unwrap()
        .to_string();
    let as_interface = |id: &str, device_number: u32| vpc_cni_cloud::Interface {
        id: id.into(),
        mac: String::new(),
        device_number,
        subnet_id: String::new(),
        subnet_cidr: "10.0.0.0/24".parse().unwrap(),
        primary_ip: std::net::Ipv4Addr::UNSPECIFIED,
        secondary_ips: Vec::new(),
        prefixes: Vec::new(),
        ipv6s: Vec::new(),
        ipv6_prefixes: Vec::new(),
        subnet_ipv6_cidrs: Vec::new(),
    };
    let classes = cloud
        .manage_enis(&[as_interface(&primary, 0), as_interface(&eni, 1)])
        .await
        .expect("DescribeNetworkInterfaces + CreateTags");
    assert_eq!(
        classes.tagged,
        std::slice::from_ref(&primary),
        "only the untagged primary"
    );
    let d = ec2
        .describe_network_interfaces()
        .network_interface_ids(&primary)
        .send()
        .await
        .unwrap();
    assert!(
        d.network_interfaces()[0]
            .tag_set()
            .iter()
            .any(|t| t.key() == Some("eks:eni:owner") && t.value() == Some("amazon-vpc-cni")),
        "{:?}",
        d.network_interfaces()[0].tag_set()
    );

    let (second, _) = cloud
        .create_and_attach(0, 0, None)
        .await
        .expect("a second ENI");
    let d = ec2
        .describe_network_interfaces()
        .network_interface_ids(&second)
        .send()
        .await
        .unwrap();
    assert_eq!(
        d.network_interfaces()[0]
            .attachment()
            .and_then(|a| a.device_index()),
        Some(2),
        "next free index"
    );

    cloud.free_eni(&eni).await.expect("detach + delete");
    assert!(
        ec2.describe_network_interfaces()
            .network_interface_ids(&eni)
            .send()
            .await
            .is_err(),
        "deleted"
    );

    // The leak sweep's queries are accepted: a just-detached ENI of ours (createdAt set at
    // creation) is young, so neither tagged nor deleted.
    let att = ec2
        .describe_network_interfaces()
        .network_interface_ids(&second)
        .send()
        .await
        .unwrap()
        .network_interfaces()[0]
        .attachment()
        .and_then(|a| a.attachment_id())
        .unwrap()
        .to_string();
    ec2.detach_network_interface()
        .attachment_id(att)
        .send()
        .await
        .unwrap();
    let report = cloud
        .sweep_leaked(ids["vpc"].as_str().unwrap(), true)
        .await
        .expect("sweep");
    assert_eq!(report.young, vec![second.clone()], "{report:?}");
    assert!(
        report.tagged.is_empty() && report.deleted.is_empty(),
        "{report:?}"
    );
}
