"""Metrics on inputs whose answers are worked out by hand, agreement with scikit-image, and wfb evaluate."""

import json
import math

import numpy as np
import pytest
import torch

from worldfromblur.evaluation import (
    depth_metrics,
    edge_energies,
    image_metrics,
    motion_errors,
)
from worldfromblur.geometry import pose_from_uv


def test_depth_metrics_by_hand():
    m = depth_metrics(np.full((3, 4), 2.0), np.ones((3, 4)))
    assert m["abs_rel"] == pytest.approx(1.0) and m["sq_rel"] == pytest.approx(1.0) and m["rmse"] == pytest.approx(1.0)
    assert m["rmse_log"] == pytest.approx(math.log(2)) and m["a1"] == m["a2"] == m["a3"] == 0.0  # ratio 2 > 1.25^3
    m = depth_metrics(np.full((2, 2), 1.2), np.ones((2, 2)))
    assert m["a1"] == 1.0 and m["abs_rel"] == pytest.approx(0.2) and m["sq_rel"] == pytest.approx(0.04)


def test_depth_metrics_mask_range_and_per_image_mean():
    gt = np.ones((2, 1, 2, 2))
    pred = gt.copy()
    pred[0, 0, 0, 0] = 2.0  # image 0: one pixel off by 1 m -> abs_rel 1/4
    gt[1, 0, 0, 0] = 50.0  # beyond the 10 m cap: ignored
    pred[1] = 1.5  # image 1: three valid pixels, all off by 0.5 -> abs_rel 0.5
    m = depth_metrics(pred, gt)
    assert m["abs_rel"] == pytest.approx((0.25 + 0.5) / 2)  # the mean of per-image values, not pooled pixels
    mask = np.ones_like(gt)
    mask[0, 0, 0, 0] = 0
    assert depth_metrics(pred, gt, mask)["abs_rel"] == pytest.approx((0.0 + 0.5) / 2)
    assert depth_metrics(torch.from_numpy(pred), torch.from_numpy(gt))["abs_rel"] == pytest.approx(m["abs_rel"])


def test_aligned_depth_metrics_remove_each_images_scale_and_report_it():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1.0, 4.0, (2, 1, 8, 8))
    shape_error = gt * rng.uniform(0.9, 1.1, gt.shape)
    pred = shape_error * np.array([2.0, 0.5])[:, None, None, None]  # each image off in scale by a factor of 2
    metric, aligned = depth_metrics(pred, gt), depth_metrics(pred, gt, align=True)
    assert metric["abs_rel"] > 0.4 and "scale_log" not in metric
    assert aligned["scale_log"] == pytest.approx(math.log(2), abs=0.03)  # |log| of both: 2 and 1/2 count alike
    assert aligned["scale_ratio"] == pytest.approx(1.0, abs=0.03)  # ... and in direction cancel
    too_near = depth_metrics(shape_error * 0.6, gt, align=True)
    assert too_near["scale_ratio"] == pytest.approx(0.6, abs=0.02) and too_near["scale_log"] == pytest.approx(
        -math.log(0.6), abs=0.02)
    assert aligned["abs_rel"] < 0.08 and aligned["a1"] == 1.0
    # the shape error alone is what is left: the same maps without the scale factors align to the same values
    assert depth_metrics(shape_error, gt, align=True)["abs_rel"] == pytest.approx(aligned["abs_rel"])
    # a constant aligns to each image's own median
    own_median = [np.mean(np.abs(np.median(g) - g) / g) for g in gt]
    assert depth_metrics(np.full_like(gt, 2.5), gt, align=True)["abs_rel"] == pytest.approx(np.mean(own_median))


def test_psnr_by_hand():
    a = np.zeros((3, 16, 16))
    assert image_metrics(a + 0.1, a)["psnr"] == pytest.approx(20.0)
    # An image identical to its truth counts 60 dB, not infinity, so that a mean over images stays finite.
    assert image_metrics(np.stack([a, a + 0.1]), np.stack([a, a]))["psnr"] == pytest.approx((60.0 + 20.0) / 2)
    with pytest.raises(ValueError, match="at least 11 x 11"):
        image_metrics(np.zeros((3, 8, 8)), np.zeros((3, 8, 8)))


def test_edge_energy_sees_softness_that_psnr_barely_does():
    rng = np.random.default_rng(0)
    truth = rng.random((3, 32, 32))
    # By hand: a single step of height 1 (4 rows x 1 edge); half its height gives a quarter of its energy.
    step = np.zeros((1, 4, 4))
    step[..., 2:] = 1.0
    assert edge_energies(step * 0.5, step) == [0.25]
    assert edge_energies(step, step) == [1.0]
    # A box-blurred frame keeps less detail, added noise more; batches give one ratio per image.
    soft = (truth + np.roll(truth, 1, -1) + np.roll(truth, -1, -1)) / 3
    noisy = truth + rng.normal(0, 0.05, truth.shape)
    ratios = edge_energies(np.stack([soft, noisy]), np.stack([truth, truth]))
    assert ratios[0] < 0.6 and ratios[1] > 1.0
    with pytest.raises(ValueError, match="constant image"):
        edge_energies(truth, np.full_like(truth, 0.5))


def test_ssim_and_psnr_agree_with_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(0)
    for shape in [(3, 40, 52), (1, 33, 29), (3, 64, 48)]:
        a = rng.random(shape)
        b = np.clip(a + rng.normal(0, 0.15, shape), 0, 1)
        ours = image_metrics(a, b)
        ref = structural_similarity(a, b, channel_axis=0, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=1.0)
        assert abs(ours["ssim"] - ref) < 1e-4
        assert abs(ours["psnr"] - peak_signal_noise_ratio(a, b, data_range=1.0)) < 1e-4


def test_motion_errors_by_hand():
    u = torch.zeros(1, 2, 3)
    v = torch.zeros(1, 2, 3)
    gt = pose_from_uv(u, v)
    pred = pose_from_uv(torch.tensor([[[0.0, math.radians(2), 0.0]] * 2]), torch.tensor([[[0.03, 0.0, -0.01]] * 2]))
    e = motion_errors(pred, gt)
    assert e["tx"] == pytest.approx(3.0) and e["tz"] == pytest.approx(1.0) and e["ty"] == pytest.approx(0.0)
    assert e["yaw"] == pytest.approx(2.0, abs=1e-4) and e["pitch"] == pytest.approx(0.0, abs=1e-6)
    # Time reversal: a reversed prediction is wrong in order but right up to reversal.
    g = pose_from_uv(torch.tensor([[[0.01, 0, 0], [-0.02, 0, 0]]]), torch.tensor([[[0.01, 0, 0], [-0.03, 0, 0]]]))
    assert motion_errors(g.flip(1), g)["tx"] == pytest.approx(4.0, abs=1e-5)
    assert motion_errors(g.flip(1), g, reversal="min")["tx"] == pytest.approx(0.0, abs=1e-5)


def test_blur_length_is_the_median_pixel_path_of_the_true_exposure():
    from worldfromblur.evaluation.report import blur_lengths, by_blur

    # Six instants around the reference, 1 cm apart sideways, 2 m from a plane seen at fx = 100: 0.5 px a step.
    poses = torch.eye(4).repeat(1, 6, 1, 1)
    poses[0, :, 0, 3] = 0.01 * torch.tensor([-3.0, -2, -1, 1, 2, 3])
    K = torch.tensor([[[100.0, 0, 32], [0, 100, 24], [0, 0, 1]]])
    depth = torch.full((1, 1, 48, 64), 2.0)
    assert blur_lengths(depth, poses, K)[0] == pytest.approx(3.0, rel=1e-6)
    assert np.isnan(blur_lengths(torch.zeros_like(depth), poses, K)[0])  # no depth reading: no length
    rows = by_blur([1.0, 5.0, 20.0, float("nan")], [10.0, 20.0, 30.0, 40.0])
    expected = [(0, 1, 10), (3, 1, 20), (8, 0, None), (16, 1, 30)]
    assert [(r["from_px"], r["samples"], r["psnr"]) for r in rows] == expected
    assert rows[-1]["to_px"] is None


def test_wfb_evaluate_writes_tables(tmp_path, capsys):
    from worldfromblur.cli.main import main
    from worldfromblur.data.build import run_build
    from worldfromblur.data.synthetic import SyntheticOptions, plan_synthetic
    from worldfromblur.training import load_config, train

    data = tmp_path / "ds"
    run_build(data, plan_synthetic(SyntheticOptions(width=64, height=48), 12, 2), workers=1, progress=False)
    cfg = load_config("compact-cycle", [f"data.root={data}", f"out={tmp_path / 'run'}", "max_steps=2", "data.workers=0",
                                        "init={}", "image_every=0"])
    train(cfg, progress=False)
    report = tmp_path / "report"
    code = main(["evaluate", "--checkpoint", f"cycle={tmp_path / 'run'}", "--checkpoint", str(tmp_path / "run"),
                 "--data", str(data), "--out", str(report), "--figures", "1", "--quiet"])
    assert code == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["models"]) == {"cycle", "run"} and metrics["num_samples"] > 0
    assert set(metrics["models"]["cycle"]["depth"]) == {"abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"}
    tables = (report / "tables.md").read_text()
    assert "| Term | cycle | run | zero motion |" in tables and "| PSNR (dB) |" in tables and "blurred input" in tables
    aligned = metrics["models"]["cycle"]["depth_aligned"]
    assert set(aligned) == set(metrics["models"]["cycle"]["depth"]) | {"scale_log", "scale_ratio"}
    assert aligned["scale_log"] >= abs(math.log(aligned["scale_ratio"])) - 1e-9 and aligned["scale_ratio"] > 0
    assert "Table 3b. Depth with each map scaled" in tables and "| Scale removed (abs. log) |" in tables
    assert "| Scale of the prediction (median pred. / true, geom. mean) |" in tables
    # Table 2b splits Table 2's PSNR by blur length: its rows hold every sample and average back to it.
    for col in (metrics["models"]["run"], metrics["references"]["blurred input"]):
        rows = col["image_by_blur"]
        assert sum(r["samples"] for r in rows) == metrics["num_samples"]
        mean = sum(r["psnr"] * r["samples"] for r in rows if r["samples"]) / metrics["num_samples"]
        assert mean == pytest.approx(col["image"]["psnr"], rel=1e-9)
    assert "Table 2b. Deblurring PSNR (dB) by blur length" in tables
    assert "| 0-3 px |" in tables and "| 16+ px |" in tables
    assert (report / "figures" / "cycle-0000.png").is_file()
    assert "wfb: warning" not in capsys.readouterr().err  # the run's model works at the data's 64x48
    # A model that works at another size is scored at the data's, and the command says so, once per model.
    from worldfromblur.models.io import shipped_model

    shipped = main(["evaluate", "--checkpoint", f"shipped={shipped_model()}", "--checkpoint",
                    f"cycle={tmp_path / 'run'}", "--data", str(data), "--out", str(tmp_path / "r-size"), "--quiet"])
    err = capsys.readouterr().err
    assert shipped == 0 and err.count("wfb: warning") == 1, err
    assert "its samples are 64x48, but 'shipped' works at 160x120" in err and "--size 160x120" in err
    # No silent overwrite; a bad checkpoint is one line naming it.
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run"), "--data", str(data), "--out", str(report)]) == 2
    assert "already holds a report" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", "--checkpoint", str(tmp_path / "empty"), "--data", str(data), "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a checkpoint" in err and not (tmp_path / "r2").exists()
    # --refine: the trajectory after wfb reconstruct's refinement beside each model's own; it refines the rotation
    # only, so the translation errors are the network's to the last digit while the rotation ones move.
    # --deconvolve: and the frame deconvolved with that trajectory, beside the network's in Tables 2 and 2b.
    refined = tmp_path / "refined"
    assert main(["evaluate", "--checkpoint", f"cycle={tmp_path / 'run'}", "--data", str(data), "--out", str(refined),
                 "--refine", "4", "--deconvolve", "--quiet"]) == 0
    m = json.loads((refined / "metrics.json").read_text())["models"]["cycle"]
    net, ref = m["motion"], m["refined"]["motion"]  # in time order (up to reversal, the order chosen may differ)
    assert all(ref[k] == net[k] for k in ("tx", "ty", "tz")), (net, ref)
    assert any(abs(ref[k] - net[k]) > 1e-6 for k in ("yaw", "pitch", "roll")), (net, ref)
    assert set(m["refined"]["motion_up_to_reversal"]) == set(net)
    tables = (refined / "tables.md").read_text()
    assert "| Term | cycle | cycle + refinement | zero motion |" in tables
    assert "| Term | cycle | cycle + refinement + deconvolution | blurred input |" in tables
    deconvolved, rows = m["refined"]["image"], m["refined"]["image_by_blur"]
    assert set(deconvolved) == set(m["image"]) and abs(deconvolved["psnr"] - m["image"]["psnr"]) > 1e-4
    assert sum(r["psnr"] * r["samples"] for r in rows if r["samples"]) / sum(r["samples"] for r in rows) == \
        pytest.approx(deconvolved["psnr"], rel=1e-9)
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run"), "--data", str(data), "--out", str(tmp_path / "r4"),
                 "--deconvolve"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give --refine too" in err and not (tmp_path / "r4").exists()
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run"), "--data", str(data), "--out", str(tmp_path / "r4"),
                 "--refine", "4", "--deconvolve", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--deconvolve LAMBDA must be above 0" in err and not (tmp_path / "r4").exists()
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run"), "--data", str(data), "--out", str(tmp_path / "r3"),
                 "--refine", "-1"]) == 2
    assert "--refine must be 0" in capsys.readouterr().err and not (tmp_path / "r3").exists()
    for flags in (["--refine-roll-prior", "0.1"], ["--refine", "4", "--refine-roll-prior", "-1"]):
        assert main(["evaluate", "--checkpoint", str(tmp_path / "run"), "--data", str(data), "--out",
                     str(tmp_path / "r5"), *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--refine-roll-prior must be 0" in err and not (tmp_path / "r5").exists()
    # --reference-depth: the median-depth column scores that constant, and the tables say where it came from.
    from worldfromblur.data import BlurDataset
    from worldfromblur.evaluation.metrics import depth_metrics

    assert metrics["reference_depth_from"] == "training split"
    assert "the median depth of the data's training split" in (report / "tables.md").read_text()
    given = tmp_path / "given"
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run"), "--data", str(data), "--out", str(given),
                 "--reference-depth", "1.5", "--quiet"]) == 0
    g = json.loads((given / "metrics.json").read_text())
    assert g["median_train_depth_m"] == 1.5 and g["reference_depth_from"] == "given"
    assert "1.50 m, given (--reference-depth)" in (given / "tables.md").read_text()
    test = BlurDataset(data, split="test")
    gt = torch.stack([test[i]["depth"] for i in range(len(test))])
    valid = torch.stack([test[i]["valid_depth"] for i in range(len(test))])
    expected = depth_metrics(torch.full_like(gt, 1.5), gt, valid)
    assert g["references"]["median depth"]["depth"]["abs_rel"] == pytest.approx(expected["abs_rel"], rel=1e-6)
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run"), "--data", str(data), "--out", str(tmp_path / "r6"),
                 "--reference-depth", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--reference-depth is a depth in metres" in err and not (tmp_path / "r6").exists()


def test_the_evaluation_refiner_passes_its_roll_prior(monkeypatch):
    from worldfromblur.evaluation import report

    seen = []
    monkeypatch.setattr(report, "refine_motion", lambda *a, **k: seen.append(k["roll_prior"]) or
                        type("R", (), {"u": a[3], "v": a[4]})())
    x = torch.zeros(1, 3, 4, 4)
    report.refiner(3)(x, x, x[:, :1], x[:, :2, :3], x[:, :2, :3], torch.eye(3)[None], "linear")
    report.refiner(3, 0.5)(x, x, x[:, :1], x[:, :2, :3], x[:, :2, :3], torch.eye(3)[None], "linear")
    assert seen == [None, 0.5] and report.refiner(0, 0.5) is None


def test_evaluate_help_states_the_deconvolution_default(capsys):
    """The help names the default lambda as a literal (the command registers without importing the solver): it must
    be the solver's."""
    from worldfromblur.cli.main import main
    from worldfromblur.reconstruct.deconvolve import DEFAULT_WEIGHT

    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert f"default {DEFAULT_WEIGHT:g})" in " ".join(capsys.readouterr().out.split())
