"""The batch site in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright over a batch of the tiny model, served by ``report/serve.py`` with ``--live``, and
opened from the file system. ``make test`` installs Chromium where apt-get can; without it these
tests are skipped and the run ends with a banner (tests/conftest.py), or fail under .ci/run."""

import json
import shutil
import threading

import pytest

from neurosleuth.agents.config import RunConfig
from neurosleuth.batch.queue import BatchQueue
from neurosleuth.batch.select import NeuronPick
from neurosleuth.report.serve import make_server
from neurosleuth.tools.neurons import NeuronId
from tests.agent_helpers import ScriptedPlanner, run_batch, words, write_corpus

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
XSS = "<script>alert(1)</script>"

pytestmark = pytest.mark.browser  # skipped with a banner, or failed under CI, without Chromium


class XssPlanner(ScriptedPlanner):
    def __init__(self):
        super().__init__([[f"the cat {XSS}", words(1), words(2), words(3)],
                          [words(4 + i) for i in range(4)]])

    def hypothesize(self, view):
        action, info = super().hypothesize(view)
        return action.model_copy(update={"text": f"Fires on {XSS} tags"}), info


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_lm):
    """A finished 2-neuron batch and a live server over its runs folder."""
    root = tmp_path_factory.mktemp("runs")
    corpus = write_corpus(root.parent / "corpus.txt")
    cfg = RunConfig(model="tiny", planner="heuristic", iterations=2, prompts_per_step=4,
                    corpus=str(corpus), exemplar_tokens=2000, window=16, hypothesis_every=2, k=5)
    queue = BatchQueue.create(root, "b", [NeuronPick(NeuronId(1, 3)), NeuronPick(NeuronId(0, 5))],
                              cfg)
    run_batch(queue.folder, lm=tiny_lm, planner_factory=lambda c: XssPlanner())
    server = make_server(root, port=0, lm=tiny_lm, model_spec="tiny")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, queue.folder
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


class Watch:
    """Console errors, page errors and dialogs of one page."""

    def __init__(self, page):
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))


def column(page, i: int) -> list[str]:
    return page.eval_on_selector_all(
        "#neurons tbody tr", f"rows => rows.map(r => r.cells[{i}].textContent)")


def check_sorting(page) -> None:
    page.click("#neurons th >> text=neuron")
    assert column(page, 0) == ["0:5", "1:3"]
    assert page.get_attribute("#neurons th >> text=neuron", "aria-sort") == "ascending"
    page.click("#neurons th >> text=neuron")
    assert column(page, 0) == ["1:3", "0:5"]
    page.click("#neurons th >> text=best act")
    heads = page.eval_on_selector_all("#neurons th", "hs => hs.map(h => h.textContent)")
    values = [float(v) for v in column(page, heads.index("best act"))]
    assert values == sorted(values)


def test_index_sorts_links_and_escapes(site, browser):
    server, folder = site
    page = browser.new_page()
    watch = Watch(page)
    page.goto(server.url + "b/index.html")
    assert page.title() == "batch b"
    assert page.locator("#neurons tbody tr").count() == 2
    hyps = page.locator("#neurons tbody tr td.hyp").all_text_contents()
    winner = json.loads((folder / "n1-3" / "hypotheses.json").read_text())[-1]["text"]
    assert winner in hyps  # the best candidate, shown as text
    assert page.evaluate("document.scripts.length") == 1  # only the sorting script
    check_sorting(page)
    page.click('a[href="n1-3/report.html"]')
    page.wait_for_url("**/n1-3/report.html")
    assert "1:3" in page.title()
    assert XSS in page.locator("body").text_content()  # escaped in the report too

    # the live box: measure your own text on the loaded model
    page.fill("#ns-live-text", f"the cat sat {XSS}")
    page.click("#ns-live-go")
    page.wait_for_selector("#ns-live-out span.tok")
    tokens = page.eval_on_selector_all("#ns-live-out span.tok", "s => s.map(x => x.textContent)")
    assert tokens[:3] == ["the", "cat", "sat"]
    assert page.locator("#ns-live-status").text_content().startswith("max ")
    assert page.evaluate("document.querySelectorAll('#ns-live-out script').length") == 0
    assert watch.dialogs == [] and watch.errors == []
    page.close()


def test_site_works_from_the_file_system(site, browser):
    _, folder = site
    page = browser.new_page()
    watch = Watch(page)
    page.goto((folder / "index.html").as_uri())
    check_sorting(page)  # the CSP hash admits the inline script: no violation logged
    page.click("#neurons tbody tr >> nth=0 >> a")
    page.wait_for_url("**/report.html")
    assert watch.dialogs == [] and watch.errors == []
    page.close()


def test_live_endpoint_refuses_bad_requests(site):
    import json
    import urllib.error
    import urllib.request

    server, _ = site

    def post(body: dict, headers: dict | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(server.url + "api/measure", json.dumps(body).encode(),
                                     {"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    status, data = post({"run": "b/n1-3", "text": "the cat"})
    assert status == 200 and data["neuron"] == "1:3" and len(data["acts"]) == 2
    assert post({"run": "b/n1-3", "text": "the cat"}, {"Origin": "http://evil.example"})[0] == 403
    assert post({"run": "../..", "text": "x"})[0] == 400
    assert post({"run": "b/n1-3", "neuron": "9:0", "text": "x"})[0] == 400
    assert post({"run": "b/n1-3", "text": ""})[0] == 400
