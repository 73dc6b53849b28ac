//! Workloads as controllers: steady, burst and diurnal workloads keep a desired pod count (and
//! replace pods lost with a node); churn creates pods as a Poisson process with exponential
//! lifetimes.

use std::f64::consts::PI;
use std::time::Duration;

use vpc_cni_ipam::Time;

use super::{Cluster, Event};
use crate::scenario::WorkloadSpec;

/// Re-evaluation period of a diurnal workload.
const DIURNAL_STEP: Duration = Duration::from_secs(60);

pub(super) struct State {
    spec: WorkloadSpec,
    pub(super) group: u32,
    live: Vec<u32>,
}

impl State {
    pub(super) fn new(spec: WorkloadSpec, group: u32) -> Self {
        State {
            spec,
            group,
            live: Vec::new(),
        }
    }

    fn desired(&self, now: Time) -> Option<u32> {
        let t = now.as_millis() as f64 / 1000.0;
        match &self.spec {
            WorkloadSpec::Steady { pods, start, .. } => Some(if now >= Time::ZERO.plus(start.0) {
                *pods
            } else {
                0
            }),
            WorkloadSpec::Burst {
                replicas,
                at,
                until,
                ..
            } => {
                let on = now >= Time::ZERO.plus(at.0)
                    && until.is_none_or(|u| now < Time::ZERO.plus(u.0));
                Some(if on { *replicas } else { 0 })
            }
            WorkloadSpec::Diurnal {
                min,
                max,
                period,
                peak_at,
                ..
            } => {
                let period = period.map_or(86_400.0, |p| p.0.as_secs_f64());
                let peak = peak_at.map_or(43_200.0, |p| p.0.as_secs_f64());
                let phase = (1.0 + (2.0 * PI * (t - peak) / period).cos()) / 2.0;
                Some(*min + (f64::from(max - min) * phase).round() as u32)
            }
            WorkloadSpec::Churn { .. } => None,
        }
    }
}

impl Cluster {
    pub(super) fn start_workload(&mut self, w: u32) {
        let spec = self.workloads[w as usize].spec.clone();
        match spec {
            WorkloadSpec::Steady { start, .. } => {
                self.push(Time::ZERO.plus(start.0), Event::Controller(w))
            }
            WorkloadSpec::Burst { at, until, .. } => {
                self.push(Time::ZERO.plus(at.0), Event::Controller(w));
                if let Some(u) = until {
                    self.push(Time::ZERO.plus(u.0), Event::Controller(w));
                }
            }
            WorkloadSpec::Diurnal { .. } => self.push(Time::ZERO, Event::Controller(w)),
            WorkloadSpec::Churn { start, .. } => {
                self.push(Time::ZERO.plus(start.0), Event::PodCreate(w))
            }
        }
    }

    /// A controller tick: reconcile, and for diurnal workloads schedule the next tick.
    pub(super) fn workload_control(&mut self, w: u32) {
        self.reconcile(w);
        if matches!(
            self.workloads[w as usize].spec,
            WorkloadSpec::Diurnal { .. }
        ) {
            self.push(self.now.plus(DIURNAL_STEP), Event::Controller(w));
        }
    }

    fn reconcile(&mut self, w: u32) {
        let Some(desired) = self.workloads[w as usize].desired(self.now) else {
            return;
        };
        while (self.workloads[w as usize].live.len() as u32) < desired {
            let p = self.create_pod(w);
            self.workloads[w as usize].live.push(p);
        }
        while (self.workloads[w as usize].live.len() as u32) > desired {
            let p = self.workloads[w as usize].live.pop().expect("non-empty");
            self.pod_delete(p);
        }
    }

    /// A churn creation: make a pod with a random lifetime, and schedule the next creation.
    pub(super) fn workload_create(&mut self, w: u32) {
        let WorkloadSpec::Churn {
            rate,
            lifetime,
            end,
            ..
        } = self.workloads[w as usize].spec.clone()
        else {
            return;
        };
        let stop = end.map_or(self.end, |e| Time::ZERO.plus(e.0));
        if self.now >= stop || rate <= 0.0 {
            return;
        }
        let p = self.create_pod(w);
        let life = self.rng.exp(lifetime.0.as_secs_f64());
        self.push(
            self.now.plus(Duration::from_secs_f64(life)),
            Event::PodDelete(p),
        );
        let gap = self.rng.exp(1.0 / rate);
        self.push(
            self.now.plus(Duration::from_secs_f64(gap)),
            Event::PodCreate(w),
        );
    }

    /// A pod of `w` disappeared with its node: controllers replace it.
    pub(super) fn workload_pod_gone(&mut self, w: u32, p: u32) {
        let live = &mut self.workloads[w as usize].live;
        if let Some(pos) = live.iter().position(|&x| x == p) {
            live.swap_remove(pos);
            self.reconcile(w);
        }
    }
}
