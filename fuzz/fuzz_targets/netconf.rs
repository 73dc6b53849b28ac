//! The plugin's input: the netconf on stdin and the `CNI_*` variables (here taken from the
//! input's lines as KEY=VALUE too). Nothing may panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vpc_cni_cni::NetConf::parse(data);
    let text = String::from_utf8_lossy(data);
    let vars: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let _ = vpc_cni_cni::CniEnv::from_lookup(|k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    });
});
