"""Hypothesis score: statistics, keyword writer, known-answer scores on a hand-set neuron that fires
on one token, the LLM path through a scripted stand-in chat model, and the CLI."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from langchain_core.messages import AIMessage

from neurosleuth.agents.planner import LLMPlanner
from neurosleuth.agents.scoring import planner_control, planner_writer
from neurosleuth.score import components as S
from neurosleuth.score.evidence import max_acts, perturbation_ratios
from neurosleuth.score.run import ScoreConfig, score_hypothesis
from neurosleuth.score.stats import average_precision, balanced_accuracy, spearman
from neurosleuth.score.writer import HeuristicWriter, keywords, peak_token_hypothesis
from neurosleuth.tools.measure import measure
from neurosleuth.tools.neurons import NeuronId
from neurosleuth.tools.scan_config import ScanConfig
from tests.attack_models import NEURON, trigger_lm
from tests.fixtures import WORDS

RIGHT, WRONG = "Fires on the token 'paris'.", "Fires on the token 'dog'."


def make_corpus(path, n: int = 300, seed: int = 0):
    """Random sentences over the tiny vocabulary; every fifth holds 'paris'."""
    rng = np.random.default_rng(seed)
    vocab = [w for w in WORDS[3:] if w != "paris"]
    docs = []
    for i in range(n):
        words = list(rng.choice(vocab, size=int(rng.integers(6, 12))))
        if i % 5 == 0:
            words.insert(int(rng.integers(len(words))), "paris")
        docs.append(" ".join(words) + " .")
    path.write_text("\n\n".join(docs))
    return path


# ---------------------------------------------------------------- statistics


def test_metrics_known_values():
    assert balanced_accuracy([1, 1, 0, 0], [1, 0, 0, 0]) == 0.75
    assert math.isnan(balanced_accuracy([1, 1], [1, 0]))
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2)
    # a tie between a positive and a negative counts at the end of the tied group
    assert average_precision([1, 0], [1.0, 1.0]) == pytest.approx(0.5)
    assert spearman([1, 2, 3, 4], [10, 20, 20, 40]) == pytest.approx(0.9486833, abs=1e-6)
    c = S.causality(np.full(4, 1.0), np.array([0.0, 0.2, 0.1, 0.3]), n_boot=10)
    z = (1.0 - 0.15) / np.std([0.0, 0.2, 0.1, 0.3], ddof=1)
    assert c.details["z"] == pytest.approx(z) and c.value == pytest.approx(z / (z + 3))
    assert S.causality(np.zeros(4), np.array([0.0, 0.2, 0.1, 0.3]), n_boot=10).value == 0.0


def _evidence(rng, n: int, shift: float) -> S.HypothesisEvidence:
    pos, neg = rng.normal(shift, 1, n), rng.normal(0, 1, n)
    return S.HypothesisEvidence("h", ("p",) * n, pos, ("n",) * n, neg, (), np.zeros(0),
                                np.zeros(0))


def test_bootstrap_interval_holds_point_and_narrows():
    rng = np.random.default_rng(0)
    small = S.selectivity(_evidence(rng, 10, 1.0), 0.5, seed=1)
    large = S.selectivity(_evidence(rng, 400, 1.0), 0.5, seed=1)
    for c in (small, large):
        assert c.lo <= c.value <= c.hi and 0 <= c.lo and c.hi <= 1
    assert (large.hi - large.lo) < 0.5 * (small.hi - small.lo)
    again = S.selectivity(_evidence(np.random.default_rng(0), 10, 1.0), 0.5, seed=1)
    assert (again.lo, again.hi) == (small.lo, small.hi)  # seeded


def test_weights_parse_and_aggregate():
    w = S.parse_weights("S=1,C=0,r=0.5")
    assert w["selectivity"] == 1 and w["causality"] == 0 and w["robustness"] == 0.5
    assert w["simulation"] == S.DEFAULT_WEIGHTS["simulation"]
    for bad in ("X=1", "S=-1", "S=abc"):
        with pytest.raises(ValueError):
            S.parse_weights(bad)
    comps = {name: S.Component(name, v, v, v, 1, np.full(50, v))
             for name, v in (("selectivity", 1.0), ("simulation", 0.0), ("causality", 0.5))}
    assert S.aggregate(comps, S.parse_weights("S=1,M=1,C=0")).value == pytest.approx(0.5)
    assert S.aggregate(comps, S.parse_weights("S=3,M=1,C=0")).value == pytest.approx(0.75)
    with pytest.raises(ValueError):
        S.aggregate(comps, S.parse_weights("S=0,M=0,C=0"))


def test_human_rating_spearman():
    acts = np.array([0.1, 0.5, 0.2, 2.0, 1.0, 0.0])
    ratings = np.array([1, 3, 2, 5, 4, 0])
    c = S.human(acts, ratings, seed=0)
    assert c.value == pytest.approx(1.0) and c.details["raw"] == pytest.approx(1.0)
    reverse = S.human(acts, -ratings, seed=0)
    assert reverse.value == 0.0 and reverse.details["raw"] == pytest.approx(-1.0)


# ---------------------------------------------------------------- keyword writer


def test_keywords_and_heuristic_writer():
    assert keywords("Fires on the tokens 'the', ',', ''s' in context.") == ["the", ",", "'s"]
    assert keywords('fires on "Paris" in travel text') == ["paris"]
    assert keywords("closing brackets in code") == ["closing", "brackets", "code"]
    assert keywords("") == []
    w = HeuristicWriter()
    assert list(w.simulate(RIGHT, ["the", " Paris", "parisian", "x"])) == [0, 10, 5, 0]
    assert list(w.judge(RIGHT, [["a", "paris"], ["a", "dog"]])) == [10, 0]
    pool = [w.split() for w in ["a b c d e f g h i paris j k", "paris sat on the mat",
                                "the cat sat on the mat", "one two three", "a dog ran to the park"]]
    pos, neg = w.test_prompts(RIGHT, 2, pool)
    # a natural occurrence (cut after the keyword), then a minimal pair to fill up; a window
    # with the keyword too early for context is neither positive nor negative
    assert pos == ["a b c d e f g h i paris", "a dog ran to the park paris"]
    assert neg == ["the cat sat on the mat", "one two three", "a dog ran to the park"]
    assert w.test_prompts("", 2, pool[2:4]) == (["the cat sat on the mat", "one two three"],) * 2


def test_peak_token_hypothesis_names_the_commonest_peaks():
    snippets = [(3.0, " and", "cats and"), (2.0, " and", "dogs and"), (1.0, ",", "mice,")]
    text, why = peak_token_hypothesis(snippets, [])
    assert text == "Fires on the tokens 'and', ',' in context."
    assert why == ("The peak token is one of 'and', ',' in 3 of 3 top texts and dataset "
                   "exemplars; the strongest text so far (3.00) peaks at ' and': 'cats and'.")
    assert peak_token_hypothesis([], []) == ("No evidence yet.", "Nothing was measured.")


# ---------------------------------------------------------------- known answer


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """The hand-set neuron that fires on 'paris', a corpus, settings and a shared cache."""
    corpus = make_corpus(tmp_path_factory.mktemp("score") / "corpus.txt")
    config = ScoreConfig(ScanConfig(corpus=str(corpus), window=16, max_tokens=4000), baseline=8,
                         n_boot=300)
    return trigger_lm(), NeuronId(0, NEURON), config, {}


def test_right_hypothesis_scores_high_wrong_one_at_floor(known):
    lm, n, config, cache = known
    right = score_hypothesis(lm, n, RIGHT, config=config, cache=cache)
    wrong = score_hypothesis(lm, n, WRONG, config=config, cache=cache)
    assert right.components["selectivity"].value > 0.85
    assert right.components["simulation"].value > 0.85
    assert right.margin.lo > 0.2 and right.aggregate.value > right.floor.value + 0.3
    assert abs(wrong.margin.value) < 0.05 and wrong.margin.lo <= 0.0
    assert wrong.components["simulation"].value < 0.1
    # neuron-level components are shared through the cache, and so is the floor
    assert right.components["causality"] is wrong.components["causality"]
    assert right.floor.value == wrong.floor.value
    for c in [*right.components.values(), right.aggregate]:
        assert c.lo <= c.value <= c.hi
    assert {c.label for c in right.controls} == {"other-neuron", "empty"}
    assert right.llm_failures == 0 and right.llm["backend"] == "heuristic"
    data = json.loads(json.dumps(right.to_dict()))  # JSON-safe
    assert data["components"]["selectivity"]["details"]["auroc"] > 0.9
    frame = right.to_frame()
    assert list(frame["component"]) == [*S.COMPONENTS[:4], "aggregate", "floor", "margin"]
    # the wrong hypothesis's counterexamples: prompts with 'dog' that stayed low, windows that fired
    ce = wrong.counterexamples
    high = ce["predicted_high"]
    assert high and all(e["activation"] < ce["threshold"] for e in high)
    assert ce["predicted_low"] and all("paris" in e["text"] for e in ce["predicted_low"])


def test_robustness_and_causality_on_the_hand_set_neuron(known):
    lm, n, config, cache = known
    right = score_hypothesis(lm, n, RIGHT, config=config, cache=cache)
    assert right.components["causality"].details["z"] > 3  # the one neuron that fires hugely
    ratios, info = perturbation_ratios(lm, n, ["the cat sat in paris", "a big dog and paris"],
                                       ["paris is big", "the dog"], seed=0)
    # the neuron reads only the token at each position: dropout away from the peak keeps it
    assert ratios["dropout"] == pytest.approx(1.0, abs=1e-4)
    assert ratios["paraphrase"][1] < 0.2 and info["contexts"] == 2  # paraphrase lost 'paris'


def test_human_ratings_on_the_hand_set_neuron(known, tmp_path):
    lm, n, config, cache = known
    texts = ["the cat sat", "paris", "a paris tower", "dog ran to park", "big red king"]
    acts = max_acts(lm, n, texts)
    assert S.human(acts, np.array([0, 9, 8, 1, 0])).value > 0.8
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("text,rating\n" + "\n".join(f"{t},{r}" for t, r in
                                                  zip(texts, [0, 9, 8, 1, 0], strict=True)))
    r = score_hypothesis(lm, n, RIGHT, config=config, human=ratings, weights="H=1")
    assert r.components["human"].value > 0.8 and r.aggregate.details["weights"]["human"] > 0


def test_agent_interface_with_run_config_and_exemplars(known):
    """What the agent's test step passes: its RunConfig, planner and exemplars.json data."""
    from neurosleuth.agents.config import RunConfig
    from neurosleuth.agents.exemplars import exemplar_snippets
    from neurosleuth.agents.planner import HeuristicBackend
    from neurosleuth.agents.scoring import score_config

    lm, n, config, _ = known
    cfg = RunConfig(neuron=str(n), corpus=config.scan.corpus, window=16, exemplar_tokens=4000)
    data, _ = exemplar_snippets(lm, n, cfg)
    data = json.loads(json.dumps(data))  # as read back from exemplars.json
    planner = HeuristicBackend(0)
    r = score_hypothesis(lm, n, RIGHT, writer=planner_writer(planner, n, lm.name),
                         hypothesize=planner_control(planner), exemplars=data,
                         config=score_config(cfg, baseline=8, n_boot=200))
    rec = json.loads(json.dumps(r.to_record()))
    assert rec["aggregate"] == pytest.approx(r.aggregate.value, abs=1e-6)
    assert set(rec["components"]) == set(S.COMPONENTS[:4]) and rec["margin"] > 0.2
    assert rec["details"]["positive"] and "predicted_low_but_high" in rec["details"]


def test_an_investigation_is_scored_on_windows_nothing_else_read(known):
    """exemplars.json keeps the top windows ranked past those the planner and explainers read
    (``validation_top``), and the score judges and simulates on those, not on read ones."""
    from neurosleuth.agents.config import RunConfig
    from neurosleuth.agents.exemplars import VALIDATION_TOP, exemplar_snippets
    from neurosleuth.score.run import held_out

    lm, n, config, _ = known
    cfg = RunConfig(neuron=str(n), corpus=config.scan.corpus, window=16, exemplar_tokens=4000,
                    k=6, prompts_per_step=2)
    data, _ = exemplar_snippets(lm, n, cfg)
    top, valid = data["top"], data["validation_top"]
    assert len(top) == len(data["bottom"]) == 6 and len(valid) == VALIDATION_TOP
    assert top[-1]["max_act"] >= valid[0]["max_act"]  # ranked after every window read
    read = {tuple(e["tokens"]) for e in top}
    assert read.isdisjoint(tuple(e["tokens"]) for e in valid)
    held = held_out(lm, n, data, ScoreConfig(config.scan, top_windows=4, random_windows=2))
    assert held.kinds == ["top"] * 4 + ["random"] * 2
    for toks, e in zip(held.tokens[:4], valid, strict=False):  # cut around their peaks
        assert "".join(toks) in "".join(e["tokens"])


# ---------------------------------------------------------------- LLM path (scripted stand-in)


class ScriptedChat:
    """A stand-in chat model (tests only): answers each structured request by reading the
    hypothesis and the numbered items out of the prompt. ``mode="broken"`` replies with junk."""

    def __init__(self, mode: str = "oracle"):
        self.mode, self.requests, self.users = mode, [], []

    def model_copy(self, update=None):
        return self

    def with_structured_output(self, schema, include_raw=True):
        chat = self

        class Runnable:
            def invoke(self, messages):
                user = messages[-1].content
                chat.requests.append(schema.__name__)
                chat.users.append(user)
                if chat.mode == "broken":
                    return {"raw": AIMessage("no json here"), "parsed": None}
                data = chat.answer(schema.__name__, user)
                return {"raw": AIMessage(json.dumps(data)), "parsed": schema.model_validate(data)}

        return Runnable()

    @staticmethod
    def answer(kind: str, user: str) -> dict:
        hyp = re.search(r'Hypothesis about it: "(.*)"', user)
        kws = keywords(hyp.group(1)) if hyp else []
        if kind == "TestPrompts":
            word = kws[0] if kws else "the"
            return {"positive": [f"the cat sat {word}", f"a {word} tower", f"one {word}"],
                    "negative": ["the cat sat", "a big tower", "one two"]}
        if kind == "JudgeWindows":
            items = re.findall(r"^\d+\. (.*)$", user, flags=re.M)
            return {"applies": [any(k in t.lower() for k in kws) for t in items]}
        if kind == "SimulateTokens":
            toks = [eval(t) for t in re.findall(r"^\d+ ('.*')$", user, flags=re.M)]  # noqa: S307
            return {"values": [10 if t.strip().lower() in kws else 0 for t in toks]}
        if kind == "Paraphrases":
            return {"texts": [eval(t) for t in re.findall(r"^\d+\. (.*)$", user, flags=re.M)]}  # noqa: S307
        return {"text": "Fires on the token 'king'.", "explanation": "scripted"}


def test_llm_writer_path_scores_through_the_chat_model(known):
    lm, n, config, _ = known
    chat = ScriptedChat()
    planner = LLMPlanner(chat, "scripted-chat", "system")
    r = score_hypothesis(lm, n, RIGHT, writer=planner_writer(planner, n, lm.name),
                         hypothesize=planner_control(planner), config=config)
    assert {"TestPrompts", "JudgeWindows", "SimulateTokens", "Paraphrases",
            "StateHypothesis"} <= set(chat.requests)
    assert r.llm["calls"] == len(chat.requests) and r.llm_failures == 0
    assert r.llm["fallbacks"] == 0 and r.llm["backend"] == "scripted-chat"
    assert r.components["selectivity"].value > 0.85 and r.margin.lo > 0.2
    assert r.controls[0].hypothesis == "Fires on the token 'king'."
    # the score's test-prompt request: the planner's template without guidance
    assert chat.users[chat.requests.index("TestPrompts")].startswith(
        f'Neuron {n} of {lm.name}. Hypothesis about it: "{RIGHT}"\n\nWrite 8 short texts')


def test_malformed_llm_output_falls_back_and_is_counted(known):
    lm, n, config, _ = known
    planner = LLMPlanner(ScriptedChat("broken"), "broken-chat", "system", retries=1)
    r = score_hypothesis(lm, n, RIGHT, writer=planner_writer(planner, n, lm.name),
                         hypothesize=planner_control(planner), config=config)
    assert r.llm_failures > 0 and r.llm["fallbacks"] > 0
    # every request fell back to the keywords: the same score as the heuristic writer
    heuristic = score_hypothesis(lm, n, RIGHT, config=config)
    assert r.components["selectivity"].value == pytest.approx(
        heuristic.components["selectivity"].value)
    assert r.margin.lo > 0.2


# ---------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def cli_setup(tmp_path_factory):
    from tests.agent_helpers import save_tiny_model

    tmp = tmp_path_factory.mktemp("score-cli")
    return save_tiny_model(tmp / "model"), make_corpus(tmp / "corpus.txt", n=700), tmp


def _cli(*args):
    from typer.testing import CliRunner

    from neurosleuth.cli import app

    return CliRunner().invoke(app, ["score", *args])


def test_cli_score_table_pairs_and_errors(cli_setup):
    model, corpus, tmp = cli_setup
    common = ["--model", str(model), "--planner", "heuristic", "--corpus", str(corpus),
              "--exemplar-tokens", "6000"]
    r = _cli("--neuron", "1:3", "--hypothesis", "Fires on the token 'cat'.", *common,
             "--json", str(tmp / "one.json"))
    assert r.exit_code == 0, r.output
    for word in ("selectivity", "simulation", "causality", "robustness", "floor", "aggregate",
                 "margin"):
        assert word in r.output
    assert json.loads((tmp / "one.json").read_text())["neuron"] == "1:3"
    pairs = tmp / "pairs.csv"
    pairs.write_text("neuron,hypothesis\n1:3,Fires on 'cat'.\n0:5,Fires on 'dog'.\n")
    r = _cli("--pairs", str(pairs), "--out", str(tmp / "out.csv"), "--weights", "S=1,C=0",
             *common)
    assert r.exit_code == 0, r.output
    import pandas as pd

    out = pd.read_csv(tmp / "out.csv")
    assert list(out["neuron"]) == ["1:3", "0:5"] and {"aggregate", "margin_lo"} <= set(out.columns)
    for args, msg in ((["--neuron", "1:3", "--hypothesis", "x", "--weights", "Q=1"],
                       "unknown weight"),
                      (["--neuron", "1:3"], "--hypothesis"),
                      (["--neuron", "9:3", "--hypothesis", "x"], "out of range")):
        r = _cli(*args, *common)
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output


# ---------------------------------------------------------------- SmolLM2


@pytest.mark.integration
def test_smollm2_heuristic_score(smollm2):
    """A neuron of SmolLM2 whose top exemplars mostly peak on ' and' (15 of 16 in a scan of 8192
    corpus tokens): the keyword hypothesis beats its floor; one about another token does not."""
    n = NeuronId(4, 1171)
    config = ScoreConfig(ScanConfig(max_tokens=8192), baseline=10, n_boot=300)
    cache: dict = {}
    right = score_hypothesis(smollm2, n, "Fires on the token 'and'.", config=config, cache=cache)
    wrong = score_hypothesis(smollm2, n, "Fires on the token 'dog'.", config=config, cache=cache)
    assert right.margin.value > 0.1 and right.margin.value > wrong.margin.value + 0.1
    assert right.components["causality"].details["random_neurons"] == 10


def test_attack_finds_counterexamples_to_a_wrong_hypothesis():
    """The attack drives the 'paris' neuron up; those prompts contradict 'dog', not 'paris'."""
    from neurosleuth.score.run import attack_counterexamples

    lm, neuron = trigger_lm(), NeuronId(0, NEURON)
    seeds = ["the cat sat on the mat", "a big red dog ran"]
    threshold = float(measure(lm, ["paris"], neuron).max_act[0, 0]) * 0.5
    wrong, passes = attack_counterexamples(lm, neuron, "fires on dog", seeds, threshold)
    right, _ = attack_counterexamples(lm, neuron, "fires on paris", seeds, threshold)
    assert passes > 0 and wrong and all(e["activation"] >= threshold for e in wrong)
    assert all("paris" in e["text"] for e in wrong)
    assert not right
