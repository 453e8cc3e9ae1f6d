"""An ONNX file from a pull request cannot make ONNX Runtime read weights from outside its own directory."""
from __future__ import annotations

import numpy as np
import onnx  # noqa: F401 - the ONNX extra, installed by .ci/install.sh

from tests.acceptance.helpers import run_cli




def model_reading_outside(directory, secret):
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((3, 2), np.float32), "W")
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    for key, value in {"location": f"../{secret.name}", "offset": "0", "length": "24"}.items():
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = directory / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_external_data_outside_the_model_directory_is_refused(world, in_repo_root, tmp_path, capsys):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.full(6, 7, np.float32).tobytes())
    (tmp_path / "pr").mkdir()
    path = model_reading_outside(tmp_path / "pr", secret)
    report = tmp_path / "r.json"
    res = run_cli(capsys, "check", world.good, "--baseline", world.baseline, "--data", world.data,
                  "--model-factory", "tests.tiny_models:build_mlp", "--onnx", path, "--json", report)
    assert res.code == 2, res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], res.err
    assert "escapes model directory" in lines[0] or "outside the directory" in lines[0], lines[0]
    assert not report.exists()
