"""util/precision.py: bfloat16 detection, the precision --amp gives per device, channels_last."""
import copy
import logging

import pytest
import torch

from models.dino import inference_prep
from util import precision


@pytest.fixture
def cpu_flags(monkeypatch):
    """Pretend the CPU has the given /proc/cpuinfo flags."""
    def set_flags(*flags):
        monkeypatch.setattr(precision, "_cpuinfo_flags", lambda: set(flags) | {"sse2", "avx2"})
        precision.cpu_bf16_support.cache_clear()
        precision._logged.clear()
    yield set_flags
    precision.cpu_bf16_support.cache_clear()
    precision._logged.clear()


def test_bf16_features_from_cpu_flags(cpu_flags):
    cpu_flags("amx_bf16", "avx512_bf16", "amx_tile")
    info = precision.cpu_bf16_support()
    assert info.supported and info.features == ("AMX-BF16", "AVX512-BF16")
    cpu_flags("avx512f", "avx512bw")
    info = precision.cpu_bf16_support()
    assert not info.supported and "no AVX512-BF16 or AMX-BF16" in info.describe()


def test_amp_dtype_per_device(cpu_flags):
    cpu_flags("avx512_bf16")
    assert precision.autocast_dtype("cpu", True) is torch.bfloat16
    assert precision.autocast_dtype("cpu", False) is None
    assert precision.autocast_dtype("cuda", True) is torch.float16
    cpu_flags()
    assert precision.autocast_dtype("cpu", True) is None
    message = precision.precision_message(torch.device("cpu"), True)
    assert message.startswith("precision on cpu: float32") and "emulated" in message


def test_autocast_context_runs_bf16_or_says_float32(cpu_flags, caplog):
    caplog.set_level(logging.INFO, logger="dino.precision")
    cpu_flags("amx_bf16")
    with precision.inference_autocast(torch.device("cpu"), True):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") is torch.bfloat16
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is torch.bfloat16
    with precision.inference_autocast(torch.device("cpu"), True):
        pass
    assert sum("bfloat16 autocast" in r.getMessage() for r in caplog.records) == 1  # logged once
    cpu_flags()
    with precision.inference_autocast(torch.device("cpu"), True):
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is torch.float32
    assert any("float32: --amp asks for bfloat16" in r.getMessage() for r in caplog.records)


def test_engine_autocast_follows_cpu_support(cpu_flags):
    from engine import autocast_context

    cpu_flags()
    with autocast_context(torch.device("cpu"), True):
        assert not torch.is_autocast_enabled("cpu")
    cpu_flags("avx512_bf16")
    with autocast_context(torch.device("cpu"), True):
        assert torch.is_autocast_enabled("cpu")


def _tiny_model():
    from helpers import build_args
    from main import build_model_main
    from test_train_pipeline import TINY_OPTIONS

    torch.manual_seed(0)
    model, _, _ = build_model_main(build_args(options=TINY_OPTIONS))
    return model.eval()


def test_channels_last_only_for_bf16_on_cpu_and_same_outputs(cpu_flags):
    cpu_flags("amx_bf16")
    model = _tiny_model()
    assert not inference_prep.use_channels_last(model, "cpu", amp=False)
    assert not inference_prep.use_channels_last(model, "cuda", amp=True)
    reference = copy.deepcopy(model)
    assert inference_prep.use_channels_last(model, "cpu", amp=True)
    conv = model.backbone[0].body.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    images = [torch.rand(3, 64, 80), torch.rand(3, 72, 64)]
    with torch.no_grad():
        features = model.backbone[0](torch.rand(1, 3, 64, 64))
        assert all(f.is_contiguous(memory_format=torch.channels_last) for f in features)
        got, want = model(images), reference(images)  # float32: the layout changes nothing but rounding
    torch.testing.assert_close(got["pred_boxes"], want["pred_boxes"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got["pred_logits"], want["pred_logits"], rtol=1e-4, atol=1e-4)
