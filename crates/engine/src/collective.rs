//! The operations that the processes of a data-parallel run perform together: sums over
//! every process (all-reduce), a broadcast from rank 0, and a gather of one number from
//! each. [`Collective`] is the contract; MPI provides it across machines (the `ocellus`
//! command's `mpi` feature), [`LocalGroup`] between threads of one process, for tests.
//!
//! Every process (rank) of a group must make the same calls in the same order with
//! buffers of the same length, as in MPI; a call that only some ranks make waits forever
//! (MPI) or until the others arrive (threads).

use std::sync::{Arc, Barrier, Mutex};

use crate::error::{Error, Result};

/// Collective operations over the `size()` ranks of a data-parallel group.
pub trait Collective: Send + Sync {
    /// This process's place in the group, `0..size()`.
    fn rank(&self) -> usize;

    /// Number of ranks.
    fn size(&self) -> usize;

    /// Replaces `values` by their element-wise sum over every rank (f32 arithmetic).
    fn sum_f32(&self, values: &mut [f32]) -> Result<()>;

    /// Replaces `values` by their element-wise sum over every rank (f64 arithmetic).
    fn sum_f64(&self, values: &mut [f64]) -> Result<()>;

    /// Replaces `values` on every rank by rank 0's.
    fn broadcast_f32(&self, values: &mut [f32]) -> Result<()>;

    /// `value` of every rank, in rank order.
    fn gather_u64(&self, value: u64) -> Result<Vec<u64>>;
}

impl std::fmt::Debug for dyn Collective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rank {} of {}", self.rank(), self.size())
    }
}

/// What the ranks of a [`LocalGroup`] leave for each other between two barriers.
#[derive(Default)]
struct Slots {
    f32: Vec<Vec<f32>>,
    f64: Vec<Vec<f64>>,
    u64: Vec<u64>,
}

struct Shared {
    size: usize,
    barrier: Barrier,
    slots: Mutex<Slots>,
}

/// A group of ranks that are threads of one process: each thread holds one member.
/// Sums add the ranks' values in rank order, so every rank gets the same bits.
#[derive(Clone)]
pub struct LocalGroup {
    rank: usize,
    shared: Arc<Shared>,
}

impl LocalGroup {
    /// The `size` members of a new group, member `r` being rank `r`.
    pub fn new(size: usize) -> Vec<LocalGroup> {
        assert!(size >= 1, "a group has at least one rank");
        let shared = Arc::new(Shared {
            size,
            barrier: Barrier::new(size),
            slots: Mutex::new(Slots {
                f32: vec![Vec::new(); size],
                f64: vec![Vec::new(); size],
                u64: vec![0; size],
            }),
        });
        (0..size)
            .map(|rank| LocalGroup {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        // A rank that panicked while holding the lock left whole buffers behind (each
        // write replaces one slot), so the values are still usable.
        self.shared
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every rank deposits its values, then each reads what all deposited.
    fn exchange<T: Copy>(
        &self,
        values: &mut [T],
        slot: fn(&mut Slots) -> &mut Vec<Vec<T>>,
        combine: impl Fn(&[Vec<T>], &mut [T]),
    ) -> Result<()> {
        slot(&mut self.slots())[self.rank] = values.to_vec();
        self.shared.barrier.wait();
        let result = {
            let mut slots = self.slots();
            let all = slot(&mut slots);
            match all.iter().position(|v| v.len() != values.len()) {
                Some(r) => Err(Error::config(
                    "collective",
                    format!(
                        "rank {} sent {} values but rank {r} sent {}: the ranks are out of step",
                        self.rank,
                        values.len(),
                        all[r].len()
                    ),
                )),
                None => {
                    combine(all, values);
                    Ok(())
                }
            }
        };
        // No rank overwrites its slot before every rank has read them all.
        self.shared.barrier.wait();
        result
    }
}

impl Collective for LocalGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn sum_f32(&self, values: &mut [f32]) -> Result<()> {
        self.exchange(
            values,
            |s| &mut s.f32,
            |all, out| {
                for (i, v) in out.iter_mut().enumerate() {
                    *v = all.iter().fold(0.0, |acc, r| acc + r[i]);
                }
            },
        )
    }

    fn sum_f64(&self, values: &mut [f64]) -> Result<()> {
        self.exchange(
            values,
            |s| &mut s.f64,
            |all, out| {
                for (i, v) in out.iter_mut().enumerate() {
                    *v = all.iter().fold(0.0, |acc, r| acc + r[i]);
                }
            },
        )
    }

    fn broadcast_f32(&self, values: &mut [f32]) -> Result<()> {
        self.exchange(
            values,
            |s| &mut s.f32,
            |all, out| out.copy_from_slice(&all[0]),
        )
    }

    fn gather_u64(&self, value: u64) -> Result<Vec<u64>> {
        self.slots().u64[self.rank] = value;
        self.shared.barrier.wait();
        let all = self.slots().u64.clone();
        self.shared.barrier.wait();
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_group_sums_broadcasts_and_gathers() {
        let group = LocalGroup::new(3);
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = group
                .iter()
                .map(|member| {
                    s.spawn(move || {
                        let r = member.rank() as f32;
                        let mut a = [r, 10.0 * r];
                        member.sum_f32(&mut a).unwrap();
                        let mut b = [r as f64 + 0.5];
                        member.sum_f64(&mut b).unwrap();
                        let mut c = [r + 7.0; 2];
                        member.broadcast_f32(&mut c).unwrap();
                        let g = member.gather_u64(member.rank() as u64 * 100).unwrap();
                        (a, b, c, g)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (a, b, c, g) in results {
            assert_eq!(a, [3.0, 30.0]);
            assert_eq!(b, [4.5]);
            assert_eq!(c, [7.0, 7.0]);
            assert_eq!(g, vec![0, 100, 200]);
        }
    }

    #[test]
    fn buffers_of_different_lengths_are_an_error_on_every_rank() {
        let group = LocalGroup::new(2);
        std::thread::scope(|s| {
            for member in &group {
                s.spawn(move || {
                    let mut v = vec![1.0f32; 2 + member.rank()];
                    let err = member.sum_f32(&mut v).unwrap_err().to_string();
                    assert!(err.contains("out of step"), "{err}");
                });
            }
        });
    }
}
