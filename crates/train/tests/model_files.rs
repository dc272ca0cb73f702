//! Model files and run directories as read back: from a file or from its bytes alike, and
//! within their size limits whatever the file is.

use std::path::Path;

use ocellus::checkpoint::state_dict;
use ocellus::{zoo, Rng};
use ocellus_data::Normalization;
use ocellus_train::run::{
    load_model, model_from_bytes, read_config, save_model, ModelInfo, MAX_CONFIG_BYTES,
};

#[test]
fn a_model_loads_from_its_bytes_as_from_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("model.safetensors");
    let arch = zoo::model("lenet5", [1, 28, 28], 4).unwrap();
    let info = ModelInfo {
        architecture: arch.clone(),
        normalization: Normalization {
            mean: vec![0.25],
            std: vec![0.5],
        },
        classes: ["a", "b", "c", "d"].map(String::from).to_vec(),
        epoch: 3,
    };
    save_model(&path, &arch.build(&mut Rng::new(5)).unwrap(), &info).unwrap();
    let (from_file, file_info) = load_model(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let (from_bytes, bytes_info) = model_from_bytes(&bytes, &path).unwrap();
    assert_eq!(state_dict(&from_file), state_dict(&from_bytes));
    assert_eq!(file_info.classes, bytes_info.classes);
    assert_eq!(bytes_info.epoch, 3);
    let text = model_from_bytes(&bytes[..bytes.len() / 2], Path::new("half.safetensors"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        text.contains("half.safetensors") && text.contains("not a readable safetensors file"),
        "{text}"
    );
}

#[cfg(unix)]
#[test]
fn a_device_is_not_read_as_a_model() {
    let text = load_model(Path::new("/dev/zero"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        text.contains("/dev/zero") && text.contains("not a regular file"),
        "{text}"
    );
}

#[test]
fn a_run_configuration_larger_than_the_limit_is_refused_from_its_size() {
    let tmp = tempfile::tempdir().unwrap();
    let file = std::fs::File::create(tmp.path().join("config.json")).unwrap();
    file.set_len(MAX_CONFIG_BYTES + 1).unwrap();
    let text = read_config(tmp.path()).unwrap_err().to_string();
    assert!(
        text.contains("config.json") && text.contains("1048577 bytes") && text.contains("1 MiB"),
        "{text}"
    );
}
