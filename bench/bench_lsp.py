"""How fast `netspec lsp` answers on models/resnet.net (ResNet-18 to ResNet-152, six networks).

Usage: python bench/bench_lsp.py [--edits 20] [--write]

Starts the server over stdio with pygls' client, opens the spec, then times, as an editor sees
them: the diagnostics after each edit (a didChange until its publishDiagnostics; every network of
the file is checked again), a hover on a tensor inside the Bottleneck block, a hover on a layer,
and a go-to-definition. Prints the medians and maxima; --write also puts them in RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient
from pygls.uris import from_fs_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, header, versions, write_section  # noqa: E402

SPEC = ROOT / "models" / "resnet.net"


def _pos(text: str, needle: str, offset: int = 0) -> lsp.Position:
    before = text[: text.index(needle) + offset]
    return lsp.Position(before.count("\n"), len(before) - (before.rfind("\n") + 1))


async def measure(edits: int) -> dict[str, list[float]]:
    client = LanguageClient("bench", "1")
    queue: asyncio.Queue = asyncio.Queue()
    client.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)(lambda p: queue.put_nowait(p))
    await client.start_io(sys.executable, "-m", "netspec", "lsp", cwd=str(ROOT))
    await client.initialize_async(lsp.InitializeParams(capabilities=lsp.ClientCapabilities()))
    client.initialized(lsp.InitializedParams())
    uri, text = from_fs_path(str(SPEC)), SPEC.read_text(encoding="utf-8")
    doc = lsp.TextDocumentIdentifier(uri)
    times: dict[str, list[float]] = {"open": [], "edit": [], "hover tensor": [], "hover layer": [], "definition": []}
    start = time.perf_counter()
    client.text_document_did_open(lsp.DidOpenTextDocumentParams(lsp.TextDocumentItem(uri, "netspec", 1, text)))
    diags = await queue.get()
    times["open"].append(time.perf_counter() - start)
    assert not diags.diagnostics, diags.diagnostics
    for k in range(edits):
        # Alternate a real change of meaning (the classes of every network) and back.
        new = text.replace("classes = 1000", "classes = 10") if k % 2 == 0 else text
        start = time.perf_counter()
        client.text_document_did_change(lsp.DidChangeTextDocumentParams(
            lsp.VersionedTextDocumentIdentifier(version=k + 2, uri=uri),
            [lsp.TextDocumentContentChangeWholeDocument(text=new)]))
        await queue.get()
        times["edit"].append(time.perf_counter() - start)
        for name, call in (("hover tensor", client.text_document_hover_async(lsp.HoverParams(doc, _pos(text, "skip = project", 1)))),
                           ("hover layer", client.text_document_hover_async(lsp.HoverParams(doc, _pos(text, "Conv2d(width * 4", 2)))),
                           ("definition", client.text_document_definition_async(lsp.DefinitionParams(doc, _pos(text, "Stage(64", 1))))):
            start = time.perf_counter()
            assert await call is not None
            times[name].append(time.perf_counter() - start)
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edits", type=int, default=20)
    ap.add_argument("--write", action="store_true", help="also write the section of bench/RESULTS.md")
    args = ap.parse_args()
    times = asyncio.run(measure(args.edits))
    rows = ["| request | median ms | max ms |", "| --- | ---: | ---: |"]
    for name, ts in times.items():
        rows.append(f"| {name} | {statistics.median(ts) * 1000:.0f} | {max(ts) * 1000:.0f} |")
    text = "\n".join([
        "## Language server: `netspec lsp` on models/resnet.net", "", header(),
        versions("pygls", "lark", "pydantic", "networkx") + ".", "",
        f"ResNet-18/34/50/101/152 and their base network (six networks, 1,298 layers in all) are "
        f"checked after every edit; {args.edits} edits, each followed by two hovers and a definition "
        f"(`python bench/bench_lsp.py --edits {args.edits}`):", "", *rows])
    print(text)
    if args.write:
        write_section("bench_lsp", text)


if __name__ == "__main__":
    main()
