#!/usr/bin/env python3
"""Trains vigil's shipped models from labelled simulated traffic, reproducibly.

    python models/train.py --vigil target/release/vigil

For each training and held-out run, `vigil simulate` writes a labelled log and `vigil features`
turns it into the feature rows the scorer evaluates in production (same code, same windows).
Then:

- `abuse` (supervised): a small MLP (one hidden ReLU layer) on log1p-standardized features plus
  the subject kind, trained on the labels; output: probability that the row's subject is
  attacking.
- `anomaly` (unsupervised, no labels used to fit): per subject kind, robust one-sided z-scores
  of the log1p features (median and MAD of all rows of that kind), clipped, squared and
  averaged; output squashed to 0..1 with the training 99th percentile as scale.

Both graphs use plain ONNX operators only (Relu, Add, Log, Sub, Div, MatMul, Min, Sigmoid, Neg,
Exp), which tract and onnxruntime both run. Every random choice is seeded; the held-out runs use
other seeds and another traffic mix than the training runs, and none of the seeds the Rust
detection test uses (7, 1001, 2026, 42).

Writes `models/<name>/{model.onnx, model.toml, EVAL.md, golden.json}`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from onnx import TensorProto, helper, numpy_helper
from sklearn.metrics import precision_score, recall_score, roc_auc_score
from sklearn.neural_network import MLPClassifier

SEED = 20261124
# Subject kinds the models score. Not `device`: the simulator labels the subjects an engine
# should act on, never a device (a popular browser's fingerprint is shared by benign people),
# so device rows would all read as benign; devices are left to the rules, and the device
# features (`ua_mismatch_*`, `new_device`) reach the models through the other kinds' rows.
KINDS = ["identity", "session", "ip", "api_key"]
KIND_INPUTS = [f"kind_{k}" for k in KINDS]
# Seeds the Rust detection test evaluates on: never used here.
TEST_SEEDS = {7, 1001, 2026, 42}
# (seed, benign users, benign API clients, attackers per scenario, format)
TRAIN_RUNS = [
    (11, 500, 20, 3, "json"),
    (12, 400, 30, 4, "json"),
    (13, 600, 15, 3, "nginx-json"),
]
HELDOUT_RUNS = [
    (101, 700, 40, 2, "kong"),
    (102, 300, 10, 5, "json"),
]
# The vigil --format that reads each simulated format.
READ_FORMAT = {"json": "json", "nginx-json": "nginx-json", "kong": "kong"}
FILL = {"interval_cv": 1.0}  # a missing regularity reads as human-irregular; others: 0.0
NEG_ROWS = 250_000  # benign rows kept for fitting the classifier
ABUSE_VERSION = 2
ANOMALY_VERSION = 2
GOLDEN_ROWS = 64


def simulate_and_extract(vigil, work, run):
    seed, users, clients, attackers, fmt = run
    assert seed not in TEST_SEEDS
    log = work / f"sim-{seed}.log"
    labels = work / f"sim-{seed}.labels.ndjson"
    out = work / f"sim-{seed}.parquet"
    if not out.exists():
        subprocess.run(
            [vigil, "simulate", "--format", fmt, "--seed", str(seed), "--duration-secs", "3600",
             "--benign-users", str(users), "--benign-api-clients", str(clients),
             "--attackers-per-scenario", str(attackers), "--out", str(log),
             "--labels-out", str(labels)],
            check=True,
        )
        # Features do not depend on models: leave them out, so a broken or missing model never
        # stops a retrain.
        config = work / "features.toml"
        config.write_text(f'data_dir = "{work}"\n\n[scoring.models]\nenabled = false\n')
        subprocess.run(
            [vigil, "features", "--config", str(config), "--format", READ_FORMAT[fmt],
             "--dead-letters-out",
             str(work / "dead-letters.ndjson"), "--labels", str(labels), "--out", str(out),
             str(log)],
            check=True,
        )
        log.unlink()
    df = pd.read_parquet(out)
    df = df[df["kind"].isin(KINDS)]
    # The scorer emits a round's rows in hash order: sort, so sampling sees the same rows.
    df = df.sort_values(["timestamp", "kind", "subject"], kind="mergesort").reset_index(drop=True)
    df["run"] = seed
    return df


def feature_columns(df):
    skip = {"kind", "subject", "timestamp", "label", "scenario", "run"}
    return [c for c in df.columns if c not in skip]


def input_matrix(df, features):
    """Model inputs in manifest order: kind one-hot, then features with missing values filled."""
    cols = [(df["kind"] == k).astype(np.float32).to_numpy() for k in KINDS]
    for f in features:
        cols.append(df[f].fillna(FILL.get(f, 0.0)).astype(np.float32).to_numpy())
    return np.stack(cols, axis=1)


def log1p_relu(x):
    return np.log(np.maximum(x, 0.0) + 1.0).astype(np.float32)


def const(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def save_model(graph_nodes, initializers, n_inputs, path, doc):
    graph = helper.make_graph(
        graph_nodes,
        "vigil",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", n_inputs])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])],
        initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="vigil-train",
        doc_string=doc,
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def build_abuse(mean, scale, mlp, n_inputs, path):
    w1, w2 = mlp.coefs_
    b1, b2 = mlp.intercepts_
    nodes = [
        helper.make_node("Relu", ["features"], ["pos"]),
        helper.make_node("Add", ["pos", "one"], ["pos1"]),
        helper.make_node("Log", ["pos1"], ["logx"]),
        helper.make_node("Sub", ["logx", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "scale"], ["z"]),
        helper.make_node("MatMul", ["z", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["o0"]),
        helper.make_node("Add", ["o0", "b2"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["score"]),
    ]
    inits = [const("one", [1.0]), const("mean", mean), const("scale", scale),
             const("w1", w1), const("b1", b1), const("w2", w2), const("b2", b2)]
    return save_model(nodes, inits, n_inputs, path,
                      "vigil abuse classifier: P(subject is attacking | features)")


def build_anomaly(kind_select, means, scales, weights, ref, n_inputs, path):
    nodes = [
        helper.make_node("Relu", ["features"], ["pos"]),
        helper.make_node("Add", ["pos", "one"], ["pos1"]),
        helper.make_node("Log", ["pos1"], ["logx"]),
        helper.make_node("MatMul", ["features", "kind_select"], ["kind"]),
        helper.make_node("MatMul", ["kind", "kind_mean"], ["mean"]),
        helper.make_node("MatMul", ["kind", "kind_scale"], ["scale"]),
        helper.make_node("Sub", ["logx", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "scale"], ["z"]),
        helper.make_node("Relu", ["z"], ["zpos"]),
        helper.make_node("Min", ["zpos", "zmax"], ["zclip"]),
        helper.make_node("Mul", ["zclip", "zclip"], ["z2"]),
        helper.make_node("MatMul", ["z2", "weights"], ["distance"]),
        helper.make_node("Div", ["distance", "ref"], ["ratio"]),
        helper.make_node("Neg", ["ratio"], ["neg"]),
        helper.make_node("Exp", ["neg"], ["decay"]),
        helper.make_node("Sub", ["one", "decay"], ["score"]),
    ]
    inits = [const("one", [1.0]), const("kind_select", kind_select),
             const("kind_mean", means), const("kind_scale", scales), const("zmax", [10.0]),
             const("weights", weights.reshape(-1, 1)), const("ref", [ref])]
    return save_model(nodes, inits, n_inputs, path,
                      "vigil anomaly score: one-sided robust distance from the kind's usual rows")


def run_model(session, x):
    out = []
    for i in range(0, len(x), 65536):
        out.append(session.run(["score"], {"features": x[i:i + 65536]})[0][:, 0])
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def subject_max(df, scores):
    s = df[["kind", "subject", "label", "scenario", "run"]].copy()
    s["score"] = scores
    s["scenario"] = s["scenario"].fillna("")
    return s.groupby(["run", "kind", "subject"]).agg(
        score=("score", "max"), label=("label", "max"), scenario=("scenario", "max")
    ).reset_index()


def pick_threshold(benign_subject_scores, quantile, floor):
    return float(max(np.quantile(benign_subject_scores, quantile), floor))


def toml_list(values, per_line=4, fmt=repr):
    items = [fmt(v) for v in values]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return "[\n    " + ",\n    ".join(lines) + ",\n]"


def write_manifest(path, name, version, model_type, description, inputs, baseline, output_meaning,
                   thresholds, ttl_secs, weight, mode):
    fill = ", ".join(f"{k} = {v!r}" for k, v in FILL.items())
    th = "\n".join(f"{a} = {t:.6f}" for a, t in thresholds.items())
    text = f"""# Written by models/train.py: do not edit by hand, retrain instead (models/README.md).
name = "{name}"
version = {version}
type = "{model_type}"
description = "{description}"
onnx = "model.onnx"
kinds = ["identity", "session", "ip", "api_key"]
# Share of this model's score in the trust score: 1 - (1 - rules) * prod(1 - weight * score).
weight = {weight}
# "enforce": the actions below apply; "monitor": recorded as monitor with would:<action>.
mode = "{mode}"
ttl_secs = {ttl_secs}

[input]
# The ONNX input: float32 [N, len(features)]; kind_* are 1.0 for rows of that subject kind.
name = "features"
features = {toml_list(inputs, fmt=lambda s: json.dumps(s))}
# A missing (null) feature is replaced by this value; unlisted features by 0.0.
fill = {{ {fill} }}

[output]
name = "score"
meaning = "{output_meaning}"

# The strictest action whose threshold the score reaches applies.
[thresholds]
{th}

[explain]
# Contributions by occlusion: each input in turn is set to its baseline (the benign median) and
# the drop in score is that input's contribution.
baseline = {toml_list([float(b) for b in baseline])}
"""
    path.write_text(text)


def evaluate(name, version, df, scores, threshold, threshold_name, path):
    benign = df["label"].to_numpy() == 0
    lines = [
        f"# {name}@{version}: evaluation on held-out simulated traffic",
        "",
        "Written by `models/train.py`. Held-out runs (seeds, users, API clients, attackers per "
        "scenario, format): "
        + "; ".join(f"{s}, {u}, {c}, {a}, {f}" for s, u, c, a, f in HELDOUT_RUNS)
        + ". Training used seeds "
        + ", ".join(str(r[0]) for r in TRAIN_RUNS)
        + f" with another mix. Threshold: `{threshold_name}` = {threshold:.4f}.",
        "",
        "## Per feature row",
        "",
        "Positives: rows of the scenario's labelled subjects from the attack start on; "
        "negatives: every benign row. Precision counts all benign rows above the threshold.",
        "",
        "| scenario | rows | precision | recall | ROC AUC |",
        "|---|---:|---:|---:|---:|",
    ]
    flagged = scores >= threshold
    for scenario in sorted(df["scenario"].dropna().unique()):
        pos = (df["scenario"] == scenario).to_numpy()
        mask = pos | benign
        y = pos[mask].astype(int)
        pred = flagged[mask]
        lines.append(
            f"| {scenario} | {pos.sum()} | {precision_score(y, pred, zero_division=0):.3f} | "
            f"{recall_score(y, pred, zero_division=0):.3f} | {roc_auc_score(y, scores[mask]):.4f} |"
        )
    y = (~benign).astype(int)
    lines.append(
        f"| **all** | {int(y.sum())} | {precision_score(y, flagged, zero_division=0):.3f} | "
        f"{recall_score(y, flagged, zero_division=0):.3f} | {roc_auc_score(y, scores):.4f} |"
    )
    subj = subject_max(df, scores)
    lines += [
        "",
        "## Per subject (highest score of the subject's rows)",
        "",
        "| scenario | subjects | recall |",
        "|---|---:|---:|",
    ]
    for scenario in sorted(s for s in subj["scenario"].unique() if s):
        part = subj[subj["scenario"] == scenario]
        lines.append(f"| {scenario} | {len(part)} | {(part['score'] >= threshold).mean():.3f} |")
    benign_subj = subj[subj["label"] == 0]
    lines += [
        "",
        f"Benign subjects: {len(benign_subj)}; at or above the threshold: "
        f"{int((benign_subj['score'] >= threshold).sum())} "
        f"({100 * (benign_subj['score'] >= threshold).mean():.3f}%).",
        "",
    ]
    path.write_text("\n".join(lines))
    return lines


def write_golden(path, session, x, rng):
    idx = np.sort(rng.choice(len(x), size=min(GOLDEN_ROWS, len(x)), replace=False))
    inputs = x[idx]
    outputs = run_model(session, inputs)
    path.write_text(json.dumps({
        "tolerance": 1e-4,
        "inputs": [[float(v) for v in row] for row in inputs],
        "outputs": [float(v) for v in outputs],
    }, indent=None) + "\n")


def evaluate_existing(vigil, work, out):
    """Scores the held-out runs, as this vigil computes their features, with the models in
    `out` as they are (manifest inputs and thresholds, ONNX graph) and rewrites their EVAL.md;
    nothing is trained. For a feature change that the models need not be retrained for."""
    held = pd.concat([simulate_and_extract(vigil, work, r) for r in HELDOUT_RUNS],
                     ignore_index=True)
    for name, threshold_name in [("abuse", "step_up"), ("anomaly", "monitor")]:
        d = out / name
        manifest = tomllib.loads((d / "model.toml").read_text())
        inputs = manifest["input"]["features"]
        assert inputs[:len(KIND_INPUTS)] == KIND_INPUTS, f"{name}: kind inputs first"
        session = ort.InferenceSession(str(d / manifest["onnx"]),
                                       providers=["CPUExecutionProvider"])
        scores = run_model(session, input_matrix(held, inputs[len(KIND_INPUTS):]))
        old = (d / "EVAL.md").read_text().splitlines()
        kept = [line for line in old if line.startswith("Suggested ")]
        report = evaluate(name, manifest["version"], held, scores,
                          manifest["thresholds"][threshold_name], threshold_name, d / "EVAL.md")
        with open(d / "EVAL.md", "a") as f:
            f.writelines(line + "\n" for line in kept)
        print("\n".join(report), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vigil", required=True, help="path to the vigil binary")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent),
                    help="models directory (default: this script's)")
    ap.add_argument("--work", help="scratch directory (kept; reused when it holds the runs)")
    ap.add_argument("--evaluate-only", action="store_true",
                    help="rewrite the EVAL.md of the models in --out on the held-out runs, "
                         "as this vigil computes their features; train nothing")
    args = ap.parse_args()
    vigil = os.path.abspath(args.vigil)
    out = Path(args.out)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="vigil-train-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.evaluate_only:
        evaluate_existing(vigil, work, out)
        return
    rng = np.random.default_rng(SEED)

    train = pd.concat([simulate_and_extract(vigil, work, r) for r in TRAIN_RUNS],
                      ignore_index=True)
    held = pd.concat([simulate_and_extract(vigil, work, r) for r in HELDOUT_RUNS],
                     ignore_index=True)
    features = feature_columns(train)
    inputs = KIND_INPUTS + features
    x_train = input_matrix(train, features)
    y_train = train["label"].to_numpy().astype(int)
    x_held = input_matrix(held, features)
    print(f"training rows {len(train)} ({y_train.sum()} positive), held-out rows {len(held)}",
          file=sys.stderr)
    baseline = np.median(x_train[y_train == 0], axis=0)

    # --- abuse: supervised MLP ---
    neg = np.flatnonzero(y_train == 0)
    pos = np.flatnonzero(y_train == 1)
    keep = np.concatenate([pos, rng.choice(neg, size=min(NEG_ROWS, len(neg)), replace=False)])
    lx = log1p_relu(x_train)
    mean = lx.mean(axis=0)
    scale = lx.std(axis=0)
    scale[scale < 1e-3] = 1.0
    z = (lx[keep] - mean) / scale
    mlp = MLPClassifier(hidden_layer_sizes=(16,), alpha=1e-3, max_iter=300,
                        random_state=SEED % (2**31), early_stopping=False)
    mlp.fit(z.astype(np.float64), y_train[keep])
    abuse_dir = out / "abuse"
    abuse_dir.mkdir(parents=True, exist_ok=True)
    abuse = build_abuse(mean, scale, mlp, len(inputs), abuse_dir / "model.onnx")
    train_scores = run_model(abuse, x_train)
    benign_max = subject_max(train, train_scores)
    benign_max = benign_max[benign_max["label"] == 0]["score"].to_numpy()
    # A model asks for a stronger login at most: throttling and blocking stay with the rules,
    # whose reasons a person wrote down (a deployment can add `thresholds.throttle` in
    # `[scoring.models.overrides.abuse]`). The suggested throttle level is in EVAL.md.
    thresholds = {
        "monitor": pick_threshold(benign_max, 0.995, 0.5),
        "step_up": pick_threshold(benign_max, 0.9995, 0.9),
    }
    suggested_throttle = min(pick_threshold(benign_max, 1.0, 0.98) + 1e-3, 0.9999)
    write_manifest(abuse_dir / "model.toml", "abuse", ABUSE_VERSION, "classifier",
                   "Supervised abuse classifier (MLP, 16 hidden units) over the feature row "
                   "and subject kind.",
                   inputs, baseline, "probability that the subject is attacking (0 to 1)",
                   thresholds, 900, 1.0, "enforce")
    held_scores = run_model(abuse, x_held)
    report = evaluate("abuse", ABUSE_VERSION, held, held_scores, thresholds["step_up"], "step_up",
                      abuse_dir / "EVAL.md")
    with open(abuse_dir / "EVAL.md", "a") as f:
        f.write(f"Suggested `thresholds.throttle` (above every benign training subject): "
                f"{suggested_throttle:.4f}; not set by default.\n")
    print("\n".join(report), file=sys.stderr)
    write_golden(abuse_dir / "golden.json", abuse, x_held, rng)

    # --- anomaly: unsupervised robust distance ---
    n_kind = len(KINDS)
    kind_select = np.zeros((len(inputs), n_kind), dtype=np.float32)
    for i in range(n_kind):
        kind_select[i, i] = 1.0
    means = np.zeros((n_kind, len(inputs)), dtype=np.float32)
    scales = np.ones((n_kind, len(inputs)), dtype=np.float32)
    kinds = train["kind"].to_numpy()
    for i, k in enumerate(KINDS):
        rows = lx[kinds == k]
        if len(rows) == 0:
            continue
        med = np.median(rows, axis=0)
        mad = np.median(np.abs(rows - med), axis=0) * 1.4826
        means[i, n_kind:] = med[n_kind:]
        scales[i, n_kind:] = np.maximum(mad[n_kind:], 0.25)
    weights = np.zeros(len(inputs), dtype=np.float32)
    weights[n_kind:] = 1.0 / len(features)
    anomaly_dir = out / "anomaly"
    anomaly_dir.mkdir(parents=True, exist_ok=True)
    # First pass with ref = 1 to measure raw distances, then the 99th percentile as scale.
    probe = build_anomaly(kind_select, means, scales, weights, 1.0, len(inputs),
                          anomaly_dir / "model.onnx")
    raw = -np.log1p(-np.minimum(run_model(probe, x_train), 1 - 1e-7))
    ref = float(max(np.quantile(raw, 0.99), 1e-3))
    anomaly = build_anomaly(kind_select, means, scales, weights, ref, len(inputs),
                            anomaly_dir / "model.onnx")
    train_scores = run_model(anomaly, x_train)
    benign_max = subject_max(train, train_scores)
    benign_max = benign_max[benign_max["label"] == 0]["score"].to_numpy()
    a_thresholds = {"monitor": pick_threshold(benign_max, 0.999, 0.3)}
    write_manifest(anomaly_dir / "model.toml", "anomaly", ANOMALY_VERSION, "anomaly",
                   "Unsupervised anomaly score: one-sided robust z-scores of the log features "
                   "against the subject kind's usual rows.",
                   inputs, baseline, "how unusual the row is for its subject kind (0 to 1)",
                   a_thresholds, 600, 0.5, "enforce")
    held_scores = run_model(anomaly, x_held)
    report = evaluate("anomaly", ANOMALY_VERSION, held, held_scores, a_thresholds["monitor"],
                      "monitor", anomaly_dir / "EVAL.md")
    print("\n".join(report), file=sys.stderr)
    write_golden(anomaly_dir / "golden.json", anomaly, x_held, rng)


if __name__ == "__main__":
    main()
