"""Fixtures for the export tests."""

import json
import os
import stat
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from export_fixtures import SAMPLE, small_convnet


@pytest.fixture(scope="module")
def convnet():
    return small_convnet()


FAKE_ADB = r'''#!{python}
"""Fake adb: answers devices/push/shell from environment variables and logs every call."""
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_ADB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
serial = None
if args[:1] == ["-s"]:
    serial, args = args[1], args[2:]
if args == ["devices"]:
    print("List of devices attached")
    for entry in filter(None, os.environ.get("FAKE_ADB_DEVICES", "").split(",")):
        name, state = entry.split(":")
        print(name + "\t" + state)
    print()
elif args[0] == "push":
    print(args[1] + ": 1 file pushed, 0 skipped. 41.2 MB/s (1234 bytes in 0.000s)")
elif args[0] == "shell":
    command = " ".join(args[1:])
    if command.startswith("ls "):
        path = command[3:]
        if os.environ.get("FAKE_ADB_BINARY") == "present":
            print(path)
        else:
            print("ls: " + path + ": No such file or directory")
            sys.exit(1)
    elif command.startswith("getprop"):
        print("Pixel 7\r\narm64-v8a\r\n14\r\nTensor G2\r")
    elif command.startswith("rm "):
        pass
    else:
        with open(os.environ["FAKE_ADB_OUTPUT"]) as handle:
            sys.stdout.write(handle.read())
        sys.exit(int(os.environ.get("FAKE_ADB_EXIT", "0")))
else:
    print("fake adb: unsupported " + " ".join(args), file=sys.stderr)
    sys.exit(2)
'''


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "adb"
    script.write_text(FAKE_ADB.replace("{python}", sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "adb_calls.jsonl"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_DEVICES", "emulator-5554:device")
    monkeypatch.setenv("FAKE_ADB_BINARY", "present")
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(SAMPLE))

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return calls
