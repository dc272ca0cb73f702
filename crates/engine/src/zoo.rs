//! The model zoo: classic architectures as [`Architecture`] descriptions, each adapted to
//! the dataset's channels, image size and number of classes.
//!
//! | name | what it is |
//! |---|---|
//! | `lenet5` | LeCun et al. 1998, with ReLU and max-pooling: 61,706 parameters on 1×32×32 (or 1×28×28 with padding 2 on the first convolution), 10 classes |
//! | `smallcnn` | the notes' PyTorch model (§2.8): conv32-BN-ReLU-pool, conv64-BN-ReLU-pool, fc128-ReLU-dropout-fc |
//! | `vgg` | a small VGG: three stages of two 3×3 conv-BN-ReLU and a max-pool (32, 64, 128 channels), then fc256-ReLU-dropout-fc |
//! | `resnet20` | He et al. 2015's CIFAR ResNet-20: a 3×3 stem, three stages of three basic blocks (16, 32, 64 channels), global average pooling, fc |
//! | `resnet32`, `resnet56` | the same with five and nine blocks per stage (6n + 2 weight layers, n = 5, 9) |
//! | `plain20`, `plain32`, `plain56` | the "plain" twins of He et al.'s Figure 6: the same layers and widths as `resnet20/32/56` without the shortcuts — each block conv-BN-ReLU-conv-BN-ReLU — to measure what the shortcut does for depth |
//! | `alexnet` | Krizhevsky et al. 2012, small: a large first kernel (5×5), ReLU, overlapping 3×3 max-pools of stride 2, five convolutions (32-96-128-128-64), dropout before each fully connected layer (512-512-classes) — the table's "ReLU + dropout" row |
//! | `inception` | Szegedy et al. 2014, a mini-GoogLeNet: a 3×3 stem, three Inception blocks (parallel 1×1, 1×1→3×3, 1×1→5×5 and pool→1×1 branches joined along channels, 1×1 convolutions reducing channels first), global average pooling — "parallel multi-scale blocks" |
//! | `resnet-bottleneck` | He et al. 2015's deeper ResNets' bottleneck blocks (1×1 → 3×3 → 1×1), three stages of two blocks (64, 128, 256 output channels), global average pooling — "skip connections", at ResNet-50's block |
//! | `densenet` | Huang et al. 2017, a small DenseNet-BC: three dense blocks of four layers (growth 12), transitions halving channels and image size, global average pooling — "each layer connected to all later ones" |
//! | `efficientnet` | Tan & Le 2019, a small EfficientNet-B0-style stack: a 3×3 stem, MBConv blocks (1×1 expansion, depthwise 3×3 or 5×5, squeeze-and-excitation, 1×1 projection, SiLU; 16-24-40-80 channels), a 1×1 head, global average pooling, dropout — "depthwise-separable convolutions with squeeze-and-excitation" (compound scaling itself is the choice of width, depth and resolution, here fixed for small images) |
//! | `mlp` | a fully connected baseline: flatten, 256-ReLU-128-ReLU-classes (784-256-128-10 = 235,146 parameters on 1×28×28) |
//! | `mlp-lenet5` | a fully connected network with LeNet-5's parameter budget: flatten, H-ReLU-classes, with the hidden width H chosen so the parameter count is the closest to `lenet5`'s for the same images and classes (784-78-10 = 62,020 parameters on 1×28×28, against LeNet-5's 61,706): the fair partner for comparing a CNN with a traditional network |

use crate::arch::{Architecture, BatchNormSpec, LayerSpec, PadSpec, Size2};
use crate::error::{Error, Result};
use crate::layers::LayerExt;
use crate::rng::Rng;

/// The names [`model`] knows.
pub const MODELS: [&str; 16] = [
    "lenet5",
    "smallcnn",
    "alexnet",
    "vgg",
    "inception",
    "resnet20",
    "resnet32",
    "resnet56",
    "plain20",
    "plain32",
    "plain56",
    "resnet-bottleneck",
    "densenet",
    "efficientnet",
    "mlp",
    "mlp-lenet5",
];

/// A row of the lecture's table of architectures (notes §2.7): when a zoo model's design
/// appeared and the idea it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Milestone {
    pub year: u16,
    pub idea: &'static str,
}

/// The row of the architecture timeline that zoo model `name` stands for, if any (the
/// fully connected baselines stand for none).
pub fn milestone(name: &str) -> Option<Milestone> {
    let (year, idea) = match name {
        "lenet5" => (1998, "conv → pool → FC"),
        "alexnet" => (2012, "ReLU + dropout, large first kernel"),
        "vgg" => (2014, "stacks of 3×3 convolutions"),
        "inception" => (2014, "parallel multi-scale branches, 1×1 reductions"),
        "resnet20" | "resnet32" | "resnet56" => (2015, "skip connections"),
        "resnet-bottleneck" => (2015, "skip connections around 1×1 → 3×3 → 1×1"),
        "densenet" => (2017, "each layer connected to all later ones"),
        "efficientnet" => (2019, "depthwise-separable MBConv + squeeze-excitation"),
        _ => return None,
    };
    Some(Milestone { year, idea })
}

/// The zoo model `name` for images of shape `input` = (C, H, W) and `classes` classes.
pub fn model(name: &str, input: [usize; 3], classes: usize) -> Result<Architecture> {
    let layers = match name {
        "lenet5" => lenet5(input, classes),
        "smallcnn" => smallcnn(input, classes),
        "vgg" => vgg(classes),
        "resnet20" => cifar_resnet(3, true, classes),
        "resnet32" => cifar_resnet(5, true, classes),
        "resnet56" => cifar_resnet(9, true, classes),
        "plain20" => cifar_resnet(3, false, classes),
        "plain32" => cifar_resnet(5, false, classes),
        "plain56" => cifar_resnet(9, false, classes),
        "alexnet" => alexnet(classes),
        "inception" => inception(classes),
        "resnet-bottleneck" => resnet_bottleneck(classes),
        "densenet" => densenet(classes),
        "efficientnet" => efficientnet(classes),
        "mlp" => mlp(classes),
        "mlp-lenet5" => mlp_lenet5(input, classes)?,
        _ => {
            return Err(Error::config(
                "model",
                format!("unknown model '{name}'; the zoo has {}", MODELS.join(", ")),
            ))
        }
    };
    Ok(Architecture {
        name: Some(name.to_string()),
        input,
        layers,
    })
}

fn conv(out_channels: usize, kernel: usize, padding: usize) -> LayerSpec {
    LayerSpec::Conv2d {
        in_channels: None,
        out_channels,
        kernel: Size2::Square(kernel),
        stride: Size2::Square(1),
        padding: PadSpec::Uniform(padding),
        dilation: Size2::Square(1),
        groups: 1,
        bias: true,
    }
}

fn linear(out_features: usize) -> LayerSpec {
    LayerSpec::Linear {
        in_features: None,
        out_features,
        bias: true,
    }
}

fn maxpool2() -> LayerSpec {
    LayerSpec::MaxPool2d {
        kernel: Size2::Square(2),
        stride: None,
        padding: None,
        ceil_mode: false,
    }
}

fn batchnorm2d() -> LayerSpec {
    LayerSpec::BatchNorm2d(BatchNormSpec::default())
}

/// LeNet-5: conv 6@5×5 – ReLU – pool – conv 16@5×5 – ReLU – pool – fc 120 – fc 84 – fc.
/// Images smaller than 32×32 get padding on the first convolution so that the second
/// stage still sees 5×5 maps (28×28 → padding 2, as is usual for MNIST).
fn lenet5(input: [usize; 3], classes: usize) -> Vec<LayerSpec> {
    let pad = if input[1] < 32 || input[2] < 32 { 2 } else { 0 };
    vec![
        conv(6, 5, pad),
        LayerSpec::Relu,
        maxpool2(),
        conv(16, 5, 0),
        LayerSpec::Relu,
        maxpool2(),
        LayerSpec::Flatten,
        linear(120),
        LayerSpec::Relu,
        linear(84),
        LayerSpec::Relu,
        linear(classes),
    ]
}

/// The notes' SmallCNN (§2.8), in the order its `forward` applies the modules.
fn smallcnn(_input: [usize; 3], classes: usize) -> Vec<LayerSpec> {
    vec![
        conv(32, 3, 1),
        batchnorm2d(),
        LayerSpec::Relu,
        maxpool2(),
        conv(64, 3, 1),
        batchnorm2d(),
        LayerSpec::Relu,
        maxpool2(),
        LayerSpec::Flatten,
        linear(128),
        LayerSpec::Relu,
        LayerSpec::Dropout { p: 0.5 },
        linear(classes),
    ]
}

fn vgg(classes: usize) -> Vec<LayerSpec> {
    let mut layers = Vec::new();
    for channels in [32, 64, 128] {
        for _ in 0..2 {
            layers.extend([conv(channels, 3, 1), batchnorm2d(), LayerSpec::Relu]);
        }
        layers.push(maxpool2());
    }
    layers.extend([
        LayerSpec::Flatten,
        linear(256),
        LayerSpec::Relu,
        LayerSpec::Dropout { p: 0.5 },
        linear(classes),
    ]);
    layers
}

/// He et al. 2015's CIFAR networks (§4.2): a 3×3 stem of 16 channels, three stages of
/// `n` blocks of two 3×3 convolutions (16, 32, 64 channels; the first block of stages 2
/// and 3 halves the size with stride 2), global average pooling, fc — 6n + 2 weight
/// layers. With `shortcuts` the blocks are ResNet's basic blocks; without, the same
/// layers in a plain chain, conv-BN-ReLU-conv-BN-ReLU (one architecture entry per block,
/// as a residual block is one).
fn cifar_resnet(n: usize, shortcuts: bool, classes: usize) -> Vec<LayerSpec> {
    let mut layers = conv_bn_relu(16, 3, 1).to_vec();
    for (stage, channels) in [16, 32, 64].into_iter().enumerate() {
        for block in 0..n {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            layers.push(if shortcuts {
                LayerSpec::BasicBlock {
                    out_channels: channels,
                    stride,
                }
            } else {
                LayerSpec::Sequential {
                    layers: [
                        conv_bn_relu(channels, 3, stride),
                        conv_bn_relu(channels, 3, 1),
                    ]
                    .concat(),
                }
            });
        }
    }
    layers.extend(head(classes));
    layers
}

/// A `k×k` convolution (padding keeping the size) without bias, BatchNorm, ReLU: the
/// unit of the newer architectures (torchvision's `BasicConv2d`).
fn conv_bn_relu(out_channels: usize, kernel: usize, stride: usize) -> [LayerSpec; 3] {
    [
        LayerSpec::Conv2d {
            in_channels: None,
            out_channels,
            kernel: Size2::Square(kernel),
            stride: Size2::Square(stride),
            padding: PadSpec::Uniform(kernel / 2),
            dilation: Size2::Square(1),
            groups: 1,
            bias: false,
        },
        batchnorm2d(),
        LayerSpec::Relu,
    ]
}

fn pool(kind: &str, kernel: usize, stride: usize, padding: usize) -> LayerSpec {
    let (kernel, stride) = (Size2::Square(kernel), Some(Size2::Square(stride)));
    let padding = (padding > 0).then_some(Size2::Square(padding));
    match kind {
        "max" => LayerSpec::MaxPool2d {
            kernel,
            stride,
            padding,
            ceil_mode: false,
        },
        _ => LayerSpec::AvgPool2d {
            kernel,
            stride,
            padding,
            ceil_mode: false,
            count_include_pad: true,
        },
    }
}

/// Global average pooling, flatten, the classifier.
fn head(classes: usize) -> [LayerSpec; 3] {
    [
        LayerSpec::GlobalAvgPool,
        LayerSpec::Flatten,
        linear(classes),
    ]
}

fn alexnet(classes: usize) -> Vec<LayerSpec> {
    let overlapping = || pool("max", 3, 2, 0);
    vec![
        conv(32, 5, 2),
        LayerSpec::Relu,
        overlapping(),
        conv(96, 3, 1),
        LayerSpec::Relu,
        overlapping(),
        conv(128, 3, 1),
        LayerSpec::Relu,
        conv(128, 3, 1),
        LayerSpec::Relu,
        conv(64, 3, 1),
        LayerSpec::Relu,
        overlapping(),
        LayerSpec::Flatten,
        LayerSpec::Dropout { p: 0.5 },
        linear(512),
        LayerSpec::Relu,
        LayerSpec::Dropout { p: 0.5 },
        linear(512),
        LayerSpec::Relu,
        linear(classes),
    ]
}

/// An Inception block: `ones` 1×1; `reduce3` 1×1 → `threes` 3×3; `reduce5` 1×1 →
/// `fives` 5×5; 3×3 max-pool (stride 1) → `pool_proj` 1×1 — joined along channels.
fn inception_block(
    ones: usize,
    (reduce3, threes): (usize, usize),
    (reduce5, fives): (usize, usize),
    pool_proj: usize,
) -> LayerSpec {
    let unit = |c, k| conv_bn_relu(c, k, 1).to_vec();
    LayerSpec::Concat {
        branches: vec![
            unit(ones, 1),
            [unit(reduce3, 1), unit(threes, 3)].concat(),
            [unit(reduce5, 1), unit(fives, 5)].concat(),
            [vec![pool("max", 3, 1, 1)], unit(pool_proj, 1)].concat(),
        ],
    }
}

fn inception(classes: usize) -> Vec<LayerSpec> {
    let mut layers = conv_bn_relu(32, 3, 1).to_vec();
    layers.push(maxpool2());
    layers.push(inception_block(16, (24, 32), (4, 8), 8)); // 64 channels
    layers.push(inception_block(32, (32, 48), (8, 24), 16)); // 120 channels
    layers.push(maxpool2());
    layers.push(inception_block(48, (32, 64), (8, 16), 16)); // 144 channels
    layers.extend(head(classes));
    layers
}

fn resnet_bottleneck(classes: usize) -> Vec<LayerSpec> {
    let mut layers = conv_bn_relu(32, 3, 1).to_vec();
    for (stage, out_channels) in [64, 128, 256].into_iter().enumerate() {
        for block in 0..2 {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            layers.push(LayerSpec::Bottleneck {
                out_channels,
                stride,
                expansion: 4,
            });
        }
    }
    layers.extend(head(classes));
    layers
}

/// DenseNet-BC with growth 12: each transition halves the channels (compression 0.5)
/// with BN – ReLU – 1×1 conv, and the image size with a 2×2 average pool.
fn densenet(classes: usize) -> Vec<LayerSpec> {
    let (growth, per_block) = (12, 4);
    let mut channels = 2 * growth;
    let mut layers = vec![conv(channels, 3, 1)];
    for block in 0..3 {
        layers.push(LayerSpec::DenseBlock {
            layers: per_block,
            growth,
        });
        channels += per_block * growth;
        if block < 2 {
            channels /= 2;
            let [conv1, ..] = conv_bn_relu(channels, 1, 1);
            layers.extend([batchnorm2d(), LayerSpec::Relu, conv1, pool("avg", 2, 2, 0)]);
        }
    }
    layers.extend([batchnorm2d(), LayerSpec::Relu]);
    layers.extend(head(classes));
    layers
}

fn efficientnet(classes: usize) -> Vec<LayerSpec> {
    let [stem, bn, _] = conv_bn_relu(16, 3, 1);
    let mb = |out_channels, expand_ratio, kernel, stride| LayerSpec::MbConv {
        out_channels,
        expand_ratio,
        kernel,
        stride,
    };
    let [head_conv, head_bn, _] = conv_bn_relu(256, 1, 1);
    vec![
        stem,
        bn,
        LayerSpec::Silu,
        mb(16, 1, 3, 1),
        mb(24, 6, 3, 2),
        mb(24, 6, 3, 1),
        mb(40, 6, 5, 2),
        mb(40, 6, 5, 1),
        mb(80, 6, 3, 2),
        head_conv,
        head_bn,
        LayerSpec::Silu,
        LayerSpec::GlobalAvgPool,
        LayerSpec::Flatten,
        LayerSpec::Dropout { p: 0.2 },
        linear(classes),
    ]
}

fn mlp(classes: usize) -> Vec<LayerSpec> {
    vec![
        LayerSpec::Flatten,
        linear(256),
        LayerSpec::Relu,
        linear(128),
        LayerSpec::Relu,
        linear(classes),
    ]
}

/// One hidden layer of width H: flatten, H-ReLU, classes. With F = C·H·W inputs and K
/// classes it has (F + 1)·H + (H + 1)·K = H·(F + 1 + K) + K parameters; H is that count
/// solved for LeNet-5's and rounded to the nearest width (at least 1).
fn mlp_lenet5(input: [usize; 3], classes: usize) -> Result<Vec<LayerSpec>> {
    let lenet = model("lenet5", input, classes)?
        .build(&mut Rng::new(0))
        .map_err(|e| {
            Error::config(
                "model",
                format!(
                    "mlp-lenet5 takes its size from lenet5, which does not fit these images: {e}"
                ),
            )
        })?;
    let target = lenet.param_count() as f64;
    let features = (input[0] * input[1] * input[2]) as f64;
    let k = classes as f64;
    let hidden = ((target - k) / (features + 1.0 + k)).round().max(1.0) as usize;
    Ok(vec![
        LayerSpec::Flatten,
        linear(hidden),
        LayerSpec::Relu,
        linear(classes),
    ])
}
