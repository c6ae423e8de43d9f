//! ONNX models: manifests, loading and validation with tract, batched inference and
//! explanations.
//!
//! A model is a directory holding a manifest (`model.toml`) and an ONNX file. The manifest names
//! the model and its version, the ONNX input tensor and the feature columns that fill it (in
//! order), what to put in place of a missing feature, the output tensor and what it means, the
//! score thresholds of each action, and the baseline used to explain a score:
//!
//! ```toml
//! name = "abuse"
//! version = 1
//! type = "classifier"            # or "anomaly"
//! onnx = "model.onnx"            # relative to the manifest
//! kinds = ["identity", "ip"]     # subject kinds it scores (default: all)
//! weight = 1.0                   # share of the score in the trust score (0 to 1)
//! mode = "enforce"               # or "monitor": actions recorded as monitor, would:<action>
//! ttl_secs = 900                 # TTL of the decisions it causes
//! [input]
//! name = "features"              # float32 [N, len(features)]
//! features = ["kind_ip", "auth_failures_1m", "distinct_identities_1m"]
//! fill = { interval_cv = 1.0 }   # a missing (null) feature's value; unlisted: 0.0
//! [output]
//! name = "score"                 # float32 [N, 1] (or [N])
//! meaning = "probability that the subject is attacking"
//! [thresholds]                   # the strictest action whose threshold the score reaches
//! monitor = 0.5
//! step_up = 0.9
//! throttle = 0.98
//! [explain]
//! baseline = [0.0, 0.0, 0.0]     # per input; default: the fill values
//! ```
//!
//! Inputs are feature names of the catalogue (for the configured windows) or `kind_identity`,
//! `kind_session`, `kind_ip`, `kind_api_key` (1.0 on rows of that subject kind, else 0.0).
//!
//! Guarantees: a model whose manifest does not parse, names an unknown feature, disagrees with
//! the ONNX graph (input width, tensor names, output shape) or whose ONNX file tract cannot
//! load is rejected when the scorer is built, with an error naming the file and the key. No
//! NaN reaches a model: nulls and non-finite values are replaced by the fill value. Inference
//! runs over whole batches of feature rows (plans compiled for [`SMALL_BATCH`] and
//! [`BATCH`] rows; the last chunk is padded).
//!
//! Explanations are by occlusion: each input in turn is set to its baseline value and the
//! drop in the score is its contribution. For a linear model on standardized inputs this ranks
//! features as coefficient × standardized value does; for others it is a local approximation
//! that ignores interactions between features. `kind_*` inputs are never reported.

use crate::ScoringError;
use arrow::array::{Array, Float64Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use tract_onnx::pb::tensor_shape_proto::dimension::Value as Dim;
use tract_onnx::pb::type_proto::Value as TypeValue;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::element_wise::{ElementWiseMiniOp, ElementWiseOp};
use tract_onnx::tract_core::ops::math::{Add, Div, Ln, Mul, Sub};
use vigil_enforce::{Action, SubjectKind};

/// Rows per inference call for large rounds.
pub const BATCH: usize = 256;
/// Rows per inference call for small rounds (and explanations of narrow models).
pub const SMALL_BATCH: usize = 16;

/// A model shipped inside the binary: `models/<dir>/model.toml` and its ONNX file.
pub struct BuiltinModel {
    pub dir: &'static str,
    pub manifest: &'static str,
    pub onnx: &'static [u8],
}

/// The models vigil ships, trained by `models/train.py`.
pub const BUILTIN: &[BuiltinModel] = &[
    BuiltinModel {
        dir: "abuse",
        manifest: include_str!("../../models/abuse/model.toml"),
        onnx: include_bytes!("../../models/abuse/model.onnx"),
    },
    BuiltinModel {
        dir: "anomaly",
        manifest: include_str!("../../models/anomaly/model.toml"),
        onnx: include_bytes!("../../models/anomaly/model.onnx"),
    },
];

/// `[scoring.models]` in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    /// Run models at all. Default true.
    pub enabled: bool,
    /// Load the models built into the binary (`abuse`, `anomaly`). Default true.
    pub builtin: bool,
    /// More model directories, each with a `model.toml`. Default none.
    pub dirs: Vec<PathBuf>,
    /// Per-model settings by model name: `[scoring.models.overrides.abuse]`.
    pub overrides: BTreeMap<String, ModelOverride>,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            builtin: true,
            dirs: Vec::new(),
            overrides: BTreeMap::new(),
        }
    }
}

/// `[scoring.models.overrides.NAME]`: what the deployment changes in a model's manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelOverride {
    /// `false` leaves the model out. Default true.
    pub enabled: Option<bool>,
    /// `enforce` or `monitor` (shadow mode for this model). Default: the manifest's.
    pub mode: Option<ModelMode>,
    /// Thresholds replacing the manifest's, key by key.
    pub thresholds: Thresholds,
    /// TTL of the decisions the model causes. Default: the manifest's.
    pub ttl_secs: Option<u64>,
    /// Share of the model's score in the trust score. Default: the manifest's.
    pub weight: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelMode {
    #[default]
    Enforce,
    /// Shadow mode: decisions the model causes are recorded as `monitor`.
    Monitor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelType {
    /// Supervised: the score estimates the probability of abuse.
    Classifier,
    /// Unsupervised: the score says how unusual the row is.
    Anomaly,
}

/// Score at or above which each action applies; absent: never.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    pub monitor: Option<f64>,
    pub step_up: Option<f64>,
    pub throttle: Option<f64>,
    pub block: Option<f64>,
}

impl Thresholds {
    fn entries(&self) -> [(Action, &'static str, Option<f64>); 4] {
        [
            (Action::Monitor, "monitor", self.monitor),
            (Action::StepUp, "step_up", self.step_up),
            (Action::Throttle, "throttle", self.throttle),
            (Action::Block, "block", self.block),
        ]
    }

    /// The strictest action whose threshold `score` reaches.
    pub fn action(&self, score: f64) -> Option<Action> {
        self.entries()
            .into_iter()
            .rev()
            .find(|(_, _, t)| t.is_some_and(|t| score >= t))
            .map(|(a, _, _)| a)
    }

    fn overlay(mut self, o: &Thresholds) -> Self {
        self.monitor = o.monitor.or(self.monitor);
        self.step_up = o.step_up.or(self.step_up);
        self.throttle = o.throttle.or(self.throttle);
        self.block = o.block.or(self.block);
        self
    }

    /// Finite, and a stricter action never needs a lower score than a weaker one.
    fn validate(&self) -> Result<(), (String, String)> {
        let mut last: Option<(&str, f64)> = None;
        for (_, key, t) in self.entries() {
            let Some(t) = t else { continue };
            if !t.is_finite() {
                return Err((
                    format!("thresholds.{key}"),
                    "must be a finite number".into(),
                ));
            }
            if let Some((weaker, lt)) = last
                && t < lt
            {
                return Err((
                    format!("thresholds.{key}"),
                    format!("{t} is below thresholds.{weaker} = {lt}"),
                ));
            }
            last = Some((key, t));
        }
        Ok(())
    }
}

fn all_kinds() -> Vec<SubjectKind> {
    crate::features::KINDS.to_vec()
}

fn one() -> f64 {
    1.0
}

/// `model.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: u32,
    #[serde(rename = "type")]
    pub model_type: ModelType,
    #[serde(default)]
    pub description: String,
    /// ONNX file, relative to the manifest's directory.
    pub onnx: String,
    #[serde(default = "all_kinds")]
    pub kinds: Vec<SubjectKind>,
    #[serde(default = "one")]
    pub weight: f64,
    #[serde(default)]
    pub mode: ModelMode,
    pub ttl_secs: u64,
    pub input: InputSpec,
    pub output: OutputSpec,
    #[serde(default)]
    pub thresholds: Thresholds,
    #[serde(default)]
    pub explain: ExplainSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    pub features: Vec<String>,
    #[serde(default)]
    pub fill: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: String,
    #[serde(default)]
    pub meaning: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainSpec {
    /// Value each input is set to when measuring its contribution; default the fill values.
    #[serde(default)]
    pub baseline: Vec<f64>,
    /// Contributions reported per decision. Default 3.
    #[serde(default = "three")]
    pub top: usize,
}

fn three() -> usize {
    3
}

impl Default for ExplainSpec {
    fn default() -> Self {
        Self {
            baseline: Vec::new(),
            top: 3,
        }
    }
}

/// Where one model input comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    /// Column index in the feature batch.
    Column(usize),
    /// 1.0 on rows of this kind.
    Kind(SubjectKind),
}

type Plan = TypedSimplePlan<TypedModel>;

/// A loaded, validated model.
pub struct Model {
    pub manifest: Manifest,
    /// The manifest's path (or `builtin:<dir>/model.toml`), for messages.
    pub origin: String,
    /// Thresholds, mode, TTL and weight after the config's override.
    pub thresholds: Thresholds,
    pub mode: ModelMode,
    pub ttl_secs: u64,
    pub weight: f64,
    sources: Vec<Source>,
    fill: Vec<f32>,
    baseline: Vec<f32>,
    small: Plan,
    large: Plan,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.manifest.name)
            .field("version", &self.manifest.version)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

fn model_err(file: &str, key: &str, message: impl Into<String>) -> ScoringError {
    let key = if key.is_empty() {
        file.to_string()
    } else {
        format!("{file}: {key}")
    };
    ScoringError::config(key, message)
}

const KIND_INPUTS: [(&str, SubjectKind); 4] = [
    ("kind_identity", SubjectKind::Identity),
    ("kind_session", SubjectKind::Session),
    ("kind_ip", SubjectKind::Ip),
    ("kind_api_key", SubjectKind::ApiKey),
];

impl Model {
    /// Loads a model from its manifest text and ONNX bytes, validated against the feature
    /// `schema`; `manifest_origin` and `onnx_origin` name the files in errors.
    pub fn from_parts(
        manifest_text: &str,
        manifest_origin: &str,
        onnx: &[u8],
        onnx_origin: &str,
        schema: &SchemaRef,
        over: Option<&ModelOverride>,
    ) -> Result<Self, ScoringError> {
        let m: Manifest = toml::from_str(manifest_text)
            .map_err(|e| model_err(manifest_origin, "", e.to_string()))?;
        let bad = |key: &str, msg: String| model_err(manifest_origin, key, msg);
        if m.name.is_empty()
            || !m
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(bad(
                "name",
                format!("`{}`: use letters, digits, `_` or `-`", m.name),
            ));
        }
        if m.kinds.is_empty() {
            return Err(bad("kinds", "name at least one subject kind".into()));
        }
        if m.input.features.is_empty() {
            return Err(bad("input.features", "name at least one feature".into()));
        }
        let mut sources = Vec::with_capacity(m.input.features.len());
        let mut seen = HashSet::new();
        for (i, f) in m.input.features.iter().enumerate() {
            if !seen.insert(f.as_str()) {
                return Err(bad(
                    &format!("input.features[{i}]"),
                    format!("`{f}` is listed twice"),
                ));
            }
            let src = if let Some((_, k)) = KIND_INPUTS.iter().find(|(n, _)| n == f) {
                Source::Kind(*k)
            } else {
                match schema.index_of(f) {
                    Ok(c) if c >= 3 => Source::Column(c),
                    _ => {
                        return Err(bad(
                            &format!("input.features[{i}]"),
                            format!(
                                "unknown feature `{f}` (not in the feature catalogue for the \
                                 configured windows, nor a kind_* input)"
                            ),
                        ));
                    }
                }
            };
            sources.push(src);
        }
        for (name, v) in &m.input.fill {
            if !seen.contains(name.as_str()) {
                return Err(bad(
                    &format!("input.fill.{name}"),
                    "not one of input.features".into(),
                ));
            }
            if !v.is_finite() {
                return Err(bad(&format!("input.fill.{name}"), "must be finite".into()));
            }
        }
        let fill: Vec<f32> = m
            .input
            .features
            .iter()
            .map(|f| m.input.fill.get(f).copied().unwrap_or(0.0) as f32)
            .collect();
        let baseline: Vec<f32> = if m.explain.baseline.is_empty() {
            fill.clone()
        } else if m.explain.baseline.len() != fill.len() {
            return Err(bad(
                "explain.baseline",
                format!(
                    "has {} values for {} input features",
                    m.explain.baseline.len(),
                    fill.len()
                ),
            ));
        } else if m.explain.baseline.iter().any(|v| !v.is_finite()) {
            return Err(bad("explain.baseline", "values must be finite".into()));
        } else {
            m.explain.baseline.iter().map(|v| *v as f32).collect()
        };

        let over = over.cloned().unwrap_or_default();
        let thresholds = m.thresholds.overlay(&over.thresholds);
        m.thresholds.validate().map_err(|(k, msg)| bad(&k, msg))?;
        thresholds.validate().map_err(|(k, msg)| {
            ScoringError::config(format!("scoring.models.overrides.{}.{k}", m.name), msg)
        })?;
        let weight = over.weight.unwrap_or(m.weight);
        if !(0.0..=1.0).contains(&weight) {
            let key = if over.weight.is_some() {
                format!("scoring.models.overrides.{}.weight", m.name)
            } else {
                format!("{manifest_origin}: weight")
            };
            return Err(ScoringError::config(key, "must be between 0 and 1"));
        }

        let width = fill.len();
        let (small, large) = compile(onnx, onnx_origin, manifest_origin, &m, width)?;
        Ok(Self {
            mode: over.mode.unwrap_or(m.mode),
            ttl_secs: over.ttl_secs.unwrap_or(m.ttl_secs),
            thresholds,
            weight,
            origin: manifest_origin.to_string(),
            manifest: m,
            sources,
            fill,
            baseline,
            small,
            large,
        })
    }

    /// Loads `dir/model.toml` and the ONNX file it names.
    pub fn from_dir(
        dir: &Path,
        schema: &SchemaRef,
        overrides: &BTreeMap<String, ModelOverride>,
    ) -> Result<Self, ScoringError> {
        let manifest_path = dir.join("model.toml");
        let origin = manifest_path.display().to_string();
        let text = std::fs::read_to_string(&manifest_path)
            .map_err(|e| model_err(&origin, "", format!("cannot read: {e}")))?;
        let name = toml::from_str::<toml::Table>(&text)
            .ok()
            .and_then(|t| t.get("name").and_then(|v| v.as_str()).map(str::to_string));
        let onnx_name = toml::from_str::<toml::Table>(&text)
            .ok()
            .and_then(|t| t.get("onnx").and_then(|v| v.as_str()).map(str::to_string))
            .unwrap_or_else(|| "model.onnx".into());
        let onnx_path = dir.join(&onnx_name);
        let onnx_origin = onnx_path.display().to_string();
        let bytes = std::fs::read(&onnx_path)
            .map_err(|e| model_err(&origin, "onnx", format!("cannot read {onnx_origin}: {e}")))?;
        let over = name.as_deref().and_then(|n| overrides.get(n));
        Self::from_parts(&text, &origin, &bytes, &onnx_origin, schema, over)
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn version(&self) -> u32 {
        self.manifest.version
    }

    /// Number of inputs per row.
    pub fn width(&self) -> usize {
        self.fill.len()
    }

    /// The input feature names, in order.
    pub fn inputs(&self) -> &[String] {
        &self.manifest.input.features
    }

    pub fn scores_kind(&self, kind: SubjectKind) -> bool {
        self.manifest.kinds.contains(&kind)
    }

    /// Whether `other` gathers exactly the same input rows from a feature batch (the same
    /// columns in the same order, the same fill values), so one gathering serves both.
    pub fn same_inputs(&self, other: &Model) -> bool {
        self.sources == other.sources && self.fill == other.fill
    }

    /// Appends the model's input rows for a feature batch of subjects of `kind` to `rows`
    /// (row-major, [`Model::width`] values per row), missing values filled.
    pub fn gather(
        &self,
        kind: SubjectKind,
        batch: &RecordBatch,
        rows: &mut Vec<f32>,
    ) -> Result<(), ScoringError> {
        enum Input<'a> {
            Constant(f32),
            Column(&'a Float64Array),
        }
        let n = batch.num_rows();
        let w = self.width();
        let inputs = self
            .sources
            .iter()
            .map(|src| match *src {
                Source::Kind(k) => Ok(Input::Constant(f32::from(u8::from(k == kind)))),
                Source::Column(c) => batch
                    .columns()
                    .get(c)
                    .and_then(|a| a.as_any().downcast_ref::<Float64Array>())
                    .map(Input::Column)
                    .ok_or_else(|| {
                        ScoringError::Schema(format!(
                            "feature column {c} of model `{}` is missing or not Float64",
                            self.name()
                        ))
                    }),
            })
            .collect::<Result<Vec<Input>, _>>()?;
        let base = rows.len();
        rows.resize(base + n * w, 0.0);
        // 64 rows at a time, so that the rows being written stay in the L1 cache while each
        // column is read into them
        for start in (0..n).step_by(64) {
            let block = start..(start + 64).min(n);
            for (j, input) in inputs.iter().enumerate() {
                let at = |r: usize| base + r * w + j;
                match input {
                    Input::Constant(v) => block.clone().for_each(|r| rows[at(r)] = *v),
                    Input::Column(col) => {
                        for r in block.clone() {
                            let v = if col.is_valid(r) {
                                col.value(r) as f32
                            } else {
                                f32::NAN
                            };
                            rows[at(r)] = if v.is_finite() { v } else { self.fill[j] };
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Scores `rows` (row-major, [`Model::width`] values each) in batches; one score per row.
    pub fn predict(&self, rows: &[f32], out: &mut Vec<f32>) -> Result<(), ScoringError> {
        let w = self.width();
        let n = rows.len() / w;
        out.reserve(n);
        let mut done = 0;
        while done < n {
            let left = n - done;
            let (plan, cap) = if left <= SMALL_BATCH {
                (&self.small, SMALL_BATCH)
            } else {
                (&self.large, BATCH)
            };
            let take = left.min(cap);
            let mut input = vec![0f32; cap * w];
            input[..take * w].copy_from_slice(&rows[done * w..(done + take) * w]);
            let tensor = Tensor::from_shape(&[cap, w], &input).map_err(|e| self.run_err(e))?;
            let result = run_cleared(plan, tvec!(tensor.into()));
            let result = result.map_err(|e| self.run_err(e))?;
            let scores = result
                .first()
                .ok_or_else(|| self.run_err("no output"))?
                .as_slice::<f32>()
                .map_err(|e| self.run_err(e))?;
            out.extend(
                scores[..take]
                    .iter()
                    .map(|s| if s.is_finite() { *s } else { 0.0 }),
            );
            done += take;
        }
        Ok(())
    }

    fn run_err(&self, e: impl std::fmt::Display) -> ScoringError {
        ScoringError::Schema(format!("model {}: inference failed: {e}", self.origin))
    }

    /// The inputs that raised `score` most for one row: `(feature, contribution)`, at most
    /// `explain.top` of them, largest first, positive contributions only.
    pub fn explain(&self, row: &[f32], score: f32) -> Result<Vec<(&str, f32)>, ScoringError> {
        let w = self.width();
        let candidates: Vec<usize> = (0..w)
            .filter(|j| {
                matches!(self.sources[*j], Source::Column(_)) && row[*j] != self.baseline[*j]
            })
            .collect();
        if candidates.is_empty() || self.manifest.explain.top == 0 {
            return Ok(Vec::new());
        }
        let mut rows = Vec::with_capacity(candidates.len() * w);
        for &j in &candidates {
            rows.extend_from_slice(row);
            let at = rows.len() - w + j;
            rows[at] = self.baseline[j];
        }
        let mut occluded = Vec::with_capacity(candidates.len());
        self.predict(&rows, &mut occluded)?;
        let mut contrib: Vec<(&str, f32)> = candidates
            .iter()
            .zip(occluded)
            .map(|(&j, s)| (self.manifest.input.features[j].as_str(), score - s))
            .filter(|(_, c)| *c > 0.0)
            .collect();
        contrib.sort_by(|a, b| b.1.total_cmp(&a.1));
        contrib.truncate(self.manifest.explain.top);
        Ok(contrib)
    }
}

/// Runs `plan` node by node, clearing the upper halves of the vector registers before the
/// run and after each node ([`clear_upper_vector_state`]): a matrix product leaves them dirty,
/// and the element-wise nodes after it (`Recip`, `Mul`, `Max`, `Min`, `Square` and the packing
/// of the next product's input, in the anomaly model) are legacy-SSE loops. Measured with both
/// built-in models on 2,560 rows (release build): 1,014 ns per row cleared only around the
/// run, 872 cleared after each node.
fn run_cleared(plan: &Plan, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
    clear_upper_vector_state();
    let mut state = SimpleState::new(plan)?;
    state.run_plan_with_eval(inputs, |session, op_state, node, input| {
        let out = tract_onnx::tract_core::plan::eval(session, op_state, node, input);
        clear_upper_vector_state();
        out
    })
}

/// Zeroes the upper halves of the vector registers (`vzeroupper`) on x86-64 CPUs with AVX.
///
/// tract's AVX-512 matrix kernels return with those halves dirty. Until they are cleared,
/// every legacy-SSE instruction that follows pays for the AVX/SSE state transition: tract's
/// own element-wise loops (`Ln`, `Recip`) and, after the run, the rest of the scoring thread
/// (which this crate compiles for baseline x86-64, SSE2). Measured on this project's 2-core
/// AVX-512 machine: a loop of `f32::ln` over a model's 256 × 65 inputs took 2.07 ms after a
/// model run instead of 0.15 ms, and a 256-row run of either built-in model 2.2 ms instead of
/// 0.21 ms (debug build). [`run_cleared`] clears before a run and after each of its nodes.
#[allow(unsafe_code)]
fn clear_upper_vector_state() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX (checked above), and `vzeroupper` changes only bits 128 and
        // up of the vector registers, which hold no value of this (SSE2-compiled) caller.
        unsafe { std::arch::x86_64::_mm256_zeroupper() }
    }
}

/// The natural logarithm of every element, in place: tract's `Ln` with a logarithm that the
/// compiler vectorizes. tract's own calls `f32::ln` (the C library's `logf`) once per element;
/// both built-in models take the logarithm of every input, and that call was a tenth of the
/// scoring thread (`perf`, whole replay of a million simulated lines). Other element types go
/// to tract's `Ln`.
#[derive(Debug, Clone)]
struct VectorLn;

impl ElementWiseMiniOp for VectorLn {
    fn name(&self) -> String {
        "VectorLn".into()
    }

    fn eval_in_place(&self, t: &mut Tensor, out_dt: Option<DatumType>) -> TractResult<()> {
        if t.datum_type() == f32::datum_type() && out_dt.is_none_or(|d| d == f32::datum_type()) {
            ln_in_place(t.as_slice_mut::<f32>()?);
            Ok(())
        } else {
            Ln {}.eval_in_place(t, out_dt)
        }
    }

    fn same_as(&self, other: &dyn ElementWiseMiniOp) -> bool {
        other.is::<VectorLn>()
    }
}

/// Replaces tract's `Ln` nodes in `model` by [`VectorLn`].
fn vector_ln(model: &mut TypedModel) {
    for node in &mut model.nodes {
        if node
            .op_as::<ElementWiseOp>()
            .is_some_and(|op| op.0.is::<Ln>() && op.1.is_none())
        {
            node.op = Box::new(ElementWiseOp(Box::new(VectorLn), None));
        }
    }
}

/// What a [`RowOp`] does with each value `x` and the row's value `r` for its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowKind {
    Add,
    /// `x - r`
    Sub,
    /// `r - x`
    SubFrom,
    Mul,
    /// `x / r`
    Div,
    /// `r / x`
    DivInto,
}

/// A binary `Add`, `Sub`, `Mul` or `Div` of a `[.., K]` input and a constant row of `K`
/// values, as one element-wise op holding the row. tract optimizes such ops only when they
/// cover more than 32 values and, for a row, when `K` is a multiple of the vector width;
/// the others run through its generic broadcasting loop, whose fixed cost per call
/// dominates on small tensors. In the built-in models these are the ops on the `[N, 1]`
/// outputs (the abuse model's calibration after its sigmoid, the anomaly score's last
/// scaling): 4.8 % of the samples of a whole replay (`perf`). The same IEEE operations in
/// the same order: the results are the same bits.
#[derive(Debug, Clone)]
struct RowOp {
    kind: RowKind,
    row: Arc<[f32]>,
}

impl ElementWiseMiniOp for RowOp {
    fn name(&self) -> String {
        format!("Row{:?}", self.kind)
    }

    fn eval_in_place(&self, t: &mut Tensor, out_dt: Option<DatumType>) -> TractResult<()> {
        let k = self.row.len();
        if t.datum_type() != f32::datum_type()
            || out_dt.is_some_and(|d| d != f32::datum_type())
            || t.shape().last() != Some(&k)
        {
            tract_onnx::tract_core::internal::bail!(
                "{} takes f32 [.., {k}], not {:?} {:?}",
                self.name(),
                t.datum_type(),
                t.shape()
            );
        }
        let xs = t.as_slice_mut::<f32>()?;
        let row = &self.row[..];
        // one loop per kind, so that each vectorizes
        macro_rules! rows {
            ($f:expr) => {
                for values in xs.chunks_exact_mut(k) {
                    for (x, r) in values.iter_mut().zip(row) {
                        *x = $f(*x, *r);
                    }
                }
            };
        }
        match self.kind {
            RowKind::Add => rows!(|x: f32, r: f32| x + r),
            RowKind::Sub => rows!(|x: f32, r: f32| x - r),
            RowKind::SubFrom => rows!(|x: f32, r: f32| r - x),
            RowKind::Mul => rows!(|x: f32, r: f32| x * r),
            RowKind::Div => rows!(|x: f32, r: f32| x / r),
            RowKind::DivInto => rows!(|x: f32, r: f32| r / x),
        }
        Ok(())
    }

    fn same_as(&self, other: &dyn ElementWiseMiniOp) -> bool {
        other
            .downcast_ref::<RowOp>()
            .is_some_and(|o| o.kind == self.kind && o.row == self.row)
    }
}

/// Replaces each f32 `Add`, `Sub`, `Mul` or `Div` node of `model` whose one input is a
/// constant row (shape `[1, .., K]` or `[K]`) broadcast over the other's last axis (`K`) by a
/// [`RowOp`]; the other shapes are left to tract.
fn row_ops(model: &mut TypedModel) -> TractResult<()> {
    'patched: loop {
        for id in model.eval_order()? {
            let node = &model.nodes[id];
            let Some(op) = node.op_as::<TypedBinOp>() else {
                continue;
            };
            if op.1.is_some() || node.inputs.len() != 2 {
                continue;
            }
            let facts = model.node_input_facts(id)?;
            let out = model.outlet_fact(OutletId::new(id, 0))?;
            for (c, x) in [(1, 0), (0, 1)] {
                let (Some(row), fx) = (facts[c].konst.clone(), facts[x]) else {
                    continue;
                };
                let Some(shape) = fx.shape.as_concrete() else {
                    continue;
                };
                let Some(&k) = shape.last() else {
                    continue;
                };
                let row_shape = row.shape();
                let broadcast_row = row.datum_type() == f32::datum_type()
                    && row.len() == k
                    && row_shape.len() <= shape.len()
                    && row_shape.last() == Some(&k)
                    && row_shape[..row_shape.len() - 1].iter().all(|d| *d == 1);
                if fx.datum_type != f32::datum_type()
                    || out.datum_type != f32::datum_type()
                    || out.shape.as_concrete() != Some(shape)
                    || !broadcast_row
                {
                    continue;
                }
                let first = x == 0;
                let kind = if op.0.is::<Add>() {
                    RowKind::Add
                } else if op.0.is::<Sub>() {
                    if first {
                        RowKind::Sub
                    } else {
                        RowKind::SubFrom
                    }
                } else if op.0.is::<Mul>() {
                    RowKind::Mul
                } else if op.0.is::<Div>() {
                    if first {
                        RowKind::Div
                    } else {
                        RowKind::DivInto
                    }
                } else {
                    continue;
                };
                let row: Arc<[f32]> = row.as_slice::<f32>()?.into();
                let new = ElementWiseOp(Box::new(RowOp { kind, row }), None);
                let input = node.inputs[x];
                let patch = TypedModelPatch::replace_single_op(model, node, &[input], new)?;
                drop(facts);
                patch.apply(model)?;
                continue 'patched;
            }
        }
        return Ok(());
    }
}

/// `ln(x)` for each `x` of `xs`, within one unit in the last place; as `f32::ln` gives it for
/// zero, negative, infinite, NaN and subnormal values.
fn ln_in_place(xs: &mut [f32]) {
    let normal = |v: f32| (f32::MIN_POSITIVE..f32::INFINITY).contains(&v);
    // a fold, not `all`, so that the check vectorizes too
    if xs.iter().fold(true, |all, &v| all & normal(v)) {
        for x in xs.iter_mut() {
            *x = ln_normal(*x);
        }
    } else {
        for x in xs.iter_mut() {
            *x = if normal(*x) { ln_normal(*x) } else { x.ln() };
        }
    }
}

/// `ln(v)` for a positive, normal, finite `v`, within one unit in the last place, without a
/// branch or a table (so a loop of it runs four values to an instruction).
///
/// `v = 2^k (1 + f)` with `1 + f` in [sqrt(1/2), sqrt(2)), and `ln(1 + f) = 2 atanh(s)` for
/// `s = f / (2 + f)`, which is `f - f^2/2 + s (f^2/2 + R(s^2))` with `R` a polynomial: the
/// reduction and the minimax coefficients of FreeBSD's `e_logf.c`.
#[inline(always)]
fn ln_normal(v: f32) -> f32 {
    const SQRT_HALF: i32 = 0x3f35_04f3; // the bits of sqrt(1/2) as an f32
    // as bit patterns, exactly: ln 2 split in a high part with trailing zero bits and the rest
    const LN2_HI: f32 = f32::from_bits(0x3f31_7180);
    const LN2_LO: f32 = f32::from_bits(0x3717_f7d1);
    const LG1: f32 = f32::from_bits(0x3f2a_aaaa);
    const LG2: f32 = f32::from_bits(0x3ecc_ce13);
    const LG3: f32 = f32::from_bits(0x3e91_e9ee);
    const LG4: f32 = f32::from_bits(0x3e78_9e26);
    let bits = v.to_bits() as i32 - SQRT_HALF;
    let k = (bits >> 23) as f32;
    let f = f32::from_bits(((bits & 0x007f_ffff) + SQRT_HALF) as u32) - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let r = z * (LG1 + w * LG3) + w * (LG2 + w * LG4);
    let half_f2 = 0.5 * f * f;
    s * (half_f2 + r) + k * LN2_LO - half_f2 + f + k * LN2_HI
}

/// Checks the ONNX graph against the manifest and compiles the two batch plans.
fn compile(
    onnx: &[u8],
    onnx_origin: &str,
    manifest_origin: &str,
    m: &Manifest,
    width: usize,
) -> Result<(Plan, Plan), ScoringError> {
    let framework = tract_onnx::onnx();
    let proto = framework
        .proto_model_for_read(&mut &onnx[..])
        .map_err(|e| model_err(onnx_origin, "", format!("not a valid ONNX model: {e}")))?;
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| model_err(onnx_origin, "", "not a valid ONNX model: no graph"))?;
    let initialized: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !initialized.contains(i.name.as_str()))
        .collect();
    let [input] = inputs.as_slice() else {
        return Err(model_err(
            onnx_origin,
            "",
            format!("has {} inputs; vigil feeds exactly one", inputs.len()),
        ));
    };
    if input.name != m.input.name {
        return Err(model_err(
            manifest_origin,
            "input.name",
            format!(
                "`{}`, but the ONNX graph's input is `{}`",
                m.input.name, input.name
            ),
        ));
    }
    let dims = declared_dims(input);
    if let Some(dims) = &dims {
        if dims.len() != 2 {
            return Err(model_err(
                onnx_origin,
                "",
                format!(
                    "input `{}` has rank {}; expected [N, features]",
                    input.name,
                    dims.len()
                ),
            ));
        }
        if let Some(k) = dims[1]
            && k != width as i64
        {
            return Err(model_err(
                manifest_origin,
                "input.features",
                format!("lists {width} features but {onnx_origin} takes {k} inputs per row"),
            ));
        }
    }
    let Some(out_index) = graph.output.iter().position(|o| o.name == m.output.name) else {
        let names: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
        return Err(model_err(
            manifest_origin,
            "output.name",
            format!(
                "`{}` is not an output of the graph ({names:?})",
                m.output.name
            ),
        ));
    };
    let mut plans = Vec::with_capacity(2);
    for rows in [SMALL_BATCH, BATCH] {
        let model = framework
            .model_for_proto_model(&proto)
            .and_then(|model| model.with_input_fact(0, f32::fact([rows, width]).into()))
            .and_then(|model| model.into_optimized())
            .map_err(|e| model_err(onnx_origin, "", format!("tract cannot load it: {e:#}")))?;
        let mut model = model;
        vector_ln(&mut model);
        row_ops(&mut model)
            .map_err(|e| model_err(onnx_origin, "", format!("tract cannot load it: {e:#}")))?;
        let fact = model
            .output_fact(out_index)
            .map_err(|e| model_err(onnx_origin, "", format!("{e}")))?;
        let shape = fact.shape.as_concrete().map(<[usize]>::to_vec);
        let ok_shape = matches!(shape.as_deref(), Some([r, 1]) | Some([r]) if *r == rows);
        if fact.datum_type != f32::datum_type() || !ok_shape {
            return Err(model_err(
                onnx_origin,
                "",
                format!(
                    "output `{}` is {:?} {:?} for {rows} rows; expected float32 [N, 1]",
                    m.output.name, fact.datum_type, fact.shape
                ),
            ));
        }
        let model = if out_index == 0 && model.outputs.len() == 1 {
            model
        } else {
            let outlet = model.outputs[out_index];
            let mut model = model;
            model
                .set_output_outlets(&[outlet])
                .map_err(|e| model_err(onnx_origin, "", format!("{e}")))?;
            model
        };
        plans.push(
            model
                .into_runnable()
                .map_err(|e| model_err(onnx_origin, "", format!("tract cannot plan it: {e}")))?,
        );
    }
    let large = plans.pop().expect("two plans");
    let small = plans.pop().expect("two plans");
    Ok((small, large))
}

/// The declared dimensions of a graph input (`None` per symbolic dimension), when declared.
fn declared_dims(input: &tract_onnx::pb::ValueInfoProto) -> Option<Vec<Option<i64>>> {
    let TypeValue::TensorType(t) = input.r#type.as_ref()?.value.as_ref()?;
    let shape = t.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .map(|d| match d.value {
                Some(Dim::DimValue(v)) => Some(v),
                _ => None,
            })
            .collect(),
    )
}

/// The models the scorer runs.
#[derive(Debug, Default)]
pub struct ModelSet {
    pub models: Vec<Model>,
}

impl ModelSet {
    /// Loads the configured models for the feature `schema`: the built-in ones (unless
    /// disabled), then every configured directory. Names must be unique; overrides must name a
    /// loaded model.
    pub fn load(cfg: &ModelsConfig, schema: &SchemaRef) -> Result<Self, ScoringError> {
        let mut models: Vec<Model> = Vec::new();
        if cfg.enabled {
            if cfg.builtin {
                for b in BUILTIN {
                    let origin = format!("builtin:models/{}/model.toml", b.dir);
                    let onnx_origin = format!("builtin:models/{}/model.onnx", b.dir);
                    let name = toml::from_str::<toml::Table>(b.manifest)
                        .ok()
                        .and_then(|t| t.get("name").and_then(|v| v.as_str()).map(str::to_string));
                    let over = name.as_deref().and_then(|n| cfg.overrides.get(n));
                    models.push(Model::from_parts(
                        b.manifest,
                        &origin,
                        b.onnx,
                        &onnx_origin,
                        schema,
                        over,
                    )?);
                }
            }
            for (i, dir) in cfg.dirs.iter().enumerate() {
                let m = Model::from_dir(dir, schema, &cfg.overrides).map_err(|e| match e {
                    ScoringError::Config { key, message } => ScoringError::Config {
                        key: format!("scoring.models.dirs[{i}] -> {key}"),
                        message,
                    },
                    other => other,
                })?;
                if let Some(prev) = models.iter().find(|p| p.name() == m.name()) {
                    return Err(ScoringError::config(
                        format!("scoring.models.dirs[{i}]"),
                        format!(
                            "model `{}` ({}) is already loaded from {}",
                            m.name(),
                            m.origin,
                            prev.origin
                        ),
                    ));
                }
                models.push(m);
            }
        }
        for name in cfg.overrides.keys() {
            let known = models.iter().any(|m| m.name() == name)
                || (cfg.builtin && BUILTIN.iter().any(|b| b.dir == name));
            if !known && cfg.enabled {
                return Err(ScoringError::config(
                    format!("scoring.models.overrides.{name}"),
                    "no model of that name is loaded",
                ));
            }
        }
        models.retain(|m| {
            cfg.overrides
                .get(m.name())
                .and_then(|o| o.enabled)
                .unwrap_or(true)
        });
        Ok(Self { models })
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The distance from `got` to `exact`, in units of the last place of `exact` as an f32.
    fn ulps(got: f32, exact: f64) -> f64 {
        let e = exact as f32;
        let ulp = f64::from(f32::from_bits(e.abs().to_bits() + 1) - e.abs());
        (f64::from(got) - exact).abs() / ulp
    }

    #[test]
    fn the_vector_logarithm_is_within_one_ulp() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        // every binade of the normal range, values around 1, and what features hold
        let mut xs: Vec<f32> = (0..200_000)
            .map(|_| f32::from_bits(rng.random_range(0x0080_0000..0x7f80_0000u32)))
            .collect();
        xs.extend((0..100_000).map(|_| rng.random_range(0.5f32..2.0)));
        xs.extend((0..10_000).map(|i| 1.0 + i as f32));
        xs.extend([
            1.0,
            f32::MIN_POSITIVE,
            f32::MAX,
            2.0,
            0.5,
            std::f32::consts::E,
        ]);
        let mut got = xs.clone();
        ln_in_place(&mut got);
        let mut worst = 0f64;
        for (x, g) in xs.iter().zip(&got) {
            let exact = f64::from(*x).ln();
            let d = if exact == 0.0 {
                f64::from(*g).abs()
            } else {
                ulps(*g, exact)
            };
            assert!(d < 1.0, "ln({x:e}) = {g:e}, exactly {exact:e}: {d} ulp");
            worst = worst.max(d);
        }
        println!("worst error: {worst:.3} ulp over {} values", xs.len());
    }

    #[test]
    fn values_outside_the_normal_range_get_the_standard_logarithm() {
        let odd = [
            0.0,
            -0.0,
            -1.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e-40, // subnormal
            f32::from_bits(1),
        ];
        // odd values alone, and mixed with normal ones (the slice's other path)
        for mixed in [false, true] {
            let mut xs: Vec<f32> = odd.to_vec();
            if mixed {
                xs.extend([1.0, 10.0, 0.25]);
            }
            let mut got = xs.clone();
            ln_in_place(&mut got);
            for (x, g) in xs.iter().zip(&got) {
                let want = x.ln();
                assert!(
                    g.to_bits() == want.to_bits()
                        || (g.is_nan() && want.is_nan())
                        || ulps(*g, f64::from(*x).ln()) < 1.0,
                    "ln({x:e}) = {g:e}, f32::ln gives {want:e}"
                );
            }
        }
    }

    #[test]
    fn the_shipped_models_run_the_vector_logarithm_and_row_ops() {
        for name in ["abuse", "anomaly"] {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../models")
                .join(name);
            let model = Model::from_parts(
                &std::fs::read_to_string(dir.join("model.toml")).unwrap(),
                "model.toml",
                &std::fs::read(dir.join("model.onnx")).unwrap(),
                "model.onnx",
                &crate::features::features_schema(&crate::features::Windows::new(
                    &crate::features::FeatureConfig::default(),
                )),
                None,
            )
            .unwrap();
            for plan in [&model.small, &model.large] {
                let names: Vec<String> = plan
                    .model()
                    .nodes
                    .iter()
                    .map(|n| n.op.name().to_string())
                    .collect();
                assert!(names.iter().any(|n| n == "VectorLn"), "{names:?}");
                assert!(!names.iter().any(|n| n == "Ln"), "{names:?}");
                // no generic broadcasting binary op is left
                for generic in ["Add", "Sub", "Mul", "Div"] {
                    assert!(!names.iter().any(|n| n == generic), "{name}: {names:?}");
                }
                println!("{name}: {names:?}");
            }
        }
    }
}
