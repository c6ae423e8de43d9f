//! The shipped ONNX models under tract: golden vectors (computed by onnxruntime in
//! `models/train.py`) reproduced within their tolerance, and every way a model can be broken
//! rejected at load with the file and key named.

use std::path::{Path, PathBuf};
use vigil_scoring::features::{FeatureConfig, Windows, features_schema};
use vigil_scoring::model::{BUILTIN, Model, ModelSet, ModelsConfig};
use vigil_scoring::{Scorer, ScoringConfig};

fn schema() -> arrow::datatypes::SchemaRef {
    features_schema(&Windows::new(&FeatureConfig::default()))
}

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn load(manifest: &str, onnx: &[u8]) -> Result<Model, String> {
    Model::from_parts(
        manifest,
        "m/model.toml",
        onnx,
        "m/model.onnx",
        &schema(),
        None,
    )
    .map_err(|e| e.to_string())
}

#[derive(serde::Deserialize)]
struct Golden {
    tolerance: f32,
    inputs: Vec<Vec<f32>>,
    outputs: Vec<f32>,
}

#[test]
fn tract_reproduces_the_golden_outputs_of_every_shipped_model() {
    let set = ModelSet::load(&ModelsConfig::default(), &schema()).unwrap();
    assert_eq!(
        set.models.len(),
        BUILTIN.len(),
        "every built-in model loads"
    );
    for b in BUILTIN {
        let model = set
            .models
            .iter()
            .find(|m| m.origin.contains(&format!("/{}/", b.dir)))
            .unwrap();
        let path = models_dir().join(b.dir).join("golden.json");
        let golden: Golden =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(golden.tolerance <= 1e-4, "{}", path.display());
        assert!(!golden.inputs.is_empty());
        assert_eq!(golden.inputs.len(), golden.outputs.len());
        let rows: Vec<f32> = golden.inputs.iter().flatten().copied().collect();
        assert_eq!(rows.len(), golden.inputs.len() * model.width());
        let mut got = Vec::new();
        model.predict(&rows, &mut got).unwrap();
        let mut worst = 0f32;
        for (i, (g, want)) in got.iter().zip(&golden.outputs).enumerate() {
            let d = (g - want).abs();
            assert!(
                d <= golden.tolerance,
                "{} row {i}: tract {g}, onnxruntime {want}",
                b.dir
            );
            worst = worst.max(d);
        }
        // One row at a time (the small plan) gives the same scores as the batch.
        let mut single = Vec::new();
        model.predict(&rows[..model.width()], &mut single).unwrap();
        assert!((single[0] - got[0]).abs() <= 1e-6);
        println!(
            "{}@{}: {} golden rows, max |tract - onnxruntime| = {worst:.2e}",
            model.name(),
            model.version(),
            got.len()
        );
    }
}

fn abuse_parts() -> (String, Vec<u8>) {
    let dir = models_dir().join("abuse");
    (
        std::fs::read_to_string(dir.join("model.toml")).unwrap(),
        std::fs::read(dir.join("model.onnx")).unwrap(),
    )
}

#[test]
fn an_unknown_feature_is_rejected_naming_the_file_and_key() {
    let (manifest, onnx) = abuse_parts();
    let bad = manifest.replacen("\"rate_1m\"", "\"rate_2m\"", 1);
    assert_ne!(bad, manifest);
    let e = load(&bad, &onnx).unwrap_err();
    assert!(
        e.contains("m/model.toml") && e.contains("input.features[") && e.contains("rate_2m"),
        "{e}"
    );
}

#[test]
fn a_manifest_of_the_wrong_width_is_rejected() {
    let (manifest, onnx) = abuse_parts();
    let bad = manifest.replacen("\"rate_1m\",", "", 1);
    assert_ne!(bad, manifest);
    // Without the per-input baselines, which would disagree first.
    let bad = &bad[..bad.find("[explain]").unwrap()];
    let e = load(bad, &onnx).unwrap_err();
    assert!(
        e.contains("m/model.toml: input.features") && e.contains("m/model.onnx takes"),
        "{e}"
    );
}

#[test]
fn a_corrupt_onnx_file_is_rejected() {
    let (manifest, onnx) = abuse_parts();
    let e = load(&manifest, b"this is not a protobuf \xff\xff\xff").unwrap_err();
    assert!(
        e.contains("m/model.onnx") && e.contains("not a valid ONNX"),
        "{e}"
    );
    let e = load(&manifest, &onnx[..onnx.len() / 2]).unwrap_err();
    assert!(e.contains("m/model.onnx"), "{e}");
}

#[test]
fn manifest_mistakes_name_their_key() {
    let (manifest, onnx) = abuse_parts();
    let cases = [
        (
            manifest.replacen("name = \"features\"", "name = \"x\"", 1),
            "input.name",
        ),
        (
            manifest.replacen("name = \"score\"", "name = \"prob\"", 1),
            "output.name",
        ),
        (
            manifest.replacen("[output]", "colour = \"red\"\n[output]", 1),
            "colour",
        ),
        (
            manifest.replacen("baseline = [", "baseline = [1.0, ", 1),
            "explain.baseline",
        ),
        (
            manifest.replacen("[thresholds]", "[thresholds]\nblock = 0.1", 1),
            "thresholds.block",
        ),
        (
            manifest.replacen("fill = {", "fill = { no_such = 1.0,", 1),
            "input.fill.no_such",
        ),
    ];
    for (bad, key) in cases {
        assert_ne!(bad, manifest, "{key}: the edit applies");
        let e = load(&bad, &onnx).unwrap_err();
        assert!(e.contains("m/model.toml") && e.contains(key), "{key}: {e}");
    }
}

#[test]
fn model_directories_and_overrides_are_checked_when_the_scorer_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let (manifest, onnx) = abuse_parts();
    let dir = tmp.path().join("custom");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("model.toml"),
        manifest.replacen("name = \"abuse\"", "name = \"custom\"", 1),
    )
    .unwrap();
    std::fs::write(dir.join("model.onnx"), b"garbage").unwrap();
    let mut cfg = ScoringConfig::default();
    cfg.models.dirs = vec![dir.clone()];
    let e = Scorer::new(&cfg).err().unwrap().to_string();
    assert!(
        e.contains("scoring.models.dirs[0]")
            && e.contains(&dir.join("model.onnx").display().to_string()),
        "{e}"
    );

    std::fs::write(dir.join("model.onnx"), &onnx).unwrap();
    let scorer = Scorer::new(&cfg).unwrap();
    let names: Vec<&str> = scorer.models().models.iter().map(|m| m.name()).collect();
    assert_eq!(names, ["abuse", "anomaly", "custom"]);

    let cfg: ScoringConfig = toml::from_str(
        "[models.overrides.abuse]\nmode = \"monitor\"\nthresholds = { throttle = 0.999 }\n\
         [models.overrides.anomaly]\nenabled = false\n",
    )
    .unwrap();
    let scorer = Scorer::new(&cfg).unwrap();
    let [abuse] = scorer.models().models.as_slice() else {
        panic!("anomaly is disabled");
    };
    assert_eq!(abuse.thresholds.throttle, Some(0.999));
    assert_eq!(abuse.mode, vigil_scoring::model::ModelMode::Monitor);

    let cfg: ScoringConfig = toml::from_str("[models.overrides.abuz]\nenabled = false\n").unwrap();
    let e = Scorer::new(&cfg).err().unwrap().to_string();
    assert!(e.contains("scoring.models.overrides.abuz"), "{e}");
    let e = toml::from_str::<ScoringConfig>("[models]\nbuiltins = false\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("builtins"), "{e}");
    let cfg: ScoringConfig = toml::from_str("[models]\nenabled = false\n").unwrap();
    assert!(Scorer::new(&cfg).unwrap().models().is_empty());
}

#[test]
fn the_built_in_models_share_their_inputs_and_a_changed_fill_parts_them() {
    // The scorer gathers the inputs of models that read the same columns with the same fill
    // values once; the built-in ones do.
    let set = ModelSet::load(&ModelsConfig::default(), &schema()).unwrap();
    assert!(set.models[1].same_inputs(&set.models[0]));
    let (manifest, onnx) = abuse_parts();
    let plain = load(&manifest, &onnx).unwrap();
    assert!(plain.same_inputs(&set.models[0]) || plain.same_inputs(&set.models[1]));
    let refilled = manifest.replacen(
        "fill = { interval_cv = 1.0 }",
        "fill = { interval_cv = 2.0 }",
        1,
    );
    assert_ne!(
        refilled, manifest,
        "the manifest has the fill this test changes"
    );
    let other = load(&refilled, &onnx).unwrap();
    assert!(!other.same_inputs(&plain));
}
