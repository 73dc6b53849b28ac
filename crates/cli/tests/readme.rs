//! The README's first set-up command, as a new user pastes it: `cargo run` must know which of
//! the package's binaries to run, and the command's arguments must give the plan.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The first command under "## Set up on a fresh machine".
fn first_command() -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("## Set up on a fresh machine")
        .nth(1)
        .expect("README has a \"Set up on a fresh machine\" section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a ```sh block in that section");
    let line = block.lines().next().expect("a command").trim().to_string();
    assert!(line.starts_with("cargo run "), "{line}");
    line
}

#[test]
fn cargo_run_in_the_readme_picks_the_vpc_cni_binary() {
    let cmd = first_command();
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let pkg = words
        .windows(2)
        .find(|w| w[0] == "-p")
        .map(|w| w[1])
        .expect("the command names its package with -p");
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let package = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == pkg)
        .unwrap_or_else(|| panic!("no package {pkg}"));
    let bins: Vec<&str> = package["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    // Without default-run, `cargo run` refuses a package of two binaries.
    let runs = if bins.len() == 1 {
        bins[0]
    } else {
        package["default_run"]
            .as_str()
            .unwrap_or_else(|| panic!("{pkg} has binaries {bins:?} and no default-run"))
    };
    assert_eq!(runs, "vpc-cni");
}

#[test]
fn the_readme_commands_arguments_print_the_plan() {
    let cmd = first_command();
    let args: Vec<&str> = cmd
        .split(" -- ")
        .nth(1)
        .expect("arguments after --")
        .split_whitespace()
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
        .args(&args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("m5.large"), "{text}");
    assert!(text.lines().count() >= 5, "{text}");
}
