//! Loading the PyTorch reference vectors written by `tools/pytorch_reference.py`.

#![allow(dead_code)]

use std::collections::BTreeMap;

use ocellus::Tensor;
use safetensors::SafeTensors;

/// One reference file: named cases, each with settings (JSON) and tensors.
pub struct Reference {
    file: String,
    bytes: Vec<u8>,
    configs: BTreeMap<String, serde_json::Value>,
}

impl Reference {
    /// Opens `tests/reference/<name>.safetensors`.
    pub fn open(name: &str) -> Reference {
        let file = format!(
            "{}/tests/reference/{name}.safetensors",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let (_, metadata) = SafeTensors::read_metadata(&bytes).expect("a safetensors file");
        let configs = metadata
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(case, json)| (case, serde_json::from_str(&json).expect("JSON settings")))
            .collect();
        Reference {
            file,
            bytes,
            configs,
        }
    }

    /// Case names with their settings, in name order.
    pub fn cases(&self) -> impl Iterator<Item = (&String, &serde_json::Value)> {
        self.configs.iter()
    }

    /// Tensor `<case>.<name>`.
    pub fn tensor(&self, case: &str, name: &str) -> Tensor {
        self.try_tensor(case, name)
            .unwrap_or_else(|| panic!("{}: no tensor {case}.{name}", self.file))
    }

    /// Tensor `<case>.<name>`, if stored.
    pub fn try_tensor(&self, case: &str, name: &str) -> Option<Tensor> {
        let st = SafeTensors::deserialize(&self.bytes).expect("a safetensors file");
        let view = st.tensor(&format!("{case}.{name}")).ok()?;
        assert_eq!(view.dtype(), safetensors::Dtype::F32);
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Some(Tensor::from_vec(view.shape(), values).unwrap())
    }
}

/// Reads a `[a, b]` JSON pair.
pub fn pair(v: &serde_json::Value) -> (usize, usize) {
    (
        v[0].as_u64().unwrap() as usize,
        v[1].as_u64().unwrap() as usize,
    )
}

/// Reads a JSON number as usize.
pub fn int(v: &serde_json::Value) -> usize {
    v.as_u64().unwrap() as usize
}

/// The scripts' `formula_values`: `0.5·sin(0.37·i + seed)` for the flat index i, computed
/// in f64 and rounded to f32 — values both sides compute identically.
pub fn formula_values(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let values = (0..n)
        .map(|i| (0.5 * (0.37 * i as f64 + seed as f64).sin()) as f32)
        .collect();
    Tensor::from_vec(shape, values).unwrap()
}
