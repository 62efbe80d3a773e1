"""Regenerate the gRPC stubs in ``livetune_rl/_proto`` from ``protos/``.

Run from the repository root (needs the ``dev`` extra, which pins grpcio-tools)::

    python scripts/gen_proto.py

protoc writes absolute imports (``from livetune.v1 import ...``); they are rewritten to live
under ``livetune_rl._proto`` so the generated code never claims a top-level package.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
OUT = ROOT / "livetune_rl" / "_proto"


def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    wkt = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{wkt}",
        f"--python_out={OUT}",
        f"--pyi_out={OUT}",
        f"--grpc_python_out={OUT}",
        *files,
    ]
    if protoc.main(args) != 0:
        print("protoc failed", file=sys.stderr)
        return 1
    for path in OUT.rglob("*.py*"):
        text = path.read_text()
        fixed = re.sub(r"^from livetune\.", "from livetune_rl._proto.livetune.", text, flags=re.M)
        path.write_text(fixed)
    for folder in [OUT, *[p for p in OUT.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").write_text('"""Generated from protos/; do not edit."""\n')
    print(f"generated {len(files)} proto file(s) into {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
