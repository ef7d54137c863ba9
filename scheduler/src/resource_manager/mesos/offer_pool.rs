//! One offer's resources as a pool that workers are carved out of.
//!
//! A launch must name resources exactly as they were offered: the same reservation (old
//! `role`/`reservation` format or the `reservations` stack, whichever the master used) and the
//! same `allocation_info`. So the pool keeps each offered resource as a template and hands out
//! pieces of it. Reserved pieces go first: they are ours alone, while unreserved ones could
//! serve other frameworks. Amounts are kept in thousandths, the precision Mesos uses for
//! scalars, so repeated subtraction never drifts.

use mesoflow_proto::mesos::v1::{Offer, Resource, value};

/// What one worker needs from an offer, in thousandths (1000 = one CPU, 1 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Need {
    /// Task CPUs.
    pub cpus: i64,
    /// Task memory.
    pub mem: i64,
    /// Task disk (0: none).
    pub disk: i64,
    /// Executor CPUs (taken from the same offer).
    pub executor_cpus: i64,
    /// Executor memory.
    pub executor_mem: i64,
}

/// A scalar in the thousandths [`Need`] uses.
pub fn milli(value: f64) -> i64 {
    (value * 1000.0).round() as i64
}

/// The resources taken for one worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    /// The task's cpus, mem, disk and port.
    pub task: Vec<Resource>,
    /// The executor's share.
    pub executor: Vec<Resource>,
    /// The port taken for the data plane.
    pub port: u16,
}

#[derive(Debug)]
enum Amount {
    Scalar(i64),
    Ranges(Vec<(u64, u64)>),
}

#[derive(Debug)]
struct Entry {
    /// The offered resource with its value cleared: name, type, reservation, allocation_info.
    template: Resource,
    amount: Amount,
}

/// The usable part of one offer (see the module docs).
#[derive(Debug)]
pub struct OfferPool {
    entries: Vec<Entry>,
}

fn is_reserved(r: &Resource) -> bool {
    !r.reservations.is_empty()
        || r.reservation.is_some()
        || r.role.as_deref().is_some_and(|role| role != "*")
}

/// Plain resources only: revocable ones can vanish under a TaskManager, shared ones and those
/// of resource providers need other operations, and a disk with a source (MOUNT/PATH/volume)
/// cannot be split.
fn is_usable(r: &Resource) -> bool {
    r.revocable.is_none()
        && r.shared.is_none()
        && r.provider_id.is_none()
        && r.disk
            .as_ref()
            .is_none_or(|d| d.source.is_none() && d.persistence.is_none() && d.volume.is_none())
}

impl OfferPool {
    /// The pool of `offer`, reserved resources first.
    pub fn new(offer: &Offer) -> Self {
        let mut entries: Vec<(bool, Entry)> = Vec::new();
        for r in offer.resources.iter().filter(|r| is_usable(r)) {
            let amount = match value::Type::try_from(r.r#type) {
                Ok(value::Type::Scalar) => match &r.scalar {
                    Some(s) => Amount::Scalar(milli(s.value)),
                    None => continue,
                },
                Ok(value::Type::Ranges) => match &r.ranges {
                    Some(rs) => Amount::Ranges(
                        rs.range
                            .iter()
                            .filter(|x| x.begin <= x.end)
                            .map(|x| (x.begin, x.end))
                            .collect(),
                    ),
                    None => continue,
                },
                _ => continue,
            };
            let template = Resource {
                scalar: None,
                ranges: None,
                set: None,
                ..r.clone()
            };
            entries.push((is_reserved(r), Entry { template, amount }));
        }
        // Stable: within reserved and unreserved, the master's order stays.
        entries.sort_by_key(|(reserved, _)| !*reserved);
        Self {
            entries: entries.into_iter().map(|(_, e)| e).collect(),
        }
    }

    fn scalar_total(&self, name: &str) -> i64 {
        self.entries
            .iter()
            .filter(|e| e.template.name == name)
            .map(|e| match e.amount {
                Amount::Scalar(v) => v,
                Amount::Ranges(_) => 0,
            })
            .sum()
    }

    fn has_port(&self) -> bool {
        self.entries.iter().any(|e| {
            e.template.name == "ports"
                && matches!(&e.amount, Amount::Ranges(r) if r.iter().any(|&(b, _)| b <= u16::MAX as u64))
        })
    }

    /// Whether a worker needing `need` (and one port) fits what is left.
    pub fn fits(&self, need: &Need) -> bool {
        self.scalar_total("cpus") >= need.cpus + need.executor_cpus
            && self.scalar_total("mem") >= need.mem + need.executor_mem
            && self.scalar_total("disk") >= need.disk
            && self.has_port()
    }

    /// Takes a worker's resources, or `None` (and nothing taken) if it does not fit.
    pub fn take(&mut self, need: &Need) -> Option<Taken> {
        if !self.fits(need) {
            return None;
        }
        let mut task = Vec::with_capacity(4);
        self.take_scalar("cpus", need.cpus, &mut task);
        self.take_scalar("mem", need.mem, &mut task);
        self.take_scalar("disk", need.disk, &mut task);
        let port = self.take_port(&mut task)?;
        let mut executor = Vec::with_capacity(2);
        self.take_scalar("cpus", need.executor_cpus, &mut executor);
        self.take_scalar("mem", need.executor_mem, &mut executor);
        Some(Taken {
            task,
            executor,
            port,
        })
    }

    fn take_scalar(&mut self, name: &str, mut want: i64, out: &mut Vec<Resource>) {
        for e in self.entries.iter_mut().filter(|e| e.template.name == name) {
            if want <= 0 {
                return;
            }
            if let Amount::Scalar(have) = &mut e.amount {
                let piece = want.min(*have);
                if piece > 0 {
                    *have -= piece;
                    want -= piece;
                    out.push(Resource {
                        scalar: Some(value::Scalar {
                            value: piece as f64 / 1000.0,
                        }),
                        ..e.template.clone()
                    });
                }
            }
        }
    }

    /// The lowest free port (that fits a `u16`) of the first ranges resource that has one.
    fn take_port(&mut self, out: &mut Vec<Resource>) -> Option<u16> {
        for e in self
            .entries
            .iter_mut()
            .filter(|e| e.template.name == "ports")
        {
            let Amount::Ranges(ranges) = &mut e.amount else {
                continue;
            };
            let Some(i) = ranges.iter().position(|&(b, _)| b <= u16::MAX as u64) else {
                continue;
            };
            let (begin, end) = ranges[i];
            if begin == end {
                ranges.remove(i);
            } else {
                ranges[i].0 = begin + 1;
            }
            out.push(Resource {
                ranges: Some(value::Ranges {
                    range: vec![value::Range { begin, end: begin }],
                }),
                ..e.template.clone()
            });
            return Some(begin as u16);
        }
        None
    }
}
