"""Kinds of text from libraries (tools/contexts.py): formats and programming languages from Magika,
natural languages from langid, named as a researcher would; English prose has no kind."""

import numpy as np
import pytest

from neurosleuth.tools.contexts import context_level, context_of

JSON = '{"name": "Alice", "age": 30, "tags": ["a", "b"], "nested": {"x": 1, "y": [2, 3]}}'
LATEX = r"\begin{equation} E = mc^2 \end{equation} where \textbf{m} is the mass \cite{einstein}"
PYTHON = "def f(x):\n    return x + 1\n\nclass A:\n    def g(self):\n        return 2\n"
SPANISH = "El comité aprobó el presupuesto después de un largo debate sobre la nueva escuela."
GERMAN = "Der Ausschuss hat den Haushalt nach einer langen Debatte über die neue Schule genehmigt."
ENGLISH = "The committee approved the budget after a long debate about the new school."


@pytest.mark.parametrize(("text", "kind"), [
    (JSON, "JSON document"), (LATEX, "LaTeX document"), (PYTHON, "Python source code"),
    (SPANISH, "Spanish text"), (GERMAN, "German text"), (ENGLISH, None),
    ("Москва является столицей России и крупнейшим городом страны.", "Cyrillic script text"),
])
def test_kinds_of_text(text, kind):
    assert context_of(list(text)) == kind


def test_a_neuron_firing_throughout_spanish_windows_is_context_level():
    sentences = [SPANISH, "La ciudad tiene un puerto muy antiguo y muchas iglesias famosas.",
                 "Los estudiantes leyeron los libros durante todo el verano pasado.",
                 "Mi hermana trabaja en un hospital grande cerca de la estación."]
    windows = [([w + " " for w in s.split()], np.ones(len(s.split()))) for s in sentences]
    share, kind, distinct = context_level(windows)
    assert kind == "Spanish text" and share == 1.0 and distinct > 20


def test_magika_runs_on_one_thread_and_labels_as_its_default_session():
    magika = pytest.importorskip("magika")
    from neurosleuth.tools.contexts import _magika

    ours, default = _magika(), magika.Magika()
    opts = ours._onnx_session.get_session_options()
    assert opts.intra_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    for text in (JSON, LATEX, PYTHON, SPANISH, ENGLISH):
        a, b = (m.identify_bytes(text.encode()) for m in (ours, default))
        assert (a.output.label, round(a.score, 5)) == (b.output.label, round(b.score, 5))
