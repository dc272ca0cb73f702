//! A static web page that classifies images in the browser with onnxruntime-web: the
//! model as ONNX with its normalisation inside (so the page feeds images in [0, 1]),
//! `model.json` (name, classes, input shape), `index.html` and `ocellus-web.js`. The
//! script prepares an image as `ocellus predict` does (see its opening comment), so the
//! page shows the probabilities the command-line tool prints.
//!
//! The page loads onnxruntime-web from `node_modules/` beside it — installed with
//! `npm install onnxruntime-web@1.30` in the directory — and nothing from elsewhere.

use prost::Message;
use serde_json::json;

use ocellus::layers::Layer;
use ocellus::Result;

use crate::onnx::{onnx_model, ExportInfo, OnnxOptions, INPUT, OUTPUT};

/// The page.
pub const INDEX_HTML: &str = include_str!("../web/index.html");
/// Its script: image preparation, drawing, drop, inference and the results table.
pub const SCRIPT: &str = include_str!("../web/ocellus-web.js");
/// The onnxruntime-web release the page was written and tested against.
pub const ONNXRUNTIME_WEB: &str = "1.30";

/// The files of the page for `model` named `name`: `(file name, contents)`. Nothing is
/// written; an error names the first layer ONNX cannot express.
pub fn web_files(
    model: &dyn Layer,
    info: &ExportInfo,
    name: &str,
) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let options = OnnxOptions {
        with_normalization: true,
    };
    let onnx = onnx_model(model, info, options)?.encode_to_vec();
    let meta = json!({
        "name": name,
        "classes": info.classes,
        "input": info.input,
        "input_name": INPUT,
        "output_name": OUTPUT,
        "normalization": {"mean": info.mean, "std": info.std, "in_graph": true},
        "onnxruntime_web": ONNXRUNTIME_WEB,
        "ocellus_version": env!("CARGO_PKG_VERSION"),
    });
    let meta = serde_json::to_string_pretty(&meta).expect("JSON values serialise") + "\n";
    Ok(vec![
        ("index.html", INDEX_HTML.as_bytes().to_vec()),
        ("ocellus-web.js", SCRIPT.as_bytes().to_vec()),
        ("model.onnx", onnx),
        ("model.json", meta.into_bytes()),
    ])
}
