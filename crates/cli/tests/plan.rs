//! `vpc-cni plan`: flags, env input, JSON shape and errors.

mod support;

use support::{column, plan_json, run, run_builtin};

#[test]
fn json_has_the_documented_shape() {
    let r = plan_json(&["--instance-type", "m5.large", "--pods", "0,5,9"]);
    assert_eq!(r["instance_type"], "m5.large");
    assert_eq!(r["mode"], "secondary-ip");
    assert_eq!(r["settings"]["WARM_ENI_TARGET"], "1");
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for row in rows {
        for f in ["pods", "enis", "ips_attached", "prefixes", "unused_ips"] {
            assert!(row[f].is_u64(), "row lacks {f}: {row}");
        }
        let per_eni = row["per_eni"].as_array().unwrap();
        assert_eq!(per_eni.len() as u64, row["enis"].as_u64().unwrap());
        let sum: u64 = per_eni.iter().map(|e| e["ips"].as_u64().unwrap()).sum();
        assert_eq!(sum, row["ips_attached"].as_u64().unwrap());
    }
    // m5.large: 9 IPs per ENI; 9 pods leave 0 free on the primary → second ENI.
    assert_eq!(column(&r, "enis"), [1, 2, 2]);
    assert_eq!(column(&r, "ips_attached"), [9, 18, 18]);
}

#[test]
fn from_env_reads_upstream_variable_names() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
        .args([
            "plan",
            "--from-env",
            "--instance-type",
            "r5.xlarge",
            "--pods",
            "1,24",
            "--output",
            "json",
        ])
        .env("MINIMUM_IP_TARGET", "20")
        .env("WARM_IP_TARGET", "5")
        .env_remove("VPC_CNI_DATA_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(column(&r, "ips_attached"), [20, 29]);
}

#[test]
fn env_file_accepts_kubectl_json_and_key_value_lines() {
    let dir = std::env::temp_dir().join(format!("vpc-cni-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("env.json");
    std::fs::write(&json, r#"[{"name":"WARM_ENI_TARGET","value":"1"},{"name":"MINIMUM_IP_TARGET","value":"20"},{"name":"WARM_IP_TARGET","value":"2"},{"name":"MY_NODE_NAME","valueFrom":{}}]"#).unwrap();
    let lines = dir.join("env.txt");
    std::fs::write(
        &lines,
        "# aws-node\nexport MINIMUM_IP_TARGET=20\nWARM_IP_TARGET=\"2\"\n",
    )
    .unwrap();
    for f in [&json, &lines] {
        let r = plan_json(&[
            "--instance-type",
            "r5.xlarge",
            "--pods",
            "20",
            "--env-file",
            f.to_str().unwrap(),
        ]);
        assert_eq!(column(&r, "ips_attached"), [22], "{}", f.display());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_settings_name_the_variable() {
    let r = run_builtin(&["plan", "--instance-type", "m5.large", "--max-eni", "0"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("MAX_ENI=\"0\"") && r.stderr.contains("integer ≥ 1"),
        "{}",
        r.stderr
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
        .args(["plan", "--from-env", "--instance-type", "m5.large"])
        .env("ENABLE_PREFIX_DELEGATION", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARM_PREFIX_TARGET"));
}

#[test]
fn max_eni_and_capacity_are_respected() {
    // MAX_ENI=1 on m5.large: only the primary's 9 IPs; pod 10 and 11 stay pending.
    let r = plan_json(&[
        "--instance-type",
        "m5.large",
        "--max-eni",
        "1",
        "--pods",
        "9,11",
    ]);
    assert_eq!(column(&r, "enis"), [1, 1]);
    assert_eq!(column(&r, "pending_pods"), [0, 2]);
    assert!(
        r["notes"].to_string().contains("only 9 pods fit"),
        "{}",
        r["notes"]
    );
    // Custom networking: the primary ENI gets no addresses.
    let r = plan_json(&[
        "--instance-type",
        "m5.large",
        "--custom-networking",
        "--pods",
        "0,18",
    ]);
    assert_eq!(r["rows"][0]["per_eni"][0]["ips"], 0);
    assert_eq!(column(&r, "ips_attached"), [9, 18]);
}

#[test]
fn pods_going_down_shrink_the_pool() {
    // WARM_IP_TARGET=2: after 20 → 2 pods the pool returns to 4 IPs once cooldowns pass.
    let r = plan_json(&[
        "--instance-type",
        "r5.xlarge",
        "--warm-ip-target",
        "2",
        "--pods",
        "20,2",
    ]);
    assert_eq!(column(&r, "ips_attached"), [22, 4]);
    // Default WARM_ENI_TARGET=1 frees whole ENIs only, while a spare ENI's worth (28 ≥ 2 × 14)
    // remains: back to the primary ENI alone, as at start.
    let r = plan_json(&["--instance-type", "r5.xlarge", "--pods", "30,0"]);
    assert_eq!(column(&r, "enis"), [4, 1]);
    assert_eq!(column(&r, "ips_attached"), [56, 14]);
}

#[test]
fn xen_types_fall_back_to_secondary_ips() {
    let r = plan_json(&[
        "--instance-type",
        "m4.xlarge",
        "--prefix-delegation",
        "--pods",
        "1",
    ]);
    assert_eq!(r["mode"], "secondary-ip");
    assert!(r["notes"].to_string().contains("not a Nitro instance"));
}

#[test]
fn table_output_explains_the_last_step() {
    let r = run(&["plan", "--instance-type", "r5.xlarge", "--pods", "1,15"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(
            "Last step (15 pods): pool too low: 13 available < WARM_ENI_TARGET=1 × 14 IPs"
        ),
        "{}",
        r.stdout
    );
}

#[test]
fn help_explains_every_flag() {
    let r = run_builtin(&["plan", "--help"]);
    for flag in [
        "--instance-type",
        "--prefix-delegation",
        "--warm-eni-target",
        "--warm-ip-target",
        "--minimum-ip-target",
        "--warm-prefix-target",
        "--max-eni",
        "--custom-networking",
        "--pods",
        "--from-env",
        "--env-file",
        "--nodes",
        "--subnet",
        "--output",
        "--max-pods",
    ] {
        assert!(r.stdout.contains(flag), "help lacks {flag}");
    }
}

#[test]
fn ipv6_mode_holds_one_ipv4_address_per_node() {
    let r = run_builtin(&[
        "plan",
        "--instance-type",
        "m5.large",
        "--ipv6",
        "--pods",
        "0,110,200",
        "--nodes",
        "40",
        "--subnet",
        "10.0.0.0/26",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["mode"], "ipv6");
    assert_eq!(v["settings"]["ENABLE_IPv6"], "true");
    let rows = v["rows"].as_array().unwrap();
    assert!(
        rows.iter()
            .all(|r| r["subnet_addresses"] == 1 && r["ips_attached"] == 0 && r["enis"] == 1)
    );
    assert_eq!(rows[2]["pending_pods"], 90, "max pods 110 caps the node");
    // 40 nodes hold 40 IPv4 addresses of a /26; prefix mode would need thousands.
    assert_eq!(v["subnet"]["addresses_held"], 40);
    assert!(v["subnet"]["free_addresses"].as_i64().unwrap() > 0);
    let bad = run_builtin(&[
        "plan",
        "--instance-type",
        "m5.large",
        "--ipv6",
        "--custom-networking",
    ]);
    assert_ne!(bad.code, 0);
}
