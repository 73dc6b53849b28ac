//! The emulator's IMDS paths: any path of the instance's metadata tree. Nothing panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vpc_cni_ipam::Time;
use vpc_cni_sim::{Subnet, Throttle, Vpc};

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static BASE: (Vpc, String) = {
            let mut vpc = Vpc::new(1, Throttle::new(false, 1.0, Time::ZERO));
            vpc.add_subnet(Subnet::new("subnet-1", "10.0.0.0/24".parse().unwrap(), "us-east-1a").unwrap());
            let table = vpc_cni_limits::LimitsTable::builtin();
            let t = table.get("m5.large").unwrap();
            let id = vpc.run_instance("m5.large", &t.limits, "subnet-1", Time::ZERO).unwrap();
            (vpc, id)
        };
    }
    let path = String::from_utf8_lossy(data);
    BASE.with(|(vpc, id)| {
        let _ = vpc_cni_emulator::imds::metadata(vpc, id, "us-east-1", &path, Time::from_secs(10));
    });
});
