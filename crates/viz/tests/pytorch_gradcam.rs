//! Grad-CAM against PyTorch, on the vectors of `tools/pytorch_gradcam.py`
//! (`tests/reference/gradcam.safetensors`): each case is an architecture that the script
//! built in PyTorch with ocellus's parameter names, random weights, one image, and the
//! Grad-CAM weights, map and interpolated map that autograd gives.

use std::collections::HashMap;
use std::path::Path;

use ocellus::arch::Architecture;
use ocellus::gradcheck::assert_close;
use ocellus::{LayerExt, Mode, Rng, Sequential, Tensor};
use ocellus_viz::inspect::grad_cam;

/// Agreement asked of every value: within 1e-4 of the largest magnitude of its tensor,
/// and relatively within 1e-4.
const TOL: f64 = 1e-4;

struct Reference {
    tensors: HashMap<String, Tensor>,
    metadata: HashMap<String, String>,
}

impl Reference {
    fn open() -> Reference {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/gradcam.safetensors");
        let (tensors, metadata) = ocellus::checkpoint::load(&path).expect("the reference file");
        Reference {
            tensors: tensors.into_iter().collect(),
            metadata,
        }
    }

    fn cases(&self) -> Vec<String> {
        let mut cases: Vec<String> = self
            .metadata
            .keys()
            .filter_map(|k| k.strip_suffix(".architecture"))
            .map(String::from)
            .collect();
        cases.sort();
        cases
    }

    fn tensor(&self, case: &str, key: &str) -> &Tensor {
        let name = format!("{case}.{key}");
        self.tensors
            .get(&name)
            .unwrap_or_else(|| panic!("no {name} in the reference"))
    }

    fn meta(&self, case: &str, key: &str) -> &str {
        &self.metadata[&format!("{case}.{key}")]
    }
}

fn close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    let scale = want.data().iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    assert_close(what, got.data(), want.data(), TOL, TOL * scale.max(1e-6));
}

fn model(reference: &Reference, case: &str) -> Sequential {
    let arch = Architecture::parse(reference.meta(case, "architecture"), true).unwrap();
    let mut net = arch.build(&mut Rng::new(0)).unwrap();
    let names: Vec<String> = net
        .params()
        .into_iter()
        .map(|(n, _)| format!("param.{n}"))
        .chain(
            net.buffers()
                .into_iter()
                .map(|(n, _)| format!("buffer.{n}")),
        )
        .collect();
    for key in names {
        let (_, name) = key.split_once('.').unwrap();
        if key.ends_with("num_batches_tracked") {
            continue;
        }
        net.set(name, reference.tensor(case, &key).clone()).unwrap();
    }
    net
}

#[test]
fn grad_cam_matches_pytorch() {
    let reference = Reference::open();
    let cases = reference.cases();
    assert_eq!(cases.len(), 6, "{cases:?}");
    for case in &cases {
        let mut net = model(&reference, case);
        let x = reference.tensor(case, "x");
        let logits = net.forward_ref(x, Mode::Eval).unwrap();
        close(
            &format!("{case}: logits"),
            &logits,
            reference.tensor(case, "logits"),
        );

        let layer = reference.meta(case, "layer");
        let class = match reference.meta(case, "class") {
            "" => None,
            k => Some(k.parse().unwrap()),
        };
        let cam = grad_cam(&mut net, x, layer, class).unwrap();
        assert_eq!(
            cam.class.to_string(),
            reference.meta(case, "used"),
            "{case}: class"
        );
        assert_eq!(cam.layer, layer);
        let alpha = Tensor::from_vec(&[cam.weights.len()], cam.weights.clone()).unwrap();
        close(
            &format!("{case}: alpha"),
            &alpha,
            reference.tensor(case, "alpha"),
        );
        close(
            &format!("{case}: cam"),
            &cam.cam,
            reference.tensor(case, "cam"),
        );
        close(
            &format!("{case}: map"),
            &cam.map,
            reference.tensor(case, "map"),
        );
        // The ReLU is exercised: some places of every map are kept.
        assert!(cam.cam.data().iter().any(|&v| v > 0.0), "{case}: all zero");
        // The backward pass left no parameter gradient behind.
        assert!(
            net.params()
                .iter()
                .all(|(_, p)| p.grad().data().iter().all(|&g| g == 0.0)),
            "{case}: gradients left"
        );
    }
}
