"""Tests for resode.io: model files round-trip exactly, saves are atomic, bad files are refused."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import resode
from resode.io import read_file, write_file


def _models() -> list[Any]:
    return [
        resode.NeuralODE(2, T=3.0, pieces=4, field="bottleneck", hidden=5, augment=1, seed=0),
        resode.NeuralODE(
            3,
            T=1.0,
            pieces=3,
            method="euler",
            dtype="float32",
            seed=1,
            turnpike=True,
            checkpoints=2,
            weight_decay=1e-3,
            classes=3,
        ),
        resode.ResNet(2, 5, h=0.2, field="inside", activation="relu", seed=2),
        resode.ResNet(
            4, 2, field="bottleneck", hidden=3, augment=2, dtype="float32", loss="mse", seed=None
        ),
    ]


def _header(model: Any) -> dict[str, Any]:
    return {"format": "resode", "version": 1, "kind": model.kind, "config": model.config}


def _arrays(model: Any) -> dict[str, np.ndarray]:
    return {f"params/{k}": v for k, v in model.params.items()}


@pytest.mark.parametrize("model", _models(), ids=lambda m: f"{m.kind}-{m.dtype}-{m.field}")
def test_round_trip_is_exact(tmp_path: Path, model: Any) -> None:
    rng = np.random.default_rng(0)
    for v in model.params.values():  # make the parameters unlike a fresh initialisation
        v += rng.normal(size=v.shape).astype(v.dtype)
    path = tmp_path / "model.npz"
    model.save(path)
    again = resode.load(str(path))
    assert type(again) is type(model) and again.config == model.config
    assert again.params.keys() == model.params.keys()
    for k, v in model.params.items():
        assert again.params[k].dtype == v.dtype and np.array_equal(again.params[k], v)
        assert again.params[k].flags.writeable and again.params[k].flags.c_contiguous
    X = rng.normal(size=(7, model.dim))
    assert np.array_equal(again.forward(X), model.forward(X))


def test_save_is_atomic_and_keeps_old_file_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.npz"
    first = resode.ResNet(2, 2, seed=0)
    first.save(path)
    os.chmod(path, 0o640)
    second = resode.ResNet(2, 2, seed=1)
    second.save(path)  # overwrite: new content, same permissions
    assert np.array_equal(resode.load(path).params["W"], second.params["W"])
    assert (path.stat().st_mode & 0o777) == 0o640

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        first.save(path)
    assert np.array_equal(resode.load(path).params["W"], second.params["W"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]  # no temporary left


def test_new_file_gets_default_permissions(tmp_path: Path) -> None:
    path = tmp_path / "fresh.npz"
    resode.ResNet(2, 2, seed=0).save(path)
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)


def test_save_refuses_non_finite_parameters(tmp_path: Path) -> None:
    model = resode.ResNet(2, 2, seed=0)
    model.params["b"][0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError):
        resode.load("/nonexistent/model.npz")


# --------------------------------------------------------------------------- damaged files


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Any, bytes]:
    model = resode.NeuralODE(2, T=2.0, pieces=3, field="bottleneck", hidden=4, augment=1, seed=0)
    path = tmp_path / "good.npz"
    model.save(path)
    return model, path.read_bytes()


def _load_bytes(tmp_path: Path, data: bytes) -> Any:
    path = tmp_path / "bad.npz"
    path.write_bytes(data)
    return resode.load(path)


def test_truncated_files_are_refused(tmp_path: Path, saved: tuple[Any, bytes]) -> None:
    _, data = saved
    for n in (0, 1, 30, len(data) // 3, len(data) // 2, len(data) - 22, len(data) - 1):
        with pytest.raises(ValueError, match="invalid resode file"):
            _load_bytes(tmp_path, data[:n])


def test_bit_flips_are_refused_or_harmless(tmp_path: Path, saved: tuple[Any, bytes]) -> None:
    """Flipping a bit anywhere gives a ValueError, or (in unchecked ZIP metadata such as
    timestamps) exactly the original model: never a different model, never another error."""
    model, data = saved
    refused = 0
    for i in range(0, len(data), 3):
        flipped = bytearray(data)
        flipped[i] ^= 1 << (i % 8)
        try:
            again = _load_bytes(tmp_path, bytes(flipped))
        except ValueError:
            refused += 1
            continue
        assert again.config == model.config
        assert all(np.array_equal(again.params[k], v) for k, v in model.params.items())
    assert refused > 0.8 * len(range(0, len(data), 3))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda h, a: a.pop("params/W2"), "missing parameter arrays"),
        (lambda h, a: a.update({"params/W3": np.zeros(2)}), "unexpected parameter arrays"),
        (lambda h, a: a.update({"extra": np.zeros(2)}), "unexpected array 'extra'"),
        (lambda h, a: a.update({"optimizer/m/W1": np.zeros(2)}), "unexpected array"),
        (lambda h, a: a.update({"params/b1": np.zeros((3, 5))}), r"shape \(3, 5\)"),
        (lambda h, a: a.update({"params/c": np.zeros(2, np.float32)}), "dtype float32"),
        (lambda h, a: a.update({"params/c": np.zeros(2, np.int64)}), "dtype int64"),
        (lambda h, a: a.update({"params/P": np.full((2, 3), np.nan)}), "NaN or Inf"),
        (lambda h, a: h.update(format="other"), "format"),
        (lambda h, a: h.update(version=2), "version"),
        (lambda h, a: h.update(kind="transformer"), "kind"),
        (lambda h, a: h.update(surprise=1), "unknown header keys"),
        (lambda h, a: h["config"].update(field="sideways"), "field"),
        (lambda h, a: h["config"].update(T=-1.0), "T must be"),
        (lambda h, a: h["config"].update(dim=2.0), "'dim' must be"),
        (lambda h, a: h["config"].update(hidden=True), "'hidden' must be"),
        (lambda h, a: h["config"].update(colour="red"), "unknown"),
        (lambda h, a: h["config"].pop("method"), "missing"),
        (lambda h, a: h["config"].update(dtype="float16"), "dtype"),
        (lambda h, a: h.update(config=[1, 2]), "JSON object"),
        (lambda h, a: h.update(checkpoint=5), "checkpoint"),
    ],
)
def test_malformed_contents_are_refused(
    tmp_path: Path, saved: tuple[Any, bytes], change: Any, match: str
) -> None:
    model = saved[0]
    header, arrays = _header(model), _arrays(model)
    change(header, arrays)
    path = write_file(tmp_path / "m.npz", header, arrays)
    with pytest.raises(ValueError, match=match):
        resode.load(path)


def _raw_npz(path: Path, **arrays: Any) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def test_bad_header_json_is_refused(tmp_path: Path, saved: tuple[Any, bytes]) -> None:
    model = saved[0]
    for text, match in [
        (b"{not json", "not valid UTF-8 JSON"),
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"format": "resode", "version": NaN}', "NaN is not valid JSON"),
    ]:
        path = _raw_npz(tmp_path / "m.npz", header=np.frombuffer(text, np.uint8), **_arrays(model))
        with pytest.raises(ValueError, match=match):
            resode.load(path)
    text = json.dumps(_header(model)).encode()
    for bad, match in [
        (np.frombuffer(text, np.uint8).astype(np.int16), "uint8"),
        (np.array(text.decode()), "only numeric arrays"),
    ]:
        path = _raw_npz(tmp_path / "m.npz", header=bad, **_arrays(model))
        with pytest.raises(ValueError, match=match):
            resode.load(path)
    path = _raw_npz(tmp_path / "m.npz", **_arrays(model))
    with pytest.raises(ValueError, match="no 'header'"):
        resode.load(path)


def test_pickles_and_object_arrays_are_refused(tmp_path: Path, saved: tuple[Any, bytes]) -> None:
    model = saved[0]
    arrays = _arrays(model)
    arrays["params/W1"] = np.array([{"evil": 1}], dtype=object)  # stored with pickle
    header = np.frombuffer(json.dumps(_header(model)).encode(), np.uint8)
    path = _raw_npz(tmp_path / "obj.npz", header=header, **arrays)
    with pytest.raises(ValueError, match="only numeric arrays"):
        resode.load(path)
    pkl = tmp_path / "model.pkl"
    pkl.write_bytes(pickle.dumps(model))
    with pytest.raises(ValueError, match=r"not a \.npz archive"):
        resode.load(pkl)
    npy = tmp_path / "plain.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(ValueError, match=r"not a \.npz archive"):
        resode.load(npy)


def test_foreign_zip_members_are_refused(tmp_path: Path, saved: tuple[Any, bytes]) -> None:
    path = tmp_path / "m.npz"
    path.write_bytes(saved[1])
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("README.txt", "hello")
    with pytest.raises(ValueError, match=r"unexpected member 'README\.txt'"):
        resode.load(path)
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    data = buf.getvalue()
    path2 = tmp_path / "m2.npz"
    path2.write_bytes(saved[1])
    with zipfile.ZipFile(path2, "a") as zf, pytest.warns(UserWarning, match="Duplicate"):
        zf.writestr("params/W1.npy", data[:-8])  # a duplicate, truncated member
    with pytest.raises(ValueError, match="invalid resode file"):
        resode.load(path2)


def test_read_file_returns_header_and_extra(tmp_path: Path, saved: tuple[Any, bytes]) -> None:
    path = tmp_path / "m.npz"
    path.write_bytes(saved[1])
    _, header, extra = read_file(path)
    assert header["kind"] == "node" and header["config"] == saved[0].config and extra == {}


def test_files_with_hidden_on_a_field_without_one_still_load(tmp_path) -> None:
    # written before hidden was refused for fields other than bottleneck: it had no effect
    model = resode.NeuralODE(2, field="outside", seed=0)
    model.hidden = 16
    model.save(tmp_path / "old.npz")
    loaded = resode.load(tmp_path / "old.npz")
    assert loaded.hidden is None
    for k, v in model.params.items():
        np.testing.assert_array_equal(loaded.params[k], v)


def test_a_regressor_on_flat_targets_predicts_flat_after_loading(tmp_path) -> None:
    X, y = resode.datasets.sine(40, seed=0)
    model = resode.ResNet(1, 2, classes=1, loss="mse", seed=0)
    resode.fit(model, X, y, epochs=2, progress=False)
    model.save(tmp_path / "r.npz")
    assert resode.load(tmp_path / "r.npz").predict(X).shape == (40,)
    resode.fit(model, X, y[:, None], epochs=1, progress=False)
    model.save(tmp_path / "r2.npz")
    assert resode.load(tmp_path / "r2.npz").predict(X).shape == (40, 1)


def test_an_adaptive_model_with_the_default_first_step_loads(tmp_path) -> None:
    model = resode.NeuralODE(2, pieces=3, method="dopri5", seed=0)  # first_step None: automatic
    model.save(tmp_path / "a.npz")
    assert resode.load(tmp_path / "a.npz").config == model.config


def test_class_labels_round_trip_and_files_without_them_load_as_before(tmp_path) -> None:
    model = resode.NeuralODE(2, pieces=3, classes=3, seed=0)
    model.save(tmp_path / "old.npz")  # as resode wrote every model before class labels
    assert resode.load(tmp_path / "old.npz").class_labels is None
    assert "class_labels" not in read_file(tmp_path / "old.npz")[1]
    model.class_labels = [-1, 7, 2]
    model.save(tmp_path / "new.npz")
    loaded = resode.load(tmp_path / "new.npz")
    assert loaded.class_labels == [-1, 7, 2]
    for k, v in model.params.items():
        np.testing.assert_array_equal(loaded.params[k], v)
    header, arrays = _header(model), _arrays(model)
    for bad in ([1, 2], [1, 1, 2], [1.5, 2, 3], "abc", [True, 2, 3]):
        path = write_file(tmp_path / "bad.npz", {**header, "class_labels": bad}, arrays)
        with pytest.raises(ValueError, match="class labels must be"):
            resode.load(path)


def test_atomic_path_leaves_the_old_file_when_interrupted(tmp_path) -> None:
    target = tmp_path / "figure.png"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), resode.io.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == [target.name]
    with resode.io.atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png"
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == [target.name]
