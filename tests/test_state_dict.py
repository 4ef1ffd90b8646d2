"""State-dict keys and shapes equal the reference's (SPEC section 4), for
every published config, and checkpoints round-trip in its format.

The expected layout is written out here from the specification, not
derived from our modules, so a renamed attribute or a reordered list fails.
"""

from __future__ import annotations

import pytest
import torch

from tpsmm import TPSMM, load_config

PUBLISHED = ["vox-256", "taichi-256", "ted-384", "mgif-256"]


def _conv_norm(prefix: str, out: int, inp: int, k: int = 3) -> dict:
    return {
        f"{prefix}.conv.weight": (out, inp, k, k),
        f"{prefix}.conv.bias": (out,),
        f"{prefix}.norm.weight": (out,),
        f"{prefix}.norm.bias": (out,),
    }


def _bn(prefix: str, n: int) -> dict:
    return {
        f"{prefix}.weight": (n,),
        f"{prefix}.bias": (n,),
        f"{prefix}.running_mean": (n,),
        f"{prefix}.running_var": (n,),
        f"{prefix}.num_batches_tracked": (),
    }


def expected_resnet18(prefix: str, in_channels: int, outputs: int) -> dict:
    keys = {f"{prefix}.conv1.weight": (64, in_channels, 7, 7), **_bn(f"{prefix}.bn1", 64)}
    in_planes = 64
    for layer, planes in enumerate([64, 128, 256, 512], start=1):
        for block in (0, 1):
            base = f"{prefix}.layer{layer}.{block}"
            first_in = in_planes if block == 0 else planes
            keys[f"{base}.conv1.weight"] = (planes, first_in, 3, 3)
            keys.update(_bn(f"{base}.bn1", planes))
            keys[f"{base}.conv2.weight"] = (planes, planes, 3, 3)
            keys.update(_bn(f"{base}.bn2", planes))
            if block == 0 and layer > 1:
                keys[f"{base}.downsample.0.weight"] = (planes, in_planes, 1, 1)
                keys.update(_bn(f"{base}.downsample.1", planes))
        in_planes = planes
    keys[f"{prefix}.fc.weight"] = (outputs, 512)
    keys[f"{prefix}.fc.bias"] = (outputs,)
    return keys


def expected_inpainting() -> dict:
    keys = _conv_norm("first", 64, 3, 7)
    for i, (out, inp) in enumerate([(128, 64), (256, 128), (512, 256)]):
        keys.update(_conv_norm(f"down_blocks.{i}", out, inp))
    for i, (out, inp) in enumerate([(256, 512), (128, 512), (64, 256)]):
        keys.update(_conv_norm(f"up_blocks.{i}", out, inp))
    for i, c in enumerate([512, 512, 512, 512, 256, 256]):
        for j in (1, 2):
            keys[f"resblock.{i}.conv{j}.weight"] = (c, c, 3, 3)
            keys[f"resblock.{i}.conv{j}.bias"] = (c,)
            keys[f"resblock.{i}.norm{j}.weight"] = (c,)
            keys[f"resblock.{i}.norm{j}.bias"] = (c,)
    keys["final.weight"] = (3, 64, 7, 7)
    keys["final.bias"] = (3,)
    return keys


def expected_dense_motion() -> dict:
    keys = {"down.weight": (3, 1, 13, 13)}
    downs = [(128, 84), (256, 128), (512, 256), (1024, 512), (1024, 1024)]
    for i, (out, inp) in enumerate(downs):
        keys.update(_conv_norm(f"hourglass.encoder.down_blocks.{i}", out, inp))
    ups = [(1024, 1024), (512, 2048), (256, 1024), (128, 512), (64, 256)]
    for i, (out, inp) in enumerate(ups):
        keys.update(_conv_norm(f"hourglass.decoder.up_blocks.{i}", out, inp))
    keys["maps.weight"] = (11, 148, 7, 7)
    keys["maps.bias"] = (11,)
    keys.update(_conv_norm("up.0", 74, 148))
    keys.update(_conv_norm("up.1", 37, 74))
    for i, c in enumerate([256, 148, 74, 37]):
        keys[f"occlusion.{i}.weight"] = (1, c, 7, 7)
        keys[f"occlusion.{i}.bias"] = (1,)
    return keys


def expected_avd() -> dict:
    keys = {}
    for name, sizes in [
        ("id_encoder", [100, 256, 512, 1024, 128]),
        ("pose_encoder", [100, 256, 512, 1024, 128]),
        ("decoder", [256, 1024, 512, 256, 100]),
    ]:
        for layer in range(4):
            index = 3 * layer
            keys[f"{name}.{index}.weight"] = (sizes[layer + 1], sizes[layer])
            keys[f"{name}.{index}.bias"] = (sizes[layer + 1],)
            if layer < 3:
                keys.update(_bn(f"{name}.{index + 1}", sizes[layer + 1]))
    return keys


EXPECTED = {
    "kp_detector": expected_resnet18("fg_encoder", 3, 100),
    "bg_predictor": expected_resnet18("bg_encoder", 6, 6),
    "dense_motion_network": expected_dense_motion(),
    "inpainting_network": expected_inpainting(),
    "avd_network": expected_avd(),
}
KEY_COUNTS = {"inpainting_network": 78, "kp_detector": 122, "dense_motion_network": 59,
              "bg_predictor": 122, "avd_network": 69}


@pytest.fixture(scope="module", params=PUBLISHED)
def meta_model(request) -> TPSMM:
    with torch.device("meta"):
        return TPSMM.from_config(request.param)


def test_state_dict_keys_and_shapes(meta_model):
    has_bg = meta_model.config.model_params["common_params"]["bg"]
    for name, network in meta_model.networks.items():
        if name == "bg_predictor" and not has_bg:
            assert network is None
            continue
        state = network.state_dict()
        actual = {key: tuple(value.shape) for key, value in state.items()}
        assert actual == EXPECTED[name], name
        assert len(state) == KEY_COUNTS[name]


def test_parameter_counts_match_reference():
    with torch.device("meta"):
        model = TPSMM.from_config("vox-256")
    counts = {n: sum(p.numel() for p in m.parameters()) for n, m in model.networks.items()}
    assert counts == {
        "kp_detector": 11_227_812,
        "dense_motion_network": 37_941_397,
        "inpainting_network": 24_737_283,
        "bg_predictor": 11_188_998,
        "avd_network": 2_583_652,
    }


def test_image_sizes_of_published_configs():
    assert {name: load_config(name).image_size for name in PUBLISHED} == {
        "vox-256": 256, "taichi-256": 256, "ted-384": 384, "mgif-256": 256,
    }


def test_checkpoint_round_trip_in_reference_format(tmp_path, tiny_case):
    model = tiny_case.model()
    path = tmp_path / "model.pth.tar"
    model.save_checkpoint(path, epoch=7)

    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"kp_detector", "dense_motion_network", "inpainting_network",
                        "bg_predictor", "avd_network", "epoch"}
    assert raw["epoch"] == 7
    assert not any(key.startswith("module.") for key in raw["kp_detector"])

    loaded = TPSMM.from_checkpoint(path, config=tiny_case.config)
    assert sorted(loaded.loaded) == sorted(k for k in raw if k != "epoch")
    for name, network in model.networks.items():
        for key, value in network.state_dict().items():
            assert torch.equal(value, loaded.networks[name].state_dict()[key]), (name, key)


def test_checkpoint_subset_and_extras_load(tmp_path, tiny_case):
    """The published files may lack networks or carry optimizer states."""
    model = tiny_case.model()
    data = model.checkpoint_dict()
    subset = {k: data[k] for k in ("kp_detector", "dense_motion_network", "inpainting_network")}
    subset["optimizer"] = {"state": {}, "param_groups": []}
    subset["module_prefixed"] = None
    path = tmp_path / "subset.pth.tar"
    torch.save(subset, path)
    loaded = TPSMM.from_checkpoint(path, config=tiny_case.config)
    assert sorted(loaded.loaded) == ["dense_motion_network", "inpainting_network", "kp_detector"]


def test_data_parallel_prefix_is_stripped(tmp_path, tiny_case):
    model = tiny_case.model()
    data = {"kp_detector": {f"module.{k}": v for k, v in model.kp_detector.state_dict().items()}}
    path = tmp_path / "dp.pth.tar"
    torch.save(data, path)
    loaded = TPSMM.from_checkpoint(path, config=tiny_case.config)
    assert loaded.loaded == ["kp_detector"]
