"""Supernet + Gumbel-softmax straight-through: α really receives gradients (the released code's did not)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.models import create_model
from engine.models.ops3d import CODE_OPS, PAPER_OPS
from engine.search.supernet import SuperNet, gumbel_softmax_st


def test_gumbel_straight_through_is_one_hot_forward_with_soft_gradient() -> None:
    logits = torch.zeros(5, 8, requires_grad=True)
    idx, hard = gumbel_softmax_st(logits, tau=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(hard.detach(), F.one_hot(idx, 8).float())
    (hard * torch.arange(8.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    _, hard_none = gumbel_softmax_st(logits, 1.0, straight_through=False)
    assert not hard_none.requires_grad


@pytest.fixture(scope="module")
def supernet() -> SuperNet:
    torch.manual_seed(0)
    return SuperNet("covidnet3d_s", num_classes=2)


def test_supernet_layout(supernet: SuperNet) -> None:
    assert supernet.alpha.shape == (21, 8) and supernet.ops == PAPER_OPS
    assert supernet.block_keys[0] == "s0_c0" and supernet.block_keys[-1] == "s5_c0"
    assert SuperNet("covidnet3d_s", op_set="code").ops == CODE_OPS
    assert supernet.alpha.abs().max() < 0.01      # α init 1e-3 × N(0, 1)


@pytest.mark.parametrize("alpha_grad", ["straight_through", "none"])
def test_alpha_learns_only_with_straight_through(alpha_grad: str) -> None:
    torch.manual_seed(1)
    net = SuperNet("covidnet3d_s", num_classes=2, alpha_grad=alpha_grad)
    opt = torch.optim.Adam(net.arch_parameters(), lr=0.05)
    before = net.alpha.detach().clone()
    x = torch.randn(2, 1, 8, 32, 32)
    y = torch.tensor([0, 1])
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        idx, hard = net.sample(1.0, gen)
        loss = F.cross_entropy(net(x, idx, hard), y)
        opt.zero_grad()
        if loss.requires_grad and net.alpha in [p for p in net.parameters()]:
            grads = torch.autograd.grad(loss, [net.alpha], allow_unused=True)[0]
            net.alpha.grad = grads
        opt.step()
    changed = not torch.allclose(before, net.alpha.detach())
    assert changed == (alpha_grad == "straight_through")
    if alpha_grad == "straight_through":
        # every block's row moved (the sampled op's logit and, through the softmax, the others)
        assert ((net.alpha.detach() - before).abs().sum(1) > 0).all()


def test_subnetwork_equals_derived_covidnet3d(supernet: SuperNet) -> None:
    gen = torch.Generator().manual_seed(3)
    idx, _ = supernet.sample(1.0, gen)
    genotype = supernet.genotype(idx)
    derived = create_model("covidnet3d_s", num_classes=2, genotype=genotype)
    derived.load_state_dict(supernet.derived_state_dict(idx))
    supernet.eval()
    derived.eval()
    x = torch.randn(1, 1, 16, 32, 48)
    with torch.no_grad():
        assert torch.allclose(supernet(x, idx), derived(x), atol=1e-5)
    assert supernet.indices(genotype) == idx
