"""save_checkpoint / load_checkpoint: plain data only, atomic replacement, clear refusals."""

from __future__ import annotations

import collections
import errno
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from prunecli.checkpoint import (
    FIELDS,
    FORMAT_VERSION,
    CheckpointPayloadError,
    build_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from prunecli.errors import CheckpointError, PruneCliError


def _payload(seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    weights = {
        "conv.weight": torch.randn(4, 3, 3, 3, generator=gen),
        "conv.bias": torch.randn(4, generator=gen),
    }
    return build_checkpoint(
        state_dict=weights,
        model={"kind": "zoo", "name": "simplenet_mnist", "kwargs": {}, "path": None, "dataset": None},
        masks={"conv.weight": (weights["conv.weight"] != 0).float(), "conv.bias": None},
        optimizer={
            "state": {0: {"momentum_buffer": torch.zeros(4)}},
            "param_groups": [{"lr": 0.1, "params": [0]}],
        },
        optimizer_type="SGD",
        epoch=3,
        schedule_text="version: 1\n",
        metrics=[{"epoch": 0, "top1": 0.5}],
        rng={"torch": torch.get_rng_state(), "python": (3, tuple(range(5)), None)},
        extras={"note": "x"},
    )


def _assert_same(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert set(a) == set(b)
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


def test_round_trip_keeps_every_key_and_value(tmp_path: Path) -> None:
    payload = _payload()
    save_checkpoint(tmp_path / "c.pt", payload)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert set(loaded) == set(FIELDS)
    _assert_same(payload, loaded)


def test_saved_file_loads_in_plain_pytorch_weights_only(tmp_path: Path) -> None:
    payload = _payload()
    save_checkpoint(tmp_path / "c.pt", payload)
    raw = torch.load(tmp_path / "c.pt", weights_only=True, map_location="cpu")
    assert raw["format"] == "prunecli-checkpoint" and raw["format_version"] == FORMAT_VERSION
    assert torch.equal(raw["state_dict"]["conv.weight"], payload["state_dict"]["conv.weight"])


@pytest.mark.parametrize(
    ("bad", "where", "named"),
    [
        ({"metrics": [{"top1": np.float64(0.5)}]}, "['metrics'][0]['top1']", "numpy.float64"),
        ({"extras": {"opt": torch.optim.SGD}}, "['extras']['opt']", "type"),
        ({"extras": {"r": collections.namedtuple("R", "a b")(1, 2)}}, "['extras']['r']", "R"),
        ({"extras": {"fn": len}}, "['extras']['fn']", "builtin_function_or_method"),
        ({"extras": {"arr": np.zeros(2)}}, "['extras']['arr']", "ndarray"),
    ],
)
def test_refuses_values_that_need_pickled_code(tmp_path: Path, bad: dict, where: str, named: str) -> None:
    payload = _payload()
    payload.update(bad)
    with pytest.raises(CheckpointPayloadError) as info:
        save_checkpoint(tmp_path / "c.pt", payload)
    assert where in info.value.message and named in info.value.message
    assert not (tmp_path / "c.pt").exists()
    assert os.listdir(tmp_path) == []


def test_refuses_non_plain_dict_keys(tmp_path: Path) -> None:
    with pytest.raises(CheckpointPayloadError, match="key of type"):
        save_checkpoint(tmp_path / "c.pt", {"a": {object(): 1}})


def _fail_os_write_after(monkeypatch: pytest.MonkeyPatch, code: int, after_bytes: int = 100) -> None:
    real_write = os.write
    written = {"n": 0}

    def write(fd: int, data) -> int:
        if written["n"] >= after_bytes:
            raise OSError(code, os.strerror(code))
        written["n"] += len(data)
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize(
    ("code", "phrase"),
    [
        (errno.ENOSPC, "no space left on device"),
        (errno.EDQUOT, "disk quota exceeded"),
        (errno.EIO, "input/output error"),
    ],
)
def test_write_failure_keeps_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, phrase: str
) -> None:
    target = tmp_path / "checkpoint.pt"
    old = _payload(seed=1)
    save_checkpoint(target, old)
    before = target.read_bytes()
    _fail_os_write_after(monkeypatch, code)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(target, _payload(seed=2))
    monkeypatch.undo()
    text = info.value.render()
    assert phrase in text and str(target) in text
    assert f"the previous checkpoint {target} is intact" in text
    assert "--out-dir" in text
    assert target.read_bytes() == before
    _assert_same(old, load_checkpoint(target))
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt"]  # temporary file removed


def test_enospc_on_first_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fail_os_write_after(monkeypatch, errno.ENOSPC, after_bytes=0)
    with pytest.raises(CheckpointError, match="no partial file was left"):
        save_checkpoint(tmp_path / "c.pt", _payload())
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_fsync_failure_is_reported_and_previous_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "c.pt"
    save_checkpoint(target, _payload(seed=1))
    before = target.read_bytes()

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(CheckpointError, match="no space left"):
        save_checkpoint(target, _payload(seed=2))
    monkeypatch.undo()
    assert target.read_bytes() == before


@pytest.mark.parametrize(
    ("code", "phrase"), [(errno.EACCES, "permission denied"), (errno.EROFS, "read-only")]
)
def test_unwritable_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, phrase: str
) -> None:
    real_open = os.open

    def refuse(path, flags, *args):
        if flags & os.O_CREAT:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(tmp_path / "c.pt", _payload())
    assert phrase in info.value.render() and "c.pt" in info.value.render()


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="directory does not exist"):
        save_checkpoint(tmp_path / "nope" / "c.pt", _payload())


def test_stale_temp_file_of_dead_writer_is_removed(tmp_path: Path) -> None:
    stale = tmp_path / ".c.pt.999999999.tmp"  # no such pid
    stale.write_bytes(b"partial")
    save_checkpoint(tmp_path / "c.pt", _payload())
    assert sorted(os.listdir(tmp_path)) == ["c.pt"]


# ----------------------------------------------------------------------------------------- loading


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _message(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    text = info.value.render()
    assert str(path) in text
    assert "Fix:" in text
    return text


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert "does not exist" in _message(tmp_path / "absent.pt")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_checkpoint(run_dir / "checkpoint.pt", _payload())
    text = _message(run_dir)
    assert "is a directory" in text and str(run_dir / "checkpoint.pt") in text


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (b"", "empty file"),
        (b"version: 1\npruners:\n  p: {class: X}\n", "YAML"),
        (b'{"a": 1}', "JSON"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "PNG"),
        (b"\x93NUMPY\x01\x00" + bytes(100), "NumPy"),
        (bytes(range(7, 256)) * 3, "unrecognised binary"),
    ],
)
def test_not_a_checkpoint(tmp_path: Path, content: bytes, found: str) -> None:
    text = _message(_write(tmp_path, "x.pt", content))
    assert found in text


def test_zip_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(tmp_path / "x.pt", "w") as zf:
        zf.writestr("readme.txt", "hello")
    assert "zip archive that is not a PyTorch checkpoint" in _message(tmp_path / "x.pt")


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.99])
def test_truncated_checkpoint(tmp_path: Path, fraction: float) -> None:
    save_checkpoint(tmp_path / "c.pt", _payload())
    data = (tmp_path / "c.pt").read_bytes()
    text = _message(_write(tmp_path, "t.pt", data[: int(len(data) * fraction)]))
    assert "truncated or corrupt" in text


def test_legacy_format_state_dict_is_accepted(tmp_path: Path) -> None:
    weights = {"module.fc.weight": torch.randn(3, 2), "module.fc.bias": torch.randn(3)}
    torch.save(weights, tmp_path / "w.pth", _use_new_zipfile_serialization=False)
    loaded = load_checkpoint(tmp_path / "w.pth")
    assert loaded["model"] is None and loaded["extras"]["source"] == "state_dict"
    assert set(loaded["state_dict"]) == {"fc.weight", "fc.bias"}  # DataParallel prefix dropped
    assert torch.equal(loaded["state_dict"]["fc.weight"], weights["module.fc.weight"])


def test_dict_with_state_dict_key_is_accepted(tmp_path: Path) -> None:
    weights = {"fc.weight": torch.randn(3, 2)}
    torch.save({"state_dict": weights, "epoch": 7, "best_acc": 0.9}, tmp_path / "w.pt")
    loaded = load_checkpoint(tmp_path / "w.pt")
    assert loaded["epoch"] == 7 and torch.equal(loaded["state_dict"]["fc.weight"], weights["fc.weight"])


@pytest.mark.parametrize(
    ("obj", "found"),
    [(torch.zeros(3), "holds a Tensor"), ([1, 2], "holds a list"), ({"a": 1, "b": "x"}, "keys a, b")],
)
def test_torch_file_that_is_not_a_model_checkpoint(tmp_path: Path, obj, found: str) -> None:
    torch.save(obj, tmp_path / "o.pt")
    assert found in _message(tmp_path / "o.pt")


class _Marker:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_pickle_is_refused_without_running_it(tmp_path: Path, legacy: bool) -> None:
    marker = tmp_path / "pwned"
    payload = _payload()
    payload["extras"] = {"x": _Marker(marker)}
    torch.save(payload, tmp_path / "evil.pt", _use_new_zipfile_serialization=not legacy)
    text = _message(tmp_path / "evil.pt")
    assert "io.open" in text and "nothing from it was executed" in text
    assert not marker.exists()


def test_raw_pickle_of_os_system_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"state_dict": Evil()}, protocol=2))
    text = _message(tmp_path / "evil.pt")
    assert "system" in text
    assert not marker.exists()


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    payload = _payload()
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, tmp_path / "n.pt")
    text = _message(tmp_path / "n.pt")
    assert "newer prunecli" in text and "upgrade" in text


def test_structure_problems_are_all_listed(tmp_path: Path) -> None:
    payload = _payload()
    del payload["masks"], payload["metrics"]
    payload["epoch"] = "three"
    torch.save(payload, tmp_path / "s.pt")
    text = _message(tmp_path / "s.pt")
    assert "missing key 'masks'" in text and "missing key 'metrics'" in text
    assert "key 'epoch' is str" in text


def test_state_dict_with_non_tensor_is_refused(tmp_path: Path) -> None:
    payload = _payload()
    payload["state_dict"]["conv.weight"] = [1.0, 2.0]
    torch.save(payload, tmp_path / "s.pt")
    assert "expected a tensor" in _message(tmp_path / "s.pt")


def test_unknown_format_name(tmp_path: Path) -> None:
    torch.save({"format": "other-tool", "state_dict": {}}, tmp_path / "o.pt")
    assert "unknown checkpoint format 'other-tool'" in _message(tmp_path / "o.pt")


def test_every_refusal_is_a_prunecli_error(tmp_path: Path) -> None:
    assert issubclass(CheckpointError, PruneCliError)
    assert CheckpointError("x").exit_code == 2
