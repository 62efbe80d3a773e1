"""Each live knob changes the optimizer or model in place (momentum buffers survive), refusals
happen before acknowledgement, the LR schedule composes as documented, and lr_drop works."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from livetune_rl import InvalidValueError, Registry, read_journal  # noqa: E402
from livetune_rl.vision.live import KnobTargets, LiveControl  # noqa: E402
from livetune_rl.vision.models import build_vgg, dropout_layers  # noqa: E402
from livetune_rl.vision.sampler import LiveBatchSampler  # noqa: E402
from livetune_rl.vision.schedule import LRSchedule  # noqa: E402


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVETUNE_HOME", str(tmp_path / "home"))


def _model(dropout: bool = True) -> torch.nn.Module:
    layers: list[torch.nn.Module] = [torch.nn.Linear(4, 8), torch.nn.ReLU()]
    if dropout:
        layers.append(torch.nn.Dropout(0.5))
    layers.append(torch.nn.Linear(8, 3))
    return torch.nn.Sequential(*layers)


def _steps(model: torch.nn.Module, opt: torch.optim.Optimizer, n: int = 2) -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(n):
        x = torch.randn(5, 4, generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0, 1]))
        opt.zero_grad()
        loss.backward()
        opt.step()


def _control(opt: torch.optim.Optimizer, model: torch.nn.Module, *, scheduler: object = None,
             nesterov: bool = False, registry: Registry | None = None,
             dataset_size: int = 100) -> tuple[Registry, LiveControl, LiveBatchSampler]:
    reg = registry if registry is not None else Registry()
    sampler = LiveBatchSampler(dataset_size, 10)
    control = LiveControl(reg, KnobTargets(opt, model, sampler, scheduler, nesterov))
    return reg, control, sampler


def test_sgd_knobs_in_place_keep_momentum_buffers(tmp_path: Path) -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    _steps(model, opt)
    param = next(model.parameters())
    buffer = opt.state[param]["momentum_buffer"]
    saved = buffer.clone()
    reg, control, sampler = _control(opt, model)
    reg.attach_journal(tmp_path / "journal.jsonl")
    reg.step = 7
    reg.set({"learning_rate": 0.01, "momentum": 0.5, "weight_decay": 0.0, "batch_size": 32,
             "dropout": 0.1})
    actions = control.apply(control.snapshot(), epoch=2, iteration=3, step=7)
    assert set(actions.applied) == {"learning_rate", "momentum", "weight_decay", "batch_size",
                                    "dropout"}
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.01, 0.5, 0.0)
    assert sampler.batch_size == 32
    assert [d.p for d in dropout_layers(model)] == [0.1]
    assert opt.state[param]["momentum_buffer"] is buffer  # state kept, never rebuilt
    assert torch.equal(buffer, saved)
    _steps(model, opt, 1)  # and the next step keeps using it
    assert opt.state[param]["momentum_buffer"] is buffer and not torch.equal(buffer, saved)
    applied = [e for e in read_journal(tmp_path / "journal.jsonl") if e.kind == "applied"]
    assert {e.name for e in applied} == set(actions.applied)
    assert all(e.step == 7 and e.data["epoch"] == 2 and e.data["iteration"] == 3
               and 0 <= e.data["apply_s"] < 1 for e in applied)
    assert not reg.variable("learning_rate").pending
    # nothing new: nothing applied
    assert not control.apply(control.snapshot(), epoch=2, iteration=4, step=8)


def test_adamw_momentum_is_beta1_and_moments_survive() -> None:
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    _steps(model, opt)
    param = next(model.parameters())
    exp_avg = opt.state[param]["exp_avg"]
    reg, control, _ = _control(opt, model)
    reg.set({"momentum": 0.8, "learning_rate": 5e-4})
    control.apply(control.snapshot(), epoch=0, iteration=2, step=2)
    assert opt.param_groups[0]["betas"] == (0.8, 0.99)
    assert opt.param_groups[0]["lr"] == 5e-4
    assert opt.state[param]["exp_avg"] is exp_avg


def test_values_the_model_cannot_take_are_refused_before_acknowledgement() -> None:
    model = _model(dropout=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    reg, control, _ = _control(opt, model, nesterov=True, dataset_size=50)
    before = reg.version
    with pytest.raises(InvalidValueError, match="Nesterov"):
        reg.set({"momentum": 0.0})
    with pytest.raises(InvalidValueError, match="50 samples"):
        reg.set({"batch_size": 51})
    with pytest.raises(InvalidValueError, match="no dropout"):
        reg.set({"dropout": 0.2})
    with pytest.raises(InvalidValueError):
        reg.set({"learning_rate": -1.0})
    with pytest.raises(InvalidValueError):  # atomic: a good value with a bad one changes nothing
        reg.set({"learning_rate": 0.2, "batch_size": 0})
    assert reg.version == before and opt.param_groups[0]["lr"] == 0.1
    assert control.apply(control.snapshot(), epoch=0, iteration=0, step=0).applied == {}


def test_live_lr_rescales_the_schedule() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.4, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, LRSchedule("step", step_size=1, gamma=0.5))
    reg, control, _ = _control(opt, model, scheduler=sched)
    _steps(model, opt, 1)
    sched.step()  # epoch 1: factor 0.5
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2)
    reg.set({"learning_rate": 1.0})
    control.apply(control.snapshot(), epoch=1, iteration=0, step=10)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)  # live base x schedule factor
    sched.step()  # epoch 2: factor 0.25 of the new base
    assert opt.param_groups[0]["lr"] == pytest.approx(0.25)
    assert sched.state_dict()["base_lrs"] == [1.0]


def test_lr_drop_multiplies_by_live_factor(tmp_path: Path) -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    reg, control, _ = _control(opt, model)
    reg.attach_journal(tmp_path / "journal.jsonl")
    reg.set({"lr_drop_factor": 0.5})
    reg.fire("lr_drop")
    reg.fire("lr_drop")
    actions = control.apply(control.snapshot(), epoch=1, iteration=5, step=15)
    assert actions.lr_drops == 2
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)
    assert reg.variable("learning_rate").value == pytest.approx(0.025)  # `ls` tells the truth
    assert not reg.variable("learning_rate").pending
    records = read_journal(tmp_path / "journal.jsonl")
    drops = [e for e in records if e.kind == "applied" and e.name == "learning_rate"]
    assert [e.data["lr_drop"] for e in drops] == [True, True]
    assert all(e.data["epoch"] == 1 and e.data["iteration"] == 5 for e in drops)
    # the registry's own lr_drop set is not applied a second time
    assert not control.apply(control.snapshot(), epoch=1, iteration=6, step=16).applied


def test_triggers_are_consumed_once() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    reg, control, _ = _control(opt, model)
    reg.fire("checkpoint")
    reg.fire("evaluate")
    assert reg.fire("evaluate").data == {"coalesced": True}  # joins the waiting one
    reg.fire("stop")
    actions = control.apply(control.snapshot(), epoch=0, iteration=1, step=1)
    assert (actions.checkpoint, actions.evaluate, actions.stop) == (1, 1, True)
    assert reg.trigger("evaluate").pending == 0
    assert not control.apply(control.snapshot(), epoch=0, iteration=2, step=2)


def test_vgg_variants_build_and_run_small_head() -> None:
    x = torch.randn(2, 3, 32, 32)
    for arch in ("vgg11", "vgg13_bn", "vgg16", "vgg19_bn"):
        model = build_vgg(arch, num_classes=7, head="small", width=0.0625)
        assert model(x).shape == (2, 7)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in build_vgg("vgg11_bn",
                                                                      width=0.0625).modules())
    big = build_vgg("vgg11", num_classes=10, head="imagenet", width=0.0625, dropout=0.3)
    assert big(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    assert [d.p for d in dropout_layers(big)] == [0.3, 0.3]
