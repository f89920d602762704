"""Regenerate the Python code of every .proto file under src/warden/api.

Run with `make proto`. The generated modules are committed, so that installing Warden needs
no protoc; a test checks that they match their .proto files.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src"


def main() -> int:
    protos = sorted(
        str(path.relative_to(SOURCE)) for path in (SOURCE / "warden" / "api").rglob("*.proto")
    )
    if not protos:
        print("gen_proto: no .proto files under src/warden/api", file=sys.stderr)
        return 1
    include = str(Path(protoc.__file__).parent / "_proto")
    arguments = [
        "protoc",
        f"-I{SOURCE}",
        f"-I{include}",
        f"--python_out={SOURCE}",
        f"--pyi_out={SOURCE}",
        f"--grpc_python_out={SOURCE}",
        *protos,
    ]
    status = protoc.main(arguments)
    if status != 0:
        print(f"gen_proto: protoc failed with status {status}", file=sys.stderr)
        return status
    for proto in protos:
        print(f"gen_proto: generated code for {proto}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
