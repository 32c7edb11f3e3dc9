"""BatchNorm folding for inference (models/batchnorm_fold.py): the same outputs, the BatchNorm passes gone."""

import copy

import pytest
import timm
import torch
from torch import nn

from seabed_hmc.models.batchnorm_fold import fold_batchnorm


def _randomise_norms(model: nn.Module) -> nn.Module:
    """Non-trivial statistics and affine parameters, so a wrong fold cannot pass by accident."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            shape = module.running_mean.shape
            module.running_mean.copy_(torch.rand(shape, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(shape, generator=generator) * 1.8 + 0.2)
            if module.affine:
                module.weight.data.copy_(torch.rand(shape, generator=generator) + 0.5)
                module.bias.data.copy_(torch.rand(shape, generator=generator) * 0.6 - 0.3)
    return model.eval()


def _norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize("name", ["mobilenetv2_100", "resnet18", "efficientnet_b0"])
def test_folded_timm_models_give_the_same_features(name):
    torch.manual_seed(0)
    model = _randomise_norms(timm.create_model(name, pretrained=False, num_classes=0))
    folded = copy.deepcopy(model)
    count = fold_batchnorm(folded)
    assert count == _norms(model) > 0 and _norms(folded) == 0  # every BatchNorm follows a conv here
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(folded(images), model(images), rtol=1e-4, atol=1e-4)


class _Shared(nn.Module):
    """The conv's output feeds the BatchNorm AND a skip connection: folding would change the skip."""

    def __init__(self):
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

    def forward(self, x):
        y = self.conv(x)
        return self.norm(y) + y


class _Branching(nn.Module):
    """Data-dependent control flow: does not trace."""

    def __init__(self):
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 3, 3), nn.BatchNorm2d(3)

    def forward(self, x):
        return self.norm(self.conv(x)) if x.sum() > 0 else x


@pytest.mark.parametrize("build", [_Shared, _Branching])
def test_unsafe_or_untraceable_pairs_are_left_alone(build):
    model = _randomise_norms(build())
    folded = copy.deepcopy(model)
    assert fold_batchnorm(folded) == 0 and _norms(folded) == 1
    images = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(folded(images), model(images))


def test_training_mode_batchnorm_is_not_folded():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    _randomise_norms(model).train()
    assert fold_batchnorm(model) == 0 and isinstance(model[1], nn.BatchNorm2d)


def test_folding_keeps_the_activation_of_timm_norm_act_layers():
    from timm.layers import BatchNormAct2d

    torch.manual_seed(0)
    model = _randomise_norms(
        nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), BatchNormAct2d(4, act_layer=nn.ReLU6))
    )
    folded = copy.deepcopy(model)
    assert fold_batchnorm(folded) == 1 and _norms(folded) == 0
    images = torch.randn(3, 3, 9, 9) * 10
    with torch.no_grad():
        expected = model(images)
        assert expected.min() == 0 and expected.max() == 6  # the ReLU6 clips on both sides here
        torch.testing.assert_close(folded(images), expected, rtol=1e-5, atol=1e-5)


def test_truncated_encoders_fold_the_stages_they_keep():
    """A truncated encoder runs through timm's forward_intermediates: its kept stages trace and fold."""
    from seabed_hmc.models.encoders import build_encoder

    encoder = _randomise_norms(build_encoder("resnet18", weights=None, truncate=2, freeze=True))
    folded = copy.deepcopy(encoder)
    assert fold_batchnorm(folded) > 0 and _norms(folded) < _norms(encoder)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(folded(images), encoder(images), rtol=1e-4, atol=1e-4)
