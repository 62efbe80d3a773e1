"""Flags generated from config dataclasses: every kind of field, and the two commands' configs."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

import pytest

from livetune_rl.flags import add_options, flag_of, from_args, option
from livetune_rl.train import TrainConfig
from livetune_rl.tuner import PolicyConfig
from livetune_rl.vision.config import VisionConfig


def _pair(text: str) -> tuple[str, int]:
    key, _, value = text.partition("=")
    return key, int(value)


@dataclass
class Config:
    steps: int = option(5, "steps", group="run")
    rate: float | None = option(None, "rate", names=("-r", "--rate"))
    mode: str = option("a", "mode", choices=("a", "b"))
    verbose: bool = option(False, "talk")
    progress: bool = option(True, "no progress bar")
    serve: bool = option(True, "serve", both=True)
    extra: dict[str, int] = option(help="KEY=N", factory=dict, parse=_pair, repeat=True)
    tags: list[str] = option(help="a tag", factory=list, parse=str, repeat=True)
    secret: str | None = None  # not a flag


def _parse(*argv: str) -> Config:
    parser = argparse.ArgumentParser()
    groups = add_options(parser, Config)
    assert list(groups) == ["run"]
    return from_args(Config, parser.parse_args(list(argv)), secret="s")


def test_defaults_come_from_the_fields() -> None:
    assert _parse() == Config(secret="s")


def test_every_kind_of_field_parses() -> None:
    config = _parse("--steps", "7", "-r", "0.5", "--mode", "b", "--verbose", "--no-progress",
                    "--no-serve", "--extra", "a=1", "--extra", "b=2", "--tags", "x",
                    "--tags", "y")
    assert config == Config(7, 0.5, "b", True, False, False, {"a": 1, "b": 2}, ["x", "y"], "s")


@pytest.mark.parametrize("argv", [["--mode", "c"], ["--steps", "1.5"], ["--secret", "x"]])
def test_bad_values_and_non_flags_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(*argv)


def test_a_field_of_another_type_needs_a_parser() -> None:
    @dataclass
    class Bad:
        pairs: dict[str, int] = option(help="pairs", factory=dict)

    with pytest.raises(TypeError, match=r"Bad.pairs: .* needs parse="):
        add_options(argparse.ArgumentParser(), Bad)


@pytest.mark.parametrize("cls", [TrainConfig, VisionConfig, PolicyConfig])
def test_every_command_option_has_help_and_parses_to_its_default(cls: type) -> None:
    parser = argparse.ArgumentParser()
    add_options(parser, cls)
    defaults = from_args(cls, parser.parse_args([]))
    assert defaults == cls()
    for field in dataclasses.fields(cls):
        flag = flag_of(field)
        assert flag is None or flag.help, field.name


def test_train_flags_build_its_config() -> None:
    parser = argparse.ArgumentParser()
    add_options(parser, TrainConfig)
    config = from_args(TrainConfig, parser.parse_args([
        "--reward", "hungry_thirsty=-1,not_hungry_thirsty=0.5", "--hyper", "n_steps=64",
        "--hyper", "gamma=0.9,policy_kwargs={\"net_arch\":[8]}", "--no-relabel",
        "--reward-bounds=-2,2", "--no-serve-process"]), token="t")
    assert config.reward == {"hungry_thirsty": -1.0, "not_hungry_thirsty": 0.5}
    assert config.hyper == {"n_steps": 64, "gamma": 0.9, "policy_kwargs": {"net_arch": [8]}}
    assert (config.relabel, config.reward_bounds, config.serve_process, config.token) == (
        False, (-2.0, 2.0), False, "t")


def test_tuner_flags_build_its_config() -> None:
    parser = argparse.ArgumentParser()
    add_options(parser, PolicyConfig)
    config = from_args(PolicyConfig, parser.parse_args([
        "--knobs", "reward.*", "learning_rate", "--credit-rule", "correlate", "--target", "50"]))
    assert config.knobs == ("reward.*", "learning_rate") and config.credit_rule == "correlate"
    assert config.target == 50.0 and config.settle == PolicyConfig.settle
