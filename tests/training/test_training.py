"""Training: every shipped config runs, losses fall, a killed run resumes to the same weights, guards hold."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from worldfromblur.data.build import run_build
from worldfromblur.data.synthetic import SyntheticOptions, plan_synthetic
from worldfromblur.errors import WfbError
from worldfromblur.training import load_config, train
from worldfromblur.training.config import shipped_configs


def make_data(root: Path, num: int, w: int, h: int) -> Path:
    run_build(root, plan_synthetic(SyntheticOptions(width=w, height=h), num, 5), workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("tiny") / "ds", 8, 32, 24)


@pytest.fixture(scope="module")
def fixed_small(tmp_path_factory) -> Path:
    """Four samples of one scene at 32x24, for the paper preset's CPU-heavy modules."""
    return make_data(tmp_path_factory.mktemp("fixed_small") / "ds", 4, 32, 24)


@pytest.fixture(scope="module")
def fixed(tmp_path_factory) -> Path:
    """Four samples of one scene: with batch 4 every step sees the same batch."""
    return make_data(tmp_path_factory.mktemp("fixed") / "ds", 4, 64, 48)


def losses(run_dir: Path, tag: str = "loss/total") -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


def quick(name, data, out, *extra):
    return load_config(name, [f"data.root={data}", f"out={out}", "data.workers=0", "log_every=1", "image_every=0",
                              "init={}", *extra])


def test_shipped_configs_are_the_eight_stages():
    assert shipped_configs() == [f"{p}-{s}" for p in ("compact", "paper") for s in ("cycle", "deblur", "depth", "motion")]
    paper = {s: load_config(f"paper-{s}") for s in ("deblur", "depth", "motion", "cycle")}
    assert [paper[s].batch_size for s in ("motion", "deblur", "depth", "cycle")] == [64, 4, 4, 2]  # the paper's
    assert paper["cycle"].loss.alpha == 1e-3 and paper["cycle"].model.n == 3


@pytest.mark.parametrize("name", [f"{p}-{s}" for p in ("compact", "paper") for s in ("deblur", "depth", "motion", "cycle")])
def test_every_config_trains_a_few_steps(name, tiny, tmp_path):
    cfg = quick(name, tiny, tmp_path / "run", "max_steps=2", "batch_size=2", "ckpt_every=2")
    run = train(cfg, progress=False)
    assert (run / "checkpoints" / "step-000002" / "model.safetensors").is_file()
    assert (run / "config.yaml").is_file()
    values = losses(run)
    assert len(values) == 2 and all(torch.isfinite(torch.tensor(values)))


def test_a_stage_trains_only_the_part_model_train_names(tiny, tmp_path):
    cfg = quick("compact-depth", tiny, tmp_path / "run", "max_steps=2", "batch_size=2", "ckpt_every=1",
                "model.depth=effnet_lite0", "model.train=[depth.out_signed]", "optim.warmup_steps=0")
    run = train(cfg, progress=False)
    one, two = (load_file(run / "checkpoints" / f"step-00000{i}" / "model.safetensors") for i in (1, 2))
    changed = {k for k, v in two.items() if not torch.equal(v, one[k])}
    assert changed == {"depth.out_signed.weight"}  # batch-norm statistics included: they stay as they were


def check_loss_falls(name, data, out, steps=30):
    cfg = quick(name, data, out, f"max_steps={steps}", "batch_size=4", "optim.warmup_steps=0", "optim.schedule=constant",
                "optim.lr=1e-3", f"ckpt_every={steps}")
    values = losses(train(cfg, progress=False))
    first, last = sum(values[:5]) / 5, sum(values[-5:]) / 5
    assert last < 0.7 * first, (first, last)


@pytest.mark.parametrize("stage", ["deblur", "depth", "motion", "cycle"])
def test_compact_loss_falls_on_a_fixed_batch(stage, fixed, tmp_path):
    check_loss_falls(f"compact-{stage}", fixed, tmp_path / "run")


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["deblur", "depth", "motion", "cycle"])
def test_paper_loss_falls_on_a_fixed_batch(stage, fixed_small, tmp_path):
    check_loss_falls(f"paper-{stage}", fixed_small, tmp_path / "run")


def wfb(*args) -> list[str]:
    return [sys.executable, "-m", "worldfromblur.cli.main", "train", *map(str, args)]


def test_killed_run_resumes_to_the_same_weights(fixed, tmp_path):
    common = ["compact-cycle", f"data.root={fixed}", "data.workers=0", "max_steps=40", "ckpt_every=5", "batch_size=2",
              "deterministic=true", "image_every=0", "init={}", "--quiet"]
    subprocess.run(wfb(*common, f"out={tmp_path / 'straight'}"), check=True, capture_output=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen(wfb(*common, f"out={out}"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    while not (out / "checkpoints" / "step-000010").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "checkpoints" / "step-000040").exists(), "the run finished before it could be killed"
    subprocess.run(wfb(*common, f"out={out}", "--resume"), check=True, capture_output=True)
    a = load_file(str(tmp_path / "straight" / "checkpoints" / "step-000040" / "model.safetensors"))
    b = load_file(str(out / "checkpoints" / "step-000040" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_newest_checkpoint_falls_back_then_fails_clearly(fixed, tmp_path, capsys):
    cfg = quick("compact-deblur", fixed, tmp_path / "run", "max_steps=6", "ckpt_every=2", "batch_size=2")
    run = train(cfg, progress=False)
    newest = run / "checkpoints" / "step-000006" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])
    cfg.max_steps = 8
    train(cfg, resume=True, progress=False)
    err = capsys.readouterr().err
    assert "step-000006/model.safetensors: unreadable weights" in err and "resuming" in err and "step-000004" in err
    assert (run / "checkpoints" / "step-000008").is_dir()
    for ckpt in (run / "checkpoints").iterdir():
        (ckpt / "state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WfbError, match="every checkpoint is unreadable"):
        train(cfg, resume=True, progress=False)


def test_non_finite_loss_stops_with_step_and_term(fixed, tmp_path):
    cfg = quick("compact-depth", fixed, tmp_path / "run", "max_steps=20", "optim.lr=1e30", "optim.warmup_steps=0",
                "check_finite_every=5", "ckpt_every=100")
    with pytest.raises(WfbError, match=r"non-finite loss at step \d+ in term (loss|L_d)"):
        train(cfg, progress=False)


def test_bad_data_fails_before_training(tmp_path, fixed):
    with pytest.raises(WfbError, match="no such folder"):
        train(quick("compact-deblur", tmp_path / "nothing", tmp_path / "r1"), progress=False)
    (tmp_path / "notdata").mkdir()
    with pytest.raises(WfbError, match="not a world-from-blur dataset"):
        train(quick("compact-deblur", tmp_path / "notdata", tmp_path / "r2"), progress=False)
    with pytest.raises(WfbError, match="no samples in split 'val'"):
        train(quick("compact-deblur", fixed, tmp_path / "r3", "data.split=val"), progress=False)
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r3").exists()


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(WfbError, match="unknown key.*optimizer"):
        load_config("compact-deblur", ["optimizer.lr=1"])
    with pytest.raises(WfbError, match="expected float, got 'fast'"):
        load_config("compact-deblur", ["optim.lr=fast"])
    assert load_config("compact-deblur", ["optim.lr=1e-4"]).optim.lr == 1e-4
    with pytest.raises(WfbError, match="no such config file or shipped config"):
        load_config("compact-deblurr")
    with pytest.raises(WfbError, match="data.texture_rooms must be 0"):
        load_config("compact-deblur", ["data.texture_rooms=-1"])
    assert load_config("compact-deblur").data.texture_rooms == 8
    with pytest.raises(WfbError, match="loss.deblur_edges must be 0"):
        load_config("compact-deblur", ["loss.deblur_edges=-1"])
    assert load_config("compact-deblur", ["loss.deblur_edges=2"]).loss.deblur_edges == 2.0


@pytest.mark.parametrize("budget", [[], ["minutes=0.2", "max_steps=1000000", "ckpt_every=1000000"]],
                         ids=["steps", "minutes"])
def test_torchrun_two_processes_on_cpu(fixed, tmp_path, budget):
    """DistributedDataParallel over Gloo: two ranks train, each on its own samples, and end with the same weights;
    under a time budget both take rank 0's step count, or one would wait for the other for ever."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "worldfromblur.cli.main", "train", "compact-deblur", f"data.root={fixed}", "data.workers=0",
           "max_steps=3", "ckpt_every=3", "batch_size=1", "image_every=0", "save_all_ranks=true", f"out={out}", "--quiet",
           *budget]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    steps = yaml.safe_load((out / "config.yaml").read_text())["max_steps"]
    assert steps == 3 if not budget else 12 <= steps < 1000000
    assert (out / "checkpoints" / f"step-{steps:06d}" / "model.safetensors").is_file() and losses(out)
    r0 = load_file(str(out / "rank0" / "checkpoints" / f"step-{steps:06d}" / "model.safetensors"))
    r1 = load_file(str(out / "rank1" / "checkpoints" / f"step-{steps:06d}" / "model.safetensors"))
    trained = [k for k in r0 if k.startswith("deblur.") and "running" not in k and "num_batches" not in k]
    assert trained and all(torch.equal(r0[k], r1[k]) for k in trained)


def test_wfb_train_is_a_one_stage_recipe_trained_evaluated_and_exported(tmp_path, capsys):
    """`wfb train` goes the same way as `wfb train-model`: train, score the val split, export OUT/model."""
    import json

    from worldfromblur.cli.main import main
    from worldfromblur.models.io import load_model

    tiny = tmp_path / "ds"
    run_build(tiny, plan_synthetic(SyntheticOptions(width=32, height=24, samples_per_scene=1), 6, 5, (0.5, 0.5, 0.0)),
              workers=1, progress=False)
    out = tmp_path / "run"
    assert main(["train", "compact-deblur", f"data.root={tiny}", f"out={out}", "data.workers=0", "max_steps=2",
                 "batch_size=2", "image_every=0", "--quiet"]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["data"].endswith("(val)") and report["samples"] >= 1
    assert report["models"]["model"]["image"]["psnr"] > 0 and "median depth" in report["references"]
    model, sources = load_model(out)
    assert Path(sources["deblur"]) == out / "model" and model.cfg.input_size == [32, 24]
    assert "evaluation:" in capsys.readouterr().out


def test_a_pretrained_encoder_is_loaded_before_training_or_refused_in_one_line(tiny, tmp_path, monkeypatch):
    """pretrained: {depth: FILE} starts the effnet_lite0 depth encoder from that file; asking for the optional
    package's weights without the package, or for a module without such an encoder, stops before any work."""
    import importlib.util

    from worldfromblur.models.efficientnet import EfficientNetLite0Encoder
    from worldfromblur.training.trainer import Trainer

    encoder = EfficientNetLite0Encoder()
    weights = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in encoder.state_dict().items()}
    torch.save(weights, tmp_path / "lite0.pth")
    cfg = quick("compact-depth", tiny, tmp_path / "run", "max_steps=1", "batch_size=2", "model.depth=effnet_lite0",
                f"pretrained={{depth: {tmp_path / 'lite0.pth'}}}")
    trainer = Trainer(cfg, resume=False, progress=False)
    state = trainer.model.depth.encoder.state_dict()
    assert all(torch.equal(state[k], weights[k]) for k in weights)
    trainer.close()
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.startswith("efficientnet") else real_find_spec(name, *a))
    for extra, match in ((["model.depth=effnet_lite0", "pretrained={depth: imagenet}"], "pip install 'world-from-blur\\[pretrained\\]'"),
                         (["pretrained={depth: imagenet}"], "has no ImageNet encoder"),
                         (["model.depth=effnet_lite0", f"pretrained={{depth: {tmp_path / 'none.pth'}}}"], "is not a file")):
        with pytest.raises(WfbError, match=match):
            Trainer(quick("compact-depth", tiny, tmp_path / "other", *extra), resume=False, progress=False)
    assert not (tmp_path / "other").exists()


def first_losses(data: Path, out: Path, *extra) -> list[float]:
    cfg = quick("compact-cycle", data, out, "max_steps=3", "batch_size=2",
                "ckpt_every=3", "deterministic=true", *extra)
    return losses(train(cfg, progress=False))


def test_channels_last_and_a_scaled_rate_train_as_the_plain_layout(fixed, tmp_path):
    """channels_last changes the memory layout, not the arithmetic: the same losses step by step; lr_batch scales the
    peak rate by sqrt(global batch / lr_batch)."""
    from worldfromblur.training.trainer import peak_lr

    plain = first_losses(fixed, tmp_path / "plain")
    nhwc = first_losses(fixed, tmp_path / "nhwc", "channels_last=true")
    assert torch.allclose(torch.tensor(plain), torch.tensor(nhwc), rtol=1e-3), (plain, nhwc)
    cfg = load_config("compact-deblur", ["batch_size=128", "optim.lr=1e-3", "optim.lr_batch=32"])
    assert abs(peak_lr(cfg) - 2e-3) < 1e-12 and abs(peak_lr(cfg, world=4) - 4e-3) < 1e-12
    cfg.optim.lr_batch = 0
    assert peak_lr(cfg, world=4) == 1e-3


@pytest.mark.slow
def test_compiled_modules_train_as_the_eager_ones(fixed, tmp_path):
    """torch.compile (inductor on the CPU here) gives the eager losses to float precision."""
    eager = first_losses(fixed, tmp_path / "eager")
    compiled = first_losses(fixed, tmp_path / "compiled", "compile=default")
    assert torch.allclose(torch.tensor(eager), torch.tensor(compiled), rtol=1e-3), (eager, compiled)


def test_a_bare_off_is_the_off_choice_not_a_boolean():
    """YAML 1.1 reads `off` as False: the config's choices still take `amp=off` and `compile=off`."""
    cfg = load_config("compact-deblur", ["amp=off", "compile=off"])
    assert cfg.amp == "off" and cfg.compile == "off"
    with pytest.raises(WfbError, match="compile must be one of"):
        load_config("compact-deblur", ["compile=yes"])


def _reference_batch(B: int = 2, H: int = 32, W: int = 48) -> dict:
    from worldfromblur.geometry import pose_from_uv

    torch.manual_seed(0)
    K = torch.tensor([[40.0, 0, 23.5], [0, 40.0, 15.5], [0, 0, 1]]).expand(B, 3, 3).clone()
    return {"blurred": torch.rand(B, 3, H, W), "sharp": torch.rand(B, 3, H, W), "depth": 1 + torch.rand(B, 1, H, W),
            "K": K, "poses": pose_from_uv(torch.randn(B, 6, 3) * 0.02, torch.randn(B, 6, 3) * 0.01),
            "valid_depth": torch.ones(B, 1, H, W, dtype=torch.bool)}


def _reference_model():
    from worldfromblur.models import WorldFromBlur
    from worldfromblur.models.config import preset

    cfg = preset("compact")
    cfg.motion = "paths"
    model = WorldFromBlur(cfg)
    with torch.no_grad():  # a deblurring module that changes its input, with batch statistics of its own
        model.deblur.net.out.weight.normal_(0, 0.2)
        for m in model.deblur.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
    return model.train()


@pytest.mark.parametrize("reference", ["sharp", "deblurred"])
def test_depth_and_motion_read_the_frame_loss_reference_names(reference):
    """Stage 1's depth and motion modules read the clean frame, or (loss.reference=deblurred) the frozen deblurring
    module's output in evaluation mode, without changing that module's batch statistics or mode."""
    from worldfromblur.losses import LossConfig

    model, batch = _reference_model(), _reference_batch()
    model.deblur.requires_grad_(False)
    seen = {}
    depth_forward, motion_forward = model.depth.forward, model.motion.forward
    model.depth.forward = lambda image: (seen.setdefault("depth", image.clone()), depth_forward(image))[1]
    model.motion.forward = lambda blurred, ref: (seen.setdefault("motion", ref.clone()), motion_forward(blurred, ref))[1]
    stats = {k: v.clone() for k, v in model.deblur.state_dict().items()}
    model.stage_loss("supervised", batch, LossConfig(reference=reference),
                     {"depth": model.depth, "motion": model.motion})
    with torch.no_grad():
        expected = batch["sharp"] if reference == "sharp" else model.deblur.eval()(batch["blurred"])
    model.deblur.train()
    assert not torch.equal(expected, batch["blurred"])
    assert torch.equal(seen["depth"], expected) and torch.equal(seen["motion"], expected)
    assert all(torch.equal(v, model.deblur.state_dict()[k]) for k, v in stats.items())


def test_a_trained_deblurrer_is_read_detached_and_a_bad_reference_is_refused():
    """With the deblurring module training beside them, the motion module reads this step's deblurred frame, and
    its loss sends no gradient into the deblurring module (the deblurring loss alone trains it)."""
    from worldfromblur.losses import LossConfig, deblur_loss

    batch = _reference_batch()
    model = _reference_model()
    loss, _, _ = model.stage_loss("supervised", batch, LossConfig(reference="deblurred"),
                                    {"deblur": model.deblur, "motion": model.motion})
    loss.backward()
    joint = [p.grad.clone() for p in model.deblur.parameters()]
    assert any(g.abs().sum() > 0 for g in joint)
    again = _reference_model()
    again.load_state_dict(model.state_dict())
    deblur_loss(again.deblur(batch["blurred"]), batch["sharp"])[0].backward()
    for g, p in zip(joint, again.deblur.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-6)
    with pytest.raises(WfbError, match="loss.reference must be one of"):
        load_config("compact-motion", ["loss.reference=blurred"])
    assert load_config("compact-motion").loss.reference == "sharp"


def test_the_deblur_stage_adds_the_edge_term_loss_deblur_edges_names():
    from worldfromblur.losses import LossConfig, deblur_loss

    model, batch = _reference_model(), _reference_batch()
    model.eval().requires_grad_(False)  # the same output on both passes, and plain numbers to compare
    plain, details, out = model.stage_loss("deblur", batch, LossConfig())
    assert "L_edges" not in details
    total, details, _ = model.stage_loss("deblur", batch, LossConfig(deblur_edges=2.0))
    expected, parts = deblur_loss(out["deblurred"], batch["sharp"], batch.get("valid_blur"), edges=2.0)
    assert float(details["L_edges"]) > 0 and float(total) == pytest.approx(float(expected), rel=1e-5)
    assert float(total) == pytest.approx(float(plain) + 2.0 * float(parts["L_edges"]), rel=1e-5)


def test_starting_depth_from_a_run_with_another_canonical_focal_length_warns(tmp_path):
    """init.depth from a checkpoint whose depth means something else (model.depth_focal differs) loads, since that
    is how a model is moved to a canonical focal length, but says so; the same meaning loads silently."""
    import warnings

    from tests.conftest import run_folder
    from worldfromblur.models import ModelConfig, WorldFromBlur
    from worldfromblur.training.trainer import init_modules

    plain = run_folder(tmp_path / "plain", WorldFromBlur(ModelConfig()))
    focal = WorldFromBlur(ModelConfig(depth_focal=130))
    with pytest.warns(UserWarning, match="trained with model.depth_focal=None, this run uses 130.0"):
        init_modules(focal, {"depth": tmp_path / "plain"})
    assert all(torch.equal(v, plain.depth.state_dict()[k]) for k, v in focal.depth.state_dict().items())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        init_modules(WorldFromBlur(ModelConfig()), {"depth": tmp_path / "plain", "motion": tmp_path / "plain"})
