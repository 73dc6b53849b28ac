//! The emulator's EC2 Query API: any form body against a VPC with one instance. Every request is
//! answered with a document or an EC2 error; nothing panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vpc_cni_emulator::ec2::{Ctx, handle};
use vpc_cni_emulator::params::Params;
use vpc_cni_ipam::Time;
use vpc_cni_sim::{Subnet, Throttle, Vpc};

fn vpc() -> Vpc {
    let mut vpc = Vpc::new(1, Throttle::new(false, 1.0, Time::ZERO));
    vpc.add_subnet(Subnet::new("subnet-1", "10.0.0.0/24".parse().unwrap(), "us-east-1a").unwrap());
    let table = vpc_cni_limits::LimitsTable::builtin();
    let t = table.get("m5.large").unwrap();
    vpc.run_instance("m5.large", &t.limits, "subnet-1", Time::ZERO)
        .unwrap();
    vpc
}

fuzz_target!(|data: &[u8]| {
    thread_local! { static BASE: Vpc = vpc(); }
    let mut v = BASE.with(|b| b.clone());
    let pairs: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    let p = Params::new(pairs);
    let action = p.get("Action").unwrap_or("").to_string();
    let mut ctx = Ctx {
        vpc: &mut v,
        now: Time::from_secs(10),
        epoch: 0,
    };
    let _ = handle(&mut ctx, &action, &p);
});
