"""Issue 17, the filesystem side: tokens never written or shown, owner-only run files (checked
from another uid), planted links and reused run names refused, checkpoints only loaded when
trusted, the journal true after --resume, bad journal records skipped, history read from the
end, discovery that deletes and chmods only what is its own, pruned periodic checkpoints."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LIVETUNE, make_registry

import livetune_rl as lt
from livetune_rl import cli, discovery
from livetune_rl.journal import ChangeEvent, Journal
from livetune_rl.train import TrainConfig, train

TOKEN = "fs-hardening-token-7f3a"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
TRAIN_ARGS = ["--n-envs", "1", "--vec", "dummy", "--eval-every", "0", "--no-progress",
              "--no-serve-process", "--bind", "127.0.0.1:0", "--hyper", "n_steps=32",
              "--hyper", "batch_size=32"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NOBODY, *args], capture_output=True, text=True, timeout=30)


needs_other_uid = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="reading as another uid needs root and setpriv")


@pytest.fixture(scope="module")
def world() -> Iterator[Path]:
    """A directory every uid may enter (as a home or a shared disk is), unlike pytest's."""
    path = Path(tempfile.mkdtemp(prefix="lt-fs-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def trained(world: Path) -> Path:
    """One short run with a token from the environment and periodic checkpoints."""
    extra: dict[str, Any] = {}
    if "keep_checkpoints" in TrainConfig.__dataclass_fields__:
        extra["keep_checkpoints"] = 2
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIVETUNE_HOME", str(world / "home"))
        mp.setenv("LIVETUNE_TOKEN", TOKEN)
        train(TrainConfig(timesteps=128, n_envs=1, vec="dummy", run_name="ht",
                          runs_root=str(world / "runs"), eval_every=0, progress=False,
                          serve_process=False, bind="127.0.0.1:0", checkpoint_every=32,
                          hyper={"n_steps": 32, "batch_size": 32}, **extra))
    return world / "runs" / "ht"


# ------------------------------------------------------------------ 1: tokens, private files
def test_token_is_written_nowhere_and_run_files_are_owner_only(trained: Path) -> None:
    for path in trained.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    config = json.loads((trained / "config.json").read_text())
    assert "token" not in config and config["token_required"] is True
    assert _mode(trained) == 0o700 and _mode(trained / "checkpoints") == 0o700
    assert _mode(trained / "config.json") == 0o600
    assert _mode(trained / "journal.jsonl") == 0o600
    final = trained / "checkpoints" / "final"
    assert _mode(final) == 0o700
    assert {_mode(p) for p in final.iterdir()} == {0o600}
    home = trained.parent.parent / "home"
    assert _mode(home) == 0o700 and _mode(home / "runs") == 0o700


@needs_other_uid
def test_another_uid_cannot_read_run_files(trained: Path, world: Path) -> None:
    readable = world / "readable.txt"  # the probe itself works: a 0644 file next door reads
    readable.write_text("hello")
    readable.chmod(0o644)
    assert _as_nobody("cat", str(readable)).stdout == "hello"
    for path in (trained / "config.json", trained / "journal.jsonl",
                 trained / "checkpoints" / "final" / "model.zip"):
        out = _as_nobody("cat", str(path))
        assert out.returncode != 0 and "Permission denied" in out.stderr, path
    assert _as_nobody("ls", str(trained)).returncode != 0


def test_state_and_journal_directories_are_owner_only(livetune_home: Path,
                                                      start_server: Any) -> None:
    server = start_server(make_registry())  # journal under the state directory
    journal = Path(server.journal_path)
    assert journal.parent == livetune_home / "journals"
    assert _mode(livetune_home) == 0o700 and _mode(journal.parent) == 0o700
    assert _mode(journal) == 0o600


def test_token_file_must_be_private_and_train_refuses_token_in_argv(
        tmp_path: Path, sub_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o644)
    out = subprocess.run([str(LIVETUNE), "ls", "--addr", "127.0.0.1:9", "--token-file",
                          str(token_file)], env=sub_env, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 1 and "mode 0644" in out.stderr, out.stderr
    assert f"chmod 600 {token_file}" in out.stderr
    with pytest.raises(SystemExit) as refused:
        cli.main(["train", "--token", TOKEN, "--runs-root", str(tmp_path / "runs")])
    assert "--token-file" in str(refused.value) and not (tmp_path / "runs").exists()
    if os.geteuid() == 0:
        token_file.chmod(0o600)
        os.chown(token_file, 65534, 65534)
        out = subprocess.run([str(LIVETUNE), "ls", "--addr", "127.0.0.1:9", "--token-file",
                              str(token_file)], env=sub_env, capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 1 and "not to you" in out.stderr, out.stderr


# ------------------------------------------------------------------ 4: token to the default
def test_token_is_not_sent_to_an_address_nobody_vouched_for(
        start_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server = start_server(make_registry(), token=TOKEN, journal=False, discoverable=False)
    monkeypatch.setattr("livetune_rl.client.DEFAULT_ADDRESS", server.address)
    monkeypatch.setenv("LIVETUNE_TOKEN", TOKEN)
    with lt.connect() as client, pytest.raises(lt.ClientError) as denied:
        client.get("batch_size")  # no run discovered: whoever holds the port gets no token
    assert "not sent" in str(denied.value) and f"--addr {server.address}" in str(denied.value)
    with lt.connect(server.address) as client:  # named by the user: sent
        assert client.get("batch_size").value == 64


# ------------------------------------------------------------------ 6: periodic checkpoints
def test_only_the_newest_periodic_checkpoints_are_kept(trained: Path, tmp_path: Path) -> None:
    names = sorted(p.name for p in (trained / "checkpoints").iterdir())
    assert names == ["final", "step_128", "step_96"], names
    from livetune_rl.sb3.callback import prune_checkpoints

    root = tmp_path / "checkpoints"
    for step, periodic in ((10, True), (20, False), (30, True), (40, True), (50, True)):
        (root / f"step_{step}").mkdir(parents=True)
        (root / f"step_{step}" / "model.zip").write_text("m")
        (root / f"step_{step}" / "live_values.json").write_text(
            json.dumps({"num_timesteps": step, "periodic": periodic}))
    (root / "step_30" / "notes.txt").write_text("the user's")
    removed = prune_checkpoints(root, 2)
    assert sorted(p.name for p in removed) == ["step_10", "step_30"]
    left = sorted(p.name for p in root.iterdir())
    assert left == ["step_20", "step_30", "step_40", "step_50"]  # fired one, user's file kept
    assert [p.name for p in (root / "step_30").iterdir()] == ["notes.txt"]


# ------------------------------------------------------------------ 7: links, reuse, resume
def test_an_existing_run_directory_and_planted_links_are_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    planted = tmp_path / "runs" / "taken"
    planted.mkdir(parents=True)
    (planted / "config.json").symlink_to(victim)
    (planted / "journal.jsonl").symlink_to(victim)
    with pytest.raises(SystemExit) as refused:
        cli.main(["train", "--run-name", "taken", "--runs-root", str(tmp_path / "runs"),
                  "--timesteps", "32", *TRAIN_ARGS])
    assert "already exists" in str(refused.value) and "--resume" in str(refused.value)
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in planted.iterdir()) == ["config.json", "journal.jsonl"]


def test_resume_refuses_a_checkpoint_others_could_have_written(trained: Path,
                                                               world: Path) -> None:
    copy = world / "runs" / "copy"
    shutil.copytree(trained, copy)
    model = copy / "checkpoints" / "final" / "model.zip"
    model.chmod(0o666)
    args = ["train", "--resume", str(model.parent), "--timesteps", "224", *TRAIN_ARGS,
            "--no-token"]
    with pytest.raises(SystemExit) as refused:
        cli.main(args)
    assert "writable by others" in str(refused.value) and "runs code" in str(refused.value)
    if os.geteuid() == 0:
        model.chmod(0o600)
        os.chown(model, 65534, 65534)
        with pytest.raises(SystemExit) as refused:
            cli.main(args)
        assert "not to you" in str(refused.value)


# ------------------------------------------------------------------ 10, 9: resume
def test_resume_without_a_token_keeps_requiring_one(trained: Path, world: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    run = world / "runs" / "tokenless"
    shutil.copytree(trained, run)
    before = (run / "config.json").read_text()
    monkeypatch.setenv("LIVETUNE_HOME", str(world / "home"))
    with pytest.raises(SystemExit) as refused:  # no token given: the requirement stays
        cli.main(["train", "--resume", str(run / "checkpoints" / "final"), "--timesteps",
                  "224", *TRAIN_ARGS])
    assert "required a token" in str(refused.value) and "--no-token" in str(refused.value)
    assert (run / "config.json").read_text() == before


def test_resume_journals_the_values_in_effect_and_each_revert(
        trained: Path, world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = world / "runs" / "again"
    shutil.copytree(trained, run)
    final = run / "checkpoints" / "final"
    checkpoint = json.loads((final / "live_values.json").read_text())
    journal = run / "journal.jsonl"
    last = lt.read_journal(journal)[-1].v
    with Journal(journal) as writer:  # a set acknowledged after the final checkpoint
        writer.append([ChangeEvent(last + 1, 1.8e9, "set", "learning_rate",
                                   checkpoint["values"]["learning_rate"], 0.5, "alice")])
    monkeypatch.setenv("LIVETUNE_HOME", str(world / "home"))
    steps = str(checkpoint["num_timesteps"] + 32)
    monkeypatch.setenv("LIVETUNE_TOKEN", TOKEN)
    assert cli.main(["train", "--resume", str(final), "--timesteps", steps, *TRAIN_ARGS]) == 0
    events = lt.read_journal(journal)
    start = [e for e in events if e.kind == "start"][-1]
    assert start.data["values"]["learning_rate"] == checkpoint["values"]["learning_rate"]
    assert start.data["values"]["reward.not_hungry_thirsty"] == \
        checkpoint["values"]["reward.not_hungry_thirsty"]
    reverts = [e for e in events if e.kind == "event" and e.name == "revert"]
    assert [r.data["variable"] for r in reverts] == ["learning_rate"]
    assert reverts[0].data["journaled"] == 0.5
    assert reverts[0].data["resumed"] == checkpoint["values"]["learning_rate"]
    config = json.loads((run / "config.json").read_text())
    assert config["token_required"] is True and "token" not in config


# ------------------------------------------------------------------ 12, 13: journal reads
BAD_RECORDS = [
    '{"v": 90, "t": 1.8e9, "kind": "set", "name": "lr", "new": 1, "step": "abc"}',
    '{"v": 91, "t": 1e300, "kind": "set", "name": "lr", "new": 1}',
    '{"v": 92, "t": 1.8e9, "kind": "set", "name": "lr", "new": NaN}',
    '{"v": 93, "t": 1.8e9, "kind": "set", "name": "lr", "new": 1e999}',
    '{"v": 99999999999999999999999, "t": 1.8e9, "kind": "set", "name": "lr", "new": 1}',
    '{"v": 94, "t": 1.8e9, "kind": "event", "name": "deep", "data": {"a": '
    + "[" * 120 + "]" * 120 + "}}",
]


def test_bad_journal_records_are_skipped_and_reported(tmp_path: Path, start_server: Any,
                                                      sub_env: dict[str, str]) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.append([ChangeEvent(1, 1.8e9, "set", "lr", 0.1, 0.2, "me")])
    with open(path, "a", encoding="utf-8") as out:
        out.write("\n".join(BAD_RECORDS) + "\n")
    with Journal(path) as journal:
        journal.append([ChangeEvent(95, 1.8e9 + 1, "set", "lr", 0.2, 0.3, "me")])
    registry = lt.Registry()
    registry.continue_versions(95)
    registry.attach_journal(path)
    server = start_server(registry, journal=path)
    with lt.Client(server.address) as client:
        assert [e.v for e in client.history()][:2] == [1, 95]
        assert [e.v for e in client.history(limit=1)] == [96]  # the server's start record
    out = subprocess.run([str(LIVETUNE), "history", "--file", str(path)], env=sub_env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "lr 0.1 -> 0.2" in out.stdout and "lr 0.2 -> 0.3" in out.stdout
    for line in range(2, 2 + len(BAD_RECORDS)):
        assert f"journal.jsonl:{line}:" in out.stderr, out.stderr


def _bytes_read() -> int:
    with open("/proc/self/io", encoding="ascii") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("rchar:"))


def test_history_with_a_limit_reads_the_journal_from_its_end(tmp_path: Path,
                                                             start_server: Any) -> None:
    path = tmp_path / "journal.jsonl"
    line = ('{"v":%d,"t":1.8e9,"kind":"set","name":"reward.c","old":0.5,"new":0.25,'
            '"source":"someone@host ipv4:127.0.0.1:40000"}\n')
    with open(path, "w", encoding="utf-8") as out:  # ~5 MB
        out.write("".join(line % v for v in range(1, 50_001)))
    size = path.stat().st_size
    server = start_server(lt.Registry(journal=path), journal=path)
    with lt.Client(server.address) as client:
        client.history(limit=1)  # warm up the channel
        before = _bytes_read()
        newest = client.history(limit=100)
        read = _bytes_read() - before
    assert len(newest) == 100 and newest[-1].kind == "start"
    assert read < size / 20, f"read {read} bytes of a {size}-byte journal for 100 records"


# ------------------------------------------------------------------ 14: livetune runs
def test_runs_never_chmods_through_a_symlinked_directory(tmp_path: Path,
                                                         livetune_home: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    livetune_home.mkdir(mode=0o700)
    (livetune_home / "runs").symlink_to(shared)
    with contextlib.suppress(lt.LiveTuneError):
        discovery.write_record(discovery.RunRecord("r", "127.0.0.1:1", os.getpid(), 0.0))
    assert discovery.list_runs() == []  # a directory others can enter is not trusted
    assert _mode(shared) == 0o755  # and the link's target was not chmod-ed
    assert not list(shared.iterdir())


# ------------------------------------------------------------------ train-vision: same rules
def test_train_vision_refuses_an_existing_run_directory_and_untrusted_checkpoints(
        tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from livetune_rl.vision.checkpoint import load_checkpoint, save_checkpoint
    from livetune_rl.vision.train import VisionConfig
    from livetune_rl.vision.train import train as train_vision

    (tmp_path / "taken").mkdir()
    with pytest.raises(lt.LiveTuneError, match="already exists"):
        train_vision(VisionConfig(dataset="synthetic", arch="vgg11", width=0.0625,
                                  train_size=8, val_size=8, num_classes=2, batch_size=4,
                                  max_steps=1, eval_at_end=False, tensorboard=False,
                                  runs_root=str(tmp_path), run_name="taken", serve=False,
                                  progress=False))
    assert list((tmp_path / "taken").iterdir()) == []
    model = torch.nn.Linear(2, 2)
    path = save_checkpoint(tmp_path / "ckpt", "e0", model=model,
                           optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                           position={"epoch": 0})
    assert _mode(tmp_path / "ckpt") == 0o700 and _mode(path) == 0o600
    path.chmod(0o664)
    with pytest.raises(lt.LiveTuneError, match="writable by others"):
        load_checkpoint(tmp_path / "ckpt" / "last.pt")
    assert cli.main(["train-vision", "--token", TOKEN, "--runs-root", str(tmp_path)]) == 2
    (tmp_path / "taken" / "config.json").write_text('{"token_required": true}')
    with pytest.raises(lt.LiveTuneError, match="required a token"):  # finding 10, vision
        train_vision(VisionConfig(runs_root=str(tmp_path), run_name="taken",
                                  resume=str(tmp_path / "ckpt" / "last.pt"), serve=False))
