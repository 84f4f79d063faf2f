"""Training from the stream, the time budget, and `wfb train-model` end to end on the CPU."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from worldfromblur.cli.main import main
from worldfromblur.data.pool import save_pool, synthetic_pool
from worldfromblur.errors import WfbError
from worldfromblur.models.io import load_model
from worldfromblur.training import train
from worldfromblur.training.config import config_from_dict
from worldfromblur.training.recipe import read_recipe

TINY_STREAM = {"size": [48, 32], "max_subframes": 2, "max_blur_px": 12.0}


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pool") / "pool"
    save_pool(synthetic_pool(12, size=(64, 48), seed=2, progress=False), out)
    return out


def stream_cfg(out: Path, pool: Path, **extra):
    data = {"stage": "supervised", "model": {"preset": "compact"}, "out": str(out), "batch_size": 2, "max_steps": 4,
            "log_every": 1, "image_every": 0, "ckpt_every": 2, "deterministic": True, "loss": {"depth": "log_l1"},
            "data": {"source": "stream", "pool": [str(pool)], "held_out": 0.2, "stream": TINY_STREAM}}
    data.update(extra)
    return config_from_dict(data)


def test_a_stream_run_trains_every_module_and_records_its_size(pool_dir, tmp_path):
    run = train(stream_cfg(tmp_path / "run", pool_dir), progress=False)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["input_size"] == [48, 32]
    first = load_file(run / "checkpoints" / "step-000002" / "model.safetensors")
    last = load_file(run / "checkpoints" / "step-000004" / "model.safetensors")
    for module in ("deblur", "depth", "motion"):
        changed = [k for k in first if k.startswith(module + ".") and not torch.equal(first[k], last[k])]
        assert changed, module


def test_an_interrupted_stream_run_resumes_to_the_same_weights(pool_dir, tmp_path):
    whole = train(stream_cfg(tmp_path / "whole", pool_dir), progress=False)
    train(stream_cfg(tmp_path / "cut", pool_dir, max_steps=2), progress=False)
    cut = train(stream_cfg(tmp_path / "cut", pool_dir), resume=True, progress=False)
    a = load_file(whole / "checkpoints" / "step-000004" / "model.safetensors")
    b = load_file(cut / "checkpoints" / "step-000004" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_time_budget_sets_and_keeps_max_steps(pool_dir, tmp_path):
    cfg = stream_cfg(tmp_path / "budget", pool_dir, minutes=0.15, max_steps=10**6, ckpt_every=10**6)
    run = train(cfg, progress=False)
    steps = yaml.safe_load((run / "config.yaml").read_text())["max_steps"]
    assert 3 <= steps < 10**6
    assert (run / "checkpoints" / f"step-{steps:06d}").is_dir()
    # a resume of the finished run does not train further, whatever the budget says
    again = stream_cfg(tmp_path / "budget", pool_dir, minutes=0.15, max_steps=10**6, ckpt_every=10**6)
    train(again, resume=True, progress=False)
    assert [p.name for p in (run / "checkpoints").iterdir()] == [f"step-{steps:06d}"]


def _paced_run(monkeypatch, pace, minutes=10.0, max_steps=10**6, fixed=False):
    """Steps of a Budget run on a fake clock, ``pace(step)`` seconds each, until max_steps; (end time, budget)."""
    from worldfromblur.training import trainer

    clock = [0.0]
    monkeypatch.setattr(trainer.time, "perf_counter", lambda: clock[0])
    cfg = config_from_dict({"minutes": minutes, "max_steps": max_steps})
    budget = trainer.Budget(cfg, 0, fixed, t0=0.0)
    step = 0
    while step < cfg.max_steps or budget.active:
        step += 1
        clock[0] += pace(step)
        budget.update(step)
        assert step < 10**5
    return clock[0], budget


def test_a_time_budget_follows_the_pace_after_calibrating(monkeypatch):
    # one second a step, and twice that from step 100 on (another job starts on the machine)
    end, budget = _paced_run(monkeypatch, lambda step: 1.0 if step < 100 else 2.0)
    assert 600 - 2 * 0.05 * 600 <= end <= 600 + 2.0  # the first estimate alone would run 600 + 500 s
    # and half a second a step after the first fifty: the budget is used, not left idle
    end, _ = _paced_run(monkeypatch, lambda step: 1.0 if step < 50 else 0.5)
    assert 600 - 2 * 0.05 * 600 <= end <= 600 + 1.0
    # a resumed run keeps the max_steps its checkpoint holds, whatever the pace
    end, budget = _paced_run(monkeypatch, lambda step: 2.0, max_steps=50, fixed=True)
    assert end == 100.0 and not budget.tracking


def test_the_evaluation_reserve_grows_when_scoring_has_one_thread_and_follows_the_device(monkeypatch):
    from worldfromblur.training import recipe as recipes

    monkeypatch.setattr(recipes, "_render_workers", lambda: 2)
    recipe = read_recipe("compact", ["evaluate.unseen_rooms=100", "evaluate.refine=0", "evaluate.rooms=[]",
                                     "evaluate.videos=[]", "device=cpu"])
    reserve = {}
    for threads in (1, 2, 8):
        monkeypatch.setattr(recipes.torch, "get_num_threads", lambda t=threads: t)
        reserve[threads] = recipes.eval_reserve_s(recipe)
    render = recipes.EVAL_RESERVE_S + 100 * recipes.UNSEEN_RENDER_CORE_S / 2
    assert reserve[2] == pytest.approx(render + 100 * recipes.SCORE_S["cpu"]) == reserve[8]
    assert reserve[1] == pytest.approx(render + 2 * 100 * recipes.SCORE_S["cpu"])
    # refinement adds its iterations' time per sample; a GPU scores with its own figures, whatever the threads
    refined = read_recipe("compact", ["evaluate.unseen_rooms=100", "evaluate.refine=15", "evaluate.rooms=[]",
                                      "evaluate.videos=[]", "device=cpu"])
    assert recipes.eval_reserve_s(refined) == pytest.approx(
        render + 100 * (recipes.SCORE_S["cpu"] + 15 * recipes.REFINE_STEP_S["cpu"]))
    monkeypatch.setattr(recipes, "resolve_device", lambda name, option: "cuda")
    assert recipes.eval_reserve_s(refined) == pytest.approx(
        render + 100 * (recipes.SCORE_S["cuda"] + 15 * recipes.REFINE_STEP_S["cuda"]))


def test_stream_config_errors_are_one_line(pool_dir, tmp_path):
    with pytest.raises(WfbError, match="data.source"):
        config_from_dict({"data": {"source": "web"}})
    with pytest.raises(WfbError, match="loss.depth"):
        config_from_dict({"loss": {"depth": "l3"}})
    with pytest.raises(WfbError, match="unknown key"):
        train(stream_cfg(tmp_path / "a", pool_dir, data={"source": "stream", "pool": [str(pool_dir)], "stream": {"blur": 3}}),
              progress=False)
    with pytest.raises(WfbError, match="not a frame pool"):
        train(stream_cfg(tmp_path / "b", pool_dir, data={"source": "stream", "pool": [str(tmp_path)]}), progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


RECIPE = {
    "base": {"model": {"preset": "compact"}, "batch_size": 2, "image_every": 0, "log_every": 1,
             "data": {"source": "stream", "pool": ["synthetic:12"], "held_out": 0.25, "stream": TINY_STREAM}},
    "stages": [{"name": "supervised", "share": 1.0, "config": {"stage": "supervised"}}],
    "evaluate": {"samples": 8},
}


def test_train_model_trains_evaluates_and_exports_a_model_reconstruct_reads(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    out = tmp_path / "model-run"
    assert main(["train-model", str(recipe), "--out", str(out), "--minutes", "0.7", "--quiet", "batch_size=3"]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["samples"] == 8 and report["held_out_frames"] == 3
    assert {"image", "depth", "motion", "motion_up_to_reversal"} <= set(report["models"]["model"])
    assert set(report["references"]) == {"blurred input", "zero motion", "median depth"}
    model, _ = load_model(out)  # the run folder itself works as --checkpoint
    assert model.cfg.input_size == [48, 32]
    card = yaml.safe_load((out / "model" / "config.yaml").read_text())["provenance"]
    assert card["samples_seen"]["supervised"] > 0 and card["recipe"]["minutes"] == 0.7
    assert "held-out frames" in capsys.readouterr().out
    photo = Path(__file__).parents[2] / "examples" / "room-1.png"
    assert main(["reconstruct", str(photo), "--checkpoint", str(out), "--out", str(tmp_path / "rec")]) == 0
    assert (tmp_path / "rec" / "room-1" / "deblurred.png").is_file()


def test_the_shortest_budget_a_refusal_names_is_accepted(monkeypatch):
    """The refusal of too short a --minutes names a minimum rounded up, never down to one it refuses again."""
    from worldfromblur.training import recipe as recipes

    one_stage = read_recipe("compact")
    for reserve in (89.1, 90.0, 90.5, 95.99):  # with 6 s for the stage: 1.59, 1.6, 1.608 and 1.7 minutes
        monkeypatch.setattr(recipes, "eval_reserve_s", lambda _recipe, r=reserve: r)
        with pytest.raises(WfbError, match="give at least") as refused:
            recipes._check_budget(one_stage, 1.0)
        least = float(str(refused.value).rsplit("give at least ", 1)[1])
        recipes._check_budget(one_stage, least)  # accepted
        assert least - (reserve + 6) / 60 < 0.1


def test_train_model_refuses_bad_input_before_training(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    assert main(["train-model", str(recipe), "--out", str(tmp_path / "a"), "--minutes", "0.1"]) == 2
    assert "too short" in capsys.readouterr().err
    assert main(["train-model", "nonesuch", "--out", str(tmp_path / "b"), "--minutes", "1"]) == 2
    assert "no such recipe" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["train-model", str(recipe), "--out", str(tmp_path / "c"), "--minutes", "1",
                 f"data.pool=[{tmp_path / 'empty'}]"]) == 2
    assert "not a frame pool" in capsys.readouterr().err
    assert main(["train-model", str(recipe), "--out", str(tmp_path / "d"), "--minutes", "1", "data.held_out=0"]) == 2
    assert "held_out must be above 0" in capsys.readouterr().err
    assert main(["train-model", str(recipe), "--out", str(tmp_path / "e"), "--minutes", "1", "model.depth_focal=-5"]) == 2
    assert "model.depth_focal must be a focal length in pixels above 0" in capsys.readouterr().err
    assert main(["train-model", str(recipe), "--out", str(tmp_path / "f"), "--minutes", "1", "data.stream.clean=2"]) == 2
    assert "data.stream: stream clean is a fraction of samples" in capsys.readouterr().err
    assert main(["train-model", str(recipe), "--out", str(tmp_path / "g"), "--minutes", "1", "data.stream.nosie=0"]) == 2
    assert "data.stream: unknown key(s) nosie" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in ("a", "b", "c", "d", "e", "f", "g"))
    bad = dict(RECIPE, stages=[{"name": "x", "share": 0}])
    recipe.write_text(yaml.safe_dump(bad))
    with pytest.raises(WfbError, match="positive share"):
        read_recipe(str(recipe))


def test_the_shipped_recipe_is_valid():
    recipe = read_recipe("compact")
    assert recipe.stages[0].config.stage == "supervised"
    assert recipe.stages[0].config.data.source == "stream"


def test_the_per_pixel_path_head_trains_exports_evaluates_and_reconstructs(tmp_path, capsys):
    """motion: paths goes through the same commands as the LSTM head: train-model (its path loss falls), the
    held-out evaluation (poses from the solve) and reconstruct."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    out = tmp_path / "paths-run"
    assert main(["train-model", str(recipe), "--out", str(out), "--minutes", "0.7", "--quiet", "batch_size=3",
                 "model.motion=paths"]) == 0
    model, _ = load_model(out)
    assert model.cfg.motion == "paths" and type(model.motion).__name__ == "CompactPathMotion"
    report = json.loads((out / "eval.json").read_text())
    assert "motion_up_to_reversal" in report["models"]["model"]
    photo = Path(__file__).parents[2] / "examples" / "room-1.png"
    assert main(["reconstruct", str(photo), "--checkpoint", str(out), "--out", str(tmp_path / "rec")]) == 0
    poses = json.loads((tmp_path / "rec" / "room-1" / "poses.json").read_text())
    flags = json.loads((tmp_path / "rec" / "room-1" / "summary.json").read_text())["motion_degenerate"]
    assert len(flags) == 6 and all(isinstance(f, bool) for f in flags)
    assert len(poses["u"]) == 6 and all(map(lambda r: all(abs(x) < 1 for x in r), poses["u"]))


def test_the_path_loss_falls_and_respects_time_reversal():
    from worldfromblur.geometry import pose_from_uv
    from worldfromblur.losses import LossConfig, path_loss
    from worldfromblur.models import WorldFromBlur
    from worldfromblur.models.config import preset

    torch.manual_seed(0)
    cfg = preset("compact")
    cfg.motion = "paths"
    model = WorldFromBlur(cfg)
    B, H, W = 2, 32, 48
    K = torch.tensor([[40.0, 0, 23.5], [0, 40.0, 15.5], [0, 0, 1]]).expand(B, 3, 3).clone()
    x = torch.rand(B, 3, H, W)
    poses = pose_from_uv(torch.randn(B, 6, 3) * 0.02, torch.randn(B, 6, 3) * 0.01)
    batch = {"blurred": x, "sharp": x, "depth": 1 + torch.rand(B, 1, H, W), "K": K, "poses": poses,
             "valid_depth": torch.ones(B, 1, H, W, dtype=torch.bool)}
    opt = torch.optim.Adam(model.motion.parameters(), 1e-3)
    errors = []
    for _ in range(25):
        loss, details, _ = model.stage_loss("motion", batch, LossConfig())
        opt.zero_grad()
        loss.backward()
        opt.step()
        errors.append(float(details["path_px"]))
    assert errors[-1] < 0.5 * errors[0]
    with torch.no_grad():
        m = model.motion(x, x)
        d, s = m.displacement, m.log_scale
        a, _ = path_loss(d, s, poses, batch["depth"], K)
        b, det = path_loss(d.flip(1), s, poses, batch["depth"], K)  # the same prediction in reversed time
    assert torch.allclose(a, b) and float(det["reversed"]) in (0.0, 0.5, 1.0)
    with pytest.raises(WfbError, match="needs the intrinsics"):
        model.predict(x)
    out = model.predict(x, K=K)
    assert out["u"].shape == (B, 6, 3) and out["paths"].shape == (B, 6, 2, H, W) and out["degenerate"].dtype == torch.bool


def test_the_shipped_recipe_builds_the_shipped_model_and_continues_from_its_weights(tmp_path):
    """`wfb train-model` with no model options trains exactly the shipped architecture, starting from its weights,
    so that every training window adds to the last release instead of starting over."""
    from worldfromblur.models.io import model_config_of, shipped_model
    from worldfromblur.training.trainer import Trainer

    cfg = read_recipe("compact", ["data.pool=[synthetic:4]", "batch_size=1", f"out={tmp_path / 'run'}"]).stages[0].config
    shipped = model_config_of(shipped_model())
    assert cfg.model.to_dict() == {**shipped.to_dict(), "input_size": None}  # the stream sets the size...
    assert list(cfg.data.stream["size"]) == shipped.input_size  # ...to the shipped model's
    trainer = Trainer(cfg, resume=False, progress=False)  # set-up: the modules start from the shipped weights
    weights = load_file(str(shipped_model() / "model.safetensors"))
    state = trainer.model.state_dict()
    newer = set(state) - set(weights)  # parts added after the release was saved start at zero (unchanged output)
    assert set(weights) <= set(state) and newer <= {"depth.out_signed.weight"}
    assert all(torch.equal(state[k].cpu(), weights[k]) for k in weights)
    assert all(float(state[k].abs().max()) == 0.0 for k in newer)
    trainer.close()
    with pytest.raises(WfbError, match="init.motion=null"):  # another motion head cannot start from the shipped one
        Trainer(read_recipe("compact", ["data.pool=[synthetic:4]", "model.motion=lstm",
                                        f"out={tmp_path / 'other'}"]).stages[0].config, resume=False, progress=False)


def test_a_run_is_judged_against_the_shipped_model_on_rooms_no_pool_contains(tmp_path, capsys, rotating_video):
    """evaluate.unseen_rooms renders dataset-keyed procedural rooms after training, evaluate.rooms names built
    datasets of held-out rooms; both score the trained and the shipped model and say whether the new one beats the
    shipped one; the verdicts reach eval.json's ship verdict and the exported model."""
    from worldfromblur.training.recipe import compare_models

    room = tmp_path / "held-out-room"
    assert main(["make-dataset", "synthetic", "--num", "3", "--size", "160x120", "--splits", "0", "0", "1", "--seed",
                 "5", "--workers", "1", "--quiet", "--out", str(room)]) == 0
    capsys.readouterr()
    out = tmp_path / "run"
    common = ["train-model", "compact", "--out", str(out), "--minutes", "0.85", "--quiet", "data.pool=[synthetic:6]",
              "batch_size=2", "evaluate.samples=4", "evaluate.batch_size=2", "evaluate.unseen_rooms=4",
              "evaluate.refine=2"]
    assert main(common) == 2 and not out.exists()  # 5 % of 6 frames is none: nothing to evaluate on, said before training
    for bad, said in ((f"evaluate.rooms=[{tmp_path}]", "evaluate.rooms: "), (f"evaluate.rooms={room}", "must be a list")):
        assert main([*common, "data.held_out=0.2", bad]) == 2 and not out.exists()  # before training
        assert said in capsys.readouterr().err
    assert main([*common, "data.held_out=0.2", f"evaluate.rooms=[{room}]"]) == 0
    report = json.loads((out / "eval.json").read_text())
    held = report["rooms"][str(room)]
    assert held["samples"] == 3 and set(held["models"]) == {"model", "shipped"}
    assert held["verdict"]["beats_shipped"] == (bool(held["verdict"]["better"]) and not held["verdict"]["worse"])
    ship = report["ship"]
    assert ship["ship"] == (report["unseen_rooms"]["verdict"]["beats_shipped"] and not held["verdict"]["worse"])
    assert ("ship it: " if ship["ship"] else "do not ship it: ") + ship["why"] in capsys.readouterr().out
    unseen = report["unseen_rooms"]
    assert unseen["samples"] == 4 and set(unseen["models"]) == {"model", "shipped"}
    assert (out / "unseen-rooms" / "manifest.json").is_file()
    verdict = unseen["verdict"]
    assert set(verdict["terms"]) == {"deblurring PSNR dB", "depth Abs Rel", "rotation error up to reversal deg",
                                     "rotation error up to reversal deg, after refinement"}
    assert set(unseen["models"]["model"]["refined"]) == {"motion", "motion_up_to_reversal"}
    assert verdict["beats_shipped"] == (bool(verdict["better"]) and not verdict["worse"])
    provenance = yaml.safe_load((out / "model" / "config.yaml").read_text())["provenance"]
    assert provenance["unseen_rooms"]["beats_shipped"] == verdict["beats_shipped"]
    assert provenance["rooms"][str(room)] == held["verdict"]

    # --reevaluate: the finished run judged again without training (here with the network's own rotation), the
    # former eval.json kept; only evaluate.* settings may change, and the folder must be a finished run
    weights = (out / "model" / "model.safetensors").read_bytes()
    report_provenance_recipe = provenance["recipe"]
    for bad, said in ((["--out", str(out), "--reevaluate", "batch_size=4"], "only evaluate.KEY=VALUE"),
                      (["--out", str(room), "--reevaluate"], "not a wfb train-model run"),
                      (["--out", str(out), "--reevaluate", "--minutes", "1"], "trains nothing")):
        assert main(["train-model", *bad, "--quiet"]) == 2 and said in capsys.readouterr().err
    assert not (out / "eval-1.json").exists()
    assert main(["train-model", "--out", str(out), "--reevaluate", "evaluate.refine=0", "--quiet"]) == 0
    assert json.loads((out / "eval-1.json").read_text()) == report
    again = json.loads((out / "eval.json").read_text())
    assert set(again["unseen_rooms"]["verdict"]["terms"]) == {"deblurring PSNR dB", "depth Abs Rel",
                                                              "rotation error up to reversal deg"}
    assert again["unseen_rooms"]["models"]["model"]["depth"] == unseen["models"]["model"]["depth"]  # same rooms
    assert (out / "model" / "model.safetensors").read_bytes() == weights
    provenance = yaml.safe_load((out / "model" / "config.yaml").read_text())["provenance"]
    assert provenance["reevaluated"] == ["evaluate.refine=0"] and provenance["recipe"] == report_provenance_recipe

    # evaluate.videos: real-blur windows of high-frame-rate video, judged beside the shipped model and in the verdict
    video = rotating_video[0]
    assert main(["train-model", "--out", str(out), "--reevaluate", f"evaluate.videos=[{tmp_path}]", "--quiet"]) == 2
    assert "evaluate.videos: " in capsys.readouterr().err
    assert main(["train-model", "--out", str(out), "--reevaluate", f"evaluate.videos=[{video}]", "evaluate.refine=2",
                 "--quiet"]) == 0
    report = json.loads((out / "eval.json").read_text())
    clip = report["videos"][str(video)]
    assert len(clip["windows"]) == 3 and set(clip["models"]) == {"model", "shipped"}
    assert set(clip["verdict"]["terms"]) == {"real rotation axis error deg, after refinement"}
    worse = bool(report["rooms"][str(room)]["verdict"]["worse"] or clip["verdict"]["worse"])
    assert report["ship"]["ship"] == (report["unseen_rooms"]["verdict"]["beats_shipped"] and not worse)
    assert yaml.safe_load((out / "model" / "config.yaml").read_text())["provenance"]["videos"] == {
        str(video): clip["verdict"]}

    def scores(psnr, abs_rel, rot):
        return {"image": {"psnr": psnr}, "depth": {"abs_rel": abs_rel},
                "motion_up_to_reversal": {"yaw": rot, "pitch": rot, "roll": rot}}

    old = scores(30.0, 0.40, 0.50)
    assert compare_models(scores(30.5, 0.40, 0.50), old)["beats_shipped"]
    assert compare_models(scores(30.0, 0.405, 0.49), old)["beats_shipped"]  # within 2 % on depth, better on motion
    worse = compare_models(scores(31.0, 0.45, 0.40), old)
    assert not worse["beats_shipped"] and worse["worse"] == ["depth Abs Rel"]
    assert not compare_models(old, old)["beats_shipped"]  # no better: not shipped


def test_rotation_is_judged_after_refinement_when_both_models_were_refined():
    """With refined trajectories for both models, the verdict's rotation term is the refined one (what wfb
    reconstruct delivers by default); the network's own rotation is reported, marked not judged, and decides
    nothing; without them (evaluate.refine=0) the network's own rotation decides as before."""
    from worldfromblur.training.recipe import (
        REFINED_ROTATION,
        compare_models,
        format_verdict,
    )

    def scores(abs_rel, rot, refined=None):
        out = {"image": {"psnr": 30.0}, "depth": {"abs_rel": abs_rel},
               "motion_up_to_reversal": {"yaw": rot, "pitch": rot, "roll": rot}}
        if refined is not None:
            out["refined"] = {"motion_up_to_reversal": {"yaw": refined, "pitch": refined, "roll": refined}}
        return out

    old = scores(0.40, 0.50, refined=0.40)
    new = scores(0.30, 0.55, refined=0.405)  # network's rotation 10 % worse, refined 1.25 % worse: within 2 %
    v = compare_models(new, old)
    assert v["beats_shipped"] and v["better"] == ["depth Abs Rel"] and not v["worse"]
    assert v["terms"]["rotation error up to reversal deg"] == pytest.approx({"model": 0.55, "shipped": 0.50,
                                                                           "judged": False})
    assert v["terms"][REFINED_ROTATION] == pytest.approx({"model": 0.405, "shipped": 0.40})
    assert "(reported, not judged)" in format_verdict("rooms", v)
    v = compare_models(scores(0.30, 0.45, refined=0.42), old)  # refined 5 % worse: not shipped, however the net did
    assert not v["beats_shipped"] and v["worse"] == [REFINED_ROTATION]
    v = compare_models(scores(0.40, 0.50, refined=0.35), old)  # better after refinement only: a win
    assert v["beats_shipped"] and v["better"] == [REFINED_ROTATION]
    plain = compare_models(scores(0.30, 0.55), scores(0.40, 0.50))  # no refinement scored: the network's rotation
    assert not plain["beats_shipped"] and plain["worse"] == ["rotation error up to reversal deg"]
    assert compare_models(new, scores(0.40, 0.50))["worse"] == ["rotation error up to reversal deg"]  # one side only


def test_the_ship_verdict_needs_a_win_on_unseen_rooms_and_no_loss_on_held_out_rooms():
    from worldfromblur.training.recipe import ship_verdict

    def verdict(beats, worse=()):
        return {"verdict": {"beats_shipped": beats, "better": ["x"] if beats else [], "worse": list(worse)}}

    assert ship_verdict({"unseen_rooms": verdict(True), "rooms": {"a": verdict(False)}})["ship"]  # level on a: fine
    no = ship_verdict({"unseen_rooms": verdict(True), "rooms": {"a": verdict(False, ["depth Abs Rel"])}})
    assert not no["ship"] and "worse on a (depth Abs Rel)" in no["why"]
    assert not ship_verdict({"unseen_rooms": verdict(False), "rooms": {"a": verdict(True)}})["ship"]
    assert ship_verdict({"rooms": {"a": verdict(True), "b": verdict(False)}})["ship"]  # no unseen rooms: a room's win
    assert not ship_verdict({"rooms": {"a": verdict(False)}})["ship"]
    clip = ship_verdict({"unseen_rooms": verdict(True), "videos": {"clip": verdict(False, ["real rotation axis"])}})
    assert not clip["ship"] and "worse on clip (real rotation axis)" in clip["why"]  # real blur can veto
    assert ship_verdict({"videos": {"clip": verdict(True)}})["ship"]
