//! Weight initialisation. Fans follow PyTorch: for a convolution weight `(OC, IC, KH, KW)`,
//! `fan_in = IC·KH·KW` and `fan_out = OC·KH·KW`; for a linear weight `(out, in)`,
//! `fan_in = in` and `fan_out = out`.

use crate::rng::Rng;
use crate::tensor::Tensor;

/// How to draw initial weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Init {
    /// PyTorch's default for `Conv2d` and `Linear`: `kaiming_uniform_(a = √5)`, which is
    /// U(−1/√fan_in, 1/√fan_in).
    #[default]
    PytorchDefault,
    /// He/Kaiming normal for ReLU: N(0, 2/fan_in).
    KaimingNormal,
    /// He/Kaiming uniform for ReLU: U(−√(6/fan_in), √(6/fan_in)).
    KaimingUniform,
    /// Xavier/Glorot uniform: U(−a, a) with a = √(6/(fan_in + fan_out)).
    XavierUniform,
    /// Xavier/Glorot normal: N(0, 2/(fan_in + fan_out)).
    XavierNormal,
}

/// `(fan_in, fan_out)` of a weight shape `(out, in, …kernel)`.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    assert!(shape.len() >= 2, "a weight has at least two axes");
    let receptive: usize = shape[2..].iter().product();
    (shape[1] * receptive, shape[0] * receptive)
}

/// A weight tensor of `shape` drawn according to `init`.
pub fn weight(shape: &[usize], init: Init, rng: &mut Rng) -> Tensor {
    let (fan_in, fan_out) = fans(shape);
    let (fan_in, fan_out) = (fan_in as f32, fan_out as f32);
    match init {
        Init::PytorchDefault => {
            let bound = 1.0 / fan_in.sqrt();
            Tensor::uniform(shape, -bound, bound, rng)
        }
        Init::KaimingNormal => Tensor::randn(shape, (2.0 / fan_in).sqrt(), rng),
        Init::KaimingUniform => {
            let bound = (6.0 / fan_in).sqrt();
            Tensor::uniform(shape, -bound, bound, rng)
        }
        Init::XavierUniform => {
            let bound = (6.0 / (fan_in + fan_out)).sqrt();
            Tensor::uniform(shape, -bound, bound, rng)
        }
        Init::XavierNormal => Tensor::randn(shape, (2.0 / (fan_in + fan_out)).sqrt(), rng),
    }
}

/// PyTorch's default bias: U(−1/√fan_in, 1/√fan_in).
pub fn bias(len: usize, fan_in: usize, rng: &mut Rng) -> Tensor {
    let bound = 1.0 / (fan_in as f32).sqrt();
    Tensor::uniform(&[len], -bound, bound, rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std_of(t: &Tensor) -> f32 {
        let n = t.len() as f32;
        let mean = t.data().iter().sum::<f32>() / n;
        (t.data().iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n).sqrt()
    }

    #[test]
    fn fans_follow_pytorch() {
        assert_eq!(fans(&[64, 3, 3, 3]), (27, 576));
        assert_eq!(fans(&[10, 128]), (128, 10));
    }

    #[test]
    fn spreads_match_their_formulas() {
        let mut rng = Rng::new(0);
        let shape = [256, 64, 3, 3]; // fan_in 576, fan_out 2304
        let he = weight(&shape, Init::KaimingNormal, &mut rng);
        assert!((std_of(&he) - (2.0f32 / 576.0).sqrt()).abs() < 2e-3);
        let xavier = weight(&shape, Init::XavierUniform, &mut rng);
        let bound = (6.0f32 / (576.0 + 2304.0)).sqrt();
        assert!(xavier.max_abs() <= bound);
        // U(−a, a) has standard deviation a/√3.
        assert!((std_of(&xavier) - bound / 3f32.sqrt()).abs() < 1e-3);
        let torch = weight(&shape, Init::PytorchDefault, &mut rng);
        assert!(torch.max_abs() <= 1.0 / 24.0);
    }
}
