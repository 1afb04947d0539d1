"""``ravlt-export``: ONNX with dynamic batch/height/width that onnxruntime runs like PyTorch at other sizes,
for the classifier and the dense backbone; ``torch.export`` with dynamic shapes; the command's errors."""
import pytest
import torch

from ravlt.export import CHECK_TOLERANCE, build_model, check_onnx, export_onnx, main

SIZES = ((1, 224, 224), (3, 160, 96))  # neither is the (2, 96, 128) example the export traced


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["classifier", "dense"])
def test_onnx_round_trip_at_other_sizes(kind, tmp_path):
    for package in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(package, reason=f"{package} missing: the export extra, pip install -e '.[export]'")
    torch.manual_seed(0)
    model = build_model("ravlt_t", kind)
    path = export_onnx(model, kind, tmp_path / "model.onnx")
    results = check_onnx(model, path, SIZES)
    assert [r["size"] for r in results] == list(SIZES)
    assert all(r["max_abs_diff"] < CHECK_TOLERANCE for r in results), results


@pytest.mark.slow
def test_torch_export_with_dynamic_shapes():
    from torch.export import Dim

    torch.manual_seed(0)
    model = build_model("ravlt_t", "classifier")
    dims = {"x": {0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC}}
    with torch.no_grad():
        program = torch.export.export(model, (torch.randn(2, 3, 96, 128),), dynamic_shapes=dims)
        for batch, height, width in SIZES:
            x = torch.randn(batch, 3, height, width)
            torch.testing.assert_close(program.module()(x), model(x), rtol=1e-5, atol=1e-5)


def test_export_command_errors_in_one_line(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    for argv in (["--checkpoint", str(tmp_path / "missing.pth")], ["--model", "ravlt_x"]):
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--out", str(out)])
        assert exit_.value.code == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors[0] == f"error: --checkpoint={tmp_path / 'missing.pth'}: checkpoint not found"
    assert errors[1].startswith("error: --model ravlt_x: unknown; choose one of ravlt_t")
    assert not out.exists()
