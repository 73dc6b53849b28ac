//! Every settings parser over KEY=VALUE lines: the brain's settings, the daemon's configuration
//! and `init`'s conflist variables. Each either parses or names what is wrong; nothing panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let vars: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let _ = vpc_cni_ipam::Settings::from_lookup(get);
    let _ = vpc_cni_ipamd::DaemonConfig::from_lookup(get);
    let _ = vpc_cni_cni::conflist::ConflistParams::from_lookup(get);
    if let Some(v) = get("BIND") {
        let _ = vpc_cni_ipamd::config::parse_bind("BIND", &v);
    }
});
