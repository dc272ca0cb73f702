//! `ocellus train` under `mpirun` or `srun` (the `mpi` feature): every process started by
//! the launcher is one rank of a data-parallel run, MPI's world communicator the group.
//!
//! A rank that fails calls `MPI_Abort`, which ends every rank of the job at once: no rank
//! is left waiting in a collective for one that is gone. A rank that dies is noticed by
//! the launcher, which ends the others. Either way, the run directory keeps its last
//! complete checkpoint (rank 0 writes each atomically).

use std::sync::{Arc, Mutex};

use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};
use ocellus::collective::Collective;
use ocellus::{Error, Result};

/// The ranks of MPI's world communicator.
struct World {
    rank: usize,
    size: usize,
    /// MPI is initialised for serialised calls: one thread at a time, whichever it is.
    serial: Mutex<()>,
}

impl World {
    fn call<T>(&self, f: impl FnOnce(&SimpleCommunicator) -> T) -> T {
        let _turn = self.serial.lock().unwrap_or_else(|p| p.into_inner());
        f(&SimpleCommunicator::world())
    }
}

impl Collective for World {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn sum_f32(&self, values: &mut [f32]) -> Result<()> {
        let send = values.to_vec();
        self.call(|w| w.all_reduce_into(&send[..], values, SystemOperation::sum()));
        Ok(())
    }

    fn sum_f64(&self, values: &mut [f64]) -> Result<()> {
        let send = values.to_vec();
        self.call(|w| w.all_reduce_into(&send[..], values, SystemOperation::sum()));
        Ok(())
    }

    fn broadcast_f32(&self, values: &mut [f32]) -> Result<()> {
        self.call(|w| w.process_at_rank(0).broadcast_into(values));
        Ok(())
    }

    fn gather_u64(&self, value: u64) -> Result<Vec<u64>> {
        let mut all = vec![0u64; self.size];
        self.call(|w| w.all_gather_into(&value, &mut all[..]));
        Ok(all)
    }
}

/// Whether an MPI launcher started this process (Open MPI's `mpirun`, or a PMI/PMIx
/// launcher such as Slurm's `srun`). Without one, training runs alone and MPI is not
/// started at all.
fn launched() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// `ocellus train` with `args`, as one rank of the launcher's job when there is one.
pub fn train(args: crate::commands::train::Args) -> Result<()> {
    if !launched() {
        return crate::commands::train::run(args, None);
    }
    let Some((universe, _)) = mpi::initialize_with_threading(mpi::Threading::Serialized) else {
        return Err(Error::config("mpi", "MPI was already initialised"));
    };
    let world = universe.world();
    let (rank, size) = (world.rank() as usize, world.size() as usize);
    if size == 1 {
        return crate::commands::train::run(args, None);
    }
    let group = Arc::new(World {
        rank,
        size,
        serial: Mutex::new(()),
    });
    match crate::commands::train::run(args, Some(group)) {
        Ok(()) => Ok(()),
        // Every rank stops at the same step when one is asked to, and says nothing more.
        Err(e @ Error::Interrupted { .. }) => Err(e),
        Err(e) => {
            eprintln!("error on rank {rank} of {size}: {e}; stopping every rank");
            world.abort(1)
        }
    }
}
