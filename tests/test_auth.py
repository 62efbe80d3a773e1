"""Security: bearer tokens, loopback-only default, TLS, unix sockets."""

from __future__ import annotations

import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import LIVETUNE, make_registry

import livetune_rl as lt
from livetune_rl import discovery
from livetune_rl.server import ServeError

TOKEN = "s3cret-token"


@pytest.fixture
def token_server(start_server: Callable[..., Any]) -> Any:
    return start_server(make_registry(), token=TOKEN, journal=False)


CALLS: list[tuple[str, Callable[[lt.Client], Any]]] = [
    ("list", lambda c: c.list()),
    ("get", lambda c: c.get("batch_size")),
    ("set", lambda c: c.set({"batch_size": 3})),
    ("fire", lambda c: c.fire("checkpoint")),
    ("history", lambda c: c.history()),
    ("watch", lambda c: next(iter(c.watch()))),
]


@pytest.mark.parametrize(("what", "call"), CALLS, ids=[c[0] for c in CALLS])
def test_no_token_and_wrong_token_are_unauthenticated(token_server: Any, what: str,
                                                      call: Callable[[lt.Client], Any]) -> None:
    for token, reason in ((None, "missing token"), ("wrong", "wrong token"),
                          (TOKEN + "x", "wrong token")):
        with lt.Client(token_server.address, token=token) as client, \
                pytest.raises(lt.ClientError) as info:
            call(client)
        assert info.value.code is grpc.StatusCode.UNAUTHENTICATED, (what, info.value)
        assert reason in str(info.value) and TOKEN not in str(info.value)
    reg = token_server.registry
    assert reg.values()["batch_size"] == 64 and reg.trigger("checkpoint").fires == 0


def test_right_token_works_and_health_needs_none(token_server: Any) -> None:
    with lt.Client(token_server.address, token=TOKEN) as client:
        client.set({"batch_size": 3})
        assert client.get("batch_size").value == 3
        assert client.list().state.values()["batch_size"] == 3
        assert next(iter(client.watch())).snapshot is not None
    with lt.Client(token_server.address) as anonymous:
        assert anonymous.health()
    (run,) = discovery.list_runs()
    assert run.token_required


def test_token_from_environment(start_server: Callable[..., Any],
                                monkeypatch: pytest.MonkeyPatch,
                                sub_env: dict[str, str]) -> None:
    monkeypatch.setenv("LIVETUNE_TOKEN", TOKEN)
    server = start_server(make_registry(), journal=False)  # token from $LIVETUNE_TOKEN
    with lt.Client(server.address) as client:
        assert client.get("batch_size").value == 64
    with lt.Client(server.address, token="other") as client, pytest.raises(lt.ClientError):
        client.get("batch_size")
    env = {**sub_env, "LIVETUNE_TOKEN": TOKEN}
    ok = subprocess.run([str(LIVETUNE), "get", "batch_size"], env=env, text=True,
                        capture_output=True, timeout=30)
    assert ok.returncode == 0 and ok.stdout == "64\n"
    env.pop("LIVETUNE_TOKEN")
    wrong = Path(sub_env["LIVETUNE_HOME"]).parent / "wrong-token"
    wrong.write_text("nope\n")
    wrong.chmod(0o600)
    bad = subprocess.run([str(LIVETUNE), "get", "batch_size", "--token-file", str(wrong)],
                         env=env, text=True, capture_output=True, timeout=30)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "wrong token" in bad.stderr
    argv = subprocess.run([str(LIVETUNE), "get", "batch_size", "--token", TOKEN], env=env,
                          text=True, capture_output=True, timeout=30)
    assert argv.returncode == 0 and "visible to every user" in argv.stderr  # works, warned


def test_non_loopback_bind_needs_a_token_or_insecure(start_server: Callable[..., Any]) -> None:
    with pytest.raises(ServeError, match="non-loopback"):
        start_server(lt.Registry(), address="0.0.0.0:0", journal=False)
    with pytest.raises(ServeError, match="non-loopback"):
        start_server(lt.Registry(), address="[::]:0", journal=False)
    open_server = start_server(make_registry(), address="0.0.0.0:0", insecure=True,
                               journal=False)
    port = open_server.address.rsplit(":", 1)[1]
    with lt.Client(f"127.0.0.1:{port}") as client:
        assert client.get("batch_size").value == 64
    guarded = start_server(make_registry(), address="0.0.0.0:0", token=TOKEN, journal=False)
    port = guarded.address.rsplit(":", 1)[1]
    with lt.Client(f"127.0.0.1:{port}") as client, pytest.raises(lt.ClientError) as info:
        client.get("batch_size")
    assert info.value.code is grpc.StatusCode.UNAUTHENTICATED


def _make_cert(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        from cryptography import x509
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor the openssl CLI is available")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
             "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-addext", "basicConstraints=critical,CA:TRUE"],
            check=True, capture_output=True, timeout=60)
        return cert, key
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    pkey = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(pkey.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(pkey, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(pkey.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return cert, key


def test_tls(tmp_path: Path, start_server: Callable[..., Any], sub_env: dict[str, str]) -> None:
    cert, key = _make_cert(tmp_path)
    server = start_server(make_registry(), tls_cert=cert, tls_key=key, token=TOKEN,
                          journal=False, run="tls")
    with lt.Client(server.address, tls_ca=cert, token=TOKEN) as client:
        client.set({"batch_size": 5})
        assert client.get("batch_size").value == 5
    with lt.Client(server.address, token=TOKEN, timeout=2) as plain, \
            pytest.raises(lt.ClientError) as info:
        plain.get("batch_size")  # plaintext to a TLS port fails
    assert info.value.code is grpc.StatusCode.UNAVAILABLE
    (run,) = discovery.list_runs()
    assert run.tls and run.token_required
    with pytest.raises(lt.LiveTuneError, match="serves TLS"):
        lt.connect(run="tls")  # discovery knows it is TLS: a CA is required
    with lt.connect(run="tls", tls_ca=cert, token=TOKEN) as client:
        assert client.get("batch_size").value == 5
    proc = subprocess.run([str(LIVETUNE), "get", "batch_size", "--run", "tls", "--cacert",
                           str(cert), "--token", TOKEN], env=sub_env, text=True,
                          capture_output=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout == "5\n", proc.stderr
    with pytest.raises(ServeError, match="cannot read TLS files"):
        start_server(lt.Registry(), tls_cert=tmp_path / "none.pem", tls_key=key, journal=False)


def test_unix_socket(short_tmp: Path, start_server: Callable[..., Any],
                     sub_env: dict[str, str]) -> None:
    path = short_tmp / "lt.sock"
    server = start_server(make_registry(), address=f"unix:{path}", journal=False)
    assert server.address == f"unix:{path}"
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with lt.Client(server.address) as client:
        client.set_text({"batch_size": "9"})
        assert client.get("batch_size").value == 9
    proc = subprocess.run([str(LIVETUNE), "get", "batch_size", "--addr", server.address],
                          env=sub_env, text=True, capture_output=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout == "9\n", proc.stderr
    server.stop()
    with lt.Client(server.address, timeout=1) as client:
        assert not client.health()
