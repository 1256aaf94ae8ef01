"""Issue 34's bad inputs: a configuration file that would eat the machine (an alias bomb), a key given twice,
a file that is not UTF-8, a non-finite value, a plugin that raises at import, an address nothing answers on,
a dataset whose classes hold one image each. Each gets one line on stderr and exit 2 before any folder exists."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from test_inputs import refused  # exit 2, one line, no results folder

DIGITS = ["--dataset", "digits", "--no-progress", "--executor", "local", "--epochs", "1"]


def alias_bomb(levels: int = 10, width: int = 9) -> str:
    """A YAML file of a few hundred bytes that expands to ``width ** levels`` values under ``method_hparams``."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} {{" + ", ".join(f"a{i}: *l{level - 1}" for i in range(width)) + "}")
    body = "\n".join("    " + line for line in lines)
    return f"methods: [ms]\ndataset: digits\nrecipe_overrides:\n  method_hparams:\n{body}\n"


def test_an_alias_bomb_is_refused_at_once(tmp_path, capsys):
    config = tmp_path / "bomb.yaml"
    config.write_text(alias_bomb())
    assert len(config.read_bytes()) < 2000
    err = refused(["run", "--config", str(config), *DIGITS], tmp_path, capsys)
    assert f"{config}, line" in err and "expands to more than 100,000 values" in err


def test_a_deeply_nested_or_recursive_config_is_refused(tmp_path, capsys):
    deep = tmp_path / "deep.yaml"
    deep.write_text("methods: [ms]\nhparams: " + "[" * 60 + "]" * 60 + "\n")
    assert "nested deeper than 50 levels" in refused(["run", "--config", str(deep), *DIGITS], tmp_path, capsys)
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("methods: [ms]\nhparams: &a {ms: *a}\n")
    assert "a recursive alias" in refused(["run", "--config", str(recursive), *DIGITS], tmp_path, capsys)


def test_aliases_within_the_limits_still_work(tmp_path):
    from harness.core.settings_file import read_mapping

    config = tmp_path / "shared.yaml"
    config.write_text("common: &common {alpha: 2.0, beta: 40.0}\nms: *common\nother: {<<: *common, alpha: 1.0}\n")
    assert read_mapping(config, "test") == {"common": {"alpha": 2.0, "beta": 40.0}, "ms": {"alpha": 2.0, "beta": 40.0},
                                            "other": {"alpha": 1.0, "beta": 40.0}}


def test_a_key_given_twice_is_refused(tmp_path, capsys):
    config = tmp_path / "twice.yaml"
    config.write_text("methods: [ms]\nrecipe_overrides: {epochs: 1}\nseeds: [0]\nrecipe_overrides: {epochs: 5}\n")
    err = refused(["run", "--config", str(config), *DIGITS], tmp_path, capsys)
    assert f"{config}, line 4: key 'recipe_overrides' given twice in one mapping (first on line 2)" in err


def test_a_config_that_is_not_utf8_is_named(tmp_path, capsys):
    config = tmp_path / "latin1.yaml"
    config.write_bytes("methods: [ms]\nexperiment: caf\xe9\n".encode("latin-1"))
    err = refused(["run", "--config", str(config), *DIGITS], tmp_path, capsys)
    assert f"{config}: not UTF-8 text (byte 0xe9 at offset 29)" in err


@pytest.mark.parametrize("argv, config, message", [
    (["--hparam", "ms.alpha=1e999"], None, "hyperparameter ms.alpha: must be a finite number, got inf"),
    (["--recipe-set", "lr_head=1e999"], None, "recipe field lr_head: must be a finite number, got inf"),
    ([], "methods: [ms]\nhparams: {ms: {alpha: .inf}}\n", "hyperparameter ms.alpha: must be a finite number, got inf"),
    ([], "methods: [ms]\nhparams: {ms: {beta: .nan}}\n", "hyperparameter ms.beta: must be a finite number, got nan"),
])
def test_a_non_finite_value_is_refused_up_front(argv, config, message, tmp_path, capsys):
    if config:
        path = tmp_path / "c.yaml"
        path.write_text(config)
        argv = [*argv, "--config", str(path)]
    else:
        argv = [*argv, "--methods", "ms"]
    assert message in refused(["run", *argv, *DIGITS], tmp_path, capsys)


@pytest.mark.parametrize("source, message", [
    ("x = 1\nraise RuntimeError('plugin is broken')\n", "importing it raised RuntimeError: plugin is broken ({file}, line 2)"),
    ("def f(:\n", "importing it raised SyntaxError: invalid syntax ({file}, line 1)"),
])
def test_a_plugin_that_raises_at_import_is_one_line(source, message, tmp_path, monkeypatch, capsys):
    from harness.cli import main

    (tmp_path / "broken_plugin.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert main(["--plugins", "broken_plugin", "run", "--methods", "ms", *DIGITS,
                     "--results-dir", str(tmp_path / "results")]) == 2
    finally:
        sys.modules.pop("broken_plugin", None)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "--plugins broken_plugin: " + message.format(file=tmp_path / "broken_plugin.py") in err
    assert not (tmp_path / "results").exists()


@pytest.fixture
def plain_http_server():
    """The port of a plain HTTP server on this machine (something answers there, not a Ray cluster)."""
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # the server's log is not the command's stderr
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


RAY_RUN = ["run", "--methods", "ms", "--dataset", "digits", "--epochs", "1", "--no-progress"]


def test_an_address_where_no_ray_answers_is_refused_at_once(tmp_path, capsys, plain_http_server, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    err = refused([*RAY_RUN, "--address", "127.0.0.1:1"], tmp_path, capsys)
    assert "--address 127.0.0.1:1: no Ray cluster answers there (Connection refused)" in err
    err = refused([*RAY_RUN, "--address", f"127.0.0.1:{plain_http_server}"], tmp_path, capsys)
    assert f"--address 127.0.0.1:{plain_http_server}: something answers there, but not a Ray cluster" in err


def test_a_garbage_ray_address_in_the_environment_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "garbage")
    assert "RAY_ADDRESS=garbage: not a Ray address" in refused(RAY_RUN, tmp_path, capsys)


def test_a_grpc_server_passes_the_address_check():
    """A server that answers the HTTP/2 preface with a SETTINGS frame, as a Ray head's GCS does (checked
    against a real one: its first frame is ``00 00 18 04 ...``)."""
    import socket
    import threading

    from harness.scheduling.cluster_address import check_ray_address

    listener = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(24)
            connection.sendall(bytes([0, 0, 6, 0x04, 0, 0, 0, 0, 0, 0, 4, 0, 0x40, 0, 0]))

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    check_ray_address(f"127.0.0.1:{port}", f"--address 127.0.0.1:{port}")
    thread.join()
    listener.close()
    with pytest.raises(ValueError, match="ray://:5: not a Ray address"):
        check_ray_address("ray://:5", "ray://:5")


def omniglot_folder(root: Path, images_per_class: dict[str, int], suffixes: tuple[str, ...] = (".png",)) -> Path:
    """An Omniglot layout of 4 alphabets of 3 characters (the last 2 alphabets test), each character holding
    ``images_per_class[split]`` small drawings per suffix."""
    from PIL import Image

    for a, alphabet in enumerate(("A", "B", "C", "D")):
        split = "train" if a < 2 else "test"
        for c in range(3):
            folder = root / "images_background" / alphabet / f"character{c:02d}"
            folder.mkdir(parents=True)
            for i in range(images_per_class[split]):
                for suffix in suffixes:
                    Image.new("L", (8, 8), color=(a * 60 + c * 20 + i * 7) % 256).save(folder / f"{i:02d}{suffix}",
                                                                                      format="PNG")
    return root


@pytest.mark.parametrize("images, message", [
    ({"train": 1, "test": 1}, "every one of its 6 training classes holds one image (e.g. class 0 ("),
    ({"train": 3, "test": 1}, "6 of its 6 test classes each holds one image: it has no other image of its class "
                              "to retrieve (e.g. class 6 ("),
])
def test_a_dataset_whose_classes_hold_one_image_is_refused_up_front(images, message, tmp_path, capsys):
    root = omniglot_folder(tmp_path / "omniglot", images)
    err = refused(["run", "--methods", "ms,pixels", "--dataset", "omniglot", "--data-root", str(root),
                   "--executor", "local", "--epochs", "1", "--no-progress"], tmp_path, capsys)
    assert "dataset omniglot: " + message in err


def test_upper_case_png_files_are_read_beside_lower_case_ones(tmp_path):
    from harness.plugins.data import create_dataset

    root = omniglot_folder(tmp_path / "omniglot", {"train": 2, "test": 2}, suffixes=(".png", ".PNG"))
    splits = create_dataset("omniglot", root, 0.0)
    assert len(splits.query) == 6 * 2 * 2
    assert sum(str(p).endswith(".PNG") for p in splits.query.images) == 6 * 2
