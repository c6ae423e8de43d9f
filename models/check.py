#!/usr/bin/env python3
"""Checks every shipped model against its golden vectors with onnxruntime.

    python models/check.py

For each `models/<name>/golden.json`: runs `model.onnx` on the golden inputs with onnxruntime and
compares with the committed outputs (within the file's tolerance), and checks that the
manifest's input feature list has the ONNX input's width. Cheap: meant for CI (`scripts/test`).
The Rust side (`scoring/tests/models.rs`) checks that tract gives the same outputs.
"""

import json
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort


def check(model_dir):
    manifest = tomllib.loads((model_dir / "model.toml").read_text())
    golden = json.loads((model_dir / "golden.json").read_text())
    session = ort.InferenceSession(str(model_dir / manifest["onnx"]),
                                   providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    width = len(manifest["input"]["features"])
    if inp.name != manifest["input"]["name"] or inp.shape[-1] != width:
        return [f"{model_dir}/model.toml: input `{manifest['input']['name']}` with {width} "
                f"features, but the ONNX input is `{inp.name}` {inp.shape}"]
    x = np.asarray(golden["inputs"], dtype=np.float32)
    want = np.asarray(golden["outputs"], dtype=np.float32)
    got = session.run([manifest["output"]["name"]], {inp.name: x})[0].reshape(-1)
    diff = np.abs(got - want)
    worst = int(np.argmax(diff)) if len(diff) else 0
    if len(diff) and diff[worst] > golden["tolerance"]:
        return [f"{model_dir}/golden.json: row {worst}: onnxruntime gives {got[worst]!r}, "
                f"golden {want[worst]!r} (tolerance {golden['tolerance']})"]
    print(f"{model_dir.name}@{manifest['version']}: {len(x)} golden rows match "
          f"(max difference {float(diff.max()) if len(diff) else 0.0:.2e})")
    return []


def main():
    root = Path(__file__).resolve().parent
    dirs = sorted(p.parent for p in root.glob("*/golden.json"))
    if not dirs:
        print(f"no models with golden.json under {root}", file=sys.stderr)
        return 1
    errors = [e for d in dirs for e in check(d)]
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
