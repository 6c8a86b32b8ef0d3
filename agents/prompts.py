"""Planner prompt templates, as data. ``render_*`` fill them from a ``PlannerView``. The test-prompt
template is the score's (``score/requests.py``): the planner and the score ask for test prompts
alike.

A test pins the rendered text, so a change here is a deliberate change of the agent's behaviour.
The user's ``--system-prompt-file`` replaces ``SYSTEM_PROMPT``; ``--steer`` messages are added to
every request under "Guidance from the researcher".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from neurosleuth.score.requests import render_test_prompts

SYSTEM_PROMPT = (
    "You are an interpretability researcher studying one neuron of a language model. "
    "You find short texts that make the neuron fire strongly and explain what it responds to. "
    "You answer only with the JSON object asked for."
)

PROPOSE = """Neuron {neuron} of {model}. Its activation on a text is its highest value over the text's tokens.

Texts with the highest activation so far (activation, token where it peaks, text):
{top}

Texts with the lowest activation so far:
{bottom}

Dataset texts where it fires most:
{exemplars}
{hypothesis}{steering}{feedback}
Write {n} new short texts (under 30 words each) that should make this neuron fire even more strongly. Each must differ from every text above and from each other. Answer with JSON: {{"kind": "propose_prompts", "prompts": ["...", "..."], "rationale": "..."}}"""

HYPOTHESIZE = """Neuron {neuron} of {model}. Its activation on a text is its highest value over the text's tokens.

Texts with the highest activation (activation, token where it peaks, text):
{top}

Texts with the lowest activation:
{bottom}

Dataset texts where it fires most:
{exemplars}
{evidence}{findings}{hypothesis}{steering}
In one sentence, say what this neuron responds to (be specific: which tokens, in which context). Then explain in a few sentences which evidence above supports it. Answer with JSON: {{"kind": "hypothesis", "text": "...", "explanation": "..."}}"""


CHOOSE = """Neuron {neuron} of {model}. Its activation on a text is its highest value over the text's tokens.

Texts with the highest activation so far (activation, token where it peaks, text):
{top}

Dataset texts where it fires most:
{exemplars}
{evidence}{candidates}{hypothesis}{steering}
Where the investigation stands: {status}

Choose the next experiment:
{menu}
Answer with JSON: {{"kind": "choose", "experiment": "...", "reason": "..."}}"""


@dataclass(frozen=True)
class PlannerView:
    """What the planner sees at one step (built by the graph from its state and memory)."""

    neuron: str
    model: str
    top: list[tuple[float, str, str]] = field(default_factory=list)  # (act, max_token, prompt)
    bottom: list[tuple[float, str, str]] = field(default_factory=list)
    exemplars: list[tuple[float, str, str]] = field(default_factory=list)
    hypothesis: str | None = None
    steering: list[str] = field(default_factory=list)
    feedback: str = ""
    iteration: int = 0
    evidence: list[str] = field(default_factory=list)  # causal probe headlines
    findings: list[str] = field(default_factory=list)  # the explainer's (tools/explain.py)
    candidates: list[str] = field(default_factory=list)  # last round: text, margin, interval
    status: str = ""  # budget, search progress, experiments run (agents/policy.py)


SENTENCES = """A neuron of a language model fires on words such as {examples}. To test whether it fires on such words in any sentence, write {n} short, plain English sentences (under 15 words each), each with the placeholder {{w}} exactly once where such a word could stand, and no other braces. Answer with JSON: {{"sentences": ["...", "..."]}}"""


def render_sentences(examples: list[str], n: int) -> str:
    """The request for new test sentences with a ``{w}`` slot (``agents/revise.py``)."""
    return SENTENCES.format(examples=", ".join(f"'{w}'" for w in examples[:5]), n=n)


def _rows(rows: list[tuple[float, str, str]], limit: int = 8) -> str:
    if not rows:
        return "(none yet)"
    return "\n".join(f"{a:.2f}  {tok!r}  {text!r}" for a, tok, text in rows[:limit])


def _common(view: PlannerView) -> dict[str, str]:
    steering = ""
    if view.steering:
        steering = (
            "\nGuidance from the researcher:\n" + "\n".join(f"- {m}" for m in view.steering) + "\n"
        )
    hypothesis = f"\nCurrent hypothesis: {view.hypothesis}\n" if view.hypothesis else ""
    return {
        "neuron": view.neuron,
        "model": view.model,
        "top": _rows(view.top),
        "bottom": _rows(view.bottom, 4),
        "exemplars": _rows(view.exemplars, 5),
        "hypothesis": hypothesis,
        "steering": steering,
    }


def render_propose(view: PlannerView, n: int) -> str:
    feedback = f"\nFeedback on your last texts: {view.feedback}\n" if view.feedback else ""
    return PROPOSE.format(**_common(view), feedback=feedback, n=n)


def render_hypothesize(view: PlannerView) -> str:
    evidence = ""
    if view.evidence:
        evidence = "\nCausal checks:\n" + "\n".join(f"- {e}" for e in view.evidence) + "\n"
    findings = ""
    if view.findings:
        findings = (
            "\nThe explainer's findings (name the concept in your own words; do not copy texts):\n"
            + "\n".join(f"- {f}" for f in view.findings) + "\n"
        )
    return HYPOTHESIZE.format(**_common(view), evidence=evidence, findings=findings)


def render_choose(view: PlannerView, menu: list[tuple[str, str]]) -> str:
    """The experiment choice: the evidence, the last round's candidates, the menu (kind: what it
    does, from each experiment's docstring)."""
    evidence = ""
    if view.evidence:
        evidence = "\nExperiments' findings:\n" + "\n".join(f"- {e}" for e in view.evidence) + "\n"
    cands = ""
    if view.candidates:
        cands = ("\nCandidate hypotheses scored on held-out text (margin over the floor, 95% "
                 "interval):\n" + "\n".join(f"- {c}" for c in view.candidates) + "\n")
    c = _common(view)
    return CHOOSE.format(neuron=c["neuron"], model=c["model"], top=c["top"],
                         exemplars=c["exemplars"], evidence=evidence, candidates=cands,
                         hypothesis=c["hypothesis"], steering=c["steering"], status=view.status,
                         menu="\n".join(f"- {k}: {d}" for k, d in menu))


def render_test(view: PlannerView, claim: str, n: int) -> str:
    """The score's test-prompt request (``score/requests.py``), with the researcher's guidance."""
    return render_test_prompts(view.neuron, view.model, claim, n, _common(view)["steering"])
