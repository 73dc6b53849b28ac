//! Checks against the reference data in `../shared/data` (path from `VPC_CNI_TEST_DATA_DIR`,
//! defaulting to the workspace's sibling `shared/data`). Missing data fails the test loudly.

use std::path::PathBuf;

use vpc_cni_limits::LimitsTable;

fn data_dir() -> PathBuf {
    std::env::var_os("VPC_CNI_TEST_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
}

#[test]
fn loads_every_type_of_the_reference_data() {
    let dir = data_dir();
    let table = LimitsTable::load_dir(&dir)
        .unwrap_or_else(|e| panic!("reference data must be present at {}: {e}", dir.display()));
    assert_eq!(table.len(), 1391);
    let with_vcpus = table.iter().filter(|t| t.vcpus.is_some()).count();
    assert_eq!(with_vcpus, 1389);
}

#[test]
fn builtin_entries_agree_with_reference_data() {
    let reference = LimitsTable::load_dir(&data_dir()).expect("reference data");
    let builtin = LimitsTable::builtin();
    assert!(builtin.len() >= 21);
    for t in builtin.iter() {
        let r = reference
            .get(&t.name)
            .expect("built-in type exists in reference data");
        assert_eq!(t.limits, r.limits, "{}", t.name);
        assert_eq!(t.vcpus, r.vcpus, "{}", t.name);
    }
}

#[test]
fn unknown_type_names_near_matches() {
    let table = LimitsTable::load_dir(&data_dir()).expect("reference data");
    let err = table.get("m5.larg").unwrap_err().to_string();
    assert!(err.contains("\"m5.larg\""), "{err}");
    assert!(err.contains("m5.large"), "{err}");
}

#[test]
fn bad_directory_is_an_error_naming_the_file() {
    let err = LimitsTable::load_dir(std::path::Path::new("/nonexistent/dir")).unwrap_err();
    assert!(
        err.to_string()
            .contains("/nonexistent/dir/instance-limits.json"),
        "{err}"
    );
}
