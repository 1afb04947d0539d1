"""One paper run of each family rehearsed end to end, as `make rehearse` runs it: shipped config, real data
layout and image sizes, released-layout pretrained weights, optimizer steps, checkpoint, resume, evaluator;
and a run that breaks becomes a failed row with its first error line."""
import json

import pytest

from ravlt.rehearse import cli
from ravlt.rehearse.inputs import prepare
from ravlt.rehearse.runs import select

REPRESENTATIVES = [
    "in1k-t", "retinanet-1x-t", "mask-rcnn-1x-t", "cascade-mask-rcnn-3x-s", "fpn-80k-t", "upernet-160k-s"
]
FIELDS = ["run", "status", "s_per_iter", "peak_rss_mib", "changed_keys", "error"]


@pytest.fixture(scope="session")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rehearsal_inputs")
    prepare(folder, select(REPRESENTATIVES))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_a_paper_run_rehearses(name, inputs, tmp_path, capsys):
    code = cli.main(["--runs", name, "--out", str(tmp_path), "--inputs", str(inputs)])
    printed = capsys.readouterr().out
    [row] = json.loads((tmp_path / "report.json").read_text())
    assert code == 0 and row["status"] == "passed", row
    assert list(row) == FIELDS and row["error"] is None
    assert row["s_per_iter"] > 0 and row["peak_rss_mib"] > 500
    assert row["changed_keys"]["hardware.precision"] == ["bf16-mixed", "32-true"]
    assert "hardware.precision: 'bf16-mixed' -> '32-true'" in printed and f"{name}  passed" in printed
    assert not list(tmp_path.rglob("*.pth")) + list(tmp_path.rglob("*.ckpt")), "checkpoints are removed"


@pytest.mark.slow
def test_a_broken_run_is_a_failed_row_with_its_first_error_line(inputs, tmp_path, capsys):
    broken = tmp_path / "inputs"
    (broken / "pretrained").mkdir(parents=True)
    (broken / "ade20k").symlink_to(inputs / "ade20k")
    good = (inputs / "pretrained" / "RAVLT_T.pth").read_bytes()
    (broken / "pretrained" / "RAVLT_T.pth").write_bytes(good[: len(good) // 2])  # a download cut short
    assert cli.main(["--runs", "fpn-80k-t", "--out", str(tmp_path / "out"), "--inputs", str(broken)]) == 1
    [row] = json.loads((tmp_path / "out" / "report.json").read_text())
    assert row["status"] == "failed" and row["s_per_iter"] is None
    assert row["error"].startswith("CheckpointMismatchError: model.pretrained=") and "\n" not in row["error"]
    assert "RAVLT_T.pth is truncated" in row["error"]
    assert "fpn-80k-t  failed" in capsys.readouterr().out
