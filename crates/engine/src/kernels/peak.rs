//! The machine's f32 multiply-add peak, measured with the instruction set the kernels
//! dispatch to (AVX-512, AVX2 + FMA, or the portable code): the ceiling against which a
//! benchmark's GFLOP/s is a fraction.
//!
//! The loop keeps twelve independent accumulator registers, each updated by a fused
//! multiply-add `acc = acc·a + b` per iteration: enough chains to cover the FMA latency (4
//! cycles) on two FMA ports, so the loop runs at the ports' throughput, not their latency.
//! Nothing is read from memory inside it.

use std::time::Instant;

/// Independent accumulators: latency 4 × 2 FMA ports = 8 in flight, 12 for slack.
const CHAINS: usize = 12;

/// The instruction set a peak was measured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2Fma,
    Portable,
}

impl Isa {
    /// What this CPU runs: the same choice as the kernels' run-time dispatch.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2Fma;
            }
        }
        Isa::Portable
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "AVX-512",
            Isa::Avx2Fma => "AVX2 + FMA",
            Isa::Portable => "portable",
        }
    }

    /// f32 lanes per register.
    fn lanes(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2Fma => 8,
            Isa::Portable => 1,
        }
    }
}

/// Runs `iterations` rounds of [`CHAINS`] fused multiply-adds on `isa`'s registers and
/// returns a value depending on all of them (so the loop is not optimised away).
fn fma_loop(isa: Isa, iterations: usize) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        match isa {
            // SAFETY: `Isa::detect` chose these only where the CPU has the features.
            Isa::Avx512 => return unsafe { fma_loop_avx512(iterations) },
            // SAFETY: as above, for AVX2 and FMA.
            Isa::Avx2Fma => return unsafe { fma_loop_avx2(iterations) },
            Isa::Portable => {}
        }
    }
    let _ = isa;
    let mut acc = [1.0f32; CHAINS];
    let (a, b) = (
        std::hint::black_box(0.999_999f32),
        std::hint::black_box(1e-7f32),
    );
    for _ in 0..iterations {
        for v in acc.iter_mut() {
            *v = v.mul_add(a, b);
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_loop_avx512(iterations: usize) -> f32 {
    use std::arch::x86_64::*;
    let a = _mm512_set1_ps(std::hint::black_box(0.999_999));
    let b = _mm512_set1_ps(std::hint::black_box(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); CHAINS];
    for _ in 0..iterations {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    let mut total = _mm512_setzero_ps();
    for v in acc {
        total = _mm512_add_ps(total, v);
    }
    _mm512_reduce_add_ps(total)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop_avx2(iterations: usize) -> f32 {
    use std::arch::x86_64::*;
    let a = _mm256_set1_ps(std::hint::black_box(0.999_999));
    let b = _mm256_set1_ps(std::hint::black_box(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); CHAINS];
    for _ in 0..iterations {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    let mut total = _mm256_setzero_ps();
    for v in acc {
        total = _mm256_add_ps(total, v);
    }
    let mut lanes = [0.0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), total);
    lanes.iter().sum()
}

/// A measured peak.
#[derive(Clone, Copy, Debug)]
pub struct Peak {
    pub isa: Isa,
    /// Threads that ran the loop at once (rayon's pool).
    pub threads: usize,
    /// f32 GFLOP/s of all threads together, 2 FLOPs per multiply-add: the best of the
    /// repeats.
    pub gflops: f64,
}

/// Measures the f32 FMA peak of the rayon pool's threads running at once, the best of
/// `repeats` runs of about `seconds` each.
pub fn measure(seconds: f64, repeats: usize) -> Peak {
    let isa = Isa::detect();
    let threads = rayon::current_num_threads();
    // Calibrate the iterations to the time asked for on one thread.
    let mut iterations = 1 << 16;
    loop {
        let start = Instant::now();
        std::hint::black_box(fma_loop(isa, iterations));
        let took = start.elapsed().as_secs_f64();
        if took >= seconds / 4.0 || iterations >= 1 << 34 {
            iterations = ((iterations as f64) * seconds / took.max(1e-9)) as usize;
            break;
        }
        iterations *= 4;
    }
    let flops_per_thread = (iterations * CHAINS * isa.lanes() * 2) as f64;
    let mut best: f64 = 0.0;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        rayon::broadcast(|_| std::hint::black_box(fma_loop(isa, iterations)));
        let took = start.elapsed().as_secs_f64();
        best = best.max(flops_per_thread * threads as f64 / took / 1e9);
    }
    Peak {
        isa,
        threads,
        gflops: best,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instruction_set_computes_the_same_recurrence() {
        // acc ← acc·a + b from 1, the same in every lane and chain: each version's sum is
        // lanes·CHAINS times the scalar recurrence (rounded once per step alike).
        let mut scalar = 1.0f32;
        for _ in 0..1000 {
            scalar = scalar.mul_add(0.999_999, 1e-7);
        }
        let isa = Isa::detect();
        let got = fma_loop(isa, 1000);
        let expected = scalar * (CHAINS * isa.lanes()) as f32;
        assert!(
            (got - expected).abs() <= 1e-5 * expected,
            "{isa:?}: {got} vs {expected}"
        );
        let portable = fma_loop(Isa::Portable, 1000);
        assert!((portable - scalar * CHAINS as f32).abs() <= 1e-5 * portable);
    }
}
