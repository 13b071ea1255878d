"""The parser's tables, cached in the user's cache folder: used only when they can be trusted."""

import os

import pytest
from lark import Lark

from netspec import parser_cache
from netspec.lark_reader import _grammar_path

OPTIONS = {"parser": "lalr", "start": "start", "propagate_positions": True, "maybe_placeholders": True}


@pytest.fixture
def grammar():
    return _grammar_path().read_text(encoding="utf-8")


@pytest.fixture
def text():
    from pathlib import Path
    return (Path(__file__).resolve().parent.parent / "models" / "lenet5.net").read_text(encoding="utf-8")


def _cached(folder):
    return sorted(p for p in folder.iterdir() if p.name.startswith("parser-"))


def _no_build(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the tables were rebuilt")
    monkeypatch.setattr(parser_cache, "Lark", type("L", (), {"__new__": refuse, "load": Lark.load}))


def test_second_use_loads_the_same_parser(tmp_path, grammar, text, monkeypatch):
    folder = tmp_path / "cache"
    built = parser_cache.load_or_build(grammar, OPTIONS, folder)
    (path,) = _cached(folder)
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    _no_build(monkeypatch)
    loaded = parser_cache.load_or_build(grammar, OPTIONS, folder)
    assert loaded.parse(text) == built.parse(text)
    assert _cached(folder) == [path]


def test_another_grammar_or_options_gets_its_own_entry(tmp_path, grammar):
    folder = tmp_path / "cache"
    parser_cache.load_or_build(grammar, OPTIONS, folder)
    parser_cache.load_or_build(grammar, {**OPTIONS, "start": "expr"}, folder)
    parser_cache.load_or_build(grammar + "\n// changed\n", OPTIONS, folder)
    assert len(_cached(folder)) == 3


@pytest.mark.parametrize("damage", ["garbage", "wrong key", "truncated"])
def test_a_damaged_cache_is_rebuilt(tmp_path, grammar, text, damage, monkeypatch):
    folder = tmp_path / "cache"
    good = parser_cache.load_or_build(grammar, OPTIONS, folder)
    (path,) = _cached(folder)
    content = path.read_bytes()
    path.write_bytes({"garbage": b"\x00\xffnot a cache",
                      "wrong key": b"0" * 64 + content[content.index(b"\n"):],
                      "truncated": content[:len(content) // 2]}[damage])
    again = parser_cache.load_or_build(grammar, OPTIONS, folder)
    assert again.parse(text) == good.parse(text)
    # Written anew, and good for the next run.
    _no_build(monkeypatch)
    assert parser_cache.load_or_build(grammar, OPTIONS, folder).parse(text) == good.parse(text)


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="no file owners on this OS")
def test_a_cache_others_can_write_is_not_trusted(tmp_path, grammar, monkeypatch):
    folder = tmp_path / "cache"
    parser_cache.load_or_build(grammar, OPTIONS, folder)
    (path,) = _cached(folder)
    path.chmod(0o666)
    rebuilt = []
    real = parser_cache.Lark

    class Counting(real):
        def __init__(self, *a, **k):
            rebuilt.append(1)
            super().__init__(*a, **k)

    monkeypatch.setattr(parser_cache, "Lark", Counting)
    parser_cache.load_or_build(grammar, OPTIONS, folder)
    assert rebuilt == [1]
    folder.chmod(0o777)
    parser_cache.load_or_build(grammar, OPTIONS, folder)
    assert rebuilt == [1, 1]
    folder.chmod(0o700)


def test_an_unwritable_folder_means_no_cache(tmp_path, grammar, text):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    parser = parser_cache.load_or_build(grammar, OPTIONS, blocker / "cache")
    assert parser.parse(text)


def test_no_cache_when_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("NETSPEC_NO_CACHE", "1")
    assert parser_cache.cache_folder() is None
    monkeypatch.delenv("NETSPEC_NO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert parser_cache.cache_folder() == tmp_path / "netspec"
