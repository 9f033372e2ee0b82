import json

import numpy as np
import torch
from PIL import Image

from faststeal.report import RunFolder, line_plot, markdown_table


def test_run_folder_writes_config_metrics_pictures_and_report(tmp_path):
    run = RunFolder(tmp_path / "r", "extract", {"queries": 5})
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["options"] == {"queries": 5} and "torch" in config["versions"]
    run.write_metrics({"fidelity": 1.5})
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["fidelity"] == 1.5
    a = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    path = run.side_by_side(a, a + 255, "s.png", nrow=2)
    with Image.open(path) as im:
        arr = np.array(im)
    assert arr.shape[1] == 2 * (2 * (2 * 10 + 2) + 8)   # two grids and the gap, upscaled 2x
    report = run.write_report("T", [("Result", "ok")]).read_text()
    assert report.startswith("# T") and "## Result" in report


def test_markdown_table_and_plot(tmp_path):
    table = markdown_table([{"q": 1, "f": 2.345, "a": None}], ["q", "f", "a"])
    assert table.splitlines()[2] == "| 1 | 2.35 | - |"
    path = line_plot(tmp_path / "p.png", {"x": ([1, 2], [3, 4])}, "q", "fid", "t")
    with Image.open(path) as im:
        assert im.size[0] > 100


def test_watermark_keys_are_redacted_from_command_lines_and_options(tmp_path, monkeypatch):
    import json

    from faststeal.report import RunFolder, redacted

    argv = ["faststeal", "defend", "--defense", "watermark:key=owner.secret,strength=6+noise:sigma=0.1",
            "--key", "s3cret", "--api_key=x"]
    assert redacted(argv) == ["faststeal", "defend", "--defense",
                              "watermark:key=REDACTED,strength=6+noise:sigma=0.1", "--key", "REDACTED", "--api_key=x"]
    monkeypatch.setattr("sys.argv", argv)
    run = RunFolder(tmp_path / "r", "defend", {"defenses": ["watermark:key=owner.secret,strength=6"], "seed": 0})
    text = (tmp_path / "r" / "config.json").read_text()
    assert "owner.secret" not in text and "s3cret" not in text
    assert json.loads(text)["options"] == {"defenses": ["watermark:key=REDACTED,strength=6"], "seed": 0}
    run.write_report("t", [])
    assert "owner.secret" not in (tmp_path / "r" / "report.md").read_text()


def test_api_keys_are_redacted_from_recorded_command_lines():
    from faststeal.report import redacted

    argv = ["faststeal", "extract", "--api-key", "k.s1", "--baseline-api-key=k.s2", "--target", "http://h"]
    assert redacted(argv) == ["faststeal", "extract", "--api-key", "REDACTED", "--baseline-api-key=REDACTED",
                              "--target", "http://h"]


def test_a_command_run_as_a_module_is_shown_by_the_program_name():
    from faststeal.report import shown_command

    assert shown_command(["/venv/lib/faststeal/__main__.py", "defend", "--api-key", "k"]) == \
        "faststeal defend --api-key REDACTED"
    assert shown_command(["/usr/bin/faststeal", "extract"]) == "faststeal extract"


def test_a_stopwatch_charges_each_stage_the_time_since_the_last_lap(monkeypatch):
    import faststeal.report as report
    now = iter([100.0, 103.0, 110.5, 111.0])
    monkeypatch.setattr(report.time, "perf_counter", lambda: next(now))
    clock = report.Stopwatch()
    clock.lap("queries")
    clock.lap("training")
    clock.lap("queries")           # a stage met twice adds up
    assert clock.seconds == {"queries": 3.5, "training": 7.5}
    assert report.stage_line(clock.seconds) == "queries 4 s, training 8 s"
