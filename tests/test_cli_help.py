"""Every option of every ``livetune`` command has help text, and shows its default."""

from __future__ import annotations

import argparse

from livetune_rl.cli import build_parser


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_option_has_help() -> None:
    missing = [(name, a.option_strings or a.dest) for name, command in _commands().items()
               for a in command._actions
               if not isinstance(a, argparse._HelpAction) and a.help != argparse.SUPPRESS
               and not a.help]
    assert missing == [], f"options without help text: {missing}"


def test_help_shows_the_defaults() -> None:
    commands = _commands()
    train = commands["train"].format_help()
    assert "env steps to train (default: 200000)" in " ".join(train.split())
    vision = " ".join(commands["train-vision"].format_help().split())
    assert "epochs to train (default: 10)" in vision
    assert "(default: None)" not in train + vision


def test_the_examples_name_the_main_job_s_variables() -> None:
    from livetune_rl.envs.hungry_thirsty import REWARD_COMPONENTS

    text = build_parser().epilog or ""
    named = {w.split("=")[0].removeprefix("reward.") for w in text.split()
             if w.startswith("reward.")}
    assert named and named <= set(REWARD_COMPONENTS) | {"scale"}
