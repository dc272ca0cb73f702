//! Data-parallel training: the ranks of a [`Collective`] group (MPI processes on many
//! machines, or threads in tests) train one model together.
//!
//! Every rank holds the whole model and the whole data set. Each global batch — the
//! `--batch-size` the user sets, drawn from the shuffle of `(seed, epoch)` that every rank
//! draws alike — is cut into contiguous shards, one per rank
//! ([`ocellus_data::shard`]). A rank's loss is its shard's mean loss times its share
//! `n_rank / n_batch`, so that the ranks' gradients **add up** to the gradient of the mean
//! loss over the whole batch; [`DataParallel::all_reduce_gradients`] sums them (one fused
//! buffer, or buckets of [`DataParallel::bucket_values`] values), and every rank then
//! applies the identical optimiser step to identical weights. Buffers (BatchNorm's running
//! statistics) are rank 0's after every step, as PyTorch's `DistributedDataParallel`
//! broadcasts them; with synchronised batch normalisation they agree anyway.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ocellus::collective::Collective;
use ocellus::error::{Error, Result};
use ocellus::layers::{Layer, LayerExt};
use ocellus_data::Dataset;

/// One rank's membership in a data-parallel run, and the time it spends communicating.
pub struct DataParallel {
    group: Arc<dyn Collective>,
    /// The largest all-reduce, in values; the gradients go in buckets of this size
    /// (`usize::MAX`: one fused buffer per step).
    pub bucket_values: usize,
    /// Nanoseconds spent in the gradient all-reduce, and the steps it served.
    reduce_nanos: AtomicU64,
    reduce_steps: AtomicU64,
}

impl std::fmt::Debug for DataParallel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataParallel({:?})", self.group)
    }
}

impl DataParallel {
    /// Membership in `group`, with one fused all-reduce per step.
    pub fn new(group: Arc<dyn Collective>) -> Self {
        DataParallel {
            group,
            bucket_values: usize::MAX,
            reduce_nanos: AtomicU64::new(0),
            reduce_steps: AtomicU64::new(0),
        }
    }

    /// The same, all-reducing the gradients in buckets of at most `values` values.
    pub fn with_buckets(group: Arc<dyn Collective>, values: usize) -> Self {
        DataParallel {
            bucket_values: values.max(1),
            ..Self::new(group)
        }
    }

    pub fn group(&self) -> &Arc<dyn Collective> {
        &self.group
    }

    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    pub fn size(&self) -> usize {
        self.group.size()
    }

    /// Replaces every parameter gradient of `model` by its sum over the ranks, and each
    /// of `extra` (step statistics riding along) by its sum too: the gradients in order,
    /// then `extra`, in one buffer cut into buckets of [`DataParallel::bucket_values`].
    pub fn all_reduce_gradients(&self, model: &mut dyn Layer, extra: &mut [f32]) -> Result<()> {
        let start = Instant::now();
        let mut params = model.params_mut();
        let total: usize = params.iter().map(|(_, p)| p.grad().len()).sum();
        let mut buffer = Vec::with_capacity(total + extra.len());
        for (_, p) in &params {
            buffer.extend_from_slice(p.grad().data());
        }
        buffer.extend_from_slice(extra);
        for bucket in buffer.chunks_mut(self.bucket_values) {
            self.group.sum_f32(bucket)?;
        }
        let mut at = 0;
        for (_, p) in &mut params {
            let grad = p.grad_mut();
            grad.copy_from_slice(&buffer[at..at + grad.len()]);
            at += grad.len();
        }
        extra.copy_from_slice(&buffer[at..]);
        self.reduce_nanos
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.reduce_steps.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Seconds per step spent in [`DataParallel::all_reduce_gradients`] so far, and the
    /// number of steps.
    pub fn reduce_time(&self) -> (f64, u64) {
        let steps = self.reduce_steps.load(Ordering::Relaxed);
        let nanos = self.reduce_nanos.load(Ordering::Relaxed);
        (nanos as f64 * 1e-9 / steps.max(1) as f64, steps)
    }

    /// Makes every buffer of `model` (running statistics) rank 0's.
    pub fn broadcast_buffers(&self, model: &mut dyn Layer) -> Result<()> {
        let mut buffers = model.buffers_mut();
        if buffers.is_empty() {
            return Ok(());
        }
        let mut flat: Vec<f32> = buffers
            .iter()
            .flat_map(|(_, b)| b.data().iter().copied())
            .collect();
        self.group.broadcast_f32(&mut flat)?;
        let mut at = 0;
        for (_, b) in &mut buffers {
            let values = b.data_mut();
            values.copy_from_slice(&flat[at..at + values.len()]);
            at += values.len();
        }
        Ok(())
    }

    /// Fails on every rank alike unless every rank holds the same value of each of
    /// `fingerprints` (`(what, value)`) as rank 0, naming the first rank and thing that
    /// differ.
    pub fn expect_same(&self, fingerprints: &[(&str, u64)]) -> Result<()> {
        for (what, value) in fingerprints {
            let all = self.group.gather_u64(*value)?;
            if let Some(rank) = all.iter().position(|v| *v != all[0]) {
                return Err(Error::config(
                    "data-parallel run",
                    format!(
                        "rank {rank} has other {what} than rank 0 (fingerprint {:016x} against \
                         {:016x}); every rank must be started with the same command and the \
                         same files",
                        all[rank], all[0]
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// 64-bit FNV-1a over 8-byte words: a fingerprint to tell whether two ranks hold the same
/// values, not a cryptographic hash.
#[derive(Clone, Copy)]
pub struct Fingerprint(u64);

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint(0xCBF2_9CE4_8422_2325)
    }
}

impl Fingerprint {
    pub fn word(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(0x0000_0100_0000_01B3);
    }

    pub fn floats(&mut self, values: &[f32]) {
        self.word(values.len() as u64);
        for pair in values.chunks(2) {
            let lo = pair[0].to_bits() as u64;
            let hi = pair.get(1).map_or(0, |v| v.to_bits() as u64);
            self.word(lo | hi << 32);
        }
    }

    pub fn bytes(&mut self, bytes: &[u8]) {
        self.word(bytes.len() as u64);
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.word(u64::from_le_bytes(w));
        }
    }

    pub fn value(self) -> u64 {
        self.0
    }
}

/// The fingerprint of a data set: its images, labels and class names.
pub fn dataset_fingerprint(data: &Dataset) -> u64 {
    let mut f = Fingerprint::default();
    f.floats(data.images().data());
    for &label in data.labels() {
        f.word(label as u64);
    }
    for class in data.classes() {
        f.bytes(class.as_bytes());
    }
    f.value()
}

/// The fingerprint of a model's parameters and buffers, names included.
pub fn model_fingerprint(model: &dyn Layer) -> u64 {
    let mut f = Fingerprint::default();
    for (name, p) in model.params() {
        f.bytes(name.as_bytes());
        f.floats(p.value().data());
    }
    for (name, b) in model.buffers() {
        f.bytes(name.as_bytes());
        f.floats(b.data());
    }
    f.value()
}
