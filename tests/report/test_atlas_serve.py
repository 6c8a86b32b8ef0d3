"""``neurosleuth serve ATLAS``: an atlas built on the tiny random model, its pages rendered from the
table on request. Listings agree with pandas on the same filters and sort, a served neuron page is
the exported one, everything from the table or the request is escaped, a bad parameter is a 4xx
(never a traceback or a dropped connection), and the server's checks hold on the new routes."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from neurosleuth.atlas.build import AtlasConfig, build_atlas
from neurosleuth.atlas.table import PARQUET, AtlasTable, Query
from neurosleuth.report.atlas_site import write_site
from neurosleuth.report.site_style import SORT_JS
from neurosleuth.tools.scan_config import ScanConfig
from tests.fixtures import WORDS, tiny_random_lm
from tests.report.test_serve import raw, request, search_page, serving

EVIL = '<img src=x onerror="alert(1)">'


@pytest.fixture(scope="module")
def atlas(tmp_path_factory) -> Path:
    """Layers 0 and 1 of a tiny random model (64 neurons), under ``root/atlas``."""
    base = tmp_path_factory.mktemp("served")
    rng = np.random.default_rng(1)
    corpus = base / "corpus.txt"
    vocab = list(WORDS[3:]) + ["<b>zebra</b>"] * 4  # unknown to the tiny tokenizer: '<unk>'
    corpus.write_text("\n\n".join(" ".join(rng.choice(vocab, size=40)) for _ in range(200)))
    out = base / "root" / "atlas"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEUROSLEUTH_CACHE", str(base / "cache"))
        build_atlas(tiny_random_lm(seed=5), [0, 1], out,
                    AtlasConfig(ScanConfig(corpus=str(corpus), window=16, max_tokens=6000, k=12)))
    return out


@pytest.fixture(scope="module")
def frame(atlas) -> pd.DataFrame:
    return pd.read_parquet(atlas / "atlas.parquet")


def rows_of(html: str) -> list[str]:
    """The neurons listed in a page's table, in order."""
    return re.findall(r'<td data-v="\d+"><a href="n/\d+-\d+\.html">(\d+:\d+)</a>', html)


def get(server, path: str) -> str:
    status, body = request(server, path)
    assert status == 200, (path, status, body[:200])
    return body.decode()


def test_listings_agree_with_pandas(atlas, frame):
    """Every filter and sort, on the table object and through the server, as pandas does it."""
    table = AtlasTable(atlas)
    r = pd.to_numeric(frame["r"], errors="coerce")
    cases = [
        (Query(), frame.index),
        (Query(layer=1), frame.index[frame["layer"] == 1]),
        (Query(r_min=0.2, r_max=0.9), frame.index[(r >= 0.2) & (r <= 0.9)]),
        (Query(density_max=0.05), frame.index[frame["density"] <= 0.05]),
        (Query(kind="token"), frame.index[frame["kind"] == "token"]),
        (Query(bare="only"), frame.index[frame["bare_list"].fillna(False).astype(bool)]),
        (Query(text="fires"), frame.index[frame["explanation"].str.lower().str.contains(
            "fires", regex=False)]),
    ]
    for q, want in cases:
        got = table.select(Query(**{**q.__dict__, "per_page": 200}))
        assert got.total == len(want), q
        assert [x["neuron"] for x in got.rows] == list(frame.loc[want, "neuron"]), q
    assert 0 < len(cases[2][1]) < len(frame) and 0 < len(cases[3][1]) < len(frame)
    ranked = table.select(Query(sort="r", desc=True, per_page=200)).rows
    want = frame.assign(_r=r).sort_values("_r", ascending=False, na_position="last",
                                          kind="stable")
    assert [x["neuron"] for x in ranked] == list(want["neuron"])
    with serving(atlas.parent) as server:
        page = get(server, "/atlas/site/neurons.html?sort=r&desc=1&per_page=25&page=2")
        assert rows_of(page) == list(want["neuron"])[25:50]
        assert "64 neurons; page 2 of 3" in page
        page = get(server, "/atlas/site/layer-1.html?r_min=0.2&r_max=0.9")
        mask = (frame["layer"] == 1) & (r >= 0.2) & (r <= 0.9)
        assert rows_of(page) == list(frame.loc[mask, "neuron"])


def test_served_pages_are_the_exported_pages(atlas, frame, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(atlas, copy)
    write_site(copy)
    with serving(tmp_path) as server:
        for neuron in ("0:3", "1:31"):
            name = f"n/{neuron.replace(':', '-')}.html"
            shutil.move(copy / "site" / name, tmp_path / "exported.html")  # not served as a file
            served = get(server, f"/copy/site/{name}")
            assert served == (tmp_path / "exported.html").read_text()
            assert served.count('<code class="heat">') >= 3
        index = get(server, "/copy/site/")
        assert index == get(server, "/copy/site/index.html") and "neurons.html" in index
        assert rows_of(get(server, "/copy/site/layer-0.html")) == [f"0:{i}" for i in range(32)]
        assert get(server, "/copy/site/layer-0.html?per_page=25").count("<tr data-i=") == 25
        # the exported index and layer pages differ only by the served listing's form and pager
        assert "f-words" in (copy / "site" / "layer-0.html").read_text()
        assert "<script>" not in get(server, "/copy/site/layer-0.html")


def test_everything_from_the_table_or_the_request_is_escaped(atlas, frame, tmp_path):
    evil = tmp_path / "evil"
    evil.mkdir()
    bad = frame.copy()
    bad.loc[3, "explanation"] = EVIL
    bad.loc[3, "kind"] = '"><b>kind'
    bad.loc[3, "top_windows"] = json.dumps([{"tokens": ["<script>", EVIL], "acts": [1.0, 2.0]}])
    bad.to_parquet(evil / "atlas.parquet", index=False, **PARQUET)
    meta = json.loads((atlas / "atlas.json").read_text()) | {"model": "<i>model</i>"}
    (evil / "atlas.json").write_text(json.dumps(meta))
    with serving(tmp_path) as server:
        pages = [get(server, p) for p in (
            "/evil/site/", "/evil/site/layer-0.html", "/evil/site/n/0-3.html",
            "/evil/site/neurons.html?q=%22%3E%3Cscript%3Ealert(1)%3C/script%3E",
            "/evil/site/neurons.html?q=onerror&kind=%22%3E%3Cb%3Ekind")]
        for page in pages:
            assert "<img" not in page and "<i>" not in page and "<b>" not in page
            assert "<script" not in page.replace(f"<script>{SORT_JS}</script>", ""), page
        assert "&lt;img src=x onerror=" in pages[2] and "&lt;script&gt;" in pages[2]
        assert rows_of(pages[4]) == ["0:3"]  # the text query matched the explanation
        assert 'value="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in pages[3]


BAD = [  # (path, status)
    ("layer-0.html?r_min=abc", 400), ("layer-0.html?r_min=nan", 400), ("layer-0.html?r_min=5", 400),
    ("layer-0.html?density_max=-1", 400), ("layer-0.html?page=-1", 400),
    ("layer-0.html?page=99", 404), ("layer-0.html?sort=explanation", 400),
    ("layer-0.html?per_page=7", 400), ("layer-0.html?bare=maybe", 400),
    ("layer-0.html?foo=1", 400), ("layer-0.html?q=" + "a" * 300, 400),
    ("layer-0.html?r_min=0.1&r_min=0.2", 400), ("layer-0.html?q=%ff%fe", 400),
    ("layer-0.html?layer=1", 400), ("neurons.html?layer=x", 400),
    ("neurons.html?" + "&".join(f"k{i}=1" for i in range(40)), 400),
    ("index.html?x=1", 400), ("layer-9.html", 404), ("layer-99999999.html", 404),
    ("n/0-999.html", 404), ("n/7-0.html", 404), ("n/0-3.html?x=1", 400),
    ("n/0-99999999999.html", 404), ("search?q=" + "a" * 300, 400),
]


def test_every_bad_parameter_is_a_4xx_never_a_traceback(atlas):
    with serving(atlas.parent, atlas_search=search_page) as server:
        host = f"Host: 127.0.0.1:{server.server_address[1]}\r\n\r\n".encode()
        for path, status in BAD:
            got, body = raw(server, f"GET /atlas/site/{path} HTTP/1.1\r\n".encode() + host)
            assert got == status, (path, got, body[:200])
            assert b"Traceback" not in body and len(body) < 1000, path
        assert get(server, "/atlas/site/layer-0.html?page=0&q=&r_min=")  # blank means no filter
        assert get(server, "/atlas/site/search?q=red").startswith("0:")  # search still answers


def test_the_server_checks_hold_on_the_atlas_routes(atlas, tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    shutil.copytree(atlas, outside / "atlas", ignore=shutil.ignore_patterns("search.*"))
    (root / "far").symlink_to(outside / "atlas", target_is_directory=True)  # leaves the root
    (root / "half").mkdir()
    (root / "half" / "atlas.json").write_text("{}")
    (root / "half" / "atlas.parquet").symlink_to(outside / "atlas" / "atlas.parquet")
    shutil.copytree(atlas, root / "atlas")
    with serving(root, atlas_search=search_page) as server:
        port = server.server_address[1]
        for path in ("/far/site/", "/far/site/n/0-3.html", "/half/site/layer-0.html",
                     "/far/site/search?q=red", "/atlas/../far/site/"):
            assert request(server, path)[0] == 404, path
        for path in ("/atlas/site/", "/atlas/site/layer-0.html", "/atlas/site/n/0-3.html",
                     "/atlas/site/neurons.html?q=x", "/atlas/site/search?q=red"):
            assert request(server, path)[0] == 200, path
            assert request(server, path, "HEAD") == (200, b""), path
            for host in (f"evil.example:{port}", f"localhost:{port + 1}"):
                assert request(server, path, host=host)[0] == 421, (path, host)
        assert b"atlas/site/" in request(server, "/")[1]  # the listing names the atlas
    assert not list(outside.rglob("search.*"))  # nothing cached outside the root
    with serving(root / "atlas") as server:  # an atlas folder served itself
        status, _ = request(server, "/")
        assert status == 302 and "Atlas of" in get(server, "/site/")


def test_a_neuron_page_links_its_deep_dive_under_the_root(atlas, tmp_path):
    shutil.copytree(atlas, tmp_path / "atlas")
    run = tmp_path / "deep" / "n0-3"
    run.mkdir(parents=True)
    model = json.loads((atlas / "atlas.json").read_text())["model"]
    (run / "config.json").write_text(json.dumps({"model": model, "neuron": "0:3"}))
    (run / "report.html").write_text("<p>report</p>")
    with serving(tmp_path) as server:
        page = get(server, "/atlas/site/n/0-3.html")
        assert '<a href="../../../deep/n0-3/report.html">Deep-dive report' in page
        assert "Deep-dive report" not in get(server, "/atlas/site/n/0-4.html")


def test_cli_export_of_chosen_layers_and_serve_of_an_atlas(atlas, tmp_path, monkeypatch):
    from neurosleuth.cli import app
    from neurosleuth.report.serve import SiteServer

    copy = tmp_path / "atlas"
    shutil.copytree(atlas, copy)
    res = CliRunner().invoke(app, ["atlas-export", str(copy), "--layers", "1",
                                   "--runs-dir", str(tmp_path)], terminal_width=200)
    assert res.exit_code == 0 and "32 neuron pages" in res.output, res.output
    assert [p.name for p in (copy / "site").glob("layer-*.html")] == ["layer-1.html"]
    assert sorted(p.name for p in (copy / "site" / "n").iterdir())[0] == "1-0.html"
    res = CliRunner().invoke(app, ["atlas-export", str(copy), "--layers", "5"])
    assert res.exit_code == 2 and "layers [5] are not in the atlas" in res.output
    res = CliRunner().invoke(app, ["atlas-export", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "is no atlas" in res.output
    monkeypatch.setattr(SiteServer, "serve_forever", lambda self, *a, **k: None)
    res = CliRunner().invoke(app, ["serve", str(copy), "--port", "0"])
    assert res.exit_code == 0 and re.search(r"http://127\.0\.0\.1:\d+/site/", res.output), \
        res.output


@pytest.mark.browser
def test_served_pages_filter_sort_and_page_in_a_browser(atlas, frame):
    """Forms and links only, no script: the CSP lets the form submit (no console error)."""
    from playwright.sync_api import sync_playwright

    from tests.report.test_site_browser import CHROMIUM, FLAGS, Watch

    def shown(page) -> list[tuple[str, float]]:
        cells = page.eval_on_selector_all(
            "#neurons tbody tr", "rows => rows.map(r => [r.cells[0].textContent, "
            "r.getAttribute('data-r')])")
        return [(n, float(r) if r else float("nan")) for n, r in cells]

    with serving(atlas.parent) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page()
        watch = Watch(page)
        page.goto(server.url + "atlas/site/")
        page.click('a[href="layer-0.html"]')
        page.wait_for_url("**/layer-0.html")
        assert len(shown(page)) == 32
        page.fill('input[name="r_min"]', "0.2")
        page.click("button[type=submit]")
        page.wait_for_url("**r_min=0.2**")
        rows = shown(page)
        want = frame[(frame["layer"] == 0) & (pd.to_numeric(frame["r"]) >= 0.2)]
        assert [n for n, _ in rows] == list(want["neuron"]) and rows
        page.click('#neurons thead a >> text="r"')  # server-side sort, ascending then descending
        page.wait_for_url("**sort=r**")
        assert [r for _, r in shown(page)] == sorted(r for _, r in rows)
        page.click('#neurons thead a >> text="r"')
        page.wait_for_url("**desc=1**")
        assert [r for _, r in shown(page)] == sorted((r for _, r in rows), reverse=True)
        first = shown(page)[0][0]
        page.click(f"#neurons tbody a >> text={first}")
        page.wait_for_url(f"**/n/{first.replace(':', '-')}.html")
        assert page.locator("code.heat").count() >= 3
        page.goto(server.url + "atlas/site/neurons.html?per_page=25")
        page.click("text=next")
        page.wait_for_url("**page=2**")
        assert len(shown(page)) == 25 and "page 2 of 3" in page.text_content("body")
        assert watch.errors == [] and watch.dialogs == []
        browser.close()
