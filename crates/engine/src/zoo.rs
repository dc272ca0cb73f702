//! The model zoo: classic architectures as [`Architecture`] descriptions, each adapted to
//! the dataset's channels, image size and number of classes.
//!
//! | name | what it is |
//! |---|---|
//! | `lenet5` | LeCun et al. 1998, with ReLU and max-pooling: 61,706 parameters on 1×32×32 (or 1×28×28 with padding 2 on the first convolution), 10 classes |
//! | `smallcnn` | the notes' PyTorch model (§2.8): conv32-BN-ReLU-pool, conv64-BN-ReLU-pool, fc128-ReLU-dropout-fc |
//! | `vgg` | a small VGG: three stages of two 3×3 conv-BN-ReLU and a max-pool (32, 64, 128 channels), then fc256-ReLU-dropout-fc |
//! | `resnet20` | He et al. 2015's CIFAR ResNet-20: a 3×3 stem, three stages of three basic blocks (16, 32, 64 channels), global average pooling, fc |
//! | `mlp` | a fully connected baseline: flatten, 256-ReLU-128-ReLU-classes (784-256-128-10 = 235,146 parameters on 1×28×28) |
//! | `mlp-lenet5` | a fully connected network with LeNet-5's parameter budget: flatten, H-ReLU-classes, with the hidden width H chosen so the parameter count is the closest to `lenet5`'s for the same images and classes (784-78-10 = 62,020 parameters on 1×28×28, against LeNet-5's 61,706): the fair partner for comparing a CNN with a traditional network |

use crate::arch::{Architecture, BatchNormSpec, LayerSpec, PadSpec, Size2};
use crate::error::{Error, Result};
use crate::layers::LayerExt;
use crate::rng::Rng;

/// The names [`model`] knows.
pub const MODELS: [&str; 6] = ["lenet5", "smallcnn", "vgg", "resnet20", "mlp", "mlp-lenet5"];

/// The zoo model `name` for images of shape `input` = (C, H, W) and `classes` classes.
pub fn model(name: &str, input: [usize; 3], classes: usize) -> Result<Architecture> {
    let layers = match name {
        "lenet5" => lenet5(input, classes),
        "smallcnn" => smallcnn(input, classes),
        "vgg" => vgg(classes),
        "resnet20" => resnet20(classes),
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

fn resnet20(classes: usize) -> Vec<LayerSpec> {
    let mut layers = vec![
        LayerSpec::Conv2d {
            in_channels: None,
            out_channels: 16,
            kernel: Size2::Square(3),
            stride: Size2::Square(1),
            padding: PadSpec::Uniform(1),
            dilation: Size2::Square(1),
            groups: 1,
            bias: false,
        },
        batchnorm2d(),
        LayerSpec::Relu,
    ];
    for (stage, channels) in [16, 32, 64].into_iter().enumerate() {
        for block in 0..3 {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            layers.push(LayerSpec::BasicBlock {
                out_channels: channels,
                stride,
            });
        }
    }
    layers.extend([
        LayerSpec::GlobalAvgPool,
        LayerSpec::Flatten,
        linear(classes),
    ]);
    layers
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
