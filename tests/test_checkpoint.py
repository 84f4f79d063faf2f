"""The checkpoint format (worldfromblur.checkpoint): safetensors weights, a YAML config and a training state that
loads without unpickling; atomic saves, pruning, and a corrupt newest checkpoint skipped on resume."""

import pytest
import torch
import yaml

from worldfromblur.checkpoint import checkpoint_dirs, latest_checkpoint, load_checkpoint, load_weights, save_checkpoint
from worldfromblur.errors import WfbError


def save(run, step, model, keep=3):
    state = {"step": step, "optimizer": {"lr": 1e-3, "moments": torch.ones(2)}, "rng": torch.get_rng_state()}
    return save_checkpoint(run, step, model, yaml.safe_dump({"model": {"n": 3}, "step": step}), state, keep)


def test_a_checkpoint_round_trips_and_old_ones_are_pruned(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    for step in (10, 20, 30, 40):
        ckpt = save(tmp_path, step, model, keep=2)
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-000030", "step-000040"]
    assert {p.name for p in ckpt.iterdir()} == {"model.safetensors", "config.yaml", "state.pt"}
    weights, state, config = load_checkpoint(ckpt)
    assert set(weights) == set(model.state_dict())  # batch-norm statistics included
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert state["step"] == 40 and torch.equal(state["optimizer"]["moments"], torch.ones(2)) and config["step"] == 40


def test_an_interrupted_save_is_invisible(tmp_path):
    model = torch.nn.Linear(2, 2)
    save(tmp_path, 1, model)
    (tmp_path / "checkpoints" / ".tmp-step-000002").mkdir()  # what a crash during a save leaves
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-000001"]


def test_a_corrupt_newest_checkpoint_is_skipped_with_a_warning(tmp_path, capsys):
    model = torch.nn.Linear(2, 2)
    save(tmp_path, 1, model)
    newest = save(tmp_path, 2, model)
    (newest / "model.safetensors").write_bytes(b"not safetensors")
    ckpt, _, state, _ = latest_checkpoint(tmp_path)
    assert ckpt.name == "step-000001" and state["step"] == 1
    assert "trying an older checkpoint" in capsys.readouterr().err
    with pytest.raises(WfbError, match="unreadable weights"):
        load_weights(newest)


class Payload:
    def __reduce__(self):  # unpickling this would run code
        return (print, ("unpickled",))


def test_the_training_state_is_never_unpickled(tmp_path):
    """state.pt is read with weights_only: a file holding an arbitrary object is refused, not executed."""
    model = torch.nn.Linear(2, 2)
    ckpt = save(tmp_path, 1, model)
    torch.save({"step": 1, "evil": Payload()}, ckpt / "state.pt")
    with pytest.raises(WfbError, match="unreadable training state"):
        load_checkpoint(ckpt)


def test_missing_weights_name_the_folder(tmp_path):
    with pytest.raises(WfbError, match="is .* a world-from-blur checkpoint folder"):
        load_weights(tmp_path)
    with pytest.raises(WfbError, match="no checkpoint to resume from"):
        latest_checkpoint(tmp_path)
