"""Build hook: generate the gRPC stubs from the repository's protos.

The protos in ``../proto/hilt/v1`` are the one definition of hiltd's API
(the Rust side compiles the same files), so the Python stubs are generated
from them at every build with grpcio-tools and never kept in git. They land
flat in ``hilt/_proto`` with their imports rewritten to point there, so
they resolve inside the installed package whatever else is on
``sys.path`` (protoc writes ``from hilt.v1 import tensor_pb2``, which would
look for a top-level ``hilt.v1``).

pip builds a local directory in place, so ``../proto`` is found from a
clone anywhere; a build from a copy of ``python/`` alone (an sdist, a
directory copied without ``proto/``) fails here with a message saying
where the protos were looked for. ``HILT_PROTO_DIR`` points elsewhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
OUT = HERE / "hilt" / "_proto"
# The generated modules and what each proto file is called inside
# ``hilt/v1`` (the import path protoc writes).
PROTOS = ("tensor", "device", "hilt")


def proto_root() -> Path:
    """The directory holding ``hilt/v1/*.proto``, or a clear failure."""
    candidates = []
    env = os.environ.get("HILT_PROTO_DIR")
    if env:
        candidates.append(Path(env))
    candidates.append(HERE.parent / "proto")
    for c in candidates:
        if all((c / "hilt" / "v1" / f"{p}.proto").is_file() for p in PROTOS):
            return c
    looked = ", ".join(str(c) for c in candidates)
    raise SystemExit(
        "hilt-client: the protos hilt/v1/{tensor,device,hilt}.proto were not found "
        f"(looked in: {looked}). Build from the repository (`pip install ./python` "
        "in a clone: pip builds local directories in place, so ../proto is found) "
        "or set HILT_PROTO_DIR to a directory holding hilt/v1/*.proto."
    )


_IMPORT = re.compile(r"^from hilt\.v1 import (\w+_pb2)", re.MULTILINE)


def generate() -> None:
    """Run protoc (grpcio-tools) and place the stubs in ``hilt/_proto``."""
    try:
        from grpc_tools import protoc  # type: ignore[import-untyped]
    except ImportError as e:  # pragma: no cover - a broken build env
        raise SystemExit(
            "hilt-client: grpcio-tools is needed to build (it generates the gRPC "
            "stubs); it is in [build-system] requires, so install with build "
            "isolation or install grpcio-tools first"
        ) from e
    import importlib.resources
    import tempfile

    root = proto_root()
    # google/protobuf/timestamp.proto ships inside grpc_tools.
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{root}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
        ] + [str(root / "hilt" / "v1" / f"{p}.proto") for p in PROTOS]
        if protoc.main(args) != 0:
            raise SystemExit(f"hilt-client: protoc failed on the protos in {root}")
        gen = Path(tmp) / "hilt" / "v1"
        OUT.mkdir(parents=True, exist_ok=True)
        for f in sorted(gen.iterdir()):
            if not f.name.endswith((".py", ".pyi")):
                continue
            text = _IMPORT.sub(r"from hilt._proto import \1", f.read_text())
            (OUT / f.name).write_text(text)
    missing = [p for p in PROTOS if not (OUT / f"{p}_pb2.py").is_file()]
    if missing or not (OUT / "hilt_pb2_grpc.py").is_file():
        raise SystemExit(f"hilt-client: protoc did not write the stubs for {missing}")


class BuildPyWithStubs(build_py):
    """``build_py`` that first generates the stubs, so every wheel (and an
    editable install, which runs it too) carries stubs of the protos it was
    built from."""

    def run(self) -> None:
        generate()
        super().run()


setup(cmdclass={"build_py": BuildPyWithStubs})
