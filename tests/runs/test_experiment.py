"""The run object: the target read once, oracles on that copy, results reused only under the same key."""
import json

import pytest
import torch

from faststeal.report import RunFolder
from faststeal.runs.experiment import Experiment
from faststeal.targets.oracle import TargetOracle


@pytest.fixture
def experiment(tmp_path, tiny_target):
    return Experiment(RunFolder(tmp_path / "run", "test", {}), str(tiny_target), fid_n=8, progress=False)


def test_the_target_is_read_once_for_every_oracle_picture_and_config(experiment, tiny_target, monkeypatch):
    loads = []
    real_load = torch.load

    def counting(*args, **kwargs):
        loads.append(args[0])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counting)
    oracles = [experiment.oracle(16, seed=s) for s in (0, 0, 1)]
    images = [o.query(16) for o in oracles]
    experiment.samples(4, seed=1)
    assert experiment.config["resolution"] == 8 and len(loads) == 1
    # the shared copy serves exactly what an oracle that reads the file itself serves
    assert torch.equal(images[0], TargetOracle(str(tiny_target), budget=16, seed=0).query(16))
    assert torch.equal(images[0], images[1]) and not torch.equal(images[0], images[2])
    assert oracles[0].model_id == experiment.loaded.model_id


def test_budget_is_per_oracle_not_shared_through_the_copy(experiment):
    a, b = experiment.oracle(10), experiment.oracle(10)
    a.query(10)
    assert a.remaining == 0 and b.remaining == 10


def test_cached_reuses_only_under_the_same_key_and_inputs(experiment):
    calls = []

    def compute(value):
        def run():
            calls.append(value)
            return {"value": value}
        return run

    experiment.file("input.pt").write_bytes(b"x")
    assert experiment.cached("r.json", {"a": 1, "b": (1, 2)}, compute(1), requires=("input.pt",)) == {"value": 1}
    # the same key (a tuple compares as the list JSON gives back): reused, nothing computed
    assert experiment.cached("r.json", {"a": 1, "b": [1, 2]}, compute(2), requires=("input.pt",)) == {"value": 1}
    # another key: computed again and stored over the old entry
    assert experiment.cached("r.json", {"a": 2, "b": [1, 2]}, compute(3), requires=("input.pt",)) == {"value": 3}
    assert json.loads(experiment.file("r.json").read_text())["key"] == {"a": 2, "b": [1, 2]}
    # the input it measured is gone: computed again
    experiment.file("input.pt").unlink()
    assert experiment.cached("r.json", {"a": 2, "b": [1, 2]}, compute(4), requires=("input.pt",)) == {"value": 4}
    # a damaged entry is recomputed, never trusted
    experiment.file("r.json").write_text('{"key": {"a": 2')
    assert experiment.cached("r.json", {"a": 2, "b": [1, 2]}, compute(5)) == {"value": 5}
    assert calls == [1, 3, 4, 5]


def test_measure_is_stored_beside_the_checkpoint_and_redone_when_it_changes(experiment, tiny_target, monkeypatch):
    from faststeal.evaluate import Evaluator

    measured = []
    real_attack = Evaluator.attack

    def counting(self, checkpoint):
        measured.append(checkpoint)
        return real_attack(self, checkpoint)

    monkeypatch.setattr(Evaluator, "attack", counting)
    ckpt = experiment.file("attack.pt")
    ckpt.write_bytes(tiny_target.read_bytes())
    first = experiment.measure([ckpt]).rows[0]
    assert first["fidelity"] >= 0 and first["accuracy"] is None         # the tiny target names no real data
    assert experiment.measure([ckpt]).rows[0] == first and len(measured) == 1
    assert experiment.file("attack.measured.json").exists()
    # other bytes behind the same name (a retrained attack): measured again
    state = torch.load(ckpt, weights_only=True)
    state["G_ema"] = {k: v * 1.5 if v.is_floating_point() else v for k, v in state["G_ema"].items()}
    torch.save(state, ckpt)
    experiment.measure([ckpt])
    assert len(measured) == 2


def test_an_http_target_has_no_weights_to_load(tmp_path):
    exp = Experiment(RunFolder(tmp_path / "run", "test", {}), "http://127.0.0.1:9", fid_n=8)
    assert exp.remote
    with pytest.raises(ValueError, match="weights are not reachable"):
        _ = exp.loaded
    ev = exp.evaluator()          # nothing stands in for the target: fidelity is n/a, and says why
    assert ev.target_stats is None and ev.fid_floor() is None and "baseline" in ev.target_error
    assert ev.real_stats is None and "--eval-data" in ev.real_error
