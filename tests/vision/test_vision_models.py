"""Vision models: exact parameter counts against the papers' arithmetic (core's
conv_param_count), forward/backward over the whole registry, the features/head split, classifier
reset and input sizes; LeNet-5's paper-specific layers against brute-force versions."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import vision
from textcnn.core.conv import ConvBlock2d, conv_param_count
from textcnn.core.errors import TextCNNError
from vision import count_parameters, create_model, list_models, model_info


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def conv_bn(kernel: int, cin: int, cout: int) -> int:
    """Conv without bias followed by batch norm (scale and shift per channel)."""
    return conv_param_count(kernel, cin, cout, bias=False) + 2 * cout


# -- references, from the papers' layer tables ------------------------------------------------------


def lenet5_paper_reference() -> dict[str, int]:
    # Table I of LeCun et al. (1998): rows are S2 maps 0-5, columns C3 maps 0-15.
    table = ["X...XXX..XXXX.XX",
             "XX...XXX..XXXX.X",
             "XXX...XXX..X.XXX",
             ".XXX..XXXX..X.XX",
             "..XXX..XXXX.XX.X",
             "...XXX..XXXX.XXX"]
    fan_in = [sum(row[j] == "X" for row in table) for j in range(16)]
    return {"c1": conv_param_count(5, 1, 6), "s2": 2 * 6,
            "c3": sum(conv_param_count(5, k, 1) for k in fan_in), "s4": 2 * 16,
            "c5": conv_param_count(5, 16, 120), "f6": linear(120, 84)}


def vgg16_reference(classes: int = 1000) -> int:
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    convs = sum(conv_param_count(3, cin, cout) for cin, cout in zip([3, *widths], widths))
    return convs + linear(512 * 7 * 7, 4096) + linear(4096, 4096) + linear(4096, classes)


def alexnet_reference(classes: int = 1000) -> int:
    convs = (conv_param_count(11, 3, 64) + conv_param_count(5, 64, 192)
             + conv_param_count(3, 192, 384) + conv_param_count(3, 384, 256)
             + conv_param_count(3, 256, 256))
    return convs + linear(256 * 6 * 6, 4096) + linear(4096, 4096) + linear(4096, classes)


GOOGLENET_TABLE = [  # Szegedy et al. (2015), Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj
    (64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64),
    (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128),
    (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128),
]


def googlenet_reference(classes: int = 1000, *, aux: bool = False, k5: int = 3) -> int:
    total = conv_bn(7, 3, 64) + conv_bn(1, 64, 64) + conv_bn(3, 64, 192)
    cin, outputs = 192, []
    for a, br, b, cr, c, d in GOOGLENET_TABLE:
        total += (conv_bn(1, cin, a) + conv_bn(1, cin, br) + conv_bn(3, br, b)
                  + conv_bn(1, cin, cr) + conv_bn(k5, cr, c) + conv_bn(1, cin, d))
        cin = a + b + c + d
        outputs.append(cin)
    total += linear(1024, classes)
    if aux:  # after 4a and 4d
        for channels in (outputs[2], outputs[5]):
            total += conv_bn(1, channels, 128) + linear(128 * 16, 1024) + linear(1024, classes)
    return total


def resnet_reference(layers: list[int], *, bottleneck: bool, classes: int = 1000) -> int:
    total, cin = conv_bn(7, 3, 64), 64
    expansion = 4 if bottleneck else 1
    for stage, (width, depth) in enumerate(zip((64, 128, 256, 512), layers)):
        for block in range(depth):
            stride = 2 if stage > 0 and block == 0 else 1
            out = width * expansion
            if bottleneck:
                total += conv_bn(1, cin, width) + conv_bn(3, width, width) + conv_bn(1, width, out)
            else:
                total += conv_bn(3, cin, width) + conv_bn(3, width, width)
            if stride != 1 or cin != out:
                total += conv_bn(1, cin, out)
            cin = out
    return total + linear(cin, classes)


# The documented parameter counts, asserted exactly and against the formulas above.
EXPECTED = {
    "lenet5_paper": (60_000, sum(lenet5_paper_reference().values())),
    "lenet5": (61_706, conv_param_count(5, 1, 6) + conv_param_count(5, 6, 16)
               + conv_param_count(5, 16, 120) + linear(120, 84) + linear(84, 10)),
    "alexnet": (61_100_840, alexnet_reference()),
    "vgg16": (138_357_544, vgg16_reference()),
    "googlenet": (6_624_904, googlenet_reference()),
    "resnet18": (11_689_512, resnet_reference([2, 2, 2, 2], bottleneck=False)),
    "resnet34": (21_797_672, resnet_reference([3, 4, 6, 3], bottleneck=False)),
    "resnet50": (25_557_032, resnet_reference([3, 4, 6, 3], bottleneck=True)),
}


def meta_model(name: str, **kwargs) -> nn.Module:
    """Built on the meta device: real shapes, no memory, no initialisation cost."""
    with torch.device("meta"):
        return create_model(name, **kwargs)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_counts_are_exact(name: str) -> None:
    stated, formula = EXPECTED[name]
    assert stated == formula
    assert count_parameters(meta_model(name)) == stated


def test_lenet5_paper_layers_match_the_paper() -> None:
    model = create_model("lenet5_paper")
    got = {name: count_parameters(getattr(model, name)) for name in ("c1", "s2", "c3", "s4")}
    got["c5"] = count_parameters(model.head_pool)
    got["f6"] = count_parameters(model.head_hidden)
    assert got == lenet5_paper_reference() == {
        "c1": 156, "s2": 12, "c3": 1_516, "s4": 32, "c5": 48_120, "f6": 10_164}
    # The RBF output layer is fixed: its 10 x 84 centres are a buffer, not parameters.
    assert count_parameters(model.fc) == 0
    assert model.fc.centres.shape == (10, 84)
    assert count_parameters(model, trainable=False) == 60_000


def test_googlenet_aux_heads_and_paper_kernel_counts() -> None:
    assert count_parameters(meta_model("googlenet", aux_logits=True)) == \
        googlenet_reference(aux=True) == 13_004_888
    assert count_parameters(meta_model("googlenet", branch5x5_kernel=5)) == googlenet_reference(k5=5)


def test_every_conv_is_a_core_conv_block() -> None:
    for name in list_models():
        model = meta_model(name)
        parents = {id(child): type(parent) for parent in model.modules()
                   for child in parent.children()}
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        assert convs and all(parents[id(c)] is ConvBlock2d for c in convs), name


# -- forward and backward over the registry --------------------------------------------------------


def small_input(name: str, batch: int = 2) -> torch.Tensor:
    info = model_info(name)
    side = max(info.min_input_size, 8) if info.input_size <= 32 else info.min_input_size
    return torch.randn(batch, info.in_channels, side, side,
                       generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_features_and_head(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=3)
    x = small_input(name)
    out = model(x)
    assert out.shape == (2, 3)
    out.square().sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.dim() == 4 and features.shape[0] == 2
        full = model(x)
        assert torch.isfinite(full).all()
        assert torch.equal(full, model.forward_head(features))
        pre = model.forward_head(features, pre_logits=True)
        assert pre.shape == (2, model.num_features)
        assert torch.equal(full, model.get_classifier()(pre))


@pytest.mark.parametrize("name", ["lenet5", "lenet5_paper", "vgg_small", "alexnet_small",
                                  "googlenet_small", "resnet18_small"])
def test_reset_classifier(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = small_input(name)
    with torch.no_grad():
        features = model.forward_features(x)
        model.reset_classifier(7)
        assert model(x).shape == (2, 7) and model.num_classes == 7
        assert torch.equal(model.forward_features(x), features)  # the trunk is untouched
        model.reset_classifier(0)
        assert torch.equal(model(x), model.forward_head(features, pre_logits=True))
    with pytest.raises(TextCNNError, match="num_classes"):
        model.reset_classifier(-1)


def test_googlenet_aux_outputs_and_reset() -> None:
    model = create_model("googlenet_small", num_classes=4, aux_logits=True)
    logits, aux = model.forward_with_aux(small_input("googlenet_small"))
    assert logits.shape == (2, 4) and [a.shape for a in aux] == [(2, 4), (2, 4)]
    model.reset_classifier(6)
    assert [a.shape for a in model.forward_with_aux(small_input("googlenet_small"))[1]] == \
        [(2, 6), (2, 6)]


@pytest.mark.parametrize("name", [n for n in list_models() if not model_info(n).fixed_size])
def test_adaptive_input_sizes(name: str) -> None:
    info = model_info(name)
    model = meta_model(name, num_classes=5)
    for side in (info.min_input_size, info.min_input_size + 13, info.input_size, 2 * info.input_size + 1):
        with torch.device("meta"):
            out = model(torch.empty(2, info.in_channels, side, side + 3))
        assert out.shape == (2, 5), (name, side)
    if info.min_input_size > 1:
        below = info.min_input_size - 1
        with pytest.raises((RuntimeError, ValueError)), torch.device("meta"):
            model(torch.empty(2, info.in_channels, below, below))


def test_lenet5_paper_takes_32x32_only() -> None:
    model = create_model("lenet5_paper")
    assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 10)
    with pytest.raises(TextCNNError, match="expected 32x32 inputs, got 28x28"):
        model(torch.zeros(1, 1, 28, 28))


# -- LeNet-5's own layers ---------------------------------------------------------------------------


def test_c3_connections_follow_table_one() -> None:
    c3 = create_model("lenet5_paper").c3
    x = torch.randn(1, 6, 14, 14, requires_grad=True)
    out = c3(x)
    assert out.shape == (1, 16, 10, 10)
    connected = []
    for j in range(16):
        (grad,) = torch.autograd.grad(out[0, j].sum(), x, retain_graph=True)
        connected.append({i for i in range(6) if grad[0, i].abs().sum() > 0})
    table = ["X...XXX..XXXX.XX", "XX...XXX..XXXX.X", "XXX...XXX..X.XXX",
             ".XXX..XXXX..X.XX", "..XXX..XXXX.XX.X", "...XXX..XXXX.XXX"]
    assert connected == [{i for i in range(6) if table[i][j] == "X"} for j in range(16)]


def test_subsampling_is_a_scaled_2x2_sum_and_tanh_is_lecuns() -> None:
    model = create_model("lenet5_paper")
    s2 = model.s2
    with torch.no_grad():
        s2.weight.copy_(torch.arange(1.0, 7.0) / 10)
        s2.bias.copy_(torch.linspace(-1, 1, 6))
    x = torch.randn(2, 6, 28, 28)
    sums = x.unfold(2, 2, 2).unfold(3, 2, 2).sum(dim=(-1, -2))
    a = sums * s2.weight[:, None, None] + s2.bias[:, None, None]
    torch.testing.assert_close(s2(x), 1.7159 * torch.tanh(2 * a / 3))
    act = s2.act
    assert act(torch.tensor([1.0, -1.0])).tolist() == pytest.approx([1.0, -1.0], abs=1e-4)
    z = torch.zeros(1, requires_grad=True)
    act(z).backward()
    assert z.grad.item() == pytest.approx(1.7159 * 2 / 3)


def test_rbf_output_is_minus_squared_distance_to_fixed_bitmaps() -> None:
    model = create_model("lenet5_paper")
    centres = model.fc.centres
    assert set(centres.unique().tolist()) == {-1.0, 1.0}
    assert len({tuple(c.tolist()) for c in centres}) == 10  # ten different bitmaps
    f6 = torch.randn(3, 84)
    brute = torch.tensor([[-sum((f6[n, j] - centres[i, j]) ** 2 for j in range(84))
                           for i in range(10)] for n in range(3)])
    torch.testing.assert_close(model.fc(f6), brute)
    assert model.fc(centres).argmax(1).tolist() == list(range(10))


# -- registry ---------------------------------------------------------------------------------------


def test_registry_lists_every_family_and_rejects_bad_names() -> None:
    names = list_models()
    assert {model_info(n).family for n in names} == {"lenet", "alexnet", "vgg", "googlenet", "resnet"}
    for family in ("lenet", "alexnet", "vgg", "googlenet", "resnet"):
        small = [n for n in names if model_info(n).family == family and model_info(n).input_size <= 32]
        assert small, f"{family} has no variant for digits"
    assert list_models("resnet*") == ["resnet18", "resnet18_small", "resnet34", "resnet50"]
    assert vision.create_model is create_model
    with pytest.raises(TextCNNError, match="unknown vision model 'resnet81'.*did you mean 'resnet18'"):
        create_model("resnet81")
    with pytest.raises(TextCNNError, match="unknown keyword 'dropout'"):
        create_model("vgg_small", dropout=0.1)
    with pytest.raises(TextCNNError, match=r"model 'resnet18_small' \(widths=\[1, 2\]\)"):
        create_model("resnet18_small", widths=[1, 2])
    with pytest.raises(TextCNNError, match="multiple values for keyword argument 'form'"):
        create_model("lenet5", form="paper")
    model = create_model("vgg_small", num_classes=4, in_channels=1, drop_rate=0.0)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 4)
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())


def test_lenet5_modern_uses_plain_average_pooling_and_linear_output() -> None:
    model = create_model("lenet5")
    assert isinstance(model.s2, nn.AvgPool2d) and isinstance(model.fc, nn.Linear)
    x = torch.randn(2, 1, 32, 32)
    h = F.avg_pool2d(model.c1(x), 2)
    torch.testing.assert_close(model.s2(model.c1(x)), h)
